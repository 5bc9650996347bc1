"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL (`qwen2_vl`, `qwen2_5_vl`, `qwen3_vl`): every frame an image at its own
resolution, `<|vision_start|><|image_pad|><|vision_end|>` each, all before the text in the user's turn.

A frame's tokens follow its size: the image processor resizes it to multiples of patch x merge pixels (28 for
Qwen2/2.5-VL, 32 for Qwen3-VL) within its pixel budget, and each merge x merge block of patches is one token, so a
384 px frame of 16:9 costs about 336 tokens (Qwen2.5-VL). The frames go as images, with their exact times in the
text: Qwen2.5-VL's video input assumes evenly spaced frames (scene-chosen ones are not), and Qwen3-VL's timestamped
video input needs its video processor, which needs torchvision (not usable beside the CPU build of torch here). The
image processor has a PIL path, read from the folder's preprocessor_config.json.

Positions are 3-D (M-RoPE), computed by the model over the whole prompt from the images' grids and kept on the
model between steps, so the prefix cache of follow-ups does not apply: each call reads its whole prompt.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar

from llava_video_mcp.tools.backends.base import Prompt
from llava_video_mcp.tools.backends.families.base import Family, FrameCost
from llava_video_mcp.tools.backends.families.onevision import read_chat_template
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import EncodeProgress

IMAGE_TOKEN = "<|image_pad|>"
NOMINAL = (683, 384)
"""The frame size costs are quoted for: 16:9 at the 384 px frames are decoded to."""


def nominal_cost(patch_size: int, merge_size: int) -> FrameCost:
    """A NOMINAL frame's cost before any processor is read: its sides rounded to multiples of patch x merge pixels
    (as the image processor's smart_resize does, well inside the released checkpoints' pixel budget), a token for
    each merged block."""
    factor = patch_size * merge_size
    width, height = NOMINAL
    return FrameCost(height, round(width / factor) * round(height / factor), approximate=True)


class QwenProcessor:
    """What these families read a model folder for: the tokenizer, the chat template, the image processor (PIL)."""

    def __init__(self, tokenizer: Any, chat_template: str, images: Any) -> None:
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.images = images


class QwenVL(Family):
    """The Qwen-VL families: one adapter, the model class apart."""

    pixel_key: ClassVar[str] = "pixel_values"
    prefix_cache: ClassVar[bool] = False

    def __init__(self, processor: QwenProcessor, config: Any, model_id: str) -> None:
        super().__init__(processor, config, model_id)
        vision = config.vision_config
        images = processor.images
        if images.patch_size != vision.patch_size or images.merge_size != vision.spatial_merge_size:
            raise ModelError(
                f"The image processor files in {model_id} do not match its model ({images.patch_size} px patches "
                f"merged {images.merge_size}x{images.merge_size}, but the vision tower takes {vision.patch_size} px "
                f"merged {vision.spatial_merge_size}x{vision.spatial_merge_size}). Download the folder again."
            )
        self._image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self._image_id != config.image_token_id:
            raise ModelError(
                f"The tokenizer in {model_id} reads {IMAGE_TOKEN} as token {self._image_id}, but the model expects "
                f"{config.image_token_id}: the folder mixes revisions. Download it again."
            )

    @classmethod
    def load_processor(cls, source: str) -> QwenProcessor:
        hf: Any = importlib.import_module("transformers")
        pil: Any = importlib.import_module("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
        tokenizer = hf.AutoTokenizer.from_pretrained(source)
        images = pil.Qwen2VLImageProcessorPil.from_pretrained(source)
        return QwenProcessor(tokenizer, read_chat_template(tokenizer, Path(source)), images)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def cost(self) -> FrameCost:
        return FrameCost(NOMINAL[1], self._tokens(*NOMINAL), approximate=True)

    def frame_tokens(self, images: list[Any]) -> int:
        return sum(self._tokens(*image.size) for image in images)

    def _tokens(self, width: int, height: int) -> int:
        pil: Any = importlib.import_module("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
        images = self.processor.images
        factor = images.patch_size * images.merge_size
        size = images.size
        resized_height, resized_width = pil.smart_resize(
            height, width, factor=factor, min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"]
        )
        return int(resized_height // factor) * int(resized_width // factor)

    def placeholders(self, frames: int) -> int:
        return frames

    def render(self, prompt: Prompt) -> str:
        content: list[dict[str, str]] = [{"type": "image"} for _ in prompt.images]
        content.append({"type": "text", "text": prompt.text})
        conversation = [{"role": "user", "content": content}]
        rendered = self.tokenizer.apply_chat_template(
            conversation, chat_template=self.processor.chat_template, add_generation_prompt=True, tokenize=False
        )
        return str(rendered)

    def inputs(self, prompt: Prompt, rendered: str) -> Any:
        import torch

        hf: Any = importlib.import_module("transformers")
        parts = rendered.split(IMAGE_TOKEN)
        if len(parts) - 1 != len(prompt.images):
            raise ModelError(f"The chat template of {self.model_id} did not place each frame once in the prompt.")
        pixels: dict[str, Any] = {}
        text = parts[0]
        if prompt.images:
            pixels = dict(self.processor.images(images=list(prompt.images), return_tensors="pt"))
            merged = self.processor.images.merge_size**2
            counts = [int(grid.prod()) // merged for grid in pixels["image_grid_thw"]]
            text += "".join(IMAGE_TOKEN * count + part for count, part in zip(counts, parts[1:], strict=True))
        ids = torch.tensor([self.tokenizer(text, add_special_tokens=False)["input_ids"]], dtype=torch.long)
        inputs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": (ids == self._image_id).long(),  # 1 marks an image's tokens, as the processor's
            **pixels,
        }
        return hf.BatchFeature(inputs)

    def encode(self, model: Any, pixels: Any, chunk: int, encoded: EncodeProgress, cancel: CancelToken | None) -> Any:
        raise NotImplementedError("the Qwen-VL families read their frames inside generate()")


class Qwen2VL(QwenVL):
    name: ClassVar[str] = "qwen2-vl"
    model_type: ClassVar[str] = "qwen2_vl"
    model_class: ClassVar[str] = "Qwen2VLForConditionalGeneration"
    nominal_cost: ClassVar[FrameCost] = nominal_cost(14, 2)  # 14x24 blocks of 28 px: 336


class Qwen25VL(QwenVL):
    name: ClassVar[str] = "qwen2.5-vl"
    model_type: ClassVar[str] = "qwen2_5_vl"
    model_class: ClassVar[str] = "Qwen2_5_VLForConditionalGeneration"
    nominal_cost: ClassVar[FrameCost] = nominal_cost(14, 2)


class Qwen3VL(QwenVL):
    name: ClassVar[str] = "qwen3-vl"
    model_type: ClassVar[str] = "qwen3_vl"
    model_class: ClassVar[str] = "Qwen3VLForConditionalGeneration"
    nominal_cost: ClassVar[FrameCost] = nominal_cost(16, 2)  # 12x21 blocks of 32 px: 252
