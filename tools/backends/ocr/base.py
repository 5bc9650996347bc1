"""What an on-screen text engine is: one frame in, the lines of text it read out, each with a confidence and where
it stood. Engines read text made by strangers (a video's slides, signs, terminals), so every line comes back as
data: control and format characters dropped, white space collapsed, its length bounded."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

import numpy as np
from PIL import Image

from llava_video_mcp.tools.untrusted import without_controls

Frame: TypeAlias = "Image.Image | np.ndarray"
"""One RGB frame: a PIL image (any mode; converted to RGB) or a height x width x 3 uint8 array."""

MAX_LINE_CHARS = 500
"""A line longer than any screen holds is cut: an engine's reply is not trusted to be sane."""
MAX_LINES_PER_FRAME = 200
"""At most this many lines are kept from one frame (a page of dense text holds about 60)."""


@dataclass(frozen=True)
class OcrLine:
    """One line of text read in a frame."""

    text: str
    confidence: float
    """0 to 1, as the engine scored its reading."""
    box: tuple[int, int, int, int]
    """Left, top, right, bottom, in pixels of the frame read."""


@dataclass(frozen=True)
class OcrOptions:
    threads: int = 1
    """CPU threads one reading may use: a frame is small work, and the model and speech share the machine."""
    min_confidence: float | None = None
    """Lines read with less confidence are dropped; None takes the engine's own floor."""
    timeout_s: float = 60.0
    """The longest one frame may take (an engine that runs as a separate program is stopped after it)."""
    device: str = "cpu"
    """Where the vision model runs (cpu, cuda): an engine that can read on that GPU does."""
    languages: str = "eng"
    """For engines that need to be told (Tesseract's `-l`); rapidocr's model reads Latin and CJK scripts alike."""


class OcrEngine(ABC):
    """An on-screen text engine. Constructing one is cheap; its model or program is brought up on first read."""

    name: ClassVar[str]
    """Its name in the registry and on the command line: rapidocr."""
    default_min_confidence: ClassVar[float]
    """The floor below which its readings are noise (textures read as letters)."""

    def __init__(self, options: OcrOptions | None = None) -> None:
        self.options = options or OcrOptions()
        floor = self.options.min_confidence
        self.min_confidence = self.default_min_confidence if floor is None else floor

    @classmethod
    @abstractmethod
    def available(cls) -> bool:
        """Whether it can run here (its package importable or its program on PATH), checked without loading it."""

    @classmethod
    @abstractmethod
    def missing(cls) -> str:
        """What to install for it to run here, in a sentence."""

    @abstractmethod
    def read_lines(self, rgb: np.ndarray) -> list[OcrLine]:
        """The lines in one frame (height x width x 3, uint8, RGB), as the engine returned them."""

    def read(self, frame: Frame) -> list[OcrLine]:
        """The lines of text in one frame, cleaned, at least `min_confidence` sure, top to bottom. A line without a
        letter or digit is dropped: an edge or a post's end read as `_` or `|` says nothing."""
        rgb = as_rgb(frame)
        if rgb.shape[0] < 8 or rgb.shape[1] < 8:
            return []
        kept: list[OcrLine] = []
        for line in self.read_lines(rgb):
            text = clean_line(line.text)
            confidence = min(max(float(line.confidence), 0.0), 1.0)
            if confidence >= self.min_confidence and any(ch.isalnum() for ch in text):
                kept.append(OcrLine(text, round(confidence, 4), line.box))
        return reading_order(kept)[:MAX_LINES_PER_FRAME]

    def close(self) -> None:  # noqa: B027 - engines without resources to release keep this no-op
        """Releases the model or program it holds."""


def reading_order(lines: list[OcrLine]) -> list[OcrLine]:
    """Lines top to bottom, and left to right within a row: a line whose middle lies within the height of the
    row's first line is in that row (a table's cells, read one box each, come back row by row)."""
    ordered: list[OcrLine] = []
    row: list[OcrLine] = []
    for line in sorted(lines, key=lambda line: (line.box[1], line.box[0])):
        if row and not row[0].box[1] <= (line.box[1] + line.box[3]) / 2 <= row[0].box[3]:
            ordered.extend(sorted(row, key=lambda cell: cell.box[0]))
            row = []
        row.append(line)
    ordered.extend(sorted(row, key=lambda cell: cell.box[0]))
    return ordered


def as_rgb(frame: Frame) -> np.ndarray:
    """The frame as a contiguous height x width x 3 uint8 RGB array; TypeError for anything else."""
    if isinstance(frame, Image.Image):
        return np.asarray(frame if frame.mode == "RGB" else frame.convert("RGB"))
    if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    raise TypeError(f"A frame is a PIL image or a height x width x 3 uint8 array, not {type(frame).__name__}.")


def clean_line(text: str) -> str:
    """An engine's line as data: no control or format characters, white space collapsed, at most MAX_LINE_CHARS."""
    line = " ".join(without_controls(text[: MAX_LINE_CHARS * 4]).split())
    return line[:MAX_LINE_CHARS].rstrip()


def bounding_box(points: object) -> tuple[int, int, int, int]:
    """The upright box around a polygon's points ([[x, y], ...]): left, top, right, bottom."""
    corners = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    left, top = np.floor(corners.min(axis=0))
    right, bottom = np.ceil(corners.max(axis=0))
    return int(left), int(top), int(right), int(bottom)
