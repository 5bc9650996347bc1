"""Scene changes, found by looking: one cheap pass over every frame, as small grey thumbnails made by the decoder's
own scaler (nothing is ever converted at full size), each compared with the one before.

A cut is a frame that differs from the one before far more than the frames before it differed from each other: the
difference must pass an absolute floor and a multiple of the recent differences' median, so steady motion, a fade
(many small steps) and a flashing picture (every step large) give no storm of cuts, while a hard cut between
keyframes is found exact to the frame (its presentation time). Cuts are at least `MIN_SCENE_S` apart, which also
bounds how many a file can have.

The pass runs once per file: its cuts are kept beside the video (with the packet index) and read by every later
call, plan and window. Memory stays flat in the video's length (two thumbnails and a short history); time is one
decode of the file (README, Benchmarks: about its cost per hour), stopped between packets when cancelled.
"""

from __future__ import annotations

import bisect
import collections
import json
import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.files import write_whole
from llava_video_mcp.tools.frames._containers import open_video
from llava_video_mcp.tools.frames._decode import Timeline, decode_packets
from llava_video_mcp.tools.frames._index import stream_fps

log = logging.getLogger(__name__)

THUMB = (64, 36)
"""Width and height of the grey thumbnails compared: enough to tell scenes apart, nothing to decode at full size."""
FLOOR = 12.0
"""Smallest mean absolute difference (0-255) between two thumbnails that can be a cut."""
RATIO = 4.0
"""A cut differs from the frame before at least this many times more than recent frames differed (the median)."""
HISTORY = 24
MIN_SCENE_S = 0.3
_FORMAT = 1


@dataclass(frozen=True)
class Cut:
    """Where a new scene starts (seconds from the first frame, the first frame of the scene) and how different it
    is from the frame before (mean absolute difference of the thumbnails, 0-255): the more, the more distinct."""

    time_s: float
    strength: float


ScanProgress = Callable[[float], None]
"""Called with the seconds of video looked at so far, about once a second of video."""


def detect_scenes(
    path: Path, cancel: CancelToken | None = None, keep: Path | None = None, on_progress: ScanProgress | None = None
) -> list[Cut]:
    """The cuts of the video's first video stream, in time order; from `keep` when they were found for this very
    file, and kept there otherwise."""
    identity = _identity(path)
    if keep is not None and (kept := _read(keep, identity)) is not None:
        return kept
    cuts = _look(path, cancel, on_progress)
    if keep is not None:
        _write(keep, identity, cuts)
    return cuts


def _look(path: Path, cancel: CancelToken | None, on_progress: ScanProgress | None) -> list[Cut]:
    cuts: list[Cut] = []
    reported = 0.0
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = stream_fps(stream) or 25.0
        timeline = Timeline(1.0 / fps)
        time_base = stream.time_base
        previous: np.ndarray | None = None
        scaler = VideoReformatter()  # one scaler for the whole pass: a new one a frame costs more than decoding
        history: collections.deque[float] = collections.deque(maxlen=HISTORY)
        for frame in decode_packets(container, stream, cancel=cancel):
            if frame.pts is None or time_base is None:
                continue
            at = timeline.place(float(frame.pts * time_base))
            if on_progress is not None and at - reported >= 1.0:
                on_progress(at)
                reported = at
            thumb = scaler.reformat(
                frame, width=THUMB[0], height=THUMB[1], format="gray", interpolation=Interpolation.FAST_BILINEAR
            ).to_ndarray()
            if previous is not None:
                difference = float(np.mean(np.abs(thumb.astype(np.int16) - previous.astype(np.int16))))
                if _is_cut(difference, history) and (not cuts or at - cuts[-1].time_s >= MIN_SCENE_S):
                    cuts.append(Cut(round(at, 6), round(difference, 2)))
                history.append(difference)
            previous = thumb
    return cuts


def _is_cut(difference: float, history: Sequence[float]) -> bool:
    """Past the floor, and far past what the frames before did (a few of them seen first: a flashing picture's
    second frame is not a cut)."""
    if difference < FLOOR or len(history) < 2:
        return False
    return difference >= RATIO * statistics.median(history) + 2.0


def _identity(path: Path) -> str:
    stat = path.stat()
    return f"{_FORMAT}:{stat.st_size}:{stat.st_mtime_ns}"


def _read(keep: Path, identity: str) -> list[Cut] | None:
    try:
        data = json.loads(keep.read_text())
        if data.get("identity") != identity:
            return None
        return [Cut(float(t), float(s)) for t, s in data["cuts"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _write(keep: Path, identity: str, cuts: Sequence[Cut]) -> None:
    try:
        keep.parent.mkdir(parents=True, exist_ok=True)
        write_whole(keep, json.dumps({"identity": identity, "cuts": [[c.time_s, c.strength] for c in cuts]}))
    except OSError as exc:  # a time saver only
        log.warning("could not keep the scene cuts at %s (%s)", keep, exc.strerror or exc)


def scene_numbers(cuts: Sequence[Cut], times_s: Sequence[float]) -> list[int]:
    """The scene (1 for the video's first) that each time falls in; a frame shown at a cut opens the new scene."""
    edges = sorted(c.time_s for c in cuts)
    return [bisect.bisect_right(edges, t + 1e-6) + 1 for t in times_s]


def scene_targets(cuts: Sequence[Cut], start_s: float, end_s: float, count: int) -> list[float]:
    """`count` times in [start_s, end_s] so that every scene is seen: one frame a scene at its middle, the extra
    frames to the longest scenes (centres of equal slices of each); with more scenes than frames, one frame in each
    of the `count` most distinct scenes (the range's first scene counts as the most distinct)."""
    edges = [c for c in cuts if start_s < c.time_s < end_s]
    starts = [start_s, *(c.time_s for c in edges)]
    ends = [*(c.time_s for c in edges), end_s]
    strengths = [float("inf"), *(c.strength for c in edges)]
    scenes = list(zip(starts, ends, strengths, strict=True))
    if len(scenes) >= count:
        chosen = sorted(sorted(scenes, key=lambda s: (-s[2], -(s[1] - s[0])))[:count])
        return [(a + b) / 2 for a, b, _ in chosen]
    shares = [1] * len(scenes)
    for _ in range(count - len(scenes)):
        longest = max(range(len(scenes)), key=lambda i: ((scenes[i][1] - scenes[i][0]) / shares[i], -i))
        shares[longest] += 1
    times: list[float] = []
    for (a, b, _), share in zip(scenes, shares, strict=True):
        step = (b - a) / share
        times.extend(a + (i + 0.5) * step for i in range(share))
    return times
