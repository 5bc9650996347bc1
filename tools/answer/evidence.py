"""Evidence an agent can look at: the frames the model saw, as JPEG images, each labelled with its timestamp.

The calling agent usually has a far stronger vision model than the 0.5B one here, so it may want to check an
answer against the frames themselves. By default they come from the same decode as the model's (no second decode; a
follow-up reuses them), at most 768 px on the long side, and either one image per frame or a single contact sheet of
small tiles. The label on each frame or tile is the timestamp reported in `frames[].timestamp_s`, on a band below the
picture: the whole frame stays visible, burned-in subtitles at its bottom edge included.

An agent that wants to read a frame itself (a slide's small print, a terminal line) asks for one JPEG a frame at a
long side of its own (`frame_max_side`, `AtSide`): smaller than the model's frames, they are scaled down; larger,
the same frames (their exact times) are decoded again from the call's file at that size, scaled in the decoder's
converter so that no frame larger than that is kept, never beyond the source's own size; a still image is read again
from its file, as `frames.image_for_model` reads it. A call's frames at an asked side come to IMAGES_MAX_BYTES at
most, all together: where they would come to more, all are made smaller alike, and a note says so.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from llava_video_mcp.tools.answer.results import VideoInfo
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError, LimitError
from llava_video_mcp.tools.frames import SampledFrame, SamplingPlan, image_for_model, sample_with_plan
from llava_video_mcp.tools.limits import MAX_RETURNED_SIDE, MIN_RETURNED_SIDE
from llava_video_mcp.tools.media import LocalImage

Evidence = Literal["none", "sheet", "frames"]
"""Images of the frames the model saw, returned with the answer: none, one contact sheet, or one per frame."""

MAX_FRAME_SIDE = 768
SHEET_MAX_BYTES = 200_000
SHEET_TILE_WIDTH = 256
LABEL_HEIGHT = 14
IMAGES_MAX_BYTES = 4_000_000
"""A call's frames at an asked side, all together: 4 MB of JPEG (about 5.3 MB as base64 on the wire), eight 1080p
frames of a screen or about as many of a camera; more frames are made smaller to fit."""
HELD_MAX_BYTES = 4 * IMAGES_MAX_BYTES
"""What a call holds of its frames' JPEGs while they are made: past it, those made are made smaller alike, and so are
the frames still to come (80 frames of find_moments at 1920 px would otherwise be held whole first)."""
DECODE_BATCH = 8
"""Frames decoded again at an asked side at a time: at 1920 px, 50 MB of pictures at most before they are JPEGs."""


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


def checked_side(side: int | None, evidence: Evidence, looking_only: bool) -> None:
    """Refuse a `frame_max_side` out of range, or with nothing for it to size: it sizes the images of
    `return_frames="frames"` (which a server without a model always returns), not a contact sheet's tiles."""
    if side is None:
        return
    if not MIN_RETURNED_SIDE <= side <= MAX_RETURNED_SIDE:
        raise LimitError(
            f"frame_max_side must be {MIN_RETURNED_SIDE} to {MAX_RETURNED_SIDE} pixels (the long side of each "
            f"returned frame); got {side}. Leave it out for the frames as the model saw them."
        )
    if looking_only or evidence == "frames":
        return
    if evidence == "sheet":
        raise LimitError(
            'frame_max_side sizes the images of return_frames="frames", one a frame; a contact sheet keeps its own '
            'small tiles. Ask return_frames="frames" with it, or leave frame_max_side out.'
        )
    raise LimitError(
        'frame_max_side sizes the frames return_frames="frames" returns, and this call returns none. Ask '
        'return_frames="frames" with it.'
    )


@dataclass(frozen=True)
class Shown:
    """A call's images, and what the caller should know about their size, when anything."""

    images: list[bytes]
    note: str | None = None


def noted(videos: list[VideoInfo], note: str | None) -> list[VideoInfo]:
    """`videos`, the first one's note ending with `note` (what the call's images are): said once, not per source."""
    if note and videos:
        first = videos[0]
        first.note = f"{first.note} {note}" if first.note else note
    return videos


def sized_jpeg(picture: Image.Image, text: str, side: int) -> bytes:
    """The picture, scaled down (never up) to `side` pixels on its long side, labelled below."""
    scale = min(1.0, side / max(picture.size))
    if scale < 1.0:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    return jpeg(draw_label(picture, text))


