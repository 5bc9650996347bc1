"""Hearing: speech in 30 s blocks of 16 kHz mono audio to timestamped text, behind one small protocol.

- `WhisperBackend`: Whisper through transformers, in process: `WhisperForConditionalGeneration` and its processor,
  Whisper's own `generate(..., return_timestamps=True, return_segments=True)`, greedy with Whisper's temperature
  fallback, its no-speech / log-prob / compression-ratio thresholds, and `condition_on_prev_tokens=False` (text
  invented over music or silence is the failure to avoid). Blocks go a batch at a time (several on CUDA, one on
  CPU, where batching gains nothing); cancelling stops between batches and between tokens.
- `RemoteSpeech`: an OpenAI-compatible `/v1/audio/transcriptions` endpoint (vLLM serves Whisper there) through the
  `openai` SDK: `verbose_json` segments where the engine gives them; an engine that returns text only (`transformers
  serve`) gives one segment per block. Blocks run concurrently up to `--max-concurrent-requests`.

Each block is heard on its own, at fixed 30 s edges, rather than by Whisper's seeking long-form decoding: a block
is then kept once heard and reused by every later range and call, its progress and cancellation come between
blocks, and on a GPU blocks batch. The cost: a word spoken across an edge may be cut in two.
"""

from __future__ import annotations

import importlib
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llava_video_mcp.tools.backends.base import API_KEY_VARIABLE
from llava_video_mcp.tools.backends.devices import pick_device
from llava_video_mcp.tools.backends.hub import DownloadProgress, local_snapshot
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import ModelError

if TYPE_CHECKING:
    from llava_video_mcp.tools.backends.remote import ResponseCut

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
CPU_DEFAULT = "openai/whisper-base"
"""74M parameters: about 0.2x real time on one core (README, Speech)."""
CUDA_DEFAULT = "openai/whisper-large-v3-turbo"
"""809M parameters, the English word error rate of large-v3 in published evaluations, fast on a GPU."""
CUDA_BATCH = 8
THRESHOLDS: dict[str, Any] = {
    "temperature": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    "compression_ratio_threshold": 1.35,
    "logprob_threshold": -1.0,
    "no_speech_threshold": 0.6,
    "condition_on_prev_tokens": False,
}
"""Whisper's own safeguards against invented text, as its long-form decoding uses them."""

BlockProgress = Callable[[int], None]
"""Called with the number of blocks heard so far in this request."""


@dataclass(frozen=True)
class Heard:
    """Speech in a block: seconds from the block's start, and what was said."""

    start_s: float
    end_s: float
    text: str


class SpeechBackend(ABC):
    model_id: str
    device: str
    blocks_at_once: int = 1
    """Blocks worth handing to one `transcribe` call: a batch on CUDA, or the requests an engine takes at once."""

    @abstractmethod
    def transcribe(
        self,
        blocks: Sequence[np.ndarray],
        language: str | None,
        on_block: BlockProgress | None = None,
        cancel: CancelToken | None = None,
    ) -> list[list[Heard]]:
        """What is said in each block (mono float32 at 16 kHz, at most 30 s), in order; `language` None lets the
        model tell."""

    def close(self) -> None:
        return None


