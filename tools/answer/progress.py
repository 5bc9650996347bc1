"""A call's progress, as the client sees it: shares of the work (not a count of stages), byte counts while
downloading, the model's activity inside its stage, at most about once a second for counts."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import ClassVar

from llava_video_mcp.tools.progress import DownloadProgress, InferenceProgress, Progress


class WorkPlan:
    """A sampled call's progress as shares of its work: fetching and sampling are quick beside the model, which
    reads hundreds of image tokens a frame (and loading it, the first time, is a stage of its own). Each part
    reports 0..1 of itself; the caller sees 0..100 of the whole."""

    SHARES: ClassVar[Mapping[str, float]] = {"fetch": 10.0, "sample": 10.0, "hear": 20.0, "load": 10.0,
                                             "model": 70.0}  # fmt: skip

    def __init__(self, progress: Progress, *, loading: bool, hearing: bool = False) -> None:
        self._progress = progress
        shares = dict(self.SHARES)
        if not loading:
            shares["load"] = 0.0
        if not hearing:
            shares["hear"] = 0.0
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


def model_progress(progress: Progress, step: float = 0, stages: float = 1, label: str = "") -> InferenceProgress:
    """Relays the model's progress inside its stage (prefixed with `label`, a window's): every change of
    activity, and counts at most once a second."""
    last_report = 0.0
    last_activity = ""

    def report(fraction: float, message: str) -> None:
        nonlocal last_report, last_activity
        activity = message.split(":", 1)[0]
        now = time.monotonic()
        if activity == last_activity and now - last_report < 1.0 and fraction < 1.0:
            return
        last_report, last_activity = now, activity
        progress(step + 0.99 * fraction, stages, f"{label}: {message}" if label else message)

    return report


def download_progress(progress: Progress, step: float, stages: float, number: int) -> DownloadProgress:
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


def model_download_progress(progress: Progress) -> DownloadProgress:
    """Relays the model's first download (about 1.7 GB for the 0.5b model), at most about once a second."""
    last_report = 0.0

    def report(done: int, total: int | None) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report < 1.0 and (total is None or done < total):
            return
        last_report = now
        shown = f"{size(done)} of {size(total)}" if total else size(done)
        progress(0.5 * (min(done / total, 1.0) if total else 0.0), 1, f"Downloading the model: {shown}")

    return report


def size(count: int) -> str:
    if count < 1_000_000:
        return f"{count / 1000:.0f} KB"
    return f"{count / 1e6:.1f} MB"
