"""A stand-in model, named as one, for tests and demos: it answers from a script and keeps every prompt it was
given, as simonw/llm's MockModel does. Given a real backend (`inner`), it passes every prompt on and keeps it: the
answers are then the real model's, and a test reads what the model was asked through public methods only."""

from __future__ import annotations

from collections.abc import Iterable

from llava_video_mcp.tools.backends.base import Generation, Prompt, VideoLanguageBackend, generating
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.progress import InferenceProgress, no_inference_progress

DEFAULT_ANSWER = "A scripted answer."


class FakeBackend(VideoLanguageBackend):
    """Answers from `answers` in turn (then DEFAULT_ANSWER), or from `inner`; `prompts` holds every prompt."""

    def __init__(
        self,
        answers: Iterable[str] = (),
        *,
        inner: VideoLanguageBackend | None = None,
        model_id: str = "fake",
        max_concurrency: int = 1,
    ) -> None:
        super().__init__(max_concurrency)
        self.inner = inner
        self.prompts: list[Prompt] = []
        self._answers = iter(answers)
        source = inner
        self.model_id = source.model_id if source is not None else model_id
        self.device = source.device if source is not None else "cpu"
        self.dtype = source.dtype if source is not None else None
        self.prefill_dtype = source.prefill_dtype if source is not None else None
        self.special_tokens = source.special_tokens if source is not None else frozenset()

    def generate(
        self,
        prompt: Prompt,
        max_new_tokens: int,
        on_progress: InferenceProgress = no_inference_progress,
        cancel: CancelToken | None = None,
    ) -> Generation:
        self.prompts.append(prompt)
        if self.inner is not None:
            return self.inner.generate(prompt, max_new_tokens, on_progress, cancel)
        if cancel is not None:
            cancel.check()
        words = next(self._answers, DEFAULT_ANSWER).split()[:max_new_tokens]
        on_progress(1.0, generating(len(words), max_new_tokens))
        return Generation(
            text=" ".join(words),
            generated_tokens=len(words),
            hit_token_limit=len(words) >= max_new_tokens,
            prompt_tokens=None,
        )

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
