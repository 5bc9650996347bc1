"""Subtitles as a compact, timestamped transcript for the model: WebVTT and SRT read in linear time, cut to the
sampled range and to a budget (one budget shared by every track)."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from llava_video_mcp.tools.timeline import TimedText, TrackText

MAX_TRANSCRIPT_CHARS = 2000
"""About 500 tokens: enough for the gist of a few minutes of speech, small beside the frames' image tokens."""
MAX_SUBTITLE_BYTES = 4 * 2**20
"""Most read of a subtitle file: hours of speech; a larger file is read only this far."""

_TIMING = re.compile(
    r"\s*(?:(\d{1,9}):)?(\d{1,2}):(\d{2})[.,](\d{1,3})\s*-->\s*(?:(\d{1,9}):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
)
_TAG = re.compile(r"<[^<>]*>")
"""A tag ends at the first `>` and cannot contain `<`: every character is looked at once or twice, so a cue of a
million `<` is read in linear time (`<[^>]*>` would scan to the end of the line from each of them)."""
MAX_TIMING_LINE = 256
"""A cue timing line with settings is well under this; longer lines are text, never searched for a timing."""
MAX_CUE_CHARS = 2000
"""The most kept of one cue's text: a caption is a sentence or two."""


def _seconds(hours: str | None, minutes: str, seconds: str, fraction: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction.ljust(3, "0")) / 1000


def parse_subtitles(text: str) -> list[TimedText]:
    """Cues of a WebVTT or SRT file, tags and entities removed, rolling duplicates of auto-captions merged; in time
    linear in the text's length, whatever it holds (see `_TAG`, `MAX_TIMING_LINE`)."""
    cues: list[TimedText] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        match = _TIMING.match(line) if "-->" in line and len(line) <= MAX_TIMING_LINE else None
        if not match:
            continue
        body: list[str] = []
        size = 0
        while i < len(lines) and lines[i].strip():
            if size < MAX_CUE_CHARS:
                body.append(lines[i].strip()[: MAX_CUE_CHARS - size])
                size += len(body[-1]) + 1
            i += 1
        words = html.unescape(_TAG.sub("", " ".join(body))).strip()
        if not words:
            continue
        start = _seconds(*match.group(1, 2, 3, 4))
        end = _seconds(*match.group(5, 6, 7, 8))
        if cues and words.startswith(cues[-1].text) and start <= cues[-1].end_s + 0.5:
            cues[-1] = TimedText(cues[-1].start_s, end, words)
        else:
            cues.append(TimedText(start, end, words))
    return cues


def bounded(cues: Sequence[TimedText], max_chars: int = MAX_TRANSCRIPT_CHARS) -> list[TimedText]:
    """The cues to show when they would not all fit: evenly spread over the range, so no part goes missing."""
    if sum(len(c.text) + 12 for c in cues) <= max_chars:
        return list(cues)
    average = sum(len(c.text) + 12 for c in cues) / len(cues)
    keep = max(1, int(max_chars / average))
    step = len(cues) / keep
    return [cues[int(i * step)] for i in range(keep)]


def bounded_tracks(tracks: Sequence[TrackText], max_chars: int = MAX_TRANSCRIPT_CHARS) -> list[TrackText]:
    """The tracks within one text budget, shared evenly by those with cues (each `bounded` to its share)."""
    speaking = sum(1 for track in tracks if track.cues)
    share = max_chars // max(speaking, 1)
    return [replace(track, cues=bounded(track.cues, share)) if track.cues else track for track in tracks]


def render(cues: Sequence[TimedText]) -> str:
    return "\n".join(f"[{cue.start_s:.1f} s] {cue.text}" for cue in cues)


def read_cues(path: Path | None) -> list[TimedText]:
    """The cues of a subtitle file (a site's, or a sidecar), read up to MAX_SUBTITLE_BYTES; none when there is no
    file or it cannot be read."""
    if path is None:
        return []
    try:
        with path.open("rb") as subtitles:
            text = subtitles.read(MAX_SUBTITLE_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return []
    return parse_subtitles(text)
