"""Screens made in code for the on-screen text tests: a slide, a terminal, a moving text-free picture, and H.264
videos showing them in turn."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from llava_video_mcp.tools.backends.ocr.reading import normalised

SLIDE = ["Quarterly Review 2024", "Revenue grew 18 percent in Europe", "Next steps: hire three engineers by June"]


TERMINAL = ["$ python -m pytest tests/test_ocr.py -q", "collected 24 items; 24 passed in 41.07s",
            "ERROR: connection refused on port 5432"]  # fmt: skip


def font(size: float) -> ImageFont.FreeTypeFont:
    loaded = ImageFont.load_default(size=max(round(size), 6))
    assert isinstance(loaded, ImageFont.FreeTypeFont)
    return loaded


def slide_picture(lines: list[str], width: int = 1280, height: int = 720) -> Image.Image:
    image = Image.new("RGB", (width, height), (248, 248, 244))
    draw = ImageDraw.Draw(image)
    draw.text((80, 70), lines[0], font=font(54), fill=(20, 40, 90))
    for index, line in enumerate(lines[1:]):
        draw.text((110, 220 + index * 90), line, font=font(34), fill=(30, 30, 30))
    return image


def terminal_picture(width: int = 1280, height: int = 720) -> Image.Image:
    image = Image.new("RGB", (width, height), (30, 31, 36))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(TERMINAL):
        draw.text((24, 120 + row * 40), line, font=font(22), fill=(215, 215, 215))
    return image


def textured(shift: int, width: int = 1280, height: int = 720) -> Image.Image:
    """A moving, text-free picture: blurred noise under a sky, panning."""
    return _texture(width, height).crop((shift, 0, shift + width, height))


@functools.cache
def _texture(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 255, (height // 8 + 2, width // 8 + 60, 3), dtype=np.uint8)
    base = Image.fromarray(noise).resize((width + 480, height), Image.Resampling.BICUBIC)
    return base.filter(ImageFilter.GaussianBlur(4))


def screen_video(
    path: Path,
    shows: list[tuple[float, Callable[[int], Image.Image]]],
    fps: int = 2,
    size: tuple[int, int] = (1280, 720),
) -> Path:
    """An H.264 video (720p unless `size` says) showing each picture maker from its start time (frame i of the whole
    video passed)."""
    seconds = shows[-1][0]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        (stream.width, stream.height), stream.pix_fmt = size, "yuv420p"
        stream.options = {"preset": "veryfast"}
        pictures: dict[int, Image.Image] = {}
        for i in range(round(seconds * fps)):
            maker = next(make for start, make in reversed(shows[:-1]) if i / fps >= start)
            key = id(maker) * 1000 + (i if maker is textured_maker else 0)
            picture = pictures.setdefault(key, maker(i))
            frame = av.VideoFrame.from_image(picture if picture.size == size else picture.resize(size))
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def textured_maker(i: int) -> Image.Image:
    return textured(shift=i * 12)


def words(lines: Sequence[str]) -> list[str]:
    return [word for line in lines for word in normalised(line).split()]


def recall(truth: Sequence[str], read: Sequence[str]) -> float:
    expected, found = Counter(words(truth)), Counter(words(read))
    return sum((expected & found).values()) / max(sum(expected.values()), 1)
