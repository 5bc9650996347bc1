"""The stages every call goes through, shared by a sampled answer (`video_qa`) and a full watch (`watch`):
fetching with byte progress, the model's progress inside its stage, the packet index's place, subtitles."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llava_video_mcp.tools.answer.results import ModelInfo
from llava_video_mcp.tools.backends.base import InferenceProgress, ModelProvider, VideoLanguageBackend
from llava_video_mcp.tools.media.sources import LocalVideo
from llava_video_mcp.tools.media.ytdlp import ProgressHook
from llava_video_mcp.tools.prompt.subtitles import Cue, parse_subtitles

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


class WorkPlan:
    """A sampled call's progress as shares of its work, not as a count of stages: fetching and sampling are quick
    beside the model, which reads hundreds of image tokens a frame (and loading it, the first time, is a stage of
    its own). Each part reports 0..1 of itself; the caller sees 0..100 of the whole."""

    SHARES: ClassVar[Mapping[str, float]] = {"fetch": 10.0, "sample": 10.0, "load": 10.0, "model": 70.0}

    def __init__(self, progress: Progress, *, loading: bool) -> None:
        self._progress = progress
        shares = dict(self.SHARES) if loading else {**self.SHARES, "load": 0.0}
        scale = 100.0 / sum(shares.values())
        start = 0.0
        self._spans: dict[str, tuple[float, float]] = {}
        for name, share in shares.items():
            self._spans[name] = (start, start + share * scale)
            start += share * scale

    def part(self, name: str, index: int = 0, count: int = 1) -> Progress:
        """The progress of part `index` of `count` of a stage (video 2 of 3's fetch)."""
        low, high = self._spans[name]
        width = (high - low) / count
        return span(self._progress, low + index * width, low + (index + 1) * width, 100.0)


def span(progress: Progress, start: float, end: float, total: float) -> Progress:
    """A stage's own progress (done of `of`) as `start..end` of the whole's `total`."""

    def report(done: float, of: float, message: str) -> None:
        fraction = min(done / of, 1.0) if of else 0.0
        progress(start + (end - start) * fraction, total, message)

    return report


def load_model(model: ModelProvider, progress: Progress) -> tuple[VideoLanguageBackend, float]:
    """The model, loaded (or its engine reached) with a progress stage of its own the first time."""
    if model.loaded is None:
        progress(0, 1, f"Loading the model {model.label}")
    return model.get(model_download_progress(progress, 0, 1))


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
