"""The remote backend: a serving engine (vLLM, SGLang, LMDeploy, `transformers serve`) behind an OpenAI-compatible
chat-completions API, through the official `openai` SDK (its timeouts, retries with backoff and typed errors).

One request per call: one `image_url` part per frame, then one text part holding exactly the text the in-process
backend gives the model, greedy, streamed so that token counts reach the client as they come. Frames travel as
PNG data URLs: lossless, so the engine sees the pixels the in-process backend sees and answers the same, token for
token (JPEG at quality 90 already changed the answer of the test model; `bench/remote.py` records both sizes).
Only standard fields are sent: some servers reject unknown ones.

An engine is trusted to serve, not to behave: what it sends is bounded. A stream is read up to `max_new_tokens`
pieces of text (an engine that ignores `max_tokens` and streams forever is cut there, and the answer is marked as
stopped by the token limit), every response is cut at `MAX_RESPONSE_BYTES`, each read waits at most
`--request-timeout-s`, and a whole answer at most that plus `SECONDS_PER_TOKEN` a token.

The client, its bounds, its credentials and the mapping of its failures are `engine.py`'s, shared with the speech
engine. No torch and no transformers here: a server in remote mode starts in about a second and loads no weights.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import time
from typing import Any

from openai.types.chat import ChatCompletionContentPartParam
from PIL import Image

from llava_video_mcp.tools.backends.base import (
    Generation,
    Prompt,
    VideoLanguageBackend,
    finished_text,
    generating,
)
from llava_video_mcp.tools.backends.engine import Engine, EngineFlags, endpoint_host
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import LimitError, ModelError
from llava_video_mcp.tools.progress import InferenceProgress, no_inference_progress

__all__ = ["SECONDS_PER_TOKEN", "RemoteBackend", "endpoint_host", "png_data_url"]

log = logging.getLogger(__name__)

FLAGS = EngineFlags("model", "--endpoint", "--model")
"""How its errors name it: "The model endpoint HOST:PORT (--endpoint)"."""
SECONDS_PER_TOKEN = 1.0
"""The slowest an answer may stream, after its first token (which may take --request-timeout-s): far slower than
any engine generates, so only a stream that never ends meets it."""
_EXTRA_CHUNKS = 16
"""Chunks beyond one a token that a stream may hold: the role, empty deltas, the finish reason, the usage."""
_CONTEXT_TOO_LONG = re.compile(r"context|too long|maximum.{0,40}(length|tokens)|max_model_len|exceeds", re.I)


def png_data_url(image: Image.Image) -> str:
    """The frame as a lossless PNG data URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class RemoteBackend(VideoLanguageBackend):
    """A model served by an OpenAI-compatible engine; up to `max_concurrency` calls are in flight at once."""

    def __init__(
        self,
        endpoint: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 2,
        max_concurrency: int = 8,
    ) -> None:
        super().__init__(max_concurrency)
        self._engine = Engine(endpoint, FLAGS, api_key=api_key, timeout_s=timeout_s, retries=retries)
        self.endpoint = self._engine.host
        self.device = "remote"
        self.dtype = None
        self.prefill_dtype = None
        self._timeout_s = timeout_s
        self.model_id = model or ""

    def close(self) -> None:
        self._engine.close()

    def connect(self) -> None:
        """Check that the endpoint answers and serves the model (the first one it lists when none was named)."""
        served = self._engine.served()
        if not self.model_id:
            self.model_id = served[0]
        elif self.model_id not in served:
            raise ModelError(
                f"{self._engine.where} does not serve '{self.model_id}' (--model); it serves: {', '.join(served)}. "
                "Set --model to one of them, or leave it out to use the first."
            )
        log.info("model %s served at %s", self.model_id, self.endpoint)

    def generate(
        self,
        prompt: Prompt,
        max_new_tokens: int,
        on_progress: InferenceProgress = no_inference_progress,
        cancel: CancelToken | None = None,
    ) -> Generation:
        content: list[ChatCompletionContentPartParam] = [
            {"type": "image_url", "image_url": {"url": png_data_url(image)}} for image in prompt.images
        ]
        content.append({"type": "text", "text": prompt.text})
        on_progress(0.0, f"Sending {len(prompt.images)} frames to {self.endpoint}")
        pieces: list[str] = []
        finish_reason: str | None = None
        usage: Any = None
        chunks = 0
        started = time.monotonic()
        deadline_s = self._timeout_s + SECONDS_PER_TOKEN * max_new_tokens
        with self._engine.explained("answering", model=self.model_id, bad_request=_context_too_long):
            stream = self._engine.client.chat.completions.create(
                model=self.model_id,
                messages=[{"role": "user", "content": content}],
                temperature=0,
                max_tokens=max_new_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            with stream:
                on_progress(0.0, f"Waiting for {self.endpoint} to read {len(prompt.images)} frames")
                for chunk in stream:
                    if cancel is not None:
                        cancel.check()  # leaving the block closes the stream: the engine stops generating
                    chunks += 1
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        if choice.delta is not None and choice.delta.content:
                            pieces.append(choice.delta.content)
                            on_progress(len(pieces) / max_new_tokens, generating(len(pieces), max_new_tokens))
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
                    if len(pieces) > max_new_tokens:
                        # More tokens than were asked for: the engine ignores max_tokens. Cut it where max_tokens
                        # would have (leaving the block closes the stream).
                        log.warning("%s went past max_tokens=%d: its stream was cut", self.endpoint, max_new_tokens)
                        del pieces[max_new_tokens:]
                        finish_reason = "length"
                        break
                    if chunks > max_new_tokens + _EXTRA_CHUNKS or time.monotonic() - started > deadline_s:
                        raise ModelError(
                            f"The endpoint {self.endpoint} kept its answer going without end ({chunks} chunks, "
                            f"{time.monotonic() - started:.0f} s, for at most {max_new_tokens} tokens), so it was cut. "
                            "Check the serving engine; the call can be retried.",
                            retryable=True,
                        )
        if finish_reason is None:
            raise ModelError(
                f"The endpoint {self.endpoint} ended its answer without saying why it stopped (an empty or malformed "
                "response). Check the serving engine's log; the call can be retried.",
                retryable=True,
            )
        generated = int(usage.completion_tokens) if usage is not None else len(pieces)
        details = getattr(usage, "prompt_tokens_details", None) if usage is not None else None
        cached = getattr(details, "cached_tokens", None) if details is not None else None
        return Generation(
            text=finished_text("".join(pieces)),
            generated_tokens=generated,
            hit_token_limit=finish_reason == "length",
            prompt_tokens=int(usage.prompt_tokens) if usage is not None else None,
            reused_tokens=int(cached or 0),
        )


def _context_too_long(detail: str) -> LimitError | None:
    """A 400 that says the request does not fit the model's context: the caller asks for less."""
    if not _CONTEXT_TOO_LONG.search(detail):
        return None
    return LimitError(
        f"The frames, the text and max_new_tokens do not fit the served model's context ({detail}). "
        "Ask for fewer frames (num_frames or frames_per_video), or a smaller max_new_tokens."
    )
