"""Whisper in process: one decoding policy over two engines, for 30 s blocks of 16 kHz mono audio.

The policy is Whisper's own, written once (`WhisperSpeech`): every block of a batch is encoded once; the language
is the one given, or told once from the first block's encoding and then kept for the whole video; each block is
decoded with timestamps at temperature 0, and again at Whisper's fallback temperatures (reusing its encoding) only
while its text repeats itself (compression ratio) or the model is unsure of it (average log-probability); a block
the model finds silent (no-speech probability) says nothing. Nothing is ever conditioned on an earlier block (text
invented over music or silence is the failure to avoid), and no block is re-encoded to seek inside it: a segment
still open at the block's end runs to the block's end.

The engines only encode, tell a language and decode:

- `CTranslate2Engine`, the CPU default: the same transformers Whisper folder converted once into the cache with
  CTranslate2's `TransformersConverter` and run in int8 (what faster-whisper runs; README, Speech: measured beside
  it in the same run by bench/speech.py), 4 blocks a batch. Cancelling stops between batches.
- `TransformersEngine`: `WhisperForConditionalGeneration`, float16 and batched on CUDA; cancelling stops between
  tokens too.

A folder that cannot be Whisper as it claims is refused at load with what is wrong (`checked_folder`): weights cut
short or not matching the config, a preprocessor whose mel bins differ from the model's, a tokenizer that lacks
Whisper's special tokens (a folder without its tokenizer files).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import logging
import os
import shutil
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llava_video_mcp.tools.backends.speech.base import SAMPLE_RATE, SpeechBackend, Transcription
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import BlockProgress
from llava_video_mcp.tools.timeline import TimedText

log = logging.getLogger(__name__)

TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
COMPRESSION_RATIO_THRESHOLD = 2.4
"""Text that gzip shrinks more than this repeats itself: decoded again, warmer (Whisper's value)."""
LOGPROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
BEAM = 5
"""Beams at temperature 0 (Whisper's and faster-whisper's default); sampling at the fallback temperatures."""
TIME_STEP_S = 0.02
"""What one timestamp token stands for."""
CUDA_BATCH = 8
CPU_BATCH = 4
"""Blocks a batch in CTranslate2 on CPU: 15-25% faster than one at a time on 2 cores (bench/speech.py's machine);
cancelling then waits for the batch (a few seconds)."""
_CONVERTED_FORMAT = 1
DECODE_ON_S = 1.0
"""Audio left past where a window's hearing ends that is heard on, from there (as Whisper's long-form decoding
seeks); less is not (a fraction of a second of a padded pause is where a model invents words)."""
WINDOW = 30 * SAMPLE_RATE
HOP = 160
"""Samples a feature frame steps (10 ms)."""
"""Samples the model hears at once; audio past it is heard on from where the window's speech ended."""
MAX_DECODE_ON = 12
PAUSE_SEARCH_S = 0.6
"""How far before a closed segment's end hearing may go on from, to go on in the pause before the next words."""
"""Windows heard on from one: a row of audio handed in may be several windows long (hearing packs up to four)."""


@dataclass(frozen=True)
class Layout:
    """Where Whisper's special tokens are in this model's vocabulary."""

    start: int
    end: int
    transcribe: int | None
    no_timestamps: int
    languages: dict[str, int]
    """Language codes (en, fr, yue ...) to their token ids; empty for an English-only model."""

    @property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1

    def prompt(self, language: str | None) -> list[int]:
        """What every block's decoding starts with: transcribe, with timestamps, in `language`."""
        if not self.languages:
            return [self.start]
        tokens = [self.start]
        if language in self.languages:
            tokens.append(self.languages[language])
        if self.transcribe is not None:
            tokens.append(self.transcribe)
        return tokens


@dataclass(frozen=True)
class Decoded:
    """One block's decoding: its tokens (timestamps included, the prompt and end left out)."""

    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float


class Engine(ABC):
    device: str
    compute: str
    """What the weights run in: int8, float16, float32."""
    batch: int = 1

    @abstractmethod
    def encode(self, features: np.ndarray) -> Any:
        """The encoder's output for [blocks, mel bins, 3000] features."""

    @abstractmethod
    def language(self, encoded: Any, row: int) -> str | None:
        """The language the model hears in block `row` of `encoded`, as its code (None if it cannot tell)."""

    @abstractmethod
    def decode(
        self,
        encoded: Any,
        rows: Sequence[int],
        prompt: list[int],
        temperature: float,
        max_new_tokens: int,
        cancel: CancelToken | None,
    ) -> list[Decoded]:
        """Blocks `rows` of `encoded` decoded from `prompt`, greedy at temperature 0, else sampled."""


class WhisperSpeech(SpeechBackend):
    """Whisper's decoding policy over an engine (see the module's docstring)."""

    def __init__(
        self, engine: Engine, features: Any, words: Words, layout: Layout, max_length: int, model_id: str
    ) -> None:
        self._engine = engine
        self._features = features
        self._words = words
        self._layout = layout
        self._max_length = max_length
        """Tokens one block's decoding may hold, its prompt included (Whisper's 448, or the config's)."""
        self._turn = threading.Lock()
        self.model_id = model_id
        self.device = engine.device
        self.compute = engine.compute
        self.blocks_at_once = engine.batch
        self.longest_s = 4 * WINDOW / SAMPLE_RATE
        """Audio of up to four windows is heard as one, on from window to window where the speech took it (as
        faster-whisper hears all the speech its VAD found)."""
        self.tokens_decoded = 0
        """Tokens decoded so far, timestamps and every fallback temperature included."""

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(self._layout.languages)

    def transcribe(
        self,
        blocks: Sequence[np.ndarray],
        language: str | None,
        on_block: BlockProgress | None = None,
        cancel: CancelToken | None = None,
    ) -> Transcription:
        heard: list[list[TimedText]] = []
        language = language if language in self._layout.languages else None
        blocks = [_numbers_only(block) for block in blocks]
        with self._turn:
            for start in range(0, len(blocks), self.blocks_at_once):
                if cancel is not None:
                    cancel.check()
                batch = [_Row(block, self._mel(block)) for block in blocks[start : start + self.blocks_at_once]]
                said, language = self._batch(batch, language, cancel)
                heard.extend(said)
                if on_block is not None:
                    on_block(len(heard))
        return Transcription(heard, language)

    def _mel(self, samples: np.ndarray) -> np.ndarray:
        """The log-mel features of `samples` and a window of silence after them, computed once and levelled over
        all of them (as Whisper's long-form decoding does): a window heard on from any point is a slice."""
        padded = np.concatenate([samples, np.zeros(WINDOW, dtype=np.float32)])
        made = self._features([padded], sampling_rate=SAMPLE_RATE, return_tensors="np", truncation=False,
                              padding="longest")  # fmt: skip
        return np.asarray(made["input_features"][0], dtype=np.float32)

    def _batch(
        self, batch: Sequence[_Row], language: str | None, cancel: CancelToken | None, depth: int = 0
    ) -> tuple[list[list[TimedText]], str | None]:
        features = np.stack([row.window() for row in batch])
        encoded = self._engine.encode(np.ascontiguousarray(features, dtype=np.float32))
        if language is None and self._layout.languages:
            language = self._engine.language(encoded, 0)
        prompt = self._layout.prompt(language)
        most = max(1, self._max_length - len(prompt))
        final: dict[int, Decoded | None] = {}
        pending = list(range(len(batch)))
        for temperature in TEMPERATURES:
            decoded = self._engine.decode(encoded, pending, prompt, temperature, most, cancel)
            again = []
            self.tokens_decoded += sum(len(result.tokens) + 1 for result in decoded)
            for row, result in zip(pending, decoded, strict=True):
                silent = result.no_speech_prob > NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD
                final[row] = None if silent else result
                if not silent and self._unsure(result):
                    again.append(row)
            pending = again
            if not pending:
                break
        said: list[list[TimedText]] = []
        resume: dict[int, float] = {}
        """Rows heard on from a point of their audio: the model stopped before the audio there is ran out."""
        for row, audio in enumerate(batch):
            kept = final[row]
            window_s = min(audio.length_s, WINDOW / SAMPLE_RATE)
            closed, trailing, resumes_s = self._read([] if kept is None else kept.tokens, window_s)
            more = depth < MAX_DECODE_ON and audio.length_s - resumes_s >= DECODE_ON_S
            if more:
                paused = _in_a_pause(audio.samples, audio.at_s + resumes_s) - audio.at_s
                resume[row] = paused if resumes_s < window_s else resumes_s
            said.append(closed if more or trailing is None else [*closed, trailing])
        if resume:
            rows = list(resume)
            rest = [batch[row].later(resume[row]) for row in rows]
            heard_on, _ = self._batch(rest, language, cancel, depth + 1)
            for row, heard in zip(rows, heard_on, strict=True):
                start = resume[row]
                said[row].extend(TimedText(start + h.start_s, start + h.end_s, h.text) for h in heard)
        return said, language

    def _unsure(self, result: Decoded) -> bool:
        text = self._text(result.tokens)
        data = text.encode()
        repeats = bool(data) and len(data) / len(zlib.compress(data)) > COMPRESSION_RATIO_THRESHOLD
        return repeats or result.avg_logprob < LOGPROB_THRESHOLD

    def _text(self, tokens: Sequence[int]) -> str:
        words = [t for t in tokens if t < self._layout.end]
        return self._words.decode(words).strip()

    def _read(self, tokens: Sequence[int], length_s: float) -> tuple[list[TimedText], TimedText | None, float]:
        """A window's tokens as Whisper's long-form decoding reads them: its closed segments (in time order, clamped
        to the audio there is), the words after the last closing timestamp if any (a segment the model took for cut
        off by the window's end), and where hearing goes on: the whole window when the model closed its last segment
        and said no more, or when it closed none; else the end of its last closed segment, where the words it
        left open are heard again with what follows them.

        Words after a closing timestamp start there (a timestamp both closes one segment and opens the next when the
        model writes it once); a timestamp earlier than one before it (sampled at a warm temperature) counts as
        that one."""
        begin = self._layout.timestamp_begin
        closed: list[TimedText] = []
        opened = 0.0
        closed_at: float | None = None
        words: list[int] = []
        for token in tokens:
            if token < begin:
                words.append(token)
                continue
            at = max((token - begin) * TIME_STEP_S, opened)
            if words:
                closed.extend(self._segment(opened, at, words, length_s))
                words = []
                closed_at = at
            opened = at
        trailing = self._segment(opened, length_s, words, length_s) if words else []
        said_no_more = bool(tokens) and tokens[-1] >= begin and (len(tokens) < 2 or tokens[-2] < begin)
        resumes_s = length_s if said_no_more or closed_at is None else min(closed_at, length_s)
        return closed, trailing[0] if trailing else None, resumes_s

    def _segment(self, start: float, end: float, words: Sequence[int], length_s: float) -> list[TimedText]:
        text = self._text(words)
        start = min(max(start, 0.0), length_s)
        end = min(max(end, start), length_s)
        return [TimedText(start, end, text)] if text and end > start else []


@dataclass(frozen=True)
class _Row:
    """Audio handed in to be heard, from `at_s` on, with its features (`WhisperSpeech._mel`)."""

    samples: np.ndarray
    mel: np.ndarray
    at_s: float = 0.0

    @property
    def length_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE - self.at_s

    def window(self) -> np.ndarray:
        """The features of the window starting at `at_s`."""
        frames = WINDOW // HOP
        first = round(self.at_s * SAMPLE_RATE / HOP)
        window = self.mel[:, first : first + frames]
        return window if window.shape[1] == frames else np.pad(window, ((0, 0), (0, frames - window.shape[1])))

    def later(self, seconds: float) -> _Row:
        return _Row(self.samples, self.mel, self.at_s + seconds)


def _in_a_pause(samples: np.ndarray, at_s: float) -> float:
    """The quietest 20 ms of the PAUSE_SEARCH_S before `at_s`: where hearing goes on after a segment the model
    closed. Its timestamps are coarse, and one placed a little late cuts the first short word ("The") of what
    follows."""
    step = SAMPLE_RATE // 50
    end = round(at_s * SAMPLE_RATE)
    first = max(end - round(PAUSE_SEARCH_S * SAMPLE_RATE), 0)
    usable = (end - first) // step * step
    if usable < step:
        return at_s
    levels = np.square(samples[end - usable : end], dtype=np.float64).reshape(-1, step).mean(axis=1)
    quietest = len(levels) - 1 - int(np.argmin(levels[::-1]))  # the latest of equally quiet stretches
    return (end - usable + quietest * step + step // 2) / SAMPLE_RATE


def _numbers_only(block: np.ndarray) -> np.ndarray:
    """The block with samples that are not numbers (NaN, infinity) silent: one would make every feature of its
    block NaN."""
    if bool(np.isfinite(block).all()):
        return block
    cleaned: np.ndarray = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
    return cleaned


class TransformersEngine(Engine):
    """`WhisperForConditionalGeneration`: its encoder once a batch, its decoder through transformers' `generate`
    with Whisper's timestamp rules."""

    def __init__(self, model: Any, layout: Layout) -> None:
        self._model = model
        self._layout = layout
        self.device = str(model.device.type)
        self.compute = str(model.dtype).removeprefix("torch.")
        self.batch = CUDA_BATCH if self.device == "cuda" else 1

    def encode(self, features: np.ndarray) -> Any:
        import torch

        with torch.inference_mode():
            inputs = torch.from_numpy(features).to(self._model.device, dtype=self._model.dtype)
            return self._model.get_encoder()(input_features=inputs).last_hidden_state

    def language(self, encoded: Any, row: int) -> str | None:
        import torch

        with torch.inference_mode():
            start = torch.tensor([[self._layout.start]], device=encoded.device)
            logits = self._model(encoder_outputs=(encoded[row : row + 1],), decoder_input_ids=start).logits[0, -1]
        codes = list(self._layout.languages)
        ids = torch.tensor([self._layout.languages[c] for c in codes], device=logits.device)
        return codes[int(torch.argmax(logits[ids]))]

    def decode(
        self,
        encoded: Any,
        rows: Sequence[int],
        prompt: list[int],
        temperature: float,
        max_new_tokens: int,
        cancel: CancelToken | None,
    ) -> list[Decoded]:
        import torch
        from transformers import GenerationMixin, LogitsProcessorList, StoppingCriteriaList
        from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor
        from transformers.modeling_outputs import BaseModelOutput

        model, layout = self._model, self._layout
        with torch.inference_mode():
            states = encoded[list(rows)]
            ids = torch.tensor([prompt] * len(rows), device=states.device)
            first = model(encoder_outputs=(states,), decoder_input_ids=ids[:, :1]).logits[:, 0].float()
            no_speech = _no_speech_token(self._layout, model.config.vocab_size)
            no_speech_probs = torch.softmax(first, dim=-1)[:, no_speech].tolist() if no_speech else [0.0] * len(rows)
            rules = WhisperTimeStampLogitsProcessor(model.generation_config, begin_index=len(prompt))
            sampled = temperature > 0
            generation = copy.deepcopy(model.generation_config)
            generation.update(
                max_length=len(prompt) + max_new_tokens, do_sample=sampled,
                temperature=temperature if sampled else None, top_k=0 if sampled else None, top_p=None, num_beams=1,
                eos_token_id=layout.end,
                pad_token_id=layout.end, forced_decoder_ids=None, output_logits=True, return_dict_in_generate=True,
            )  # fmt: skip
            output = GenerationMixin.generate(
                model,
                encoder_outputs=BaseModelOutput(last_hidden_state=states),
                decoder_input_ids=ids,
                generation_config=generation,
                logits_processor=LogitsProcessorList([rules]),
                stopping_criteria=StoppingCriteriaList([_Stop(cancel)]) if cancel is not None else None,
            )
            generated = output.sequences[:, len(prompt) :]
            logprobs = torch.stack(output.logits, dim=1).float().log_softmax(dim=-1)
            chosen = logprobs.gather(-1, generated.unsqueeze(-1)).squeeze(-1)
        results = []
        for i in range(len(rows)):
            tokens = generated[i].tolist()
            length = tokens.index(layout.end) + 1 if layout.end in tokens else len(tokens)
            total = float(chosen[i, :length].sum())
            words = [t for t in tokens[:length] if t != layout.end]
            results.append(Decoded(words, total / max(length, 1), float(no_speech_probs[i])))
        return results


class _Stop:
    """A stopping criterion that ends generation at the next token once the call is cancelled (raising, so that
    nothing half heard is kept)."""

    def __init__(self, cancel: CancelToken | None) -> None:
        self._cancel = cancel

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self._cancel is not None:
            self._cancel.check()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _no_speech_token(layout: Layout, vocab_size: int) -> int | None:
    """<|nocaptions|> (<|nospeech|> in v3): the token right before <|notimestamps|>."""
    token = layout.no_timestamps - 1
    return token if 0 <= token < vocab_size and token != layout.start else None


class CTranslate2Engine(Engine):
    """A converted Whisper in CTranslate2, int8 on CPU."""

    def __init__(
        self, folder: Path, layout: Layout | None, threads: int, device: str = "cpu", compute: str = "int8"
    ) -> None:
        ctranslate2: Any = importlib.import_module("ctranslate2")
        self._ct2 = ctranslate2
        self._model = ctranslate2.models.Whisper(
            str(folder), device=device, compute_type=compute, intra_threads=threads
        )
        self.layout = layout
        self.device = device
        self.compute = compute
        self.batch = CPU_BATCH if device == "cpu" else CUDA_BATCH

    @property
    def mel_bins(self) -> int:
        return int(self._model.n_mels)

    @property
    def multilingual(self) -> bool:
        return bool(self._model.is_multilingual)

    def encode(self, features: np.ndarray) -> Any:
        encoded = self._model.encode(self._ct2.StorageView.from_array(features), to_cpu=True)
        return np.array(encoded)

    def language(self, encoded: Any, row: int) -> str | None:
        if not self._model.is_multilingual:
            return None
        view = self._ct2.StorageView.from_array(np.ascontiguousarray(encoded[row : row + 1]))
        best = self._model.detect_language(view)[0][0][0]
        return str(best).strip("<|>") or None

    def decode(
        self,
        encoded: Any,
        rows: Sequence[int],
        prompt: list[int],
        temperature: float,
        max_new_tokens: int,
        cancel: CancelToken | None,
    ) -> list[Decoded]:
        if cancel is not None:
            cancel.check()
        view = self._ct2.StorageView.from_array(np.ascontiguousarray(encoded[list(rows)]))
        sampling = {"sampling_topk": 0, "sampling_temperature": temperature} if temperature > 0 else {}
        results = self._model.generate(
            view, [prompt] * len(rows), beam_size=1 if temperature > 0 else BEAM, max_length=max_new_tokens,
            return_scores=True,
            return_no_speech_prob=True, **sampling,
        )  # fmt: skip
        decoded = []
        for result in results:
            tokens = [int(t) for t in result.sequences_ids[0]]
            # the score is the mean log-probability of the tokens; Whisper's counts the end token too
            total = float(result.scores[0]) * len(tokens)
            decoded.append(Decoded(tokens, total / (len(tokens) + 1), float(result.no_speech_prob)))
        return decoded


# Loading


def folder_identity(folder: Path) -> str:
    """What a model folder holds, as names, sizes and times of its files: a fixed or replaced folder reads as new,
    wherever it is."""
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            stat = path.stat()
            entries.append([str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:24]


class Words:
    """The tokenizer, for what hearing needs of it: ids to text, and where a token is. `tokenizer.json` is read by
    the `tokenizers` library itself (about a tenth of the memory of transformers' tokenizer around it); a folder
    without it is read by transformers (vocab.json and merges.txt)."""

    def __init__(self, folder: str) -> None:
        path = Path(folder) / "tokenizer.json"
        if path.is_file():
            tokenizers: Any = importlib.import_module("tokenizers")
            self._fast: Any = tokenizers.Tokenizer.from_file(str(path))
            self._slow: Any = None
            self.size = int(self._fast.get_vocab_size(with_added_tokens=True))
        else:
            hf: Any = importlib.import_module("transformers")
            self._fast = None
            self._slow = hf.WhisperTokenizer.from_pretrained(folder)
            self.size = len(self._slow)

    def token(self, token_id: int) -> str | None:
        """The token an id stands for (None where the vocabulary has no such id)."""
        if self._fast is not None:
            found = self._fast.id_to_token(token_id)
        else:
            found = self._slow.convert_ids_to_tokens(token_id)
        return None if found is None else str(found)

    def token_id(self, token: str) -> int | None:
        if self._fast is not None:
            found = self._fast.token_to_id(token)
            return None if found is None else int(found)
        found = self._slow.convert_tokens_to_ids(token)
        return None if found is None or found == self._slow.unk_token_id else int(found)

    def decode(self, ids: Sequence[int]) -> str:
        coder = self._fast if self._fast is not None else self._slow
        return str(coder.decode(list(ids), skip_special_tokens=True))


def checked_folder(source: str, label: str) -> tuple[Any, Any, Words, Any, Layout]:
    """The folder's config, feature extractor, tokenizer and generation config, and its token layout; ModelError
    saying what is wrong with it otherwise."""
    hf: Any = importlib.import_module("transformers")
    try:
        config = hf.AutoConfig.from_pretrained(source)
        if config.model_type != "whisper":
            raise ModelError(f"--asr-model {label} is a '{config.model_type}' model, not a Whisper model.")
        features = hf.WhisperFeatureExtractor.from_pretrained(source)
        words = Words(source)
        generation = hf.GenerationConfig.from_pretrained(source)
    except ModelError:
        raise
    except Exception as exc:
        raise _unloadable(label, exc) from exc
    mels = getattr(features, "feature_size", None)
    if mels != config.num_mel_bins:
        raise ModelError(
            f"The speech model '{label}' does not fit its preprocessor: the model reads {config.num_mel_bins} mel "
            f"bins, preprocessor_config.json makes {mels}. Put the model's own preprocessor_config.json in the "
            "folder, or set --asr-model to another Whisper folder or none."
        )
    if getattr(generation, "no_timestamps_token_id", None) is None:
        raise ModelError(
            f"The speech model '{label}' has no timestamp tokens in its generation config (an old or re-saved "
            "checkpoint): download it again, or set --asr-model none."
        )
    layout = _layout(generation, words, config.vocab_size, label)
    return config, features, words, generation, layout


def _layout(generation: Any, words: Words, vocab_size: int, label: str) -> Layout:
    """The layout the generation config states, checked against the tokenizer: a folder whose tokenizer files are
    missing loads a tokenizer that holds none of these tokens."""
    tokens = {
        "<|startoftranscript|>": generation.decoder_start_token_id,
        "<|endoftext|>": generation.eos_token_id,
        "<|notimestamps|>": generation.no_timestamps_token_id,
    }
    tasks = getattr(generation, "task_to_id", None) or {}
    languages = {str(k).strip("<|>"): int(v) for k, v in (getattr(generation, "lang_to_id", None) or {}).items()}
    wrong = [name for name, token in tokens.items() if token is None or words.token_id(name) != token]
    if wrong or words.size < vocab_size - 1600:
        raise ModelError(
            f"The speech model '{label}' has no usable tokenizer: it holds {words.size} tokens for a "
            f"{vocab_size}-token model, without Whisper's {', '.join(wrong) or 'text tokens'}. Put the model's "
            "tokenizer files (tokenizer.json, or vocab.json and merges.txt, with tokenizer_config.json) in the "
            "folder, or set --asr-model to another Whisper folder or none."
        )
    end = generation.eos_token_id
    return Layout(
        start=int(generation.decoder_start_token_id),
        end=int(end[0] if isinstance(end, list) else end),
        transcribe=tasks.get("transcribe"),
        no_timestamps=int(generation.no_timestamps_token_id),
        languages=languages,
    )


def _unloadable(label: str, exc: BaseException) -> ModelError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelError(
        f"Could not load the speech model '{label}' ({reason[:300]}). Set --asr-model to a Whisper hub id or "
        "folder, or to none to hear nothing."
    )


def load_transformers_model(source: str, label: str, dtype: Any) -> Any:
    """The model, refused when its weights do not match its config (cut short, another size, missing tensors):
    transformers would otherwise fill what is missing with random weights."""
    hf: Any = importlib.import_module("transformers")
    try:
        model, info = hf.WhisperForConditionalGeneration.from_pretrained(
            source, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True
        )
    except Exception as exc:
        raise _unloadable(label, exc) from exc
    problems = [key for key in ("missing_keys", "mismatched_keys") if info.get(key)]
    if problems:
        first = next(iter(info[problems[0]]))
        raise ModelError(
            f"The speech model '{label}' has weights that do not match its config.json ({problems[0].split('_')[0]}: "
            f"{str(first)[:120]}, {sum(len(info[p]) for p in problems)} in all). Put the config that came with the "
            "weights in the folder, or set --asr-model to another Whisper folder or none."
        )
    return model


def converted(source: Path, label: str, store: Path, identity: str) -> Path:
    """The folder converted to CTranslate2 (int8), once per folder content, kept in `store`; a conversion cut off
    leaves nothing behind."""
    target = store / f"{identity}-ct2-{_CONVERTED_FORMAT}"
    if (target / "model.bin").is_file():
        return target
    load_transformers_model(str(source), label, None)  # what the converter would load, checked first
    converters: Any = importlib.import_module("ctranslate2.converters")
    partial = store / f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial"
    try:
        store.mkdir(parents=True, exist_ok=True)
        log.info("converting the speech model %s to CTranslate2 (once) into %s", label, target)
        # The tokenizer goes along, so the converted folder also runs as it is in faster-whisper (bench/speech.py).
        copied = [name for name in ("tokenizer.json", "preprocessor_config.json") if (source / name).is_file()]
        converter = converters.TransformersConverter(str(source), copy_files=copied)
        converter.convert(str(partial), quantization="int8", force=True)
        try:
            partial.rename(target)
        except OSError:
            if not (target / "model.bin").is_file():
                raise
    except ModelError:
        raise
    except Exception as exc:
        raise _unloadable(label, exc) from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def load_whisper(
    model_id: str, source: str, engine: str, device: str, store: Path | None, threads: int | None = None
) -> WhisperSpeech:
    """Whisper from a local folder `source` (`model_id` as the user named it) on `engine`: `ctranslate2` (CPU,
    int8, converted once into `store`) or `transformers` (float16 on CUDA, float32 elsewhere)."""
    if is_ctranslate2_folder(Path(source)):
        return _load_ctranslate2_folder(model_id, Path(source), engine, device, threads)
    _, features, words, generation, layout = checked_folder(source, model_id)
    if engine == "ctranslate2":
        if store is None:
            raise ModelError("The CTranslate2 speech engine needs a cache folder to keep the converted model in.")
        folder = converted(Path(source), model_id, store, folder_identity(Path(source)))
        try:
            runner: Engine = CTranslate2Engine(folder, layout, threads or _threads())
        except (RuntimeError, ValueError, OSError) as exc:
            raise _unloadable(model_id, exc) from exc
    else:
        import torch

        model = load_transformers_model(source, model_id, torch.float16 if device == "cuda" else torch.float32)
        model.to(device)
        model.eval()
        runner = TransformersEngine(model, layout)
    max_length = int(getattr(generation, "max_length", None) or 448)
    return WhisperSpeech(runner, features, words, layout, max_length, model_id)


def is_ctranslate2_folder(folder: Path) -> bool:
    """A Whisper already in CTranslate2's layout (faster-whisper's): `model.bin` and a config.json of its own,
    which has no transformers `model_type`."""
    if not (folder / "model.bin").is_file():
        return False
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return True  # no usable config: _load_ctranslate2_folder says what is wrong
    return not (isinstance(config, dict) and "model_type" in config)


def _load_ctranslate2_folder(
    model_id: str, folder: Path, engine: str, device: str, threads: int | None
) -> WhisperSpeech:
    """A CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json, vocabulary.txt; preprocessor_config.json
    optional) run as it is, on the device picked; English-only models (`.en`) are told no language."""
    if engine == "transformers":
        raise ModelError(
            f"--asr-model {model_id} is a CTranslate2 folder, which runs on the ctranslate2 engine: set --asr-engine "
            "auto or ctranslate2, or give a transformers Whisper folder."
        )
    if not (folder / "tokenizer.json").is_file():
        raise ModelError(
            f"The speech model '{model_id}' has no tokenizer.json (a CTranslate2 Whisper folder needs the tokenizer "
            "it was converted with): put it in the folder, or set --asr-model to another Whisper folder or none."
        )
    try:
        config = json.loads((folder / "config.json").read_text())
        if not isinstance(config, dict):
            raise ValueError("config.json is not an object")
        words = Words(str(folder))
        compute = "int8" if device == "cpu" else "int8_float16"
        runner = CTranslate2Engine(folder, None, threads or _threads(), device=device, compute=compute)
        hf: Any = importlib.import_module("transformers")
        mels = runner.mel_bins
        if (folder / "preprocessor_config.json").is_file():
            features = hf.WhisperFeatureExtractor.from_pretrained(str(folder))
        else:
            features = hf.WhisperFeatureExtractor(feature_size=mels)
    except ModelError:
        raise
    except Exception as exc:
        raise _unloadable(model_id, exc) from exc
    if getattr(features, "feature_size", None) != mels:
        raise ModelError(
            f"The speech model '{model_id}' does not fit its preprocessor: the model reads {mels} mel bins, "
            f"preprocessor_config.json makes {features.feature_size}. Put the model's own preprocessor_config.json in "
            "the folder, or remove it."
        )
    layout = _ctranslate2_layout(words, config, runner.multilingual, model_id)
    runner.layout = layout
    return WhisperSpeech(runner, features, words, layout, 448, model_id)


def _ctranslate2_layout(words: Words, config: dict[str, Any], multilingual: bool, label: str) -> Layout:
    ids = {name: words.token_id(name) for name in ("<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>")}
    missing = [name for name, token in ids.items() if token is None]
    if missing:
        raise ModelError(
            f"The speech model '{label}' has a tokenizer.json without Whisper's {', '.join(missing)}: put the "
            "tokenizer it was converted with in the folder, or set --asr-model to another Whisper folder or none."
        )
    languages: dict[str, int] = {}
    if multilingual:
        for token in config.get("lang_ids") or []:
            name = words.token(int(token)) if isinstance(token, int) else None
            if name and name.startswith("<|") and name.endswith("|>"):
                languages[name[2:-2]] = int(token)
    start, end, no_timestamps = (int(t) for t in ids.values() if t is not None)
    return Layout(
        start=start,
        end=end,
        transcribe=words.token_id("<|transcribe|>") if multilingual else None,
        no_timestamps=no_timestamps,
        languages=languages,
    )


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())
