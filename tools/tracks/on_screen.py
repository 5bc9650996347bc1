"""The on-screen text track: what is written in a range of a video (a slide's title, an error line in a terminal, a
name in a lower third, a value in a table), read by an OCR engine (`backends.ocr`), as timed lines.

Frames are decoded at the video's own size (at most READ_SIDE on the short side: the model's 384 px view cannot
read a slide, and a 1080 px one reads all of it) every READ_EVERY_S on the video's timeline, and only a frame whose
picture changed since the last frame read is read (`backends.ocr.reading.ChangeGate`); where the picture keeps
changing (a moving camera), a frame is read at most every MIN_GAP_S unless it is a new picture (a cut). The cells of
one row of text are one line (`reading.rows`). Lines are merged across frames into timed entries, a line shown from
12.0 s to 19.5 s being one entry (`reading.merge_lines`), each with its readings' mean confidence: digits an engine
misread cost an agent more than a word it missed, so the agent is told how sure each line is.

Lines are kept beside the cached video in 30 s blocks, per engine (`tracks.store`, written whole or not at all), so
a second call, range, tool or window reads them from disk; a range reads only the blocks it needs, and a line shown
across a block's edge is one entry again when read back. What the engine reads is text from strangers: cleaned as it
is read (`backends.ocr.base.clean_line`) and neutralised in the prompt as subtitles are.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from llava_video_mcp.tools.backends.ocr import FrameLines, OcrEngine, OcrLine, merge_lines
from llava_video_mcp.tools.backends.ocr.reading import MIN_CHANGED, PIXEL_STEP, normalised, rows, thumbnail
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError, ModelError
from llava_video_mcp.tools.frames import SampledFrame, probe, sample_frames
from llava_video_mcp.tools.limits import MAX_SCREEN_FRAMES
from llava_video_mcp.tools.media import LocalVideo, Needs
from llava_video_mcp.tools.progress import Progress, no_progress
from llava_video_mcp.tools.timeline import TimedText, TrackText, clock, in_range
from llava_video_mcp.tools.tracks.base import Basis, Said, Track, TranscriptOptions
from llava_video_mcp.tools.tracks.store import BlockStore
from llava_video_mcp.tools.turns_by_name import TurnsByName

log = logging.getLogger(__name__)

BLOCK_S = 30.0
READ_EVERY_S = 1.0
"""Frames looked at: one a second (a slide or a caption is shown for seconds)."""
READ_SIDE = 1080
"""The shorter side frames are read at, at most: 14 px text of a 1080p screen recording stays 14 px."""
MIN_GAP_S = 3.0
"""Where the picture keeps changing, a frame is read at most this often, unless it is a new picture."""
CUT_LEVELS = 20.0
"""A frame whose coarse layout moved by this many levels (of 255) on average is a new picture: read at once."""
MAX_FRAMES_A_CALL = MAX_SCREEN_FRAMES
"""Frames a call reads on screen in one video, at most (--ocr-max-frames), or one 30 s part whatever it holds (so
every call reads on): about a second of CPU each, so a long moving picture (a frame read every MIN_GAP_S) cannot
make a first call last minutes. A longer range is read in 30 s parts spread over it, a part only when its frames
fit; a later call reads on from what was kept."""
_FORMAT = 1
"""Part of every block's key: a change in how frames are read makes earlier blocks stale."""


