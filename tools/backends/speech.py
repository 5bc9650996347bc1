"""Hearing: speech in 30 s blocks of 16 kHz mono audio to timestamped text, behind one small protocol.

- In process, Whisper (`whisper.WhisperSpeech`): Whisper's own decoding policy over CTranslate2 (int8, the CPU
  default) or transformers (float16 and batched on CUDA); see that module.
- `RemoteSpeech`: an OpenAI-compatible `/v1/audio/transcriptions` endpoint (vLLM serves Whisper there) through the
  `openai` SDK: `verbose_json` segments where the engine gives them; an engine that returns text only (`transformers
  serve`) gives one segment per block. Blocks run concurrently up to `--max-concurrent-requests`.

Each block is heard on its own, at fixed 30 s edges, rather than by Whisper's seeking long-form decoding: a block
is then kept once heard and reused by every later range and call, its progress and cancellation come between
blocks, and on a GPU blocks batch. The cost: a word spoken across an edge may be cut in two.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
import wave
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llava_video_mcp.tools.backends.base import API_KEY_VARIABLE
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import ModelError

if TYPE_CHECKING:
    from llava_video_mcp.tools.backends.remote import ResponseCut

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
BlockProgress = Callable[[int], None]
"""Called with the number of blocks heard so far in this request."""


@dataclass(frozen=True)
class Heard:
    """Speech in a block: seconds from the block's start, and what was said."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcription:
    """What each block of a request says, in order, and the language it was heard in (the one given, or the one
    the model told from the first block; None when the engine does not say)."""

    heard: list[list[Heard]]
    language: str | None


class SpeechBackend(ABC):
    model_id: str
    device: str
    compute: str = ""
    """What the model runs in (int8, float16, float32), where it is known."""
    blocks_at_once: int = 1
    """Blocks worth handing to one `transcribe` call: a batch on CUDA, or the requests an engine takes at once."""

    @property
    def languages(self) -> frozenset[str]:
        """The language codes the model can be told to hear (empty: it cannot be told)."""
        return frozenset()

    @abstractmethod
    def transcribe(
        self,
        blocks: Sequence[np.ndarray],
        language: str | None,
        on_block: BlockProgress | None = None,
        cancel: CancelToken | None = None,
    ) -> Transcription:
        """What is said in each block (mono float32 at 16 kHz, at most 30 s), in order; `language` None lets the
        model tell."""

    def close(self) -> None:
        return None


def wav_bytes(samples: np.ndarray) -> bytes:
    """16-bit mono WAV at SAMPLE_RATE: what every transcription endpoint reads."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm)
    return buffer.getvalue()


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

        from llava_video_mcp.tools.backends.remote import BoundedTransport

        self._openai = openai
        # What an engine sends is bounded as for the vision model's engine: 16 MB a reply, and a body still
        # arriving `timeout_s` after its headers is cut (a transcription is sent whole, not streamed).
        self._client = openai.OpenAI(
            base_url=endpoint,
            api_key=api_key or "EMPTY",
            timeout=timeout_s,
            max_retries=retries,
            http_client=openai.DefaultHttpxClient(transport=BoundedTransport(body_deadline_s=timeout_s)),
        )
        self._endpoint = endpoint
        self.model_id = model or ""
        self.device = "remote"
        self.blocks_at_once = max_concurrency

    def connect(self) -> None:
        """The served speech model: the one named, or the first the engine lists."""
        if self.model_id:
            return
        try:
            served = [str(entry.id) for entry in self._client.models.list()]
        except self._openai.OpenAIError as exc:
            raise ModelError(f"The speech endpoint {self._endpoint} (--asr-endpoint) could not be reached "
                             f"({type(exc).__name__}). Check that it runs.", retryable=True) from exc  # fmt: skip
        if not served:
            raise ModelError(f"The speech endpoint {self._endpoint} (--asr-endpoint) serves no model.")
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

        def one(block: np.ndarray) -> list[Heard]:
            if cancel is not None:
                cancel.check()
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

    def _request(self, block: np.ndarray, language: str | None) -> list[Heard]:
        from llava_video_mcp.tools.backends.remote import ResponseCut

        length = len(block) / SAMPLE_RATE
        started = time.monotonic()
        try:
            reply: Any = self._client.audio.transcriptions.create(
                model=self.model_id,
                file=("block.wav", wav_bytes(block), "audio/wav"),
                response_format="verbose_json",
                language=language or self._openai.omit,
            )
        except ResponseCut as exc:
            raise self._cut(exc) from exc
        except self._openai.APIStatusError as exc:
            raise ModelError(
                f"The speech endpoint {self._endpoint} (--asr-endpoint) failed with HTTP {exc.status_code}. Check "
                f"its log{'' if exc.status_code != 401 else f', and {API_KEY_VARIABLE}'}; the call can be retried.",
                retryable=exc.status_code >= 500 or exc.status_code == 429,
            ) from exc
        except self._openai.OpenAIError as exc:
            if isinstance(exc.__cause__, ResponseCut):  # the SDK wraps what the transport raised
                raise self._cut(exc.__cause__) from exc
            raise ModelError(
                f"The speech endpoint {self._endpoint} (--asr-endpoint) could not be reached or sent no answer "
                f"({type(exc).__name__}); the call can be retried.",
                retryable=True,
            ) from exc
        log.debug("a speech block heard remotely in %.1f s", time.monotonic() - started)
        return heard_in(reply, length)

    def _cut(self, exc: ResponseCut) -> ModelError:
        from llava_video_mcp.tools.backends.remote import MAX_RESPONSE_BYTES, ResponseTooLarge

        what = (
            f"more than {MAX_RESPONSE_BYTES // 2**20} MB"
            if isinstance(exc, ResponseTooLarge)
            else "a reply still arriving at the request timeout"
        )
        return ModelError(
            f"The speech endpoint {self._endpoint} (--asr-endpoint) sent {what} for one 30 s block, far more than "
            "a transcription takes, so it was cut. Check that it is an OpenAI-compatible speech server.",
            retryable=True,
        )

    def close(self) -> None:
        self._client.close()


def heard_in(reply: Any, length: float) -> list[Heard]:
    """The cues of an engine's reply for a block of `length` seconds, read as data: segments with finite times and
    text, clamped to the block; else its text as one cue (an engine that gives text only); anything else nothing."""
    heard = []
    segments = _field(reply, "segments")
    for segment in segments if isinstance(segments, list) else []:
        start, end, text = (_field(segment, name) for name in ("start", "end", "text"))
        if not (_finite(start) and _finite(end) and isinstance(text, str)):
            continue
        cue = Heard(min(max(float(start), 0.0), length), min(max(float(end), float(start)), length), text.strip())
        if cue.text and cue.end_s > cue.start_s:
            heard.append(cue)
    text = _field(reply, "text")
    if not heard and isinstance(text, str) and text.strip():
        heard = [Heard(0.0, length, text.strip())]
    return heard


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
