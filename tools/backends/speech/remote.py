"""`RemoteSpeech`: an OpenAI-compatible `/v1/audio/transcriptions` endpoint (vLLM serves Whisper there) through the
`openai` SDK: `verbose_json` segments where the engine gives them; an engine that returns text only (`transformers
serve`) gives one segment per block. Blocks run concurrently up to `--max-concurrent-requests`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

from llava_video_mcp.tools.backends.base import API_KEY_VARIABLE
from llava_video_mcp.tools.backends.speech.base import SAMPLE_RATE, SpeechBackend, Transcription, wav_bytes
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import BlockProgress
from llava_video_mcp.tools.prompt.subtitles import MAX_CUE_CHARS
from llava_video_mcp.tools.timeline import TimedText
from llava_video_mcp.tools.untrusted import without_controls

log = logging.getLogger(__name__)


class RemoteSpeech(SpeechBackend):
    """`/v1/audio/transcriptions` of an OpenAI-compatible engine, one request a block, several in flight."""

    def __init__(
        self,
        endpoint: str,
        model: str | None,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 2,
        max_concurrency: int = 8,
    ) -> None:
        import openai

        from llava_video_mcp.tools.backends.remote import BoundedTransport, endpoint_host, engine_client

        self._openai = openai
        # What an engine sends is bounded as for the vision model's engine: 16 MB a reply, and a body still
        # arriving `timeout_s` after its headers is cut (a transcription is sent whole, not streamed). Each request
        # has a connection of its own, shut when its call is cancelled.
        self._transport = BoundedTransport(body_deadline_s=timeout_s, fresh_connections=True)
        self._client = engine_client(
            endpoint, api_key=api_key, timeout_s=timeout_s, retries=retries, transport=self._transport
        )
        self.endpoint = endpoint_host(endpoint)
        self.model_id = model or ""
        self.device = "remote"
        self.blocks_at_once = max_concurrency

    @property
    def _where(self) -> str:
        return f"The speech endpoint {self.endpoint} (--asr-endpoint)"

    def connect(self) -> None:
        """The served speech model: the one named, or the first the engine lists."""
        if self.model_id:
            return
        with self._explained(None):
            listed = read_reply(self._client.models.with_raw_response.list().content)
        entries = listed.get("data") if isinstance(listed, dict) else None
        if not isinstance(entries, list):
            raise ModelError(
                f"{self._where} answered, but not as an OpenAI-compatible engine (it sent a web page or other data, "
                "not a list of models). Check the URL: it is the engine's base URL, usually ending in /v1."
            )
        served = [entry["id"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("id"), str)]
        if not served:
            raise ModelError(f"{self._where} serves no model.")
        self.model_id = served[0]

    def transcribe(
        self,
        blocks: Sequence[np.ndarray],
        language: str | None,
        on_block: BlockProgress | None = None,
        cancel: CancelToken | None = None,
    ) -> Transcription:
        done = [0]
        lock = threading.Lock()

        def one(block: np.ndarray) -> list[TimedText]:
            if cancel is not None:
                cancel.check()
            with self._transport.cut_on(cancel):
                heard = self._request(block, language)
            with lock:
                done[0] += 1
                if on_block is not None:
                    on_block(done[0])
            return heard

        if self.blocks_at_once == 1 or len(blocks) == 1:
            return Transcription([one(block) for block in blocks], language)
        with ThreadPoolExecutor(max_workers=min(self.blocks_at_once, len(blocks))) as pool:
            return Transcription(list(pool.map(one, blocks)), language)

    def _request(self, block: np.ndarray, language: str | None) -> list[TimedText]:
        length = len(block) / SAMPLE_RATE
        started = time.monotonic()
        # The raw reply, read here: the SDK would build a typed object per segment (a reply of 100,000 segments
        # held hundreds of MB), and takes a web page for a transcription of nothing.
        with self._explained(length):
            reply = self._client.audio.transcriptions.with_raw_response.create(
                model=self.model_id,
                file=("block.wav", wav_bytes(block), "audio/wav"),
                response_format="verbose_json",
                language=language or self._openai.omit,
            ).content
        log.debug("a speech block heard remotely in %.1f s", time.monotonic() - started)
        transcription = read_reply(reply)
        if not is_transcription(transcription):
            raise ModelError(
                f"{self._where} sent a reply that is not a transcription ({_what(reply)}, not JSON with a `text` "
                "field), so nothing was heard. Check that the URL is an OpenAI-compatible speech server's, usually "
                "ending in /v1; the call can be retried.",
                retryable=True,
            )
        return heard_in(transcription, length)

    @contextmanager
    def _explained(self, length: float | None) -> Iterator[None]:
        """The SDK's errors (after its retries) and the transport's cuts as errors that say what to change;
        `length` is the block's, None while listing the models."""
        from llava_video_mcp.tools.backends.remote import ResponseCut

        try:
            yield
        except ResponseCut as exc:
            raise self._cut(exc, length) from exc
        except self._openai.APIStatusError as exc:
            status = exc.status_code
            hint = {401: f", and {API_KEY_VARIABLE}", 404: ", and the URL: it is the engine's base URL, usually ending "
                    "in /v1"}.get(status, "")  # fmt: skip
            raise ModelError(
                f"{self._where} failed with HTTP {status}. Check its log{hint}; the call can be retried.",
                retryable=status >= 500 or status == 429,
            ) from exc
        except self._openai.OpenAIError as exc:
            if isinstance(exc.__cause__, ResponseCut):  # the SDK wraps what the transport raised
                raise self._cut(exc.__cause__, length) from exc
            raise ModelError(
                f"{self._where} could not be reached or sent no answer ({type(exc).__name__}). Check that it runs; "
                "the call can be retried.",
                retryable=True,
            ) from exc

    def _cut(self, exc: Exception, length: float | None) -> ModelError:
        from llava_video_mcp.tools.backends.remote import MAX_RESPONSE_BYTES, ResponseTooLarge

        what = (
            f"more than {MAX_RESPONSE_BYTES // 2**20} MB"
            if isinstance(exc, ResponseTooLarge)
            else "a reply still arriving at the request timeout"
        )
        doing = "for one 30 s block, far more than a transcription takes" if length else "for its list of models"
        return ModelError(
            f"{self._where} sent {what} {doing}, so it was cut. Check that it is an OpenAI-compatible speech server.",
            retryable=True,
        )

    def close(self) -> None:
        self._client.close()


