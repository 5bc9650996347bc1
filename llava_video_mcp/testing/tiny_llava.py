# mypy: disable-error-code="arg-type,no-untyped-call,operator"
# (transformers' own annotations of config keyword arguments and processors are partial; these builders pass them
# the documented keywords)
"""Builds llava-interleave-shaped models from scratch and saves them like a hub checkpoint (for the tests, the
benchmarks and `llava-video-mcp selftest`).

No hub is reachable here, so tests (tiny sizes) and benchmarks (full size, random weights) make their own model:
a Qwen2 text model, a SigLIP vision tower, a byte-level tokenizer built with `tokenizers` carrying the special
tokens llava-interleave uses, and the llava-interleave chat template (all images first, then the text). The
server then loads the folder through the same `--model` code path users take.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipVisionConfig,
)
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

# The chat template of llava-hf/llava-interleave-qwen-*-hf.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{{'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]

TINY = {
    "text": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
    },
    "vision": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    },
}
# llava-interleave-qwen-0.5b: Qwen1.5-0.5B language model, SigLIP so400m tower at 384 px (729 tokens a frame).
FULL_0_5B = {
    "text": {
        "hidden_size": 1024,
        "intermediate_size": 2816,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
    },
    "vision": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 26,
        "num_attention_heads": 16,
        "image_size": 384,
        "patch_size": 14,
    },
}


def build_tokenizer(vocab_size: int | None = None, *, extra: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges (every byte is a token), plus the special tokens.

    With `vocab_size`, filler tokens (`t1234`, never produced by encoding, but decodable) fill the vocabulary up to
    that size with the special tokens last, as in Qwen's: a full-size random model's every output then decodes to
    text, which a streaming engine needs in order to stream it. `extra`: more special tokens (`<video>`).
    """
    specials = [*SPECIAL_TOKENS, *extra]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    if vocab_size is not None:
        vocab |= {f"t{i}": i for i in range(len(alphabet), vocab_size - len(specials))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(specials)
    named = {"image_token": "<image>"} | ({"video_token": "<video>"} if "<video>" in extra else {})
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=named,
        model_max_length=32768,
    )


def build_llava(
    path: Path,
    sizes: dict[str, dict[str, int]] = TINY,
    *,
    seed: int = 0,
    vocab_size: int | None = None,
    init_std: float = 0.2,
    context: int = 32768,
    endless: bool = True,
) -> Path:
    """Save a randomly initialised llava-interleave-shaped model with its processor to `path`; `endless`: it never
    says <|im_end|> (see below)."""
    tokenizer = build_tokenizer()
    vision = sizes["vision"]
    image_processor = SiglipImageProcessorPil(
        size={"height": vision["image_size"], "width": vision["image_size"]},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision["patch_size"],
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    text_config = Qwen2Config(
        vocab_size=vocab_size or len(tokenizer),
        max_position_embeddings=context,
        tie_word_embeddings=True,
        initializer_range=init_std,
        **sizes["text"],
    )
    vision_config = SiglipVisionConfig(vision_use_head=False, **vision)
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # Random weights may pick <|im_end|> within a few tokens, or not for thousands, depending on the machine's float
    # rounding (greedy decoding of noise is chaotic): it is suppressed, so every answer runs to max_new_tokens on
    # every machine, and tests that need a generation in progress get one.
    if endless:
        model.generation_config.suppress_tokens = [tokenizer.eos_token_id]
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


# The chat template of llava-hf/llava-onevision-qwen2-*-ov-hf: the role, a newline, the images and the video
# placeholders, then a newline before each text (its model card's decoded example reads "user\n\nWhy is this video
# funny?\nassistant\n").
ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{{'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# llava-onevision-qwen2-0.5b-ov: Qwen2-0.5B (896 wide, 24 layers, 14 heads, 2 key-value heads), the same SigLIP
# so400m tower at 384 px, its 729 features a frame pooled 2x2 to 196.
FULL_ONEVISION_0_5B = {
    "text": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
    },
    "vision": FULL_0_5B["vision"],
}


def build_onevision(
    path: Path,
    sizes: dict[str, dict[str, int]] = TINY,
    *,
    seed: int = 0,
    init_std: float = 0.2,
    context: int = 32768,
) -> Path:
    """Save a randomly initialised LLaVA-OneVision-shaped model to `path`, with the files its family reads: the
    tokenizer (with `<video>`), the chat template, and the video processor's configuration as the hub's checkpoints
    ship it (SigLIP's mean and std of 0.5, frames resized to the tower's side). It never says <|im_end|>."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    tokenizer = build_tokenizer(extra=("<video>",))
    vision = sizes["vision"]
    side = vision["image_size"]
    text_config = Qwen2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=context,
        tie_word_embeddings=True,
        initializer_range=init_std,
        **sizes["text"],
    )
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(vision_use_head=False, **vision),
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[side, side]],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    with torch.no_grad():  # the newline embedding starts at zero; noise, like every other weight
        model.model.image_newline.normal_(0, init_std)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.suppress_tokens = [tokenizer.eos_token_id]
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "chat_template.jinja").write_text(ONEVISION_CHAT_TEMPLATE, encoding="utf-8")
    video = {
        "video_processor_type": "LlavaOnevisionVideoProcessor",
        "size": {"height": side, "width": side},
        "resample": 3,
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "do_convert_rgb": True,
    }
    (path / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2), encoding="utf-8")
    return path
