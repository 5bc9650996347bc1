"""Scene changes, found by looking: one cheap pass over every frame, as small colour thumbnails made by the
decoder's own scaler (nothing is ever converted at full size), each compared with the one before.

The thumbnails are area averages (each of their pixels the mean of the block of the frame it stands for), not
samples: sampled thumbnails alias fine texture and film grain into large differences between every two frames,
which hide real cuts, and more so the larger the frame. Averaged, the same content gives about the same
differences at 480p and at 4K, and texture, grain, panning and shake leave them small.

Two things are measured between a frame and the one before: how much the picture changed (the thumbnails' mean
difference, colour included), and how much its structure changed (one minus the correlation of the two luma
thumbnails, so brightness and contrast set aside: 0 for the same picture, about 1 for two unrelated ones). A cut is
a frame whose structure changed past `SAME_PICTURE` and which differs from the frame before far more than the frames
around it do, on either measure: past an absolute floor, a multiple of the recent differences' median, and a
multiple of the steps just before and after it (a fade, or a picture flashing every frame, is many similar steps).
The picture's difference finds most cuts; the structure's finds a cut between two shots of the same colours and
brightness (a dark wide shot and a dark close-up of the same place), where the picture's difference is small. A
picture redrawn with the same structure is not a cut, however different its pixels: an encoder's keyframe restoring
the detail that the frames before it had lost (with a fixed GOP, a jump at every keyframe), a change of exposure.
A few frames are looked at past each candidate: when one of them looks like the frame before the candidate again,
the candidate was a flash, not a cut. A cut is found exact to the frame (its presentation time); cuts are at least
`MIN_SCENE_S` apart, which also bounds how many a file has.

The pass runs once per file: its cuts are kept beside the video (with the packet index) and read by every later
call, plan and window. Memory stays flat in the video's length (a few thumbnails and a short history); time is one
decode of the file (README, Benchmarks: its cost per hour, beside PySceneDetect's), stopped between packets when
cancelled.
"""

from __future__ import annotations

import bisect
import collections
import json
import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.files import write_whole
from llava_video_mcp.tools.frames._containers import open_video
from llava_video_mcp.tools.frames._decode import Timeline, decode_packets
from llava_video_mcp.tools.frames._index import stream_fps
from llava_video_mcp.tools.progress import ScanProgress

log = logging.getLogger(__name__)

THUMB = (64, 36)
"""Width and height of the colour thumbnails compared: enough to tell scenes apart, nothing to decode at full size."""
FLOOR = 12.0
"""Smallest difference between two thumbnails that can be a cut: mean absolute difference (0-255) of the luma, plus
half that of each colour plane."""
RATIO = 4.0
"""A cut differs from the frame before at least this many times more than recent frames differed (the median)."""
NEIGHBOUR_RATIO = 2.0
"""... and at least this many times more than the step just before it and the step just after it."""
STRUCTURE_FLOOR = 0.5
"""Smallest change of structure (see `_structure`) that can be a cut by itself: the two pictures less than half
correlated."""
SAME_PICTURE = 0.35
"""Below this change of structure (the pictures more than 65% correlated) a frame is the same picture as the one
before, whatever the difference of its pixels: a keyframe's jump in quality changes it by a few hundredths (up to
about a quarter at a very high CRF), a real cut by about 0.7 and more."""
CONTRAST_FLOOR = 4.0
"""Luma spread (standard deviation, 0-255) below which a thumbnail counts as flat: its noise is not structure, so
two near-black frames of a fade do not differ in structure."""
HISTORY = 24
MIN_SCENE_S = 0.3
"""Scenes shorter than this are not scenes: a flash (the picture back within this time) is not a cut."""
PROGRESS_EVERY_S = 1.0
"""Wall-clock seconds between two progress reports of the pass: what a person reads, whatever the video's length."""
_FORMAT = 3


@dataclass(frozen=True)
class Cut:
    """Where a new scene starts (seconds from the first frame, the first frame of the scene) and how different it
    is from the frame before (the thumbnails' difference, see FLOOR): the more, the more distinct."""

    time_s: float
    strength: float


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
    reported = -math.inf  # the first frame is reported at once: the pass has begun
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = stream_fps(stream) or 25.0
        timeline = Timeline(1.0 / fps)
        time_base = stream.time_base
        detector = _Detector(fps)
        scaler = VideoReformatter()  # one scaler for the whole pass: a new one a frame costs more than decoding
        for frame in decode_packets(container, stream, cancel=cancel):
            if frame.pts is None or time_base is None:
                continue
            at = timeline.place(float(frame.pts * time_base))
            if on_progress is not None and time.monotonic() - reported >= PROGRESS_EVERY_S:
                on_progress(at)
                reported = time.monotonic()
            thumb = scaler.reformat(
                frame, width=THUMB[0], height=THUMB[1], format="yuv444p", interpolation=Interpolation.AREA
            ).to_ndarray()
            detector.push(at, thumb.astype(np.int16))
    return detector.finish()