class WhisperBackend(SpeechBackend):
    def __init__(self, model: Any, processor: Any, model_id: str, device: str) -> None:
        self._model = model
        self._processor = processor
        self._turn = threading.Lock()
        self.model_id = model_id
        self.device = device
        self.blocks_at_once = CUDA_BATCH if device == "cuda" else 1
        self._languages = {key.strip("<|>") for key in getattr(model.generation_config, "lang_to_id", {})}

    @classmethod
    def load(cls, model_id: str, device: str = "auto", on_download: DownloadProgress | None = None) -> WhisperBackend:
        """From a local folder or a hub id (the cache, or a download with progress); ModelError with the fix."""
        hf: Any = importlib.import_module("transformers")
        import torch

        chosen = pick_device(device)
        local = Path(model_id).expanduser()
        is_folder = model_id.startswith((".", "/", "~")) or local.exists()
        source = str(local) if is_folder else local_snapshot(model_id, on_download, flag="--asr-model")
        try:
            config = hf.AutoConfig.from_pretrained(source)
            if config.model_type != "whisper":
                raise ModelError(f"--asr-model {model_id} is a '{config.model_type}' model, not a Whisper model.")
            processor = hf.WhisperProcessor.from_pretrained(source)
            dtype = torch.float16 if chosen == "cuda" else torch.float32
            model = hf.WhisperForConditionalGeneration.from_pretrained(source, dtype=dtype)
        except ModelError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"Could not load the speech model '{model_id}' ({reason}). Set --asr-model to a Whisper hub id or "
                "folder, or to none to hear nothing."
            ) from exc
        if not hasattr(model.generation_config, "no_timestamps_token_id"):
            raise ModelError(
                f"The speech model '{model_id}' has no timestamp tokens in its generation config (an old or re-saved "
                "checkpoint): download it again, or set --asr-model none."
            )
        model.to(chosen)
        model.eval()
        return cls(model, processor, str(local) if is_folder else model_id, chosen)

    def transcribe(
        self,
        blocks: Sequence[np.ndarray],
        language: str | None,
        on_block: BlockProgress | None = None,
        cancel: CancelToken | None = None,
    ) -> list[list[Heard]]:
        import torch

        heard: list[list[Heard]] = []
        language = language if language in self._languages else None
        with self._turn, torch.inference_mode():
            for start in range(0, len(blocks), self.blocks_at_once):
                if cancel is not None:
                    cancel.check()
                batch = blocks[start : start + self.blocks_at_once]
                heard.extend(self._batch_heard(batch, language, cancel))
                if on_block is not None:
                    on_block(len(heard))
        return heard

    def _batch_heard(self, batch: Sequence[np.ndarray], language: str | None, cancel: CancelToken | None) -> Any:
        inputs = self._processor(list(batch), sampling_rate=SAMPLE_RATE, return_tensors="pt")
        features = inputs["input_features"].to(self._model.device, dtype=self._model.dtype)
        output = self._model.generate(
            features,
            return_timestamps=True,
            return_segments=True,
            task="transcribe",
            language=language,
            stopping_criteria=[_Stop(cancel)] if cancel is not None else None,
            **THRESHOLDS,
        )
        results = []
        for audio, segments in zip(batch, output["segments"], strict=True):
            length = len(audio) / SAMPLE_RATE
            results.append([h for s in segments if (h := self._heard(s, length)) is not None])
        return results

    def _heard(self, segment: dict[str, Any], length_s: float) -> Heard | None:
        """A segment as a cue inside the block: times clamped to the audio there is (a model may emit them past
        its end), no empty text."""
        text = str(self._processor.decode(segment["tokens"], skip_special_tokens=True)).strip()
        start = min(max(float(segment["start"]), 0.0), length_s)
        end = min(max(float(segment["end"]), start), length_s)
        return Heard(start, end, text) if text and end > start else None


class _Stop:
    """A stopping criterion that ends generation at the next token once the call is cancelled (raising, so that
    nothing half heard is kept)."""

    def __init__(self, cancel: CancelToken | None) -> None:
        self._cancel = cancel

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self._cancel is not None:
            self._cancel.check()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


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
    ) -> list[list[Heard]]:
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
            return [one(block) for block in blocks]
        with ThreadPoolExecutor(max_workers=min(self.blocks_at_once, len(blocks))) as pool:
            return list(pool.map(one, blocks))

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


@dataclass(frozen=True)
class SpeechConfig:
    model: str = "auto"
    """A Whisper hub id or folder, `auto` (by device), or `none` (hear nothing); with an endpoint, the served id."""
    device: str = "auto"
    endpoint: str | None = None
    api_key: str | None = None
    request_timeout_s: float = 120.0
    request_retries: int = 2
    max_concurrent_requests: int = 8

    @property
    def enabled(self) -> bool:
        return self.model.strip().lower() != "none"


def resolved_model(model: str, device: str) -> str:
    """`auto`: the large, fast model on CUDA, the small one elsewhere; any other name as it is."""
    if model != "auto":
        return model
    return CUDA_DEFAULT if pick_device(device) == "cuda" else CPU_DEFAULT


class LazySpeech:
    """Brings up the speech backend on first use, once; a failure is remembered for a minute instead of tried on
    every call (a fixed folder or a network back is picked up after it)."""

    def __init__(self, config: SpeechConfig) -> None:
        self.config = config
        self._backend: SpeechBackend | None = None
        self._lock = threading.Lock()
        self._failed: tuple[ModelError, float] | None = None

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def label(self) -> str:
        if self._backend is not None:
            return self._backend.model_id
        return self.config.endpoint or self.config.model

    def identity(self) -> str:
        """Which model hears, the same before and after it is loaded: what kept speech is keyed by."""
        config = self.config
        if config.endpoint:
            return f"{config.endpoint} {config.model}"
        return resolved_model(config.model, config.device)

    def get(self, on_download: DownloadProgress | None = None) -> SpeechBackend:
        with self._lock:
            if self._backend is not None:
                return self._backend
            if self._failed is not None and time.monotonic() - self._failed[1] < 60:
                raise self._failed[0]
            try:
                self._backend = self._bring_up(on_download)
            except ModelError as exc:
                self._failed = (exc, time.monotonic())
                raise
            return self._backend

    def _bring_up(self, on_download: DownloadProgress | None) -> SpeechBackend:
        config = self.config
        if config.endpoint:
            remote = RemoteSpeech(
                config.endpoint,
                None if config.model in ("auto", "") else config.model,
                api_key=config.api_key,
                timeout_s=config.request_timeout_s,
                retries=config.request_retries,
                max_concurrency=config.max_concurrent_requests,
            )
            remote.connect()
            return remote
        return WhisperBackend.load(resolved_model(config.model, config.device), config.device, on_download)

    def close(self) -> None:
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None
