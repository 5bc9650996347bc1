"""Hearing's protocol: speech in 30 s blocks of 16 kHz mono audio to timestamped text.

Each block is heard on its own, at fixed 30 s edges, rather than by Whisper's seeking long-form decoding: a block
is then kept once heard and reused by every later range and call, its progress and cancellation come between
blocks, and on a GPU blocks batch. The cost: a word spoken across an edge may be cut in two.
"""

from __future__ import annotations

import io
import wave
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.progress import BlockProgress
from llava_video_mcp.tools.timeline import TimedText

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Transcription:
    """What each block of a request says, in order, and the language it was heard in (the one given, or the one
    the model told from the first block; None when the engine does not say)."""

    heard: list[list[TimedText]]
    language: str | None


class SpeechBackend(ABC):
    model_id: str
    device: str
    compute: str = ""
    """What the model runs in (int8, float16, float32), where it is known."""
    blocks_at_once: int = 1
    """Blocks worth handing to one `transcribe` call: a batch on CUDA, or the requests an engine takes at once."""
    longest_s: float = 30.0
    """The longest stretch of audio one block may be: Whisper's window, unless the backend hears on across
    windows itself."""

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
