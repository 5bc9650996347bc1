"""`RemoteSpeech`: an OpenAI-compatible `/v1/audio/transcriptions` endpoint (vLLM serves Whisper there) through the
`openai` SDK: `verbose_json` segments where the engine gives them; an engine that returns text only (`transformers
serve`) gives one segment per block. Blocks run concurrently up to `--max-concurrent-requests`. The client, its
bounds, its credentials, the cancellation of a request and the mapping of its failures are `engine.py`'s, shared with
the vision engine; this module keeps the request's and the reply's shape.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

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

        from llava_video_mcp.tools.backends.engine import Engine, EngineFlags

        self._openai = openai
        # What an engine sends is bounded as for the vision model's engine: 16 MB a reply, and a body still
        # arriving `timeout_s` after its headers is cut (a transcription is sent whole, not streamed). Each request
        # has a connection of its own, shut when its call is cancelled.
        self._engine = Engine(
            endpoint,
            EngineFlags("speech", "--asr-endpoint", "--asr-model"),
            api_key=api_key,
            timeout_s=timeout_s,
            retries=retries,
            body_deadline_s=timeout_s,
            fresh_connections=True,
        )
        self.endpoint = self._engine.host
        self.model_id = model or ""
        self.device = "remote"
        self.blocks_at_once = max_concurrency

    def connect(self) -> None:
        """The served speech model: the one named, or the first the engine lists."""
        if not self.model_id:
            self.model_id = self._engine.served()[0]

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
            with self._engine.cut_on(cancel):
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
        with self._engine.explained(f"hearing a {length:.0f} s block", model=self.model_id):
            reply = self._engine.client.audio.transcriptions.with_raw_response.create(
                model=self.model_id,
                file=("block.wav", wav_bytes(block), "audio/wav"),
                response_format="verbose_json",
                language=language or self._openai.omit,
            ).content
        log.debug("a speech block heard remotely in %.1f s", time.monotonic() - started)
        transcription = read_reply(reply)
        if not is_transcription(transcription):
            raise ModelError(
                f"{self._engine.where} sent a reply that is not a transcription ({_what(reply)}, not JSON with a "
                "`text` field), so nothing was heard. Check that the URL is an OpenAI-compatible speech server's, "
                "usually ending in /v1; the call can be retried.",
                retryable=True,
            )
        return heard_in(transcription, length)

    def close(self) -> None:
        self._engine.close()


MAX_SEGMENTS_PER_BLOCK = 256
"""Most cues kept of one 30 s block: Whisper writes a few, one a word would be under a hundred."""
_MAX_REPLY_OBJECTS = 4 * MAX_SEGMENTS_PER_BLOCK
_MAX_REPLY_NUMBERS = 64 * MAX_SEGMENTS_PER_BLOCK
"""Of a reply, the JSON objects and numbers built (segments, their token ids); the rest are read as null, so that a
reply of 100,000 segments costs a pointer each, not a dictionary."""


def read_reply(content: bytes) -> Any:
    """An engine's JSON reply as plain data (None when it is not JSON), with at most `_MAX_REPLY_OBJECTS` objects
    and `_MAX_REPLY_NUMBERS` numbers built: those beyond are null."""
    from llava_video_mcp.tools.backends.engine import read_json

    return read_json(content, max_objects=_MAX_REPLY_OBJECTS, max_numbers=_MAX_REPLY_NUMBERS)


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
