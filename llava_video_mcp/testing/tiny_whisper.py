# mypy: disable-error-code="arg-type,no-untyped-call,operator"
# (transformers' own annotations of config keyword arguments and processors are partial; these builders pass them
# the documented keywords)
"""Builds Whisper-shaped speech models from scratch and saves them like a hub checkpoint.

No hub is reachable here, so tests (tiny sizes) and benchmarks (full size, random weights) make their own: an
encoder-decoder with 80 mel bins (128 for v3) over 30 s blocks, and a tokenizer with Whisper's real id layout
(51,865 ids; 51,866 for v3): 50,257 byte-level tokens, then the special tokens in Whisper's real order:
<|endoftext|> (50257), <|startoftranscript|> (50258), the 99 language tokens (100 in v3, with <|yue|> at 50358),
<|translate|>, <|transcribe|>, <|startoflm|>, <|startofprev|>, <|nocaptions|>, <|notimestamps|> (the last special
token: the tokenizer finds the timestamps right after it), then the 1,501 timestamps <|0.00|> (50364; 50365 in v3)
... <|30.00|> in 0.02 s steps. The generation
config carries the language, task and timestamp ids, saved with `_from_model_config = False` (or a reload rebuilds
it from the model config and they are lost). The server loads the folder through `--asr-model` like any local
model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.models.whisper.tokenization_whisper import LANGUAGES

TINY = {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
        "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32}  # fmt: skip
# whisper-base: 74M parameters, the CPU default.
BASE = {"d_model": 512, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 8,
        "decoder_attention_heads": 8, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048}  # fmt: skip
# whisper-large-v3-turbo: 809M parameters (32 encoder layers, 4 decoder layers, 128 mel bins), the CUDA default.
LARGE_V3_TURBO = {"d_model": 1280, "encoder_layers": 32, "decoder_layers": 4, "encoder_attention_heads": 20,
                  "decoder_attention_heads": 20, "encoder_ffn_dim": 5120, "decoder_ffn_dim": 5120,
                  "num_mel_bins": 128}  # fmt: skip

LAYOUTS = {"multilingual": 99, "v3": 100}
"""Languages of each real layout: the multilingual models before v3 (51,865 ids), and v3 / v3-turbo, which add
<|yue|> (51,866 ids, 128 mel bins)."""
BASE_TOKENS = 50257
"""Whisper's byte-level BPE vocabulary before <|endoftext|>: the 256 byte tokens, then 50,001 longer ones (the last
one empty)."""
TIMESTAMPS = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]


def special_tokens(languages: int) -> list[str]:
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in list(LANGUAGES)[:languages]),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
    ]


def _word(number: int) -> str:
    """A distinct lower-case word for a filler token (four letters cover 456,976)."""
    letters = ""
    for _ in range(4):
        number, digit = divmod(number, 26)
        letters += chr(ord("a") + digit)
    return letters


def build_tokenizer(layout: str = "multilingual") -> WhisperTokenizer:
    """Whisper's real id layout without its merges: the 256 byte tokens, 50,000 words standing in for the learned
    ones (a random model says them; a text is never tokenized into them), the empty token, then the special tokens
    in their real order and the 1,501 timestamps, so <|endoftext|> is 50257, <|startoftranscript|> 50258 and
    <|0.00|> 50364 (50365 in v3)."""
    byte_chars = bytes_to_unicode()
    vocab = {byte_chars[b]: i for i, b in enumerate(range(256))}
    for number in range(BASE_TOKENS - 257):
        vocab[byte_chars[ord(" ")] + _word(number)] = 256 + number
    vocab[""] = BASE_TOKENS - 1  # as in Whisper's multilingual vocabulary: CTranslate2 tells multilingual by it
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    specials = special_tokens(LAYOUTS[layout])
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens(TIMESTAMPS)  # plain added tokens, right after the last special one
    return tokenizer


def build_whisper(
    path: Path,
    sizes: dict[str, int] = TINY,
    *,
    seed: int = 0,
    init_std: float = 0.2,
    max_length: int | None = None,
    words_only: bool = False,
    layout: str = "multilingual",
) -> Path:
    """Save a randomly initialised Whisper-shaped model with its processor to `path`. `max_length` caps what one
    block may say (448 tokens, Whisper's own, unless given): random weights rarely choose to stop, and every one of
    Whisper's fallback temperatures then runs to the cap, so tests give tiny models a short one. `words_only`
    suppresses the timestamp tokens in plain (untimed) generation, as `transformers serve` runs it: random weights
    otherwise pick one of the 1,501 timestamps nearly every step, and their text decodes to nothing."""
    tokenizer = build_tokenizer(layout)
    specials = special_tokens(LAYOUTS[layout])
    codes = list(LANGUAGES)[: LAYOUTS[layout]]
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in [*specials, TIMESTAMPS[0]]}
    assert ids["<|endoftext|>"] == BASE_TOKENS
    assert ids["<|0.00|>"] == ids["<|notimestamps|>"] + 1 == BASE_TOKENS + len(specials)
    mel_bins = sizes.get("num_mel_bins", 128 if layout == "v3" else 80)
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=mel_bins,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        init_std=init_std,
        **{k: v for k, v in sizes.items() if k != "num_mel_bins"},
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    generation = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        max_length=max_length or 448,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids[f"<|{code}|>"] for code in codes},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        max_initial_timestamp_index=50,
        begin_suppress_tokens=[ids["<|endoftext|>"]],
        suppress_tokens=[ids["<|0.00|>"] + i for i in range(len(TIMESTAMPS))] if words_only else [],
    )
    generation._from_model_config = False  # else a reload rebuilds it from the model config, without these ids
    model.generation_config = generation
    model.save_pretrained(path)
    features = WhisperFeatureExtractor(feature_size=mel_bins, sampling_rate=16000, chunk_length=30)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(path)
    return path
