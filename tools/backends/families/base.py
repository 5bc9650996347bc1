"""What the in-process backend asks of a model family. The backend owns the rest: the device, the turn at the
model, the prefix cache of follow-ups, generation and its progress; a family says only how its model sees."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from llava_video_mcp.tools.backends.base import Prompt
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.progress import EncodeProgress


@dataclass(frozen=True)
class FrameCost:
    """What a frame costs a family's model: the side it is shown at, and the prompt tokens it takes."""

    side: int
    tokens_per_frame: int
    tokens_per_prompt: int = 0
    """Tokens the frames take together beyond their own (a video's closing newline)."""
    approximate: bool = False
    """The tokens follow each frame's size, and `tokens_per_frame` is a 16:9 frame's."""

    def tokens(self, frames: int) -> int:
        return frames * self.tokens_per_frame + (self.tokens_per_prompt if frames else 0)

    def words(self) -> str:
        """As the tool descriptions and --help say it: "384 px, 729 tokens a frame"."""
        about = "about " if self.approximate else ""
        return f"{self.side} px, {about}{self.tokens_per_frame} tokens a frame"


class Family(ABC):
    """One model family in process: its processor, native prompt, inputs and vision encoder."""

    name: ClassVar[str]
    """In words, for logs and errors: llava-interleave."""
    model_type: ClassVar[str]
    """The `model_type` of its config.json."""
    model_class: ClassVar[str]
    """The transformers class its weights load into."""
    pixel_key: ClassVar[str]
    """The name of the frames' pixels among the model's inputs."""
    nominal_cost: ClassVar[FrameCost]
    """What a frame costs the family's released checkpoints, known before any model loads: the tool descriptions
    and --help say it. `cost` is the loaded model's own figure (the same for the released sizes)."""
    still_images: ClassVar[Literal["image", "video frame"]] = "image"
    """How the family's model takes a still image among a call's sources (the prompt's text names it `Image N`, a
    still image, either way): `image`, an image of its own at its place in the order, as every frame is for a family
    that takes frames as images; `video frame`, one more frame of the family's video input at its place in the order,
    for a video-native family whose own image input this server does not build."""
    prefix_cache: ClassVar[bool] = True
    """Whether the attention state of the frames and their text can be kept for follow-ups and prefilled apart from
    the question (with frames encoded a chunk at a time by `encode`); else each call's inputs go whole to
    generate()."""

    def __init__(self, processor: Any, config: Any, model_id: str) -> None:
        """Check that the processor's files match the model's config (ModelError with the fix when not)."""
        self.processor = processor
        self.config = config
        self.model_id = model_id

    @classmethod
    @abstractmethod
    def load_processor(cls, source: str) -> Any:
        """The family's processor from a model folder."""

    @property
    @abstractmethod
    def tokenizer(self) -> Any: ...

    @property
    @abstractmethod
    def cost(self) -> FrameCost: ...

    def frame_tokens(self, images: list[Any]) -> int:
        """The prompt tokens these frames take (a family whose cost follows each frame's size counts them)."""
        return self.cost.tokens(len(images))

    @abstractmethod
    def placeholders(self, frames: int) -> int:
        """Tokens the rendered text holds for `frames` frames before they are expanded to the frames' tokens."""

    @abstractmethod
    def render(self, prompt: Prompt) -> str:
        """The prompt as text, in the family's own chat template."""

    @abstractmethod
    def inputs(self, prompt: Prompt, rendered: str) -> Any:
        """Model inputs on the CPU: `input_ids` (frames' tokens expanded), `attention_mask`, and the pixels under
        `pixel_key` when there are frames."""

    @abstractmethod
    def encode(self, model: Any, pixels: Any, chunk: int, encoded: EncodeProgress, cancel: CancelToken | None) -> Any:
        """The frames through the vision tower, `chunk` at a time: the model's `mm_encoder_outputs`."""
