"""What to take from a video: the sampling plan, the stream's facts, the sampled frames as typed records, and the
choice of frames among real presentation times (the frame nearest the centre of each equal slice of the range)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from PIL import Image

from llava_video_mcp.tools.errors import DecodeError, LimitError
from llava_video_mcp.tools.limits import MAX_FRAMES


@dataclass(frozen=True)
class StreamInfo:
    """What the container says about its video stream, corrected by the packet index."""

    duration_s: float
    fps: float | None
    width: int
    height: int
    codec: str
    frame_count: int
    rotation: int = 0
    """Display rotation in degrees counter-clockwise; width and height are as displayed, after it."""
    mirrored: bool = False
    """The display matrix mirrors the picture (frames are mirrored back before the model sees them)."""
    restarts_s: tuple[float, ...] = ()
    """Where the stream's timestamps start again from a lower value (clips joined with restarting clocks), in
    seconds on the continuous timeline that `duration_s` and frame times follow."""
    stated_duration_s: float | None = None
    """The duration the header states, when the readable frames end well before it (a file cut short)."""


@dataclass(frozen=True)
class SamplingPlan:
    """Which frames to take: `num_frames` centred in equal slices of the range, or fewer by `fps`."""

    num_frames: int = 8
    start_s: float | None = None
    end_s: float | None = None
    fps: float | None = None
    """At most this many frames per second of the range; `num_frames` stays the cap."""
    keyframes_only: bool = False
    """Fast and approximate: the keyframe nearest each target, reported with its true timestamp."""
    min_side: int = 384
    times_s: tuple[float, ...] = ()
    """Where to take the frames (seconds from the first frame, inside the range), instead of equal slices: the
    frames nearest these times (see `_scenes.scene_targets`)."""

    def __post_init__(self) -> None:
        if not 1 <= self.num_frames <= MAX_FRAMES:
            raise LimitError(f"num_frames must be between 1 and {MAX_FRAMES}; got {self.num_frames}.")
        if self.fps is not None and self.fps <= 0:
            raise LimitError(f"fps must be greater than 0; got {self.fps}.")

    def frame_count(self, range_s: float) -> int:
        if self.times_s:
            return len(self.times_s)
        if self.fps is None:
            return self.num_frames
        return max(1, min(self.num_frames, math.floor(range_s * self.fps + 1e-9)))


@dataclass(frozen=True)
class SampledFrame:
    timestamp_s: float
    image: Image.Image


@dataclass(frozen=True)
class SampledVideo:
    info: StreamInfo
    start_s: float
    end_s: float
    frames_requested: int
    frames: list[SampledFrame]
    frames_decoded: int
    note: str | None = None
    """Why fewer frames than requested came back, when they did."""


def uniform_targets(start_s: float, end_s: float, count: int) -> list[float]:
    """Centres of `count` equal slices of [start_s, end_s]: one frame means the middle, never an edge."""
    step = (end_s - start_s) / count
    return [start_s + (i + 0.5) * step for i in range(count)]


def plan_targets(plan: SamplingPlan, range_s: tuple[float, float], count: int) -> list[float]:
    """The plan's times, kept inside the range; or the centres of `count` equal slices of it."""
    if plan.times_s:
        return sorted(min(max(t, range_s[0]), range_s[1]) for t in plan.times_s)
    return uniform_targets(range_s[0], range_s[1], count)


def target_pts(
    first_pts: int, range_s: tuple[float, float], count: int, time_base: Fraction, plan: SamplingPlan
) -> list[int]:
    return [first_pts + round(t / time_base) for t in plan_targets(plan, range_s, count)]


def shortfall_note(
    plan: SamplingPlan, planned: int, distinct: int, damaged: Sequence[float], range_s: float
) -> str | None:
    """Why fewer frames than asked for came back: the fps cap, too few distinct frames, or frames that could not
    be decoded (and where the video is damaged)."""
    if distinct - len(damaged) == plan.num_frames:
        return None
    notes = []
    if planned < plan.num_frames:
        notes.append(f"fps={plan.fps} over {range_s:.3f} s allows {planned} frames")
    if distinct < planned:
        kind = "keyframes" if plan.keyframes_only else "frames"
        notes.append(f"the range holds only {distinct} distinct {kind} near the targets, each returned once")
    if damaged:
        places = ", ".join(f"{t:.2f} s" for t in damaged[:8]) + (", ..." if len(damaged) > 8 else "")
        notes.append(
            f"{len(damaged)} of the chosen frames could not be decoded, so the video is damaged near {places}: "
            "those moments are missing"
        )
    return f"Asked for {plan.num_frames} frames; " + "; ".join(notes) + "."


def checked_range(
    start_s: float | None, end_s: float | None, duration_s: float, stated_s: float | None = None
) -> tuple[float, float]:
    """The range asked for, whole video by default; a LimitError that says what fits when it lies outside, and a
    DecodeError when it lies in the part of a file cut short (`stated_s`, the header's duration) that is missing."""
    start = 0.0 if start_s is None else start_s
    end = duration_s if end_s is None else end_s
    if start < 0:
        raise LimitError(f"start_s must be 0 or more; got {start}.")
    if stated_s is not None and max(start, end) > duration_s + 1e-6:
        asked = f"{start:g}-{end:g} s" if end_s is not None else f"from {start:g} s"
        raise DecodeError(
            f"The file is damaged or was partly downloaded: its header says it lasts {stated_s:.3f} s, but its "
            f"frames stop at {duration_s:.3f} s, so the range asked for ({asked}) is not all there. Choose a "
            f"range below {duration_s:.3f} s, or pass a complete file."
        )
    if start >= duration_s:
        raise LimitError(
            f"start_s={start} is at or past the end of the video, which lasts {duration_s:.3f} s. "
            f"Choose start_s below {duration_s:.3f}."
        )
    if end <= start:
        raise LimitError(f"end_s ({end}) must be greater than start_s ({start}).")
    if end > duration_s + 1e-6:
        raise LimitError(
            f"end_s={end} is past the end of the video, which lasts {duration_s:.3f} s. "
            f"Choose end_s up to {duration_s:.3f}, or leave it out to sample to the end."
        )
    return start, end


def nearest_pts(sorted_pts: Sequence[int], targets: Sequence[int]) -> list[int]:
    """The pts nearest each target (the earlier one on a tie), each distinct frame once, in time order."""
    chosen: list[int] = []
    for target in targets:
        i = bisect.bisect_left(sorted_pts, target)
        candidates = sorted_pts[max(i - 1, 0) : i + 1]
        best = min(candidates, key=lambda p: (abs(p - target), p))
        if not chosen or chosen[-1] != best:
            chosen.append(best)
    return chosen


def stream_notes(info: StreamInfo) -> str | None:
    """What the caller should know about the stream itself: a clock that restarts, a file cut short."""
    notes = []
    if info.restarts_s:
        places = ", ".join(f"{t:.2f} s" for t in info.restarts_s[:5])
        notes.append(
            f"The video's timestamps start again at {places} (clips joined together?): its times are counted on "
            "continuously from the start, so they may differ from what a player shows."
        )
    if info.stated_duration_s is not None:
        notes.append(
            f"The file is damaged or was partly downloaded: its header says it lasts {info.stated_duration_s:.1f} s, "
            f"but its frames stop at {info.duration_s:.1f} s; only that part could be seen."
        )
    return joined(*notes)


def joined(*notes: str | None) -> str | None:
    return " ".join(note for note in notes if note) or None