MAX_SEGMENTS_PER_BLOCK = 256
"""Most cues kept of one 30 s block: Whisper writes a few, one a word would be under a hundred."""
_MAX_REPLY_OBJECTS = 4 * MAX_SEGMENTS_PER_BLOCK
_MAX_REPLY_NUMBERS = 64 * MAX_SEGMENTS_PER_BLOCK
"""Of a reply, the JSON objects and numbers built (segments, their token ids); the rest are read as null, so that a
reply of 100,000 segments costs a pointer each, not a dictionary."""


def read_reply(content: bytes) -> Any:
    """An engine's JSON reply as plain data (None when it is not JSON), with at most `_MAX_REPLY_OBJECTS` objects
    and `_MAX_REPLY_NUMBERS` numbers built: those beyond are null."""
    objects = numbers = 0
    outermost: list[tuple[str, Any]] | None = None

    def an_object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
        nonlocal objects, outermost
        objects += 1
        outermost = pairs  # objects end inner first: the last is the outermost
        return dict(pairs) if objects <= _MAX_REPLY_OBJECTS else None

    def a_number(kind: Callable[[str], float]) -> Callable[[str], float | None]:
        def read(text: str) -> float | None:
            nonlocal numbers
            numbers += 1
            return kind(text) if numbers <= _MAX_REPLY_NUMBERS else None

        return read

    try:
        value = json.loads(content, object_pairs_hook=an_object, parse_float=a_number(float),
                           parse_int=a_number(int))  # fmt: skip
    except (ValueError, RecursionError):
        return None
    if value is None and outermost is not None:
        return dict(outermost)  # the reply itself, past the count: its segments beyond it are null
    return value


def is_transcription(reply: Any) -> bool:
    """What `/v1/audio/transcriptions` answers: an object with its text, and its segments where it gives them."""
    return (
        isinstance(reply, dict)
        and isinstance(reply.get("text"), str)
        and isinstance(reply.get("segments"), (list, type(None)))
    )


def _what(reply: bytes) -> str:
    head = reply[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head or b"<head" in head:
        return "a web page"
    return "empty" if not head else f"{len(reply):,} bytes of something else"


def heard_in(reply: Any, length: float) -> list[TimedText]:
    """The cues of an engine's reply for a block of `length` seconds, read as data: segments with finite times and
    text, clamped to the block, at most MAX_SEGMENTS_PER_BLOCK; else its text as one cue (an engine that gives text
    only); anything else nothing. Text is cleaned as a title is (no control or format characters, white space
    collapsed) and cut as a subtitle cue is, at MAX_CUE_CHARS."""
    heard = []
    segments = _field(reply, "segments")
    for segment in segments if isinstance(segments, list) else []:
        start, end, text = (_field(segment, name) for name in ("start", "end", "text"))
        if not (_finite(start) and _finite(end) and isinstance(text, str)):
            continue
        cue = TimedText(min(max(float(start), 0.0), length), min(max(float(end), float(start)), length), _said(text))
        if cue.text and cue.end_s > cue.start_s:
            heard.append(cue)
            if len(heard) == MAX_SEGMENTS_PER_BLOCK:
                break
    text = _field(reply, "text")
    if not heard and isinstance(text, str) and (said := _said(text)):
        heard = [TimedText(0.0, length, said)]
    return heard


def _said(text: str) -> str:
    return " ".join(without_controls(text[: MAX_CUE_CHARS * 4]).split())[:MAX_CUE_CHARS].rstrip()


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
