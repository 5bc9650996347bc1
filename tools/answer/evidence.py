"""Evidence an agent can look at: the frames the model saw, as JPEG images, each labelled with its timestamp.

The calling agent usually has a far stronger vision model than the 0.5B one here, so it may want to check an
answer against the frames themselves. They come from the same decode as the model's (no second decode; a
follow-up reuses them), at most 768 px on the long side, and either one image per frame or a single contact
sheet of small tiles. The label on each frame or tile is the timestamp reported in `frames[].timestamp_s`, on a
band below the picture: the whole frame stays visible, burned-in subtitles at its bottom edge included.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

Evidence = Literal["none", "sheet", "frames"]
"""Images of the frames the model saw, returned with the answer: none, one contact sheet, or one per frame."""

MAX_FRAME_SIDE = 768
SHEET_MAX_BYTES = 200_000
SHEET_TILE_WIDTH = 256
LABEL_HEIGHT = 14


@dataclass(frozen=True)
class LabelledFrame:
    image: Image.Image
    label: str
    """What is drawn on it: its timestamp, with the video's number when several are compared."""


def evidence_images(frames: Sequence[LabelledFrame], evidence: Evidence) -> list[bytes]:
    """The images a call returns as `evidence` asks: none, one contact sheet of `frames`, or a JPEG each."""
    if evidence == "none" or not frames:
        return []
    if evidence == "sheet":
        return [contact_sheet(frames)[0]]
    return frame_images(frames)


def label(timestamp_s: float, video: int | None = None) -> str:
    return f"{f'V{video} ' if video is not None else ''}{timestamp_s:.2f} s"


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=11)


def draw_label(image: Image.Image, text: str) -> Image.Image:
    """The whole image with a black band of LABEL_HEIGHT below it, `text` in white on the band."""
    labelled = Image.new("RGB", (image.width, image.height + LABEL_HEIGHT), (0, 0, 0))
    labelled.paste(image.convert("RGB"), (0, 0))
    ImageDraw.Draw(labelled).text((3, image.height + 1), text, fill=(255, 255, 255), font=_font())
    return labelled


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def frame_images(frames: Sequence[LabelledFrame]) -> list[bytes]:
    """One JPEG per frame, labelled, at most MAX_FRAME_SIDE on its long side with the label's band."""
    images = []
    for frame in frames:
        image = frame.image
        scale = min(1.0, (MAX_FRAME_SIDE - LABEL_HEIGHT) / max(image.size))
        if scale < 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        images.append(jpeg(draw_label(image, frame.label)))
    return images


@dataclass(frozen=True)
class SheetLayout:
    """Tiles in frame order, row by row, `columns` to a row, each `tile` (width, height) pixels: the picture, and the
    label's band below it."""

    columns: int
    tile: tuple[int, int]

    def box(self, index: int) -> tuple[int, int, int, int]:
        row, column = divmod(index, self.columns)
        width, height = self.tile
        return (column * width, row * height, (column + 1) * width, (row + 1) * height)

    @property
    def picture(self) -> tuple[int, int]:
        """The size a frame is scaled to inside its tile."""
        return self.tile[0], self.tile[1] - LABEL_HEIGHT


def sheet_layout(frames: Sequence[LabelledFrame], tile_width: int = SHEET_TILE_WIDTH) -> SheetLayout:
    """Near-square grid; pictures keep the first frame's aspect ratio, within 1:4 and 4:1."""
    columns = max(1, math.ceil(math.sqrt(len(frames))))
    first = frames[0].image
    height = min(max(round(tile_width * first.height / first.width), tile_width // 4), tile_width * 4)
    return SheetLayout(columns, (tile_width, height + LABEL_HEIGHT))


def contact_sheet(frames: Sequence[LabelledFrame]) -> tuple[bytes, SheetLayout]:
    """All frames as one JPEG of about SHEET_MAX_BYTES at most: smaller tiles and quality until it fits."""
    tile_width, quality = SHEET_TILE_WIDTH, 80
    while True:
        layout = sheet_layout(frames, tile_width)
        rows = math.ceil(len(frames) / layout.columns)
        sheet = Image.new("RGB", (layout.columns * layout.tile[0], rows * layout.tile[1]), (0, 0, 0))
        for index, frame in enumerate(frames):
            left, top, _, _ = layout.box(index)
            picture = frame.image.convert("RGB").resize(layout.picture, Image.Resampling.LANCZOS)
            sheet.paste(draw_label(picture, frame.label), (left, top))
        data = jpeg(sheet, quality)
        if len(data) <= SHEET_MAX_BYTES or tile_width <= 96:
            return data, layout
        if quality > 60:
            quality -= 10
        else:
            tile_width = int(tile_width * 0.85)
