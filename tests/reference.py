"""A direct transformers call on the model folder, written the way the model card shows it: the yardstick the
server's generations are compared with, token for token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

from llava_video_mcp.tools.backends.base import finished_text


def model_card_inputs(processor: Any, images: list[Image.Image], text: str) -> Any:
    """The model card's way: one image entry per frame, then the text, through the processor's chat template."""
    conversation = [{"role": "user", "content": [*({"type": "image"} for _ in images), {"type": "text", "text": text}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return processor(text=prompt, images=images, return_tensors="pt")


def reference_generate(model_dir: Path, images: list[Image.Image], text: str, max_new_tokens: int) -> list[int]:
    processor = AutoProcessor.from_pretrained(model_dir)
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    inputs = model_card_inputs(processor, images, text)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return [int(t) for t in output[0, inputs["input_ids"].shape[1] :]]


def reference_text(model_dir: Path, token_ids: list[int]) -> str:
    processor = AutoProcessor.from_pretrained(model_dir)
    return finished_text(str(processor.decode(token_ids, skip_special_tokens=True)))
