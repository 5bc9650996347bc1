# mypy: disable-error-code="arg-type,no-untyped-call,operator"
# (transformers' own annotations of config keyword arguments are partial; these builders pass the documented ones)
"""Builds Qwen2-VL-, Qwen2.5-VL- and Qwen3-VL-shaped models from scratch and saves them as the hub's checkpoints
are laid out (for the tests): the real architecture at tiny sizes with random weights, a byte-level tokenizer
carrying Qwen's vision tokens, the family's chat template, and its image processor's configuration (Qwen2.5-VL:
14 px patches, CLIP's mean and std; Qwen3-VL: 16 px patches, mean and std 0.5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
]  # fmt: skip
# Qwen2-VL's and Qwen2.5-VL's chat template (their tokenizer_config.json): a default system turn, then each content
# item in order, an image as <|vision_start|><|image_pad|><|vision_end|>.
QWEN2_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)
# Qwen3-VL's, reduced to what a user turn of images and text renders: no default system turn.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}{%- if message.content is string %}"
    "{{- message.content }}{%- else %}{%- for content in message.content %}{%- if content.type == 'image' %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}{%- elif content.type == 'video' %}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' }}{%- elif content.type == 'text' %}{{- content.text }}"
    "{%- endif %}{%- endfor %}{%- endif %}{{- '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        model_max_length=32768,
    )


def build_qwen(path: Path, model_type: str = "qwen2_5_vl", *, seed: int = 0, init_std: float = 0.2) -> Path:
    """Save a tiny random model of `model_type` (qwen2_vl, qwen2_5_vl or qwen3_vl) to `path`; it never says
    <|im_end|>, so every answer runs to max_new_tokens."""
    import transformers

    tokenizer = build_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    qwen3 = model_type == "qwen3_vl"
    patch = 16 if qwen3 else 14
    text: dict[str, Any] = {
        "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "initializer_range": init_std, "tie_word_embeddings": True, "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
    }  # fmt: skip
    vision: dict[str, Any] = {
        "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "patch_size": patch, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "initializer_range": init_std,
    }  # fmt: skip
    if qwen3:
        rope = {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [4, 2, 2], "mrope_interleaved": True}
        text |= {"head_dim": 16, "rope_parameters": rope}
        vision |= {"depth": 3, "out_hidden_size": 64, "num_position_embeddings": 256, "deepstack_visual_indexes": [1]}
        config_class, model_class, template = "Qwen3VLConfig", "Qwen3VLForConditionalGeneration", QWEN3_CHAT_TEMPLATE
        mean, std = [0.5] * 3, [0.5] * 3
    else:
        text |= {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}}
        if model_type == "qwen2_5_vl":
            vision |= {"depth": 2, "out_hidden_size": 64, "window_size": 112, "fullatt_block_indexes": [1]}
            config_class, model_class = "Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration"
        else:
            vision |= {"depth": 2, "embed_dim": 32, "hidden_size": 64, "mlp_ratio": 2}
            config_class, model_class = "Qwen2VLConfig", "Qwen2VLForConditionalGeneration"
        template = QWEN2_CHAT_TEMPLATE
        mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    config = getattr(transformers, config_class)(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.suppress_tokens = [tokenizer.eos_token_id]
    model.save_pretrained(path)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(path)
    images = Qwen2VLImageProcessorPil(
        patch_size=patch, merge_size=2, temporal_patch_size=2, image_mean=mean, image_std=std,
        min_pixels=(patch * 2) ** 2 * 4, max_pixels=(patch * 2) ** 2 * 1280,
    )  # fmt: skip
    images.save_pretrained(path)
    return path
