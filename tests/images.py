"""Images made in code for the tests of still-image sources: good ones of each format, and hostile files (bombs,
cut-short files, other formats under an image's name), each with the error it must get."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

from llava_video_mcp.tools.errors import DecodeError, LimitError, VideoToolError
from llava_video_mcp.tools.frames import image_facts, media_duration
from llava_video_mcp.tools.media import FetchPolicy, VideoFetcher

RED, BLUE = (255, 0, 0), (0, 0, 255)


def image_bytes(kind: str, size: tuple[int, int] = (640, 480), colour: Any = RED, **options: Any) -> bytes:
    mode = "RGBA" if isinstance(colour, tuple) and len(colour) == 4 else "RGB"
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format=kind, **options)
    return buffer.getvalue()


def noise_bytes(kind: str, size: tuple[int, int] = (400, 300)) -> bytes:
    """An image that does not compress: cut in half, it has lost pixels, not just its end."""
    buffer = io.BytesIO()
    Image.effect_noise(size, 64).convert("RGB").save(buffer, format=kind)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring width x height RGB pixels, with a little compressed data: about 1.5 KB."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * 1_500_000, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def many_frames_gif(count: int = 10_000) -> bytes:
    """A GIF of `count` frames: red first, blue after."""
    rest = [Image.new("RGB", (32, 24), BLUE if i % 2 else (0, 0, 200)) for i in range(count - 1)]
    frames = [Image.new("RGB", (32, 24), RED), *rest]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=20, optimize=False)
    return buffer.getvalue()


def fetcher_for(cache: Path, policy: FetchPolicy | None = None) -> VideoFetcher:
    return VideoFetcher(cache, policy, inspect=media_duration, inspect_image=image_facts)


def entries(cache: Path) -> list[str]:
    videos = cache / "videos"
    return sorted(p.name for p in videos.iterdir()) if videos.exists() else []


def near(pixel: Any, colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


# Images from files, told by their content


# Hostile image files


HOSTILE: list[tuple[str, str, bytes | None, type[VideoToolError], str]] = [
    (
        "a 1.5 KB PNG declaring 100,000 x 100,000 pixels",
        "bomb.png",
        png_bomb(),
        LimitError,
        r"bomb.png declares a PNG image of 100000x100000 pixels, over this server's limit of 33.2 million pixels "
        r"for a PNG: it is made to exhaust memory \(a decompression bomb\).* Scale it down first",
    ),
    (
        "a JPEG declaring 60,000 x 60,000 pixels",
        "huge.jpg",
        None,
        LimitError,
        r"huge.jpg declares a JPEG image of 60000x60000 pixels, over this server's limit of 67.1 million pixels",
    ),
    (
        "a GIF declaring 65,535 x 65,535 pixels",
        "screen.gif",
        None,
        LimitError,
        r"screen.gif declares a GIF image of 65535x65535 pixels",
    ),
    (
        "a WebP declaring 16,384 x 16,384 pixels",
        "canvas.webp",
        None,
        LimitError,
        r"canvas.webp declares a WEBP image of 16384x16384 pixels",
    ),
    (
        "a PNG cut short",
        "cut.png",
        noise_bytes("PNG")[:20_000],
        DecodeError,
        r"cut.png is a damaged or incomplete PNG image \(image file is truncated\): .* Pass the complete image",
    ),
    ("a JPEG cut short", "cut.jpg", noise_bytes("JPEG")[:8000], DecodeError, "damaged or incomplete JPEG image"),
    ("a WebP cut short", "cut.webp", noise_bytes("WEBP")[:8000], DecodeError, "damaged or incomplete WEBP image"),
    ("a GIF cut short", "cut.gif", noise_bytes("GIF")[:8000], DecodeError, "damaged or incomplete GIF image"),
    ("a PNG header alone", "header.png", png_bomb(64, 48)[:33], DecodeError, "damaged or incomplete PNG image"),
    (
        "an SVG named .png",
        "drawing.png",
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"><rect/></svg>',
        DecodeError,
        r"drawing.png is an SVG drawing \(vector graphics\), not a picture: .* Export it as a PNG or JPEG image",
    ),
    (
        "a PDF named .png",
        "page.png",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        DecodeError,
        r"page.png is a PDF document, not a picture",
    ),
    (
        "a text file named .jpg",
        "notes.jpg",
        b"These are notes, not a photo.\n" * 20,
        DecodeError,
        r"notes.jpg is named as an image, but its content is no image or video this server reads \(it is text\)\. "
        r"Pass a PNG, JPEG, WebP or GIF image, or a video file\.",
    ),
    (
        "a PNG 40 times wider than tall",
        "strip.png",
        image_bytes("PNG", (4000, 100)),
        LimitError,
        r"strip.png is a 4000x100 image, an aspect ratio beyond 10:1 that no model can read\. Crop it",
    ),
]


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header is rewritten to declare another size."""
    data = bytearray(image_bytes("JPEG", (64, 48)))
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    """A small GIF whose logical screen is rewritten to declare another size."""
    data = bytearray(image_bytes("GIF", (64, 48)))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """A small WebP with an extended header (VP8X) declaring a canvas of another size."""
    data = image_bytes("WEBP", (64, 48))
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    extended = b"VP8X" + struct.pack("<I", 10) + bytes(4) + canvas
    body = b"WEBP" + extended + data[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


DECLARING = {
    "huge.jpg": jpeg_declaring(60_000, 60_000),
    "screen.gif": gif_declaring(65_535, 65_535),
    "canvas.webp": webp_declaring(16_384, 16_384),
}
"""Files made when used (`None` in HOSTILE): small images whose headers declare a size they do not hold."""


def hostile_file(folder: Path, name: str, data: bytes | None) -> Path:
    path = folder / name
    path.write_bytes(data if data is not None else DECLARING[name])
    return path
