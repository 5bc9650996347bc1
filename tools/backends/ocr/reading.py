"""On-screen text over time, engine apart: which frames need reading, and the lines read merged into timed lines.

A frame is read only when it changed since the last frame read: both as small grayscale thumbnails, each pixel the
mean of the block of the frame it stands for (so codec noise and grain average out), and the frame counts as
changed when a few of those pixels moved by more than a few levels (a word changed in a 14 px table moves some by
tens). It is compared with the last frame READ, not the one before it, so a slow fade is read once it has moved
far enough. A frame not read shows what the last one read showed.

Lines are then merged across frames: a line shown from 12.0 s to 19.5 s is one entry, not one a frame. Lines are
compared by their normalised text (case folded, letters and digits only), fuzzily, so that OCR's jitter (a comma
read one frame and not the next) still merges; an entry survives one frame that misses it. Its text is the reading
seen most often, and its confidence the mean over the frames that saw it: one poor frame among many good ones does
not decide the entry, and the text kept is not that frame's.
"""

from __future__ import annotations

import difflib
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from llava_video_mcp.tools.backends.ocr.base import Frame, OcrEngine, OcrLine, as_rgb, reading_order

THUMB_WIDTH = 160
"""Width of the grayscale thumbnails compared (height after the frame's shape): 8 px blocks of a 720p frame."""
PIXEL_STEP = 12
"""A thumbnail pixel moved by more than this (of 255) has changed; codec noise averaged over a block stays under."""
MIN_CHANGED = 3
"""A frame with at least this many changed thumbnail pixels has changed."""
SIMILARITY = 0.8
"""Two readings whose normalised texts are at least this similar (difflib's ratio) are the same line."""
MISSES_ALLOWED = 1
"""Frames in a row that may miss a line before its entry ends (a reading below the confidence floor once)."""
MAX_VARIANTS = 32
"""Distinct readings of one line kept to choose its text from; a line read differently every frame keeps its first."""


def thumbnail(frame: Frame) -> np.ndarray:
    """The frame as a THUMB_WIDTH-wide grayscale thumbnail of block means (int16, for differences)."""
    image = frame if isinstance(frame, Image.Image) else Image.fromarray(as_rgb(frame))
    gray = image.convert("L")
    height = max(1, round(THUMB_WIDTH * gray.height / max(gray.width, 1)))
    return np.asarray(gray.resize((THUMB_WIDTH, height), Image.Resampling.BOX), dtype=np.int16)


def _changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(np.abs(a - b) > PIXEL_STEP))


class ChangeGate:
    """Says whether a frame changed since the last frame it let through (the last frame read)."""

    def __init__(self) -> None:
        self._last: np.ndarray | None = None

    def changed(self, frame: Frame) -> bool:
        """True for the first frame and for any that differs from the last one let through, which it then
        becomes."""
        thumb = thumbnail(frame)
        last = self._last
        if last is not None and last.shape == thumb.shape and _changed_pixels(thumb, last) < MIN_CHANGED:
            return False
        self._last = thumb
        return True


@dataclass(frozen=True)
class FrameLines:
    """The lines shown in the frame at `time_s`; `read` is False where the frame had not changed and the lines are
    those of the last frame read."""

    time_s: float
    lines: tuple[OcrLine, ...]
    read: bool = True


@dataclass(frozen=True)
class OnScreenLine:
    """One line of on-screen text and when it was seen: from the first frame that showed it to the last."""

    start_s: float
    end_s: float
    text: str
    confidence: float
    """The mean of its readings' confidences (0-1)."""


