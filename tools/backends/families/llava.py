"""llava-interleave (`model_type` llava): every frame an image of 729 tokens at 384 px, all images first in the
turn, then one newline and the text (the checkpoints' own chat template, through their processor)."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from llava_video_mcp.tools.backends.base import DEFAULT_MODEL, Prompt
from llava_video_mcp.tools.backends.families.base import Family, FrameCost
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import EncodeProgress


class LlavaInterleave(Family):
    name: ClassVar[str] = "llava-interleave"
    model_type: ClassVar[str] = "llava"
    model_class: ClassVar[str] = "LlavaForConditionalGeneration"
    pixel_key: ClassVar[str] = "pixel_values"
    nominal_cost: ClassVar[FrameCost] = FrameCost(384, (384 // 14) ** 2)
    """SigLIP so400m at 384 px in 14 px patches, every patch a token: 729 (0.5b and 7b alike)."""

    def __init__(self, processor: Any, config: Any, model_id: str) -> None:
        super().__init__(processor, config, model_id)
        _match_processor_to_model(processor, config, model_id)

    @classmethod
    def load_processor(cls, source: str) -> Any:
        hf: Any = importlib.import_module("transformers")
        return hf.AutoProcessor.from_pretrained(source)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def cost(self) -> FrameCost:
        size = self.processor.image_processor.size
        side = int(size.get("shortest_edge") or size["height"])
        patches = (side // int(self.processor.patch_size)) ** 2
        tokens = patches + int(getattr(self.processor, "num_additional_image_tokens", 0) or 0)
        return FrameCost(side, tokens - 1 if self.processor.vision_feature_select_strategy == "default" else tokens)

    def placeholders(self, frames: int) -> int:
        return frames  # one <image> a frame

    def render(self, prompt: Prompt) -> str:
        content: list[dict[str, str]] = [{"type": "image"} for _ in prompt.images]
        content.append({"type": "text", "text": prompt.text})
        conversation = [{"role": "user", "content": content}]
        return str(self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False))

    def inputs(self, prompt: Prompt, rendered: str) -> Any:
        images = list(prompt.images) or None  # a text-only prompt (notes to answer from) has no pixels at all
        return self.processor(text=rendered, images=images, return_tensors="pt")

    def encode(self, model: Any, pixels: Any, chunk: int, encoded: EncodeProgress, cancel: CancelToken | None) -> Any:
        outputs: Any = importlib.import_module("transformers.modeling_outputs")
        features: list[Any] = []
        for start in range(0, len(pixels), chunk):
            if cancel is not None:
                cancel.check()
            got = model.get_image_features(
                pixel_values=pixels[start : start + chunk],
                vision_feature_layer=self.config.vision_feature_layer,
                vision_feature_select_strategy=self.config.vision_feature_select_strategy,
                return_dict=True,
            )
            features.extend(got.pooler_output)
            encoded(len(features), len(pixels))
        return {"image": outputs.BaseModelOutputWithPooling(pooler_output=features)}


def _match_processor_to_model(processor: Any, config: Any, model_id: str) -> None:
    """Make the processor expand each image into as many tokens as the model's vision tower gives features.

    Older revisions of the llava-interleave checkpoints ship a processor config that lacks the patch size or the
    feature strategy, or says "default" where the model uses "full"; the model's own config is what decides how
    many features a frame yields, so its values win. A processor that still cannot be matched is refused with the
    fix, instead of failing on the first call with a count mismatch.
    """
    vision = config.vision_config
    strategy = config.vision_feature_select_strategy
    if getattr(processor, "patch_size", None) is None:
        processor.patch_size = vision.patch_size
    if getattr(processor, "vision_feature_select_strategy", None) != strategy:
        processor.vision_feature_select_strategy = strategy
    if getattr(processor, "num_additional_image_tokens", None) is None:
        processor.num_additional_image_tokens = 0
    size = getattr(getattr(processor, "image_processor", None), "size", None) or {}
    side = size.get("shortest_edge") or size.get("height")
    if side != vision.image_size or processor.patch_size != vision.patch_size:
        raise ModelError(
            f"The processor files in {model_id} do not match its model (images of {side} px in {processor.patch_size} "
            f"px patches, but the vision tower takes {vision.image_size} px in {vision.patch_size} px patches). "
            "The model folder is from an older or mixed revision: download it again, e.g. `hf download "
            f"{DEFAULT_MODEL} --local-dir FOLDER`, and pass --model FOLDER."
        )
