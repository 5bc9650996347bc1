"""Watching a long video in full: window by window, then answering from a timestamped outline.

A call sees at most 32 frames; on a two-hour talk that is one frame every few minutes. With `coverage="full"` the
range is cut into consecutive windows with no gaps (at most `window_s` each), and each window is shown to the model
with its frames and its subtitles and described in detail, with times: the map step. It does not depend on the
question, so its notes are kept on disk beside the video, and every later question about the same video reads
them instead of watching again (a server restart keeps them). The question is then answered from the notes alone:
the reduce step, in stages when the notes are too long for one prompt.

Window edges follow the scene changes (found by looking at the frames, or else the keyframes that break the
encoder's regular rhythm: encoders put an extra keyframe at a scene change), so a window ends where the picture
changes instead of in the middle of a shot; where a window could end at several, it ends at the most distinct.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from llava_video_mcp.tools.files import write_whole
from llava_video_mcp.tools.frames import Cut
from llava_video_mcp.tools.prompt import span_label
from llava_video_mcp.tools.timeline import TimedText

log = logging.getLogger(__name__)

NOTES_TOKENS = 192
"""Length of each window's notes: a detailed paragraph."""
REDUCE_CHARS = 12_000
"""Most notes read in one reduce prompt (about 3,500 tokens): beyond it, groups of notes are condensed first."""
_NOTES_FORMAT = 1
"""Part of every notes key: a change of prompt or budget makes earlier notes stale."""


@dataclass(frozen=True)
class Window:
    number: int
    """From 1."""
    start_s: float
    end_s: float


def plan_windows(
    start_s: float, end_s: float, window_s: float, keyframes_s: Sequence[float], cuts: Sequence[Cut] | None = None
) -> list[Window]:
    """Consecutive windows tiling [start_s, end_s] with no gaps or overlaps, each at most `window_s` long.

    A window ends at the strongest scene change in its second half (the latest of equals), when there is one; else
    `window_s` after it starts. The scene changes are `cuts` (found by looking at the frames), or without them the
    scene-change keyframes (ones that come sooner than the stream's usual keyframe interval: none on a stream with
    a fixed interval), all equally strong.
    """
    changes = sorted(cuts, key=lambda c: c.time_s) if cuts is not None else _scene_cuts(keyframes_s)
    windows: list[Window] = []
    start = start_s
    while end_s - start > 1e-6:
        limit = min(start + window_s, end_s)
        if limit < end_s:
            inside = [c for c in changes if start + window_s / 2 <= c.time_s < limit]
            end = max(inside, key=lambda c: (c.strength, c.time_s)).time_s if inside else limit
        else:
            end = end_s
        windows.append(Window(len(windows) + 1, start, end))
        start = end
    return windows


def _scene_cuts(keyframes_s: Sequence[float]) -> list[Cut]:
    """Keyframes that come sooner than the usual interval: an encoder's scene-change keyframes."""
    if len(keyframes_s) < 3:
        return []
    intervals = [b - a for a, b in itertools.pairwise(keyframes_s)]
    usual = statistics.median(intervals)
    return [Cut(t, 1.0) for t, gap in zip(keyframes_s[1:], intervals, strict=True) if gap < 0.9 * usual]


@dataclass(frozen=True)
class WindowNotes:
    """What the map step made of one window."""

    start_s: float
    end_s: float
    frames: list[float]
    cues: list[TimedText]
    notes: str
    asked_frames: int = 0
    """The frames the watch that wrote them asked for (a short window may give fewer): notes are reused by a watch
    asking for as many or fewer."""


class NotesStore:
    """Notes of windows on disk, one file each, written whole or not at all (a cancelled window leaves nothing)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256(json.dumps([_NOTES_FORMAT, *parts], default=str).encode()).hexdigest()[:40]

    def get(self, key: str) -> WindowNotes | None:
        if self.folder is None:
            return None
        try:
            data = json.loads((self.folder / f"{key}.json").read_text())
            return WindowNotes(
                start_s=float(data["start_s"]),
                end_s=float(data["end_s"]),
                frames=[float(t) for t in data["frames"]],
                cues=[TimedText(float(c["start_s"]), float(c["end_s"]), str(c["text"])) for c in data["cues"]],
                notes=str(data["notes"]),
                asked_frames=int(data.get("asked_frames", 0)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, notes: WindowNotes) -> None:
        """Keep the notes; a folder that cannot be written (a damaged cache) only costs the reuse."""
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_whole(self.folder / f"{key}.json", json.dumps(asdict(notes)))
        except OSError as exc:
            log.warning("could not keep a window's notes at %s (%s)", self.folder, exc.strerror or exc)


def shown_length(notes: Sequence[TimedText]) -> int:
    """Characters the notes take in a prompt, each with its time span."""
    return sum(len(span_label(n.start_s, n.end_s)) + 1 + len(n.text) for n in notes)


def groups_within(notes: Sequence[TimedText], budget: int) -> list[list[TimedText]]:
    """Consecutive notes grouped so that each group stays within `budget` characters (a longer one alone)."""
    groups: list[list[TimedText]] = []
    size = 0
    for note in notes:
        length = shown_length([note])
        if groups and size + length <= budget:
            groups[-1].append(note)
            size += length
        else:
            groups.append([note])
            size = length
    return groups
