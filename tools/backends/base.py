"""The protocol every model backend meets, and the records it takes and returns.

A backend takes frames and a text and returns generated text with its token counts. The tools never know which
backend runs: the in-process transformers one (`transformers.py`) and the OpenAI-compatible remote one
(`remote.py`) are called the same way, through `VideoLanguageBackend.answer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from PIL import Image

from llava_video_mcp.tools.backends.turns import Turns
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.plural import plural
from llava_video_mcp.tools.progress import InferenceProgress, no_inference_progress

DEFAULT_MODEL = "llava-hf/llava-interleave-qwen-0.5b-hf"
API_KEY_VARIABLE = "LLAVA_VIDEO_MCP_API_KEY"
"""The one place a remote engine's API key comes from: never a flag (flags show in process lists)."""


@dataclass(frozen=True)
class Prompt:
    """Frames in model order, and the text that follows them.

    `text[:question_start]` describes the frames (and carries their transcript); the rest is the question. Everything
    before the question is the same for every question about the same frames, so a backend may reuse its work.
    """

    images: Sequence[Image.Image]
    text: str
    question_start: int = 0


@dataclass(frozen=True)
class Generation:
    text: str
    generated_tokens: int
    hit_token_limit: bool
    prompt_tokens: int | None
    """Tokens in the model's input, image tokens included; None when a remote engine does not report usage."""
    reused_tokens: int = 0
    """Prompt tokens whose attention state came from an earlier call about the same frames."""
    token_ids: tuple[int, ...] = ()
    """The generated token ids, where the backend sees them (in process); a remote engine sends text only."""
    queue_s: float = 0.0
    """Seconds this call waited for a turn at the model."""


def finished_text(text: str) -> str:
    """The answer as the agent gets it, from any backend: no surrounding white space, and no broken character at
    the end. An answer cut by the token limit can end inside a multi-byte character, which decodes to U+FFFD;
    streaming engines hold such a tail back and never send it, and the in-process backend drops it too, so both
    give the same text."""
    return text.strip().rstrip("\ufffd").strip()


def generating(count: int, max_new_tokens: int) -> str:
    """The progress message for generated tokens, the same from every backend."""
    return f"Generating: {count} of at most {max_new_tokens} tokens"


class VideoLanguageBackend(ABC):
    """What every model backend offers the tools.

    `max_concurrency` calls are served at once (1 in process; the engine's share for a remote backend); further
    calls queue in `answer` and say how many calls are ahead of them.
    """

    model_id: str
    device: str
    """Where the model runs: cuda, mps, xpu, cpu, or remote."""
    dtype: str | None
    prefill_dtype: str | None
    endpoint: str | None = None
    """host:port of a remote engine."""
    batch_size: int = 1
    """Prompts `answer_batch` reads in one batch (1: one after another)."""
    special_tokens: frozenset[str] = frozenset()
    """Spellings the model's tokenizer reads as control tokens, beyond `untrusted.GENERIC_MARKERS`: untrusted text
    has them broken before it reaches the prompt."""

    def __init__(self, max_concurrency: int = 1) -> None:
        self._turns = Turns(max_concurrency)

    @property
    def max_concurrency(self) -> int:
        return self._turns.capacity

    def answer(
        self,
        prompt: Prompt,
        max_new_tokens: int,
        on_progress: InferenceProgress = no_inference_progress,
        cancel: CancelToken | None = None,
    ) -> Generation:
        """Wait for a turn (reporting the queue), then generate."""
        token = cancel if cancel is not None else CancelToken()

        def waiting(ahead: int) -> None:
            on_progress(0.0, f"Waiting for the model: {plural(ahead, 'call')} ahead")

        with self._turns.turn(token, waiting) as queue_s:
            generation = self.generate(prompt, max_new_tokens, on_progress, token)
        return replace(generation, queue_s=queue_s)

    def answer_batch(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int,
        on_progress: InferenceProgress = no_inference_progress,
        cancel: CancelToken | None = None,
    ) -> list[Generation]:
        """Several independent prompts (a long video's windows), in batches of `batch_size` where the backend
        batches, else one after another; each answer is what `answer` would give, up to the arithmetic of a batch."""
        if self.batch_size <= 1 or len(prompts) <= 1:
            return [self.answer(prompt, max_new_tokens, on_progress, cancel) for prompt in prompts]
        token = cancel if cancel is not None else CancelToken()

        def waiting(ahead: int) -> None:
            on_progress(0.0, f"Waiting for the model: {plural(ahead, 'call')} ahead")

        answers: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            with self._turns.turn(token, waiting) as queue_s:
                batch = self.generate_batch(
                    prompts[start : start + self.batch_size], max_new_tokens, on_progress, token
                )
            answers += [replace(generation, queue_s=queue_s) for generation in batch]
        return answers

    def generate_batch(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int,
        on_progress: InferenceProgress = no_inference_progress,
        cancel: CancelToken | None = None,
    ) -> list[Generation]:
        """One batch of prompts; by default one after another."""
        return [self.generate(prompt, max_new_tokens, on_progress, cancel) for prompt in prompts]

    def close(self) -> None:
        """Release what the backend holds open (a remote engine's connections); the in-process model has nothing."""
        return None

    @abstractmethod
    def generate(
        self,
        prompt: Prompt,
        max_new_tokens: int,
        on_progress: InferenceProgress = no_inference_progress,
        cancel: CancelToken | None = None,
    ) -> Generation:
        """Answer the prompt greedily; raises `Cancelled` soon after `cancel` is set."""


class ModelProvider(Protocol):
    """Hands out the backend, loading or connecting it on first use; reports the seconds a call spent on that."""

    @property
    def label(self) -> str:
        """The model (or the endpoint) in words, before it is loaded."""

    @property
    def loaded(self) -> VideoLanguageBackend | None:
        """The backend, if it is already up."""

    def get(self, on_download: Callable[[int, int | None], None] | None = None) -> tuple[VideoLanguageBackend, float]:
        """The backend and the seconds spent bringing it up; a model download is reported as (bytes, total)."""

    def close(self) -> None: ...
