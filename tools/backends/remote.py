"""The remote backend: a serving engine (vLLM, SGLang, LMDeploy, `transformers serve`) behind an OpenAI-compatible
chat-completions API, through the official `openai` SDK (its timeouts, retries with backoff and typed errors).

One request per call: one `image_url` part per frame, then one text part holding exactly the text the in-process
backend gives the model, greedy, streamed so that token counts reach the client as they come. Frames travel as
PNG data URLs: lossless, so the engine sees the pixels the in-process backend sees and answers the same, token for
token (JPEG at quality 90 already changed the answer of the test model; `bench/remote.py` records both sizes).
Only standard fields are sent: some servers reject unknown ones.

No torch and no transformers here: a server in remote mode starts in about a second and loads no weights.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletionContentPartParam
from PIL import Image

from tools.backends.base import (
    Generation,
    InferenceProgress,
    Prompt,
    VideoLanguageBackend,
    finished_text,
    generating,
    no_progress,
)
from tools.backends.loader import API_KEY_VARIABLE
from tools.cancel import CancelToken
from tools.errors import LimitError, ModelError

log = logging.getLogger(__name__)

_NO_KEY = "EMPTY"
"""Sent when no key is set: the SDK insists on one, and servers without auth ignore it (vLLM's docs use it too)."""
_CONTEXT_TOO_LONG = re.compile(r"context|too long|maximum.{0,40}(length|tokens)|max_model_len|exceeds", re.I)


def endpoint_host(endpoint: str) -> str:
    """host:port of the endpoint, without credentials or path: what results and logs may show."""
    parts = urlsplit(endpoint)
    host = parts.hostname or endpoint
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


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
        self.endpoint = endpoint_host(endpoint)
        self.device = "remote"
        self.dtype = None
        self.prefill_dtype = None
        self._base_url = endpoint
        self._timeout_s = timeout_s
        self._client = openai.OpenAI(
            base_url=endpoint,
            api_key=api_key or _NO_KEY,
            timeout=timeout_s,
            max_retries=retries,
        )
        self.model_id = model or ""

    def close(self) -> None:
        self._client.close()

    def connect(self) -> None:
        """Check that the endpoint answers and serves the model (the first one it lists when none was named)."""
        with self._explained("listing the served models"):
            served = [entry.id for entry in self._client.models.list()]
        if not served:
            raise ModelError(f"The endpoint {self._base_url} (--endpoint) serves no model.")
        if not self.model_id:
            self.model_id = served[0]
        elif self.model_id not in served:
            raise ModelError(
                f"The endpoint {self._base_url} (--endpoint) does not serve '{self.model_id}' (--model); it serves: "
                f"{', '.join(served)}. Set --model to one of them, or leave it out to use the first."
            )
        log.info("model %s served at %s", self.model_id, self.endpoint)

    def generate(
        self,
        prompt: Prompt,
        max_new_tokens: int,
        on_progress: InferenceProgress = no_progress,
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
        with self._explained("answering"):
            stream = self._client.chat.completions.create(
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
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        if choice.delta is not None and choice.delta.content:
                            pieces.append(choice.delta.content)
                            on_progress(len(pieces) / max_new_tokens, generating(len(pieces), max_new_tokens))
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
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

    def _served_now(self) -> str:
        return _served_now_of(self._client)

    @contextmanager
    def _explained(self, doing: str) -> Iterator[None]:
        """Turn the SDK's typed errors (raised after its own retries) into errors that say what to change."""
        where = f"The model endpoint {self._base_url} (--endpoint)"
        try:
            yield
        except openai.APITimeoutError as exc:
            raise ModelError(
                f"{where} did not answer within {self._timeout_s:g} s while {doing}, even after retries. Try again "
                "later, or raise --request-timeout-s.",
                retryable=True,
            ) from exc
        except openai.APIConnectionError as exc:
            raise ModelError(
                f"{where} could not be reached, or dropped the connection, while {doing} ({_reason(exc)}). Check "
                "that the engine is running; the call can be retried.",
                retryable=True,
            ) from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ModelError(
                f"{where} refused the API key (HTTP {exc.status_code}). Set the environment variable "
                f"{API_KEY_VARIABLE} to a key the engine accepts (vLLM: its --api-key), and restart the server."
            ) from exc
        except openai.NotFoundError as exc:
            raise ModelError(
                f"{where} answered 404 while {doing} ({_body(exc)}): the model '{self.model_id}' may no longer be "
                f"served ({self._served_now()}), or the URL lacks its /v1 suffix. Check --endpoint and --model."
            ) from exc
        except openai.BadRequestError as exc:
            detail = _body(exc)
            if _CONTEXT_TOO_LONG.search(detail):
                raise LimitError(
                    f"The frames, the text and max_new_tokens do not fit the served model's context ({detail}). "
                    "Ask for fewer frames (num_frames or frames_per_video), or a smaller max_new_tokens."
                ) from exc
            raise ModelError(f"{where} rejected the request ({detail}).") from exc
        except openai.RateLimitError as exc:
            raise ModelError(
                f"{where} is overloaded (HTTP 429) even after retries. Try again later, or lower "
                "--max-concurrent-requests.",
                retryable=True,
            ) from exc
        except openai.APIStatusError as exc:
            raise ModelError(
                f"{where} failed with HTTP {exc.status_code} while {doing} ({_body(exc)}), even after retries. "
                "Check the serving engine's log; the call can be retried.",
                retryable=exc.status_code >= 500,
            ) from exc
        except (openai.APIError, ValueError) as exc:
            raise ModelError(
                f"{where} sent a malformed response while {doing} ({_reason(exc)}). Check that it is an "
                "OpenAI-compatible server; the call can be retried.",
                retryable=True,
            ) from exc


def _served_now_of(client: openai.OpenAI) -> str:
    try:
        served = [entry.id for entry in client.models.list()]
    except openai.OpenAIError:
        return "the list of served models is not available either"
    return "it serves: " + ", ".join(served) if served else "it serves no model"


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(cause or exc).strip() or type(cause or exc).__name__
    return text.splitlines()[0][:200]


def _body(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail") or body.get("error") or body
        if isinstance(message, dict):
            message = message.get("message") or message
        return str(message)[:300]
    return (str(body) if body else exc.message)[:300]
