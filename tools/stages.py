"""The stages every call goes through, shared by a sampled answer (`video_qa`) and a full watch (`watch`):
fetching with byte progress, the model's progress inside its stage, the packet index's place, subtitles."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.backends.base import InferenceProgress, VideoLanguageBackend
from tools.results import ModelInfo
from tools.sources import LocalVideo
from tools.transcript import Cue, parse_subtitles
from tools.ytdlp import ProgressHook

DEFAULT_QUESTION = (
    "Describe this video in detail: the setting, the people, animals or objects in it, "
    "and what happens from beginning to end."
)
FRAME_SIDE = 384
"""Shorter side frames are decoded to: the SigLIP input of llava-interleave (0.5b and 7b). The same on every
call, so an answer never depends on whether the model happened to be loaded yet."""

MAX_SUBTITLE_BYTES = 4 * 2**20
"""Most read of a subtitle file: hours of speech; a larger file is read only this far."""

Progress = Callable[[float, float, str], None]
"""Called with (progress, total, message) as a call moves through its stages."""


def no_progress(progress: float, total: float, message: str) -> None:
    return None


@dataclass(frozen=True)
class TranscriptOptions:
    include: bool = True
    language: str = "en"


WITH_TRANSCRIPT = TranscriptOptions()


def model_progress(progress: Progress, step: int, stages: int) -> InferenceProgress:
    """Relays the model's progress inside its stage: every change of activity, and counts at most once a second."""
    last_report = 0.0
    last_activity = ""

    def report(fraction: float, message: str) -> None:
        nonlocal last_report, last_activity
        activity = message.split(":", 1)[0]
        now = time.monotonic()
        if activity == last_activity and now - last_report < 1.0 and fraction < 1.0:
            return
        last_report, last_activity = now, activity
        progress(step + 0.99 * fraction, stages, message)

    return report


def download_progress(progress: Progress, step: int, stages: int, number: int) -> ProgressHook:
    """Relays download bytes as progress inside the fetch stage, at most about once a second."""
    last_report = 0.0

    def report(done: int, total: int | None) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report < 1.0:
            return
        last_report = now
        fraction = min(done / total, 1.0) if total else 0.0
        shown = f"{size(done)} of {size(total)}" if total else size(done)
        progress(step + fraction, stages, f"Downloading video {number}: {shown}")

    return report


def model_download_progress(progress: Progress, step: int, stages: int) -> ProgressHook:
    """Relays the model's first download (about 1.7 GB for the 0.5b model), at most about once a second."""
    last_report = 0.0

    def report(done: int, total: int | None) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report < 1.0 and (total is None or done < total):
            return
        last_report = now
        shown = f"{size(done)} of {size(total)}" if total else size(done)
        progress(step + 0.5 * (min(done / total, 1.0) if total else 0.0), stages, f"Downloading the model: {shown}")

    return report


def index_file(video: LocalVideo) -> Path | None:
    """Where the video's packet index is kept, so later calls, plans and windows need not scan the file again."""
    return video.store / "index.bin" if video.store is not None else None


def size(count: int) -> str:
    if count < 1_000_000:
        return f"{count / 1000:.0f} KB"
    return f"{count / 1e6:.1f} MB"


def subtitle_cues(video: LocalVideo) -> list[Cue]:
    """The video's subtitle cues (site subtitles or a sidecar file), read up to MAX_SUBTITLE_BYTES; none if it has
    none or they cannot be read."""
    if video.subtitles is None:
        return []
    try:
        with video.subtitles.open("rb") as subtitles:
            text = subtitles.read(MAX_SUBTITLE_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return []
    return parse_subtitles(text)


def model_info(backend: VideoLanguageBackend) -> ModelInfo:
    """The result's `model` block: what ran the call, and where."""
    return ModelInfo(
        id=backend.model_id,
        device=backend.device,
        endpoint=backend.endpoint,
        dtype=backend.dtype,
        prefill_dtype=backend.prefill_dtype,
    )