@dataclass(frozen=True)
class _Seen:
    time_s: float
    thumb: np.ndarray
    pattern: np.ndarray
    """The luma thumbnail less its mean, over its spread (at least CONTRAST_FLOOR): its structure."""
    step: float | None
    """Its difference from the frame before; None for the first frame."""
    change: float | None
    """Its change of structure from the frame before; None for the first frame."""


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    planes = np.abs(a - b).mean(axis=(1, 2))
    return float(planes[0] + 0.5 * (planes[1] + planes[2]))


def _pattern(thumb: np.ndarray) -> np.ndarray:
    luma = thumb[0].astype(np.float32)
    centred = luma - luma.mean()
    pattern: np.ndarray = centred / max(float(centred.std()), CONTRAST_FLOOR)
    return pattern


def _structure(a: np.ndarray, b: np.ndarray) -> float:
    """Half the mean squared difference of two patterns: one minus their correlation, less when either is flat."""
    return float(np.square(a - b).mean() / 2)


def _usual(history: Sequence[float], margin: float) -> float:
    """A multiple of the recent steps' median, and a margin: what a step must reach to stand out from them."""
    return RATIO * statistics.median(history) + margin if len(history) >= 2 else math.inf


def _stands_out(step: float, floor: float, usual: float, around: Sequence[float | None]) -> bool:
    near = max((s for s in around if s is not None), default=0.0)
    return step >= max(floor, usual, NEIGHBOUR_RATIO * near)


class _Detector:
    """Judges each frame once the few frames after it are seen: the frame before, the candidate, the look ahead."""

    def __init__(self, fps: float) -> None:
        self._ahead = max(2, math.ceil(MIN_SCENE_S * fps))
        self._frames: collections.deque[_Seen] = collections.deque(maxlen=self._ahead + 2)
        self._steps: collections.deque[float] = collections.deque(maxlen=HISTORY)
        self._changes: collections.deque[float] = collections.deque(maxlen=HISTORY)
        self._quiet_until = -math.inf
        self.cuts: list[Cut] = []

    def push(self, time_s: float, thumb: np.ndarray) -> None:
        pattern = _pattern(thumb)
        if self._frames:
            last = self._frames[-1]
            self._frames.append(
                _Seen(time_s, thumb, pattern, _difference(last.thumb, thumb), _structure(last.pattern, pattern))
            )
        else:
            self._frames.append(_Seen(time_s, thumb, pattern, None, None))
        if len(self._frames) == self._frames.maxlen:
            self._judge()

    def finish(self) -> list[Cut]:
        """The cuts, once the last frames are judged with what follows them."""
        while len(self._frames) > 1:
            if len(self._frames) < (self._frames.maxlen or 0):
                self._judge()
            self._frames.popleft()
        return self.cuts

    def _judge(self) -> None:
        before, candidate, *after = self._frames
        step, change = candidate.step, candidate.change
        assert step is not None
        assert change is not None
        around = [before, *after[:1]]
        usual = _usual(self._steps, 2.0)
        stands_out = _stands_out(step, FLOOR, usual, [s.step for s in around]) or _stands_out(
            change, STRUCTURE_FLOOR, _usual(self._changes, 0.05), [s.change for s in around]
        )
        spaced = not self.cuts or candidate.time_s - self.cuts[-1].time_s >= MIN_SCENE_S
        if stands_out and change >= SAME_PICTURE and spaced and candidate.time_s > self._quiet_until:
            back = next((s for s in after if self._alike(before, s, usual)), None)
            if back is not None:
                self._quiet_until = back.time_s  # a flash: the picture came back; nothing in it is a cut
            else:
                self.cuts.append(Cut(round(candidate.time_s, 6), round(step, 2)))
        self._steps.append(step)
        self._changes.append(change)

    @staticmethod
    def _alike(a: _Seen, b: _Seen, usual: float) -> bool:
        """Whether `b` shows the picture of `a` again: close in pixels and in structure."""
        return _difference(a.thumb, b.thumb) < max(FLOOR, usual) and _structure(a.pattern, b.pattern) < STRUCTURE_FLOOR


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
