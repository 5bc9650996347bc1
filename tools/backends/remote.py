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

No torch and no transformers here: a server in remote mode starts in about a second and loads no weights.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx2
import openai
from openai.types.chat import ChatCompletionContentPartParam
from PIL import Image

from llava_video_mcp.tools.backends.base import (
    API_KEY_VARIABLE,
    Generation,
    Prompt,
    VideoLanguageBackend,
    finished_text,
    generating,
)
from llava_video_mcp.tools.cancel import Cancelled, CancelToken
from llava_video_mcp.tools.errors import LimitError, ModelError
from llava_video_mcp.tools.progress import InferenceProgress, no_inference_progress

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 16 * 2**20
"""Most read of one response: a streamed answer of 4,096 tokens is well under 2 MB, a list of models a few KB."""
SECONDS_PER_TOKEN = 1.0
"""The slowest an answer may stream, after its first token (which may take --request-timeout-s): far slower than
any engine generates, so only a stream that never ends meets it."""
_EXTRA_CHUNKS = 16
"""Chunks beyond one a token that a stream may hold: the role, empty deltas, the finish reason, the usage."""
_NO_KEY = "EMPTY"
"""Sent when no key is set: the SDK insists on one, and servers without auth ignore it (vLLM's docs use it too)."""
_USER_IN_URL = re.compile(r"//[^/\s@]*@")
"""Credentials in a URL an engine's words repeat (`http://user:password@host`): an error quotes them without."""
_CONTEXT_TOO_LONG = re.compile(r"context|too long|maximum.{0,40}(length|tokens)|max_model_len|exceeds", re.I)


