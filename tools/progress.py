"""Every shape of progress callback the stages report through, and the one that ignores it: a call's stages
(`Progress`), a model's activity (`InferenceProgress`), bytes downloaded (`DownloadProgress`), seconds of video
scanned (`ScanProgress`), frames encoded (`EncodeProgress`), speech blocks heard (`BlockProgress`) and a wait's
place in a queue (`WaitReport`). In the foundation, so that each stage names the same shape."""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "BlockProgress",
    "DownloadProgress",
    "EncodeProgress",
    "InferenceProgress",
    "Progress",
    "ScanProgress",
    "WaitReport",
    "no_inference_progress",
    "no_progress",
]

Progress = Callable[[float, float, str], None]
"""Called with (progress, total, message) as a call moves through its stages."""
InferenceProgress = Callable[[float, str], None]
"""Called with (fraction of the model stage done, what it is doing): waiting, encoding frames, reading the prompt,
generating tokens."""
DownloadProgress = Callable[[int, int | None], None]
"""Called with (bytes downloaded, total bytes if known)."""
ScanProgress = Callable[[float], None]
"""Called with the seconds of video looked at so far, about once a second of wall time."""
EncodeProgress = Callable[[int, int], None]
"""Called with (frames encoded, frames in all) while the frames go through the vision tower."""
BlockProgress = Callable[[int], None]
"""Called with the number of speech blocks heard so far in a request."""
WaitReport = Callable[[int], None]
"""Called with how many calls are ahead of this one in a queue."""


def no_progress(progress: float, total: float, message: str) -> None:
    """A `Progress` that reports nowhere."""
    return None


def no_inference_progress(fraction: float, message: str) -> None:
    """An `InferenceProgress` that reports nowhere."""
    return None