class AtSide:
    """One call's frames as JPEGs at the long side the agent asked for (`frame_max_side`), in the order added.

    Each source is added while the call's file is still held (the fetch's block): a video's frames, larger than the
    model's, are decoded again from that file alone, at their exact times. Frames are JPEGs as soon as they are
    made, so at most DECODE_BATCH pictures at the asked side are held at once."""

    def __init__(self, side: int, cancel: CancelToken | None) -> None:
        self.side = side
        self.cancel = cancel
        self._jpegs: list[bytes] = []
        self._labels: list[str] = []
        self._as_seen = 0
        self._scale = 1.0
        """Of `side`, the frames are made at: below 1 once what is held passed HELD_MAX_BYTES."""
        self._held = 0
        """Frames that could not be decoded again, so returned as the model saw them."""

    def add_video(
        self,
        path: Path,
        index_file: Path | None,
        source_size: tuple[int, int],
        frames: Sequence[SampledFrame],
        labels: Sequence[str],
    ) -> None:
        """A video's frames (`source_size`: the video's own width and height), each labelled as `labels` says."""
        target = min(self.side, max(source_size))
        if all(max(frame.image.size) >= target for frame in frames):
            pictures: Iterator[Image.Image] = (frame.image for frame in frames)
        else:
            pictures = self._decoded(path, index_file, source_size, target, frames)
        for picture, text in zip(pictures, labels, strict=True):
            self._add(picture, text)

    def add_image(self, image: LocalImage, picture: Image.Image, text: str) -> None:
        """A still image (`picture`: as the model took it), read again from its file where the side asks more."""
        target = min(self.side, max(image.width, image.height))
        if max(picture.size) < target:
            try:
                picture = image_for_model(image, _shorter_side(target, (image.width, image.height)))
            except (DecodeError, LimitError):  # changed or removed since the model took it: as the model saw it
                self._as_seen += 1
        self._add(picture, text)

    def shown(self) -> Shown:
        """The JPEGs, made smaller alike until they fit IMAGES_MAX_BYTES, and a note when they were or when some
        are the model's."""
        notes = []
        if self._as_seen:
            notes.append(
                f"{self._as_seen} of the returned frames could not be decoded again at frame_max_side="
                f"{self.side}, so they are as the model saw them."
            )
        images, total, scale = self._jpegs, self._held, 1.0
        while total > IMAGES_MAX_BYTES and self.side * self._scale * scale > MIN_RETURNED_SIDE:
            if self.cancel is not None:
                self.cancel.check()
            scale *= math.sqrt(IMAGES_MAX_BYTES / total) * 0.95
            images = [self._smaller(data, text, scale) for data, text in zip(self._jpegs, self._labels, strict=True)]
            total = sum(len(data) for data in images)
        if self._scale * scale < 1.0:
            largest = max(_picture_side(data) for data in images)
            notes.append(
                f"The {len(images)} frames at frame_max_side={self.side} came to more than the "
                f"{IMAGES_MAX_BYTES / 1e6:g} MB a call returns, so they are at most {largest} px on the long side; "
                "ask for fewer frames, or a shorter range, to see them larger."
            )
        return Shown(images, " ".join(notes) or None)

    def _add(self, picture: Image.Image, text: str) -> None:
        if self.cancel is not None:
            self.cancel.check()
        made = sized_jpeg(picture, text, max(MIN_RETURNED_SIDE, round(self.side * self._scale)))
        self._jpegs.append(made)
        self._labels.append(text)
        self._held += len(made)
        while self._held > HELD_MAX_BYTES and self.side * self._scale > MIN_RETURNED_SIDE:
            if self.cancel is not None:
                self.cancel.check()
            self._scale *= 0.7
            self._jpegs = [
                self._smaller(data, label, 0.7) for data, label in zip(self._jpegs, self._labels, strict=True)
            ]
            self._held = sum(len(data) for data in self._jpegs)

    @staticmethod
    def _smaller(data: bytes, text: str, scale: float) -> bytes:
        """A labelled JPEG of this call's again, its picture `scale` times its size, labelled anew."""
        with Image.open(io.BytesIO(data)) as image:
            picture = image.convert("RGB").crop((0, 0, image.width, image.height - LABEL_HEIGHT))
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        return jpeg(draw_label(picture.resize(size, Image.Resampling.LANCZOS), text))

    def _decoded(
        self,
        path: Path,
        index_file: Path | None,
        source_size: tuple[int, int],
        target: int,
        frames: Sequence[SampledFrame],
    ) -> Iterator[Image.Image]:
        """The frames decoded again at their exact times, scaled in the decoder's converter to `target` pixels on
        the long side (a pixel over at most, taken off when labelled); the model's picture where one fails."""
        shorter = _shorter_side(target, source_size)
        for first in range(0, len(frames), DECODE_BATCH):
            batch = frames[first : first + DECODE_BATCH]
            plan = SamplingPlan(len(batch), min_side=shorter, times_s=tuple(frame.timestamp_s for frame in batch))
            try:
                again = sample_with_plan(path, plan, cancel=self.cancel, index_file=index_file).frames
            except DecodeError:
                again = []
            for frame in batch:
                match = next((f for f in again if abs(f.timestamp_s - frame.timestamp_s) < 1e-3), None)
                if match is None:
                    self._as_seen += 1
                yield frame.image if match is None else match.image


def _picture_side(data: bytes) -> int:
    """The long side of a labelled JPEG's picture, its label's band left out."""
    with Image.open(io.BytesIO(data)) as image:
        return max(image.width, image.height - LABEL_HEIGHT)


def _shorter_side(target: int, size: tuple[int, int]) -> int:
    """The shorter side that gives a picture of `size` at least `target` pixels on its long side."""
    return math.ceil(target * min(size) / max(size))
