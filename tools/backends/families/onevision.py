"""LLaVA-OneVision (`model_type` llava_onevision): a call's frames as one video, 196 tokens a frame at 384 px.

A still image among the sources is one more frame of that video, at its place in the order (`still_images`), named
in the text as a still image: the family's own image input (any-resolution tiles of up to thousands of tokens) is not
built here.

Its native video prompt: one `<video>` in the user's turn, expanded to frames x 196 tokens and one closing newline
token, then a newline and the text (the llava-hf checkpoints' chat template: `<|im_start|>user\\n<video>\\nTEXT
<|im_end|>\\n<|im_start|>assistant\\n`). The frames are 2x2-pooled SigLIP features, so a frame costs 196 tokens
where llava-interleave's cost 729. The exact time of every frame is in the text, as for every family.

transformers' video processor for this family needs torchvision, which cannot be used beside the CPU build of torch
here; its pipeline is plain, so it is reproduced with PIL: resize to the configured height x width (bicubic),
rescale, normalise, from the same configuration files, read in transformers' order (processor_config.json's
`video_processor`, then video_preprocessor_config.json, then preprocessor_config.json, over the class defaults).
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from PIL import Image

from llava_video_mcp.tools.backends.base import Prompt
from llava_video_mcp.tools.backends.families.base import Family, FrameCost
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import EncodeProgress

VIDEO_TOKEN = "<video>"
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_RESAMPLE = {0: Image.Resampling.NEAREST, 1: Image.Resampling.LANCZOS, 2: Image.Resampling.BILINEAR,
             3: Image.Resampling.BICUBIC}  # fmt: skip


@dataclass(frozen=True)
class VideoProcessing:
    """LlavaOnevisionVideoProcessor's settings: its class defaults, overridden by the model folder's files."""

    height: int = 384
    width: int = 384
    resample: int = 3  # bicubic
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    image_std: tuple[float, ...] = OPENAI_CLIP_STD
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True

    @classmethod
    def of_folder(cls, folder: Path) -> VideoProcessing:
        settings: dict[str, Any] | None = None
        nested = _json(folder / "processor_config.json")
        if nested is not None and isinstance(nested.get("video_processor"), dict):
            settings = nested["video_processor"]
        for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
            if settings is None:
                settings = _json(folder / name)
        settings = settings or {}
        size = settings.get("size") or {}
        defaults = cls()
        return cls(
            height=int(size.get("height", size.get("shortest_edge", defaults.height))),
            width=int(size.get("width", size.get("shortest_edge", defaults.width))),
            resample=int(settings.get("resample", defaults.resample)),
            rescale_factor=float(settings.get("rescale_factor", defaults.rescale_factor)),
            image_mean=tuple(float(v) for v in settings.get("image_mean", defaults.image_mean)),
            image_std=tuple(float(v) for v in settings.get("image_std", defaults.image_std)),
            do_resize=bool(settings.get("do_resize", True)),
            do_rescale=bool(settings.get("do_rescale", True)),
            do_normalize=bool(settings.get("do_normalize", True)),
        )

    def pixels(self, frames: list[Image.Image]) -> Any:
        """The frames as the model's `pixel_values_videos`: (1, frames, 3, height, width), float32."""
        import numpy as np
        import torch

        arrays = []
        for frame in frames:
            image = frame.convert("RGB")
            if self.do_resize and image.size != (self.width, self.height):
                image = image.resize((self.width, self.height), _RESAMPLE.get(self.resample, Image.Resampling.BICUBIC))
            array: Any = np.asarray(image, dtype=np.float32)
            if self.do_rescale:
                array = array * np.float32(self.rescale_factor)
            if self.do_normalize:
                array = (array - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
            arrays.append(array.astype(np.float32).transpose(2, 0, 1))
        return torch.from_numpy(np.stack(arrays))[None]


@dataclass(frozen=True)
class OnevisionProcessor:
    """What this family reads a model folder for: its tokenizer, chat template and video processing."""

    tokenizer: Any
    chat_template: str
    video: VideoProcessing


class LlavaOnevision(Family):
    name: ClassVar[str] = "llava-onevision"
    model_type: ClassVar[str] = "llava_onevision"
    model_class: ClassVar[str] = "LlavaOnevisionForConditionalGeneration"
    pixel_key: ClassVar[str] = "pixel_values_videos"
    still_images: ClassVar[Literal["image", "video frame"]] = "video frame"
    nominal_cost: ClassVar[FrameCost] = FrameCost(384, math.ceil(384 // 14 / 2) ** 2, tokens_per_prompt=1)
    """The same SigLIP tower's 27x27 features a frame, pooled 2x2 to 14x14: 196, and one newline a video."""

    def __init__(self, processor: OnevisionProcessor, config: Any, model_id: str) -> None:
        super().__init__(processor, config, model_id)
        vision = config.vision_config
        video = processor.video
        if (video.height, video.width) != (vision.image_size, vision.image_size):
            raise ModelError(
                f"The video processor files in {model_id} do not match its model (frames of {video.width}x"
                f"{video.height} px, but the vision tower takes {vision.image_size} px). The model folder is from a "
                "mixed revision: download it again, and pass --model FOLDER."
            )
        self._video_id = processor.tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
        if self._video_id != config.video_token_id:
            raise ModelError(
                f"The tokenizer in {model_id} reads {VIDEO_TOKEN} as token {self._video_id}, but the model expects "
                f"{config.video_token_id}: the folder mixes revisions. Download it again."
            )

    @classmethod
    def load_processor(cls, source: str) -> OnevisionProcessor:
        hf: Any = importlib.import_module("transformers")
        folder = Path(source)
        tokenizer = hf.AutoTokenizer.from_pretrained(source)
        return OnevisionProcessor(tokenizer, read_chat_template(tokenizer, folder), VideoProcessing.of_folder(folder))

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def cost(self) -> FrameCost:
        vision = self.config.vision_config
        pooled = math.ceil(vision.image_size // vision.patch_size / 2)
        return FrameCost(int(vision.image_size), pooled * pooled, tokens_per_prompt=1)

    def placeholders(self, frames: int) -> int:
        return 1 if frames else 0  # one <video> for all of them

    def render(self, prompt: Prompt) -> str:
        content: list[dict[str, str]] = [{"type": "video"}] if prompt.images else []
        content.append({"type": "text", "text": prompt.text})
        conversation = [{"role": "user", "content": content}]
        rendered = self.tokenizer.apply_chat_template(
            conversation, chat_template=self.processor.chat_template, add_generation_prompt=True, tokenize=False
        )
        return str(rendered)

    def inputs(self, prompt: Prompt, rendered: str) -> Any:
        import torch

        frames = len(prompt.images)
        if rendered.count(VIDEO_TOKEN) != self.placeholders(frames):
            raise ModelError(f"The chat template of {self.model_id} did not place the video once in the prompt.")
        text = rendered.replace(VIDEO_TOKEN, VIDEO_TOKEN * self.cost.tokens(frames), 1)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        inputs: dict[str, Any] = {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "attention_mask": torch.ones((1, len(ids)), dtype=torch.long),
        }
        if frames:
            inputs[self.pixel_key] = self.processor.video.pixels(list(prompt.images))
        hf: Any = importlib.import_module("transformers")
        return hf.BatchFeature(inputs)

    def encode(self, model: Any, pixels: Any, chunk: int, encoded: EncodeProgress, cancel: CancelToken | None) -> Any:
        """The video's frames a chunk at a time; each chunk's features come with a closing newline, which the whole
        video has once, after its last frame."""
        import torch

        outputs: Any = importlib.import_module("transformers.modeling_outputs")
        frames = int(pixels.shape[1])
        parts: list[Any] = []
        newline: Any = None
        for start in range(0, frames, chunk):
            if cancel is not None:
                cancel.check()
            got = model.model.get_video_features(
                pixel_values_videos=pixels[:, start : start + chunk],
                vision_feature_layer=self.config.vision_feature_layer,
                vision_feature_select_strategy=self.config.vision_feature_select_strategy,
            )
            parts.append(got.pooler_output[:, :-1])
            newline = got.pooler_output[:, -1:]
            encoded(min(start + chunk, frames), frames)
        return {"video": outputs.BaseModelOutputWithPooling(pooler_output=torch.cat([*parts, newline], dim=1))}


def read_chat_template(tokenizer: Any, folder: Path) -> str:
    """The model's chat template: the tokenizer's, else the folder's chat_template.jinja or chat_template.json (a
    processor keeps it there, and without torchvision the processor itself cannot be loaded)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if not template:
        template = (_json(folder / "chat_template.json") or {}).get("chat_template")
    if not isinstance(template, str) or not template:
        raise ModelError(f"{folder} holds no chat template (chat_template.jinja or chat_template.json).")
    return template


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None
