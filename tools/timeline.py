"""Timed text, the one shape every sense of a video is read as: a span of the video's timeline and what was said,
shown or noted there (a subtitle cue, speech heard, a window's notes), and a track's cues of a range with where they
came from. In the foundation, so that every stage (backends hearing, the prompt rendering, the tools answering)
speaks of the same record without importing the stage that made it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["TimedText", "TrackText", "clock", "in_range"]


@dataclass(frozen=True)
class TimedText:
    """Text about a span of a video, seconds from its start."""

    start_s: float
    end_s: float
    text: str
    confidence: float | None = None
    """How sure the engine that read it was (0..1), where it says."""
    speaker: str | None = None
    """Who said it, where known."""


@dataclass(frozen=True)
class TrackText:
    """What one track (`tools.tracks`) holds for a range: its cues in time order, the words the prompt gives them
    (`heading`), and what the caller should know when there are none (`note`)."""

    name: str
    heading: str
    cues: Sequence[TimedText] = field(default_factory=list)
    note: str | None = None
    language: str | None = None
    """Of the text read: the one asked for, or the one the engine told."""
    read_s: float = 0.0
    """Seconds an engine spent reading it (bringing the engine up too): the result's `transcribe_s`."""


def clock(seconds: float) -> str:
    """MM:SS, or H:MM:SS past an hour."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def in_range(cues: Sequence[TimedText], start_s: float, end_s: float) -> list[TimedText]:
    """The cues that overlap [start_s, end_s)."""
    return [cue for cue in cues if cue.end_s > start_s and cue.start_s < end_s]