class OnScreenTrack(Track):
    """Text read on screen by an OCR engine (`engine`: None when none is installed or `--ocr-engine none`)."""

    name: ClassVar[str] = "on_screen_text"
    heading: ClassVar[str] = "Text shown on screen"
    basis: ClassVar[Basis] = "on_screen"
    said: ClassVar[Said | None] = None
    field: ClassVar[str | None] = "on_screen_text"
    timing: ClassVar[str] = "read_s"

    def __init__(
        self, engine: OcrEngine | None, missing: str | None = None, max_frames: int = MAX_FRAMES_A_CALL
    ) -> None:
        self.engine = engine
        self.missing = missing
        """Why there is no engine (a sentence for the note), when that is worth saying."""
        self.max_frames = max_frames
        """Frames a call reads in one video, at most (`MAX_FRAMES_A_CALL`)."""
        self.turns = TurnsByName()
        """Calls reading the same video's unread blocks take turns: the second reads what the first kept. Calls on
        other videos read at the same time (the engine serialises its own frames where it must)."""

    def needs(self, options: TranscriptOptions) -> Needs:
        return Needs(readable_picture=self.busy(options))

    def busy(self, options: TranscriptOptions) -> bool:
        return self.engine is not None and options.include and options.on_screen_text

    def read(
        self,
        video: LocalVideo,
        start_s: float,
        end_s: float,
        options: TranscriptOptions,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> TrackText:
        if not (options.include and options.on_screen_text):
            return self.nothing()
        if self.engine is None:
            return self.nothing(self.missing)
        started = time.perf_counter()
        try:
            duration_s = probe(video.path).duration_s
            reading = _Reading(self.engine, video, duration_s, progress, cancel)
            lines, unread = reading.lines(start_s, min(end_s, duration_s), self.turns, self.max_frames)
        except (ModelError, DecodeError) as exc:
            log.warning("on-screen text was not read: %s", exc)
            return self.nothing(f"No on-screen text was read: {exc}")
        note = None
        if unread:
            parts = math.ceil(min(end_s, duration_s) / BLOCK_S) - max(int(start_s // BLOCK_S), 0)
            note = (
                f"On-screen text was read in {parts - unread} of the range's {parts} parts of {BLOCK_S:.0f} s, "
                f"spread over it: a call reads up to {self.max_frames} frames of a video, or one part "
                "(--ocr-max-frames). What was read is kept: ask again to read on, or narrow start_s/end_s."
            )
        return TrackText(self.name, self.heading, lines, note, None, time.perf_counter() - started)


class _Reading:
    """One call's reading of one video: the blocks of a range, from the store or from the engine."""

    def __init__(
        self,
        engine: OcrEngine,
        video: LocalVideo,
        duration_s: float,
        progress: Progress,
        cancel: CancelToken | None,
    ) -> None:
        self.engine = engine
        self.video = video
        self.duration_s = duration_s
        self.progress = progress
        self.cancel = cancel
        self.store = BlockStore.beside(video, OnScreenTrack.name, _bounds)
        stat = video.path.stat()
        self.key = BlockStore.key(_FORMAT, engine.name, engine.min_confidence, video.path.name, stat.st_size,
                                  stat.st_mtime_ns)  # fmt: skip

    def lines(self, start_s: float, end_s: float, turns: TurnsByName, max_frames: int) -> tuple[list[TimedText], int]:
        """The lines of the range, and how many of its blocks were left unread (`max_frames` read, at most)."""
        if end_s <= start_s:
            return [], 0
        blocks = range(max(int(start_s // BLOCK_S), 0), math.ceil(end_s / BLOCK_S))
        kept: dict[int, list[TimedText]] = {}
        for number in blocks:
            if (block := self.store.get(self.key, number, self.duration_s)) is not None:
                kept[number] = block
        unread = 0
        if len(kept) < len(blocks):
            with turns.taken(f"{self.video.path}:{self.key}", self.cancel, lambda: self._waiting(len(blocks))):
                left = max_frames
                for number in spread([n for n in blocks if n not in kept]):
                    block = self.store.get(self.key, number, self.duration_s)  # kept by the call before, maybe
                    if block is None:
                        read = None
                        if left > 0:
                            self.progress(len(kept), len(blocks), f"Reading on-screen text {clock(number * BLOCK_S)}")
                            read = self._read(number, left, whole=left == max_frames)  # a call's first is read whole
                        if read is None:  # the call's frames are spent: this block is left whole for a later call
                            unread += 1
                            left = 0
                            continue
                        block, used = read
                        left -= used
                        self.store.put(self.key, number, block)
                    kept[number] = block
        self.progress(len(blocks), len(blocks), "Read on-screen text")
        lines = [line for number in blocks for line in kept.get(number, ())]
        return in_range(_joined(lines), start_s, end_s), unread

    def _waiting(self, total: int) -> None:
        self.progress(0, max(total, 1), "Waiting for another call that is reading this video's screen")

    def _read(self, number: int, left: int, whole: bool) -> tuple[list[TimedText], int] | None:
        """Block `number`: a frame every READ_EVERY_S (each standing for the second around it), read where it
        changed, lines merged across its frames; with the frames read. Which frames are read is known from their
        thumbnails before any is read: None, and nothing read, when they are more than `left` (unless `whole`)."""
        first = number * BLOCK_S
        last = min(first + BLOCK_S, self.duration_s)
        count = max(1, math.ceil((last - first) / READ_EVERY_S))
        sampled = sample_frames(self.video.path, count, start_s=first, end_s=last, min_side=READ_SIDE)
        chosen: list[tuple[SampledFrame, bool]] = []
        read_at: tuple[float, np.ndarray] | None = None
        before: np.ndarray | None = None
        for frame in sampled.frames:
            thumb = thumbnail(frame.image)
            read = _worth_reading(frame.timestamp_s, thumb, read_at, before)
            if read:
                read_at = (frame.timestamp_s, thumb)
            chosen.append((frame, read))
            before = thumb
        used = sum(read for _, read in chosen)
        if used > left and not whole:
            return None
        frames: list[FrameLines] = []
        shown: tuple[OcrLine, ...] = ()
        for frame, read in chosen:
            if self.cancel is not None:
                self.cancel.check()
            if read:
                shown = tuple(rows(self.engine.read(frame.image)))
            frames.append(FrameLines(frame.timestamp_s, shown, read=read))
        half = (last - first) / count / 2
        lines = [
            TimedText(max(line.start_s - half, first), min(line.end_s + half, last), line.text, line.confidence)
            for line in merge_lines(frames)
        ]
        return lines, used


def spread(numbers: Sequence[int]) -> list[int]:
    """`numbers` in an order that covers their span evenly wherever it stops: the first, the last, then the middle
    of each gap, the widest gaps first."""
    if len(numbers) <= 2:
        return list(numbers)
    order = [0, len(numbers) - 1]
    gaps = deque([(0, len(numbers) - 1)])
    while gaps:
        low, high = gaps.popleft()
        if high - low >= 2:
            middle = (low + high) // 2
            order.append(middle)
            gaps.extend([(low, middle), (middle, high)])
    return [numbers[i] for i in order]


def _worth_reading(
    time_s: float, thumb: np.ndarray, read_at: tuple[float, np.ndarray] | None, before: np.ndarray | None
) -> bool:
    """Whether a frame is read: the first one; and one whose picture changed since the last frame read (a word in
    a table is enough), unless the picture is moving (it changed since the frame before too) and the last read was
    less than MIN_GAP_S ago, and this is no new picture (a cut)."""
    if read_at is None or read_at[1].shape != thumb.shape:
        return True
    if _moved(thumb, read_at[1]) < MIN_CHANGED:
        return False
    still_before = before is None or before.shape != thumb.shape or _moved(thumb, before) < MIN_CHANGED
    return still_before or time_s - read_at[0] >= MIN_GAP_S or _cut(thumb, read_at[1])


def _moved(a: np.ndarray, b: np.ndarray) -> int:
    """Thumbnail pixels that moved by more than codec noise does."""
    return int(np.count_nonzero(np.abs(a - b) > PIXEL_STEP))


def _cut(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two thumbnails are different pictures: their coarse layout (10 px blocks), which a moving camera or
    a texture leaves about as it was, changed by CUT_LEVELS on average."""
    return float(np.mean(np.abs(_coarse(a) - _coarse(b)))) >= CUT_LEVELS


def _coarse(thumb: np.ndarray) -> np.ndarray:
    height, width = thumb.shape[0] // 10 * 10, thumb.shape[1] // 10 * 10
    if not height or not width:
        return thumb.astype(np.float32)
    blocks: np.ndarray = thumb[:height, :width].astype(np.float32).reshape(height // 10, 10, width // 10, 10)
    return np.asarray(blocks.mean(axis=(1, 3)))


def _bounds(number: int) -> tuple[float, float]:
    return number * BLOCK_S, (number + 1) * BLOCK_S


def _joined(lines: Sequence[TimedText]) -> list[TimedText]:
    """Lines kept block by block, as one entry where a line runs on across a block's edge (the same text, the
    second starting where the first ends)."""
    joined: list[TimedText] = []
    latest: dict[str, int] = {}
    for line in sorted(lines, key=lambda line: (line.start_s, line.end_s)):
        key = normalised(line.text)
        at = latest.get(key)
        if at is not None and line.start_s <= joined[at].end_s + 1e-6:
            before = joined[at]
            sure = [c for c in (before.confidence, line.confidence) if c is not None]
            confidence = round(sum(sure) / len(sure), 3) if sure else None
            joined[at] = TimedText(before.start_s, max(before.end_s, line.end_s), before.text, confidence)
            continue
        latest[key] = len(joined)
        joined.append(line)
    return joined
