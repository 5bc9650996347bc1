"""One OpenAI-compatible engine's client, shared by the vision engine (`remote.py`: chat completions) and the
speech engine (`speech/remote.py`: audio transcriptions): the `openai` SDK's client (its timeouts, retries with
backoff and typed errors) over a transport that bounds what an engine sends, the credentials of its URL, the
cancellation of a request, and one mapping of what goes wrong to errors that say what to change. Each engine keeps
only the shape of its requests and replies.

- **Credentials.** A URL's user and password (`http://user:password@host/v1`, for a proxy in front of the engine)
  go as HTTP basic auth, never in the URL the HTTP library logs; results, errors and logs show the engine as
  host:port alone (`endpoint_host`), and an engine's words quoted in an error lose any credentials they repeat. A
  query string cannot work (the SDK adds its paths after it) and is refused at start, by the settings.
- **Bounds.** Every reply is cut at `MAX_RESPONSE_BYTES`; with a body deadline, a reply still arriving that long
  after its headers is cut too; JSON is read with a bounded count of objects and numbers (`read_json`).
- **Cancellation.** With fresh connections, a cancelled call's connection is shut at once (`Engine.cut_on`): the
  engine sees its client gone, and the call raises Cancelled.
- **Errors.** `Engine.explained` turns the SDK's errors (after its retries) and the transport's cuts into
  ModelError naming the engine's flag (--endpoint, --asr-endpoint) and what to change.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx2
import openai

from llava_video_mcp.tools.backends.base import API_KEY_VARIABLE
from llava_video_mcp.tools.cancel import Cancelled, CancelToken
from llava_video_mcp.tools.errors import ModelError

__all__ = [
    "MAX_RESPONSE_BYTES",
    "BoundedTransport",
    "Engine",
    "EngineFlags",
    "ResponseCut",
    "ResponseTooLarge",
    "ResponseTooSlow",
    "endpoint_host",
    "engine_client",
    "read_json",
]

MAX_RESPONSE_BYTES = 16 * 2**20
"""Most read of one response: a streamed answer of 4,096 tokens is well under 2 MB, a list of models a few KB."""
_NO_KEY = "EMPTY"
"""Sent when no key is set: the SDK insists on one, and servers without auth ignore it (vLLM's docs use it too)."""
_USER_IN_URL = re.compile(r"//[^/\s@]*@")
"""Credentials in a URL an engine's words repeat (`http://user:password@host`): an error quotes them without."""
_MAX_LISTED_OBJECTS = 4096
_MAX_LISTED_NUMBERS = 16384
"""Of a list of served models, the JSON objects and numbers built (a few a model)."""


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


@dataclass(frozen=True)
class EngineFlags:
    """How the user names an engine, for its errors: `--endpoint` and `--model` (vision), `--asr-endpoint` and
    `--asr-model` (speech)."""

    noun: str
    """What it serves, in words: "model", "speech"."""
    endpoint: str
    model: str


class Engine:
    """An OpenAI-compatible engine: its SDK client (`client`) over a `BoundedTransport`, where it is in words
    (`host`, `where`), and the mapping of its failures (`explained`)."""

    def __init__(
        self,
        endpoint: str,
        flags: EngineFlags,
        *,
        api_key: str | None,
        timeout_s: float,
        retries: int,
        body_deadline_s: float | None = None,
        fresh_connections: bool = False,
    ) -> None:
        self.flags = flags
        self.host = endpoint_host(endpoint)
        parts = urlsplit(endpoint)
        given = (api_key, parts.password, parts.username)
        self._secrets = {form for secret in given if secret for form in (secret, unquote(secret)) if len(form) >= 4}
        """Never quoted back, should an engine (or a proxy before it) echo them in an error body."""
        self.where = f"The {flags.noun} endpoint {self.host} ({flags.endpoint})"
        self.timeout_s = timeout_s
        self.transport = BoundedTransport(body_deadline_s, fresh_connections=fresh_connections)
        self.client = engine_client(
            endpoint, api_key=api_key, timeout_s=timeout_s, retries=retries, transport=self.transport
        )

    def close(self) -> None:
        self.client.close()

    def cut_on(self, cancel: CancelToken | None) -> AbstractContextManager[None]:
        """Requests this thread sends within the block have their connection shut when `cancel` is set (with
        fresh connections); they then raise Cancelled."""
        return self.transport.cut_on(cancel)

    def served(self) -> list[str]:
        """The ids of the models the engine serves, in its order; ModelError when it answers with no list of
        models (a web page) or with an empty one."""
        with self.explained("listing the served models"):
            listed = read_json(
                self.client.models.with_raw_response.list().content,
                max_objects=_MAX_LISTED_OBJECTS,
                max_numbers=_MAX_LISTED_NUMBERS,
            )
        entries = listed.get("data") if isinstance(listed, dict) else None
        if not isinstance(entries, list):
            raise ModelError(
                f"{self.where} answered, but not as an OpenAI-compatible engine (it sent a web page or other data, "
                "not a list of models). Check the URL: it is the engine's base URL, usually ending in /v1."
            )
        served = [entry["id"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("id"), str)]
        if not served:
            raise ModelError(f"{self.where} serves no model.")
        return served

    @contextmanager
    def explained(
        self, doing: str, *, model: str = "", bad_request: Callable[[str], Exception | None] | None = None
    ) -> Iterator[None]:
        """The SDK's typed errors (raised after its own retries) and the transport's cuts, while `doing`, as
        errors that say what to change. `model` is the one asked for; `bad_request` may give an error of the
        engine's own for a 400's words (the vision engine's context too long)."""
        where, flags = self.where, self.flags
        try:
            yield
        except ResponseCut as exc:
            raise self._cut(exc, doing) from exc
        except openai.APITimeoutError as exc:
            raise ModelError(
                f"{where} did not answer within {self.timeout_s:g} s while {doing}, even after retries. Try again "
                "later, or raise --request-timeout-s.",
                retryable=True,
            ) from exc
        except openai.APIConnectionError as exc:
            if isinstance(exc.__cause__, ResponseCut):  # the SDK wraps what the transport raised
                raise self._cut(exc.__cause__, doing) from exc
            raise ModelError(
                f"{where} could not be reached, or dropped the connection, while {doing} ({self._reason(exc)}). Check "
                "that the engine is running; the call can be retried.",
                retryable=True,
            ) from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ModelError(
                f"{where} refused the API key (HTTP {exc.status_code}). Set the environment variable "
                f"{API_KEY_VARIABLE} to a key the engine accepts (vLLM: its --api-key), and restart the server."
            ) from exc
        except openai.NotFoundError as exc:
            if not model:  # the list of models itself: nothing to list again (that would ask the same 404 again)
                raise ModelError(
                    f"{where} answered 404 while {doing} ({self._body(exc)}): the URL may lack its /v1 suffix, or it "
                    f"is no OpenAI-compatible engine. Check {flags.endpoint}."
                ) from exc
            raise ModelError(
                f"{where} answered 404 while {doing} ({self._body(exc)}): the model '{model}' may no longer be served "
                f"({self._served_now()}), or the URL lacks its /v1 suffix. Check {flags.endpoint} and {flags.model}."
            ) from exc
        except openai.BadRequestError as exc:
            detail = self._body(exc)
            if bad_request is not None and (own := bad_request(detail)) is not None:
                raise own from exc
            raise ModelError(f"{where} rejected the request ({detail}).") from exc
        except openai.RateLimitError as exc:
            raise ModelError(
                f"{where} is overloaded (HTTP 429) even after retries. Try again later, or lower "
                "--max-concurrent-requests.",
                retryable=True,
            ) from exc
        except openai.APIStatusError as exc:
            raise ModelError(
                f"{where} failed with HTTP {exc.status_code} while {doing} ({self._body(exc)}), even after retries. "
                "Check the serving engine's log; the call can be retried.",
                retryable=exc.status_code >= 500,
            ) from exc
        except (openai.APIError, ValueError) as exc:
            if isinstance(exc.__cause__, ResponseCut):
                raise self._cut(exc.__cause__, doing) from exc
            raise ModelError(
                f"{where} sent a malformed response while {doing} ({self._reason(exc)}). Check that it is an "
                "OpenAI-compatible server (its URL usually ends in /v1); the call can be retried.",
                retryable=True,
            ) from exc

    def _cut(self, exc: ResponseCut, doing: str) -> ModelError:
        what = (
            f"more than {MAX_RESPONSE_BYTES // 2**20} MB while {doing}, far more than a reply takes"
            if isinstance(exc, ResponseTooLarge)
            else f"a reply still arriving at the request timeout ({self.timeout_s:g} s) while {doing}"
        )
        return ModelError(
            f"{self.where} sent {what}, so it was cut. Check that it is an OpenAI-compatible server; the call can be "
            "retried.",
            retryable=True,
        )

    def _body(self, exc: openai.APIStatusError) -> str:
        return self._quoted(_body(exc))

    def _reason(self, exc: BaseException) -> str:
        return self._quoted(_reason(exc))

    def _quoted(self, text: str) -> str:
        """The engine's words with the key and the URL's user and password left out."""
        for secret in self._secrets:
            text = text.replace(secret, "[hidden]")
        return text

    def _served_now(self) -> str:
        try:
            served = self.served()
        except ModelError:
            return "the list of served models is not available either"
        return "it serves: " + ", ".join(served)


def read_json(content: bytes, *, max_objects: int, max_numbers: int) -> Any:
    """An engine's JSON reply as plain data (None when it is not JSON), with at most `max_objects` objects and
    `max_numbers` numbers built: those beyond are null, so that a reply of 100,000 segments costs a pointer each,
    not a dictionary. An outermost object past the count is kept (its contents beyond it are null)."""
    objects = numbers = 0
    outermost: list[tuple[str, Any]] | None = None

    def an_object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
        nonlocal objects, outermost
        objects += 1
        outermost = pairs  # objects end inner first: the last is the outermost
        return dict(pairs) if objects <= max_objects else None

    def a_number(kind: Callable[[str], float]) -> Callable[[str], float | None]:
        def read(text: str) -> float | None:
            nonlocal numbers
            numbers += 1
            return kind(text) if numbers <= max_numbers else None

        return read

    try:
        value = json.loads(content, object_pairs_hook=an_object, parse_float=a_number(float),
                           parse_int=a_number(int))  # fmt: skip
    except (ValueError, RecursionError):
        return None
    if value is None and outermost is not None:
        return dict(outermost)
    return value


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