def endpoint_host(endpoint: str) -> str:
    """host:port of the endpoint, without credentials, path or query: all that results, errors and logs show of
    it (a URL that cannot be read shows as none of it)."""
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "(a malformed URL)"
    if not host:
        return "(a URL without a host)"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def engine_client(
    endpoint: str, *, api_key: str | None, timeout_s: float, retries: int, transport: BoundedTransport
) -> openai.OpenAI:
    """The SDK's client of an engine. Credentials in the URL (`http://user:password@host/v1`, for a proxy in front
    of the engine) are sent as HTTP basic auth, as the URL would have them sent, but kept out of the URL: the HTTP
    library logs every request's URL."""
    parts = urlsplit(endpoint)
    auth = None
    if parts.username is not None or parts.password is not None:
        auth = httpx2.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
        netloc = parts.netloc.rpartition("@")[2]
        endpoint = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return openai.OpenAI(
        base_url=endpoint,
        api_key=api_key or _NO_KEY,
        timeout=timeout_s,
        max_retries=retries,
        http_client=openai.DefaultHttpxClient(transport=transport, auth=auth),
    )


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
        self._timeout_s = timeout_s
        self._client = engine_client(
            endpoint, api_key=api_key, timeout_s=timeout_s, retries=retries, transport=BoundedTransport()
        )
        self.model_id = model or ""

    def close(self) -> None:
        self._client.close()

    def connect(self) -> None:
        """Check that the endpoint answers and serves the model (the first one it lists when none was named)."""
        with self._explained("listing the served models"):
            try:
                served = [str(entry.id) for entry in self._client.models.list()]
            except (AttributeError, TypeError, KeyError) as exc:  # a 200 that is no list of models: a web page
                raise ModelError(
                    f"The endpoint {self.endpoint} (--endpoint) answered, but not as an OpenAI-compatible engine "
                    "(it sent a web page or other data, not a list of models). Check the URL: it is the engine's "
                    "base URL, usually ending in /v1."
                ) from exc
        if not served:
            raise ModelError(f"The endpoint {self.endpoint} (--endpoint) serves no model.")
        if not self.model_id:
            self.model_id = served[0]
        elif self.model_id not in served:
            raise ModelError(
                f"The endpoint {self.endpoint} (--endpoint) does not serve '{self.model_id}' (--model); it serves: "
                f"{', '.join(served)}. Set --model to one of them, or leave it out to use the first."
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

    def _served_now(self) -> str:
        return _served_now_of(self._client)

    @contextmanager
    def _explained(self, doing: str) -> Iterator[None]:
        """Turn the SDK's typed errors (raised after its own retries) into errors that say what to change."""
        where = f"The model endpoint {self.endpoint} (--endpoint)"
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
        except ResponseTooLarge as exc:
            raise ModelError(
                f"{where} sent more than {MAX_RESPONSE_BYTES // 2**20} MB while {doing}, far more than an answer "
                "takes, so it was cut. Check that it is an OpenAI-compatible server; the call can be retried.",
                retryable=True,
            ) from exc
        except (openai.APIError, ValueError) as exc:
            raise ModelError(
                f"{where} sent a malformed response while {doing} ({_reason(exc)}). Check that it is an "
                "OpenAI-compatible server (its URL usually ends in /v1); the call can be retried.",
                retryable=True,
            ) from exc


class ResponseCut(Exception):
    """An engine's response was cut: past MAX_RESPONSE_BYTES, or (where a deadline is set) still coming too late."""


class ResponseTooLarge(ResponseCut):
    """An engine's response went past MAX_RESPONSE_BYTES."""


class ResponseTooSlow(ResponseCut):
    """An engine's response body was still coming in at its deadline."""


class _Cutter:
    """Shuts the connection of one request when its call is cancelled: a request waiting on an engine (a whole
    transcription is sent at once, after up to --request-timeout-s) then ends at once, and the engine sees its
    client gone. The connection is the one opened for the request (`BoundedTransport(fresh_connections=True)`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self.cut = False

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's `trace` extension: the socket as it is opened (and wrapped for TLS)."""
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._socket = sock
            cut = self.cut
        if cut:
            _shut(sock)

    def __call__(self) -> None:
        with self._lock:
            self.cut = True
            sock = self._socket
        if sock is not None:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    """Shut rather than close: a thread blocked reading the socket wakes at once (on Linux, `close` leaves it)."""
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _BoundedStream(httpx2.SyncByteStream):
    def __init__(
        self, inner: httpx2.SyncByteStream, limit: int, deadline: float | None, cutter: _Cutter | None
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._deadline = deadline
        self._cutter = cutter

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        with _cancelled_when_cut(self._cutter):
            for part in self._inner:
                received += len(part)
                if received > self._limit:
                    raise ResponseTooLarge(f"more than {self._limit} bytes")
                if self._deadline is not None and time.monotonic() > self._deadline:
                    raise ResponseTooSlow(f"{received} bytes by the deadline")
                yield part

    def close(self) -> None:
        self._inner.close()


@contextmanager
def _cancelled_when_cut(cutter: _Cutter | None) -> Iterator[None]:
    """A request that failed because its call was cancelled raises Cancelled, which the SDK neither retries nor
    wraps."""
    try:
        yield
    except Exception as exc:
        if cutter is not None and cutter.cut:
            raise Cancelled("the call was cancelled") from exc
        raise


class BoundedTransport(httpx2.HTTPTransport):
    """Every response body cut at MAX_RESPONSE_BYTES, whatever the engine sends (a stream of one endless line
    included: the SDK's decoder would hold all of it); with `body_deadline_s`, also a body still arriving that long
    after its headers (a trickle that each read's timeout alone would let run on). Streamed answers, which take
    their time by design, have a deadline of their own instead (`RemoteBackend`).

    With `fresh_connections`, each request opens its own connection (none is kept for the next), so that `cut_on`
    can shut it when the call is cancelled."""

    def __init__(self, body_deadline_s: float | None = None, *, fresh_connections: bool = False) -> None:
        if fresh_connections:
            super().__init__(limits=httpx2.Limits(max_connections=100, max_keepalive_connections=0))
        else:
            super().__init__()
        self._body_deadline_s = body_deadline_s
        self._fresh = fresh_connections
        self._local = threading.local()

    @contextmanager
    def cut_on(self, cancel: CancelToken | None) -> Iterator[None]:
        """Requests this thread sends within the block have their connection shut when `cancel` is set; they then
        raise Cancelled."""
        if cancel is None or not self._fresh:
            yield
            return
        cutter = _Cutter()
        self._local.cutter = cutter
        try:
            with cancel.on_cancel(cutter):
                yield
        finally:
            self._local.cutter = None

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        cutter: _Cutter | None = getattr(self._local, "cutter", None)
        if cutter is not None:
            if cutter.cut:
                raise Cancelled("the call was cancelled")
            request.extensions = {**request.extensions, "trace": cutter.trace}
        with _cancelled_when_cut(cutter):
            response = super().handle_request(request)
        assert isinstance(response.stream, httpx2.SyncByteStream)
        deadline = None if self._body_deadline_s is None else time.monotonic() + self._body_deadline_s
        response.stream = _BoundedStream(response.stream, MAX_RESPONSE_BYTES, deadline, cutter)
        return response


def _served_now_of(client: openai.OpenAI) -> str:
    try:
        served = [entry.id for entry in client.models.list()]
    except openai.OpenAIError:
        return "the list of served models is not available either"
    return "it serves: " + ", ".join(served) if served else "it serves no model"


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return _plain(str(cause or exc).strip() or type(cause or exc).__name__)


def _body(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail") or body.get("error") or body
        if isinstance(message, dict):
            message = message.get("message") or message
        return _plain(str(message))
    return _plain(str(body) if body else exc.message)


def _plain(text: str) -> str:
    """An engine's words as an error may quote them: one short line, and no web page pasted in."""
    if re.search(r"<\s*(!doctype|html|head|body)\b", text, re.I):
        return "it sent a web page, not an engine's answer"
    line = _USER_IN_URL.sub("//", " ".join(text.split()))
    return line if len(line) <= 300 else line[:299] + "…"