def rows(lines: Iterable[OcrLine]) -> list[OcrLine]:
    """The lines of one frame joined row by row: boxes whose middles lie within the height of the row's first box
    (`base.reading_order`) become one line, left to right, with " | " where a gap wider than twice the row's height
    parts them (a table's cells, a slide's two columns) and a space elsewhere (a line the engine read in pieces). Its
    confidence is the least of its pieces': a row is as sure as its least sure cell."""
    joined: list[OcrLine] = []
    row: list[OcrLine] = []

    def close() -> None:
        if not row:
            return
        cells = sorted(row, key=lambda cell: cell.box[0])
        height = max(1, max(cell.box[3] for cell in cells) - min(cell.box[1] for cell in cells))
        text = cells[0].text
        for before, cell in itertools.pairwise(cells):
            text += (" | " if cell.box[0] - before.box[2] > 2 * height else " ") + cell.text
        box = (min(c.box[0] for c in cells), min(c.box[1] for c in cells), max(c.box[2] for c in cells),
               max(c.box[3] for c in cells))  # fmt: skip
        joined.append(OcrLine(text, min(cell.confidence for cell in cells), box))
        row.clear()

    for line in reading_order(list(lines)):
        if row and not row[0].box[1] <= (line.box[1] + line.box[3]) / 2 <= row[0].box[3]:
            close()
        row.append(line)
    close()
    return joined


def read_frames(
    engine: OcrEngine, frames: Iterable[tuple[float, Frame]], gate: ChangeGate | None = None
) -> Iterator[FrameLines]:
    """Each (time, frame) read by the engine where it changed since the last frame read (every frame when `gate`
    is None), else given the last reading again."""
    last: tuple[OcrLine, ...] = ()
    for time_s, frame in frames:
        if gate is None or gate.changed(frame):
            last = tuple(engine.read(frame))
            yield FrameLines(time_s, last, read=True)
        else:
            yield FrameLines(time_s, last, read=False)


def normalised(text: str) -> str:
    """Text as lines are compared: case folded, letters and digits only, single spaces between words."""
    kept = "".join(ch if ch.isalnum() else " " for ch in text.casefold())
    return " ".join(kept.split())


def similar(a: str, b: str) -> float:
    """How alike two normalised texts are, 0 to 1."""
    if a == b:
        return 1.0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < SIMILARITY or matcher.quick_ratio() < SIMILARITY:
        return 0.0
    return matcher.ratio()


@dataclass
class _Entry:
    key: str
    start_s: float
    end_s: float
    place: tuple[int, int]
    """Top and left where it was first seen: reading order among lines that start together."""
    variants: Counter[str] = field(default_factory=Counter)
    confidence_sum: float = 0.0
    sightings: int = 0
    misses: int = 0

    def add(self, time_s: float, line: OcrLine, key: str) -> None:
        self.key = key
        self.end_s = time_s
        if line.text in self.variants or len(self.variants) < MAX_VARIANTS:
            self.variants[line.text] += 1
        self.confidence_sum += line.confidence
        self.sightings += 1
        self.misses = 0

    def closed(self) -> OnScreenLine:
        text = max(self.variants.items(), key=lambda item: item[1])[0]
        return OnScreenLine(self.start_s, self.end_s, text, round(self.confidence_sum / self.sightings, 3))


def merge_lines(frames: Iterable[FrameLines]) -> list[OnScreenLine]:
    """The lines of frames (in any order; merged in time order) as timed lines, ordered by when they appear and
    then top to bottom, left to right."""
    finished: list[_Entry] = []
    showing: list[_Entry] = []
    for frame in sorted(frames, key=lambda frame: frame.time_s):
        seen: set[int] = set()
        for line in frame.lines:
            key = normalised(line.text)
            if not key:
                continue  # punctuation or a border read as a glyph says nothing
            best, best_score = None, SIMILARITY
            for index, entry in enumerate(showing):
                if index not in seen and (score := similar(key, entry.key)) >= best_score:
                    best, best_score = index, score
                    if score == 1.0:
                        break
            if best is None:
                showing.append(_Entry(key, frame.time_s, frame.time_s, (line.box[1], line.box[0])))
                best = len(showing) - 1
            showing[best].add(frame.time_s, line, key)
            seen.add(best)
        still: list[_Entry] = []
        for index, entry in enumerate(showing):
            if index not in seen:
                entry.misses += 1
            (still if entry.misses <= MISSES_ALLOWED else finished).append(entry)
        showing = still
    finished.extend(showing)
    finished.sort(key=lambda entry: (entry.start_s, entry.place))
    return [entry.closed() for entry in finished]
