"""Still images (PNG, JPEG, WebP, and the first frame of a GIF or of an animated WebP or PNG) as the model sees
them: told apart by their content, never by their name; upright by their EXIF orientation; scaled as video frames
are (`to_model_image`).

An image from a stranger costs little, whatever it declares:

- its size is read from its own header first (a few bytes) and checked against `pixel_limit` and `MAX_ASPECT`
  before Pillow parses anything else, so a 1.5 KB PNG that declares 100,000 x 100,000 pixels is
  refused unopened; Pillow's own size (which can differ, for a GIF) is checked again before any pixel is decoded;
- only the first frame is ever read: a GIF of 10,000 frames costs its first;
- a JPEG is decoded at the scale the model needs (libjpeg's own reduced decode), so a 50-megapixel photo never
  exists in memory at full size; the other formats are decoded whole, so they are held to the size of a video frame
  (8K), which costs about 250 MB at most;
- a file cut short, damaged, or in another format (an SVG drawing or a PDF named .png, text named .jpg) is a
  DecodeError that says what it is.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile, UnidentifiedImageError

from llava_video_mcp.tools.errors import DecodeError, LimitError
from llava_video_mcp.tools.frames._containers import MAX_ASPECT, MAX_FRAME_PIXELS
from llava_video_mcp.tools.frames._decode import model_size
from llava_video_mcp.tools.media.sources import ImageFacts, LocalImage

IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
"""The still images read, by the name this server gives them, with the name of Pillow's plugin for each (no other
plugin ever parses a file)."""
MAX_IMAGE_PIXELS = MAX_FRAME_PIXELS
"""Images decoded whole (PNG, WebP, GIF): 8K, as video frames; decoded as RGBA and laid over white, about 250 MB."""
MAX_JPEG_PIXELS = 8192 * 8192
"""67 million pixels: a 50-megapixel camera photo fits; it is decoded at an eighth of its size or more (libjpeg's
reduced decode) so it costs far less. Below Pillow's own warning (`Image.MAX_IMAGE_PIXELS`, 89 million)."""
_HEAD_BYTES = 64
_MAX_JPEG_SEGMENTS = 4096
"""A JPEG's header segments before its size (real ones have a dozen)."""
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, Image.DecompressionBombWarning)
"""What Pillow raises on a file it cannot read (a DecompressionBombWarning is raised where warnings are errors)."""


def image_format(head: bytes) -> str | None:
    """The still-image format a file's first bytes announce (a key of IMAGE_FORMATS), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def image_facts(path: Path, name: str) -> ImageFacts | None:
    """The file's facts when its content is a still image this server reads (checked by decoding its first frame,
    so a damaged one is refused here, not later); None when its content is no image (a video, or something for the
    video reader to name). LimitError for an image too large to decode; DecodeError for a damaged one, or for a
    document posing as an image (SVG, PDF). `name` is how messages call the file (a URL for a download)."""
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
            kind = image_format(head)
            if kind is None:
                if (document := document_kind(head)) is not None:
                    raise DecodeError(
                        f"{name} is {document}, not a picture: this server reads PNG, JPEG, WebP and GIF images and "
                        "video files. Export it as a PNG or JPEG image first."
                    )
                return None
            declared = declared_size(file, kind)
    except OSError as exc:
        raise DecodeError(f"{name} cannot be read ({exc.strerror or exc}).") from exc
    if declared is not None:
        check_image_size(name, kind, *declared)
    with opened(path, name, kind) as image:
        animated = bool(getattr(image, "is_animated", False))
        width, height = image.size
        if _turn(image) in _QUARTER_TURNS:
            width, height = height, width
        if kind == "jpeg":
            image.draft("RGB", (1, 1))  # decoded at an eighth of its size: every byte is still read and checked
        image.load()
        return ImageFacts(format=kind, width=width, height=height, animated=animated)


def refuse_still_image(path: Path, name: str) -> None:
    """Where only a video is read: a DecodeError for a still image (PNG, JPEG, WebP), after the checks every image
    gets, so a hostile one is refused for what is wrong with it; a document posing as an image is refused too. A GIF
    is let through: the video reader plays an animated one."""
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
    except OSError:
        return  # the video reader says why it cannot be read
    if image_format(head) == "gif":
        return
    facts = image_facts(path, name)
    if facts is not None:
        raise DecodeError(f"{name} is a still image ({facts.format}), not a video. Pass a video file.")


def image_for_model(image: LocalImage, min_side: int = 384) -> Image.Image:
    """The image as the model takes it, prepared as video frames are (`to_model_image`): its first frame, upright
    (EXIF orientation), RGB (transparent parts over white), its shorter side scaled down to `min_side` at most."""
    with opened(image.path, image.source, image.format) as opened_image:
        return _decoded(opened_image, image.format, min_side)


@contextmanager
def opened(path: Path, name: str, kind: str) -> Iterator[ImageFile.ImageFile]:
    """The image opened by Pillow's plugin for `kind` alone, its size checked before any pixel is decoded; Pillow's
    failures, while it is opened and while the block reads it, as errors that say what was wrong with the file."""
    with _explained(name, kind):
        try:
            with Image.open(path, formats=[IMAGE_FORMATS[kind]]) as image:
                assert isinstance(image, ImageFile.ImageFile)
                check_image_size(name, kind, image.width, image.height)
                yield image
        except UnidentifiedImageError as exc:  # its message names the path: the caller's name for it is enough
            raise DecodeError(_damaged(name, kind, "its header cannot be read")) from exc


@contextmanager
def _explained(name: str, kind: str) -> Iterator[None]:
    """Pillow's failures on a file as errors that say what was wrong with it."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise LimitError(_too_large(name, kind, str(exc))) from exc
    except _PIL_ERRORS as exc:
        raise DecodeError(_damaged(name, kind, exc)) from exc


def _decoded(image: ImageFile.ImageFile, kind: str, min_side: int) -> Image.Image:
    """The first frame decoded (a JPEG at the smallest scale libjpeg offers that still leaves its shorter side at
    `min_side`), upright, RGB, its shorter side scaled down to `min_side` at most."""
    turn = _TRANSPOSES.get(_turn(image))
    if kind == "jpeg":
        image.draft("RGB", model_size(image.width, image.height, min_side))
    image.load()
    rgb = _rgb(image)
    size = model_size(rgb.width, rgb.height, min_side)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.BOX)
    if turn is not None:
        rgb = rgb.transpose(turn)
    return rgb.copy() if rgb is image else rgb  # never the file's own image, which closes with it


_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientations (tag 0x0112) and the transposition that turns each upright, as `ImageOps.exif_transpose`."""
_QUARTER_TURNS = {5, 6, 7, 8}


def _turn(image: Image.Image) -> int:
    """The EXIF orientation of the image (1, upright, when it states none or a value that is none)."""
    value = image.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and value in _TRANSPOSES else 1


def _rgb(image: Image.Image) -> Image.Image:
    """RGB, as a video frame is: transparent parts over white (what a viewer shows), 16-bit grey scaled to 8 bits."""
    if image.mode.startswith("I"):
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba)  # an RGBA mask: its alpha, with no copy of the alpha made
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def check_image_size(name: str, kind: str, width: int, height: int) -> None:
    """Refuse an image too large to decode, or too narrow for a model to read, before any pixel is decoded."""
    if width <= 0 or height <= 0:
        raise DecodeError(f"{name} declares a {width}x{height} {kind.upper()} image: its header is damaged.")
    if width * height > pixel_limit(kind):
        raise LimitError(_too_large(name, kind, f"{width}x{height} pixels"))
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise LimitError(
            f"{name} is a {width}x{height} image, an aspect ratio beyond {MAX_ASPECT:g}:1 that no model can read. "
            "Crop it to the part that matters first."
        )


def pixel_limit(kind: str) -> int:
    """The most pixels an image of this format may have: JPEGs are decoded reduced, the others whole."""
    return MAX_JPEG_PIXELS if kind == "jpeg" else MAX_IMAGE_PIXELS


def _too_large(name: str, kind: str, size: str) -> str:
    return (
        f"{name} declares a {kind.upper()} image of {size}, over this server's limit of "
        f"{pixel_limit(kind) / 1e6:.1f} million pixels for a {kind.upper()}: it is made to exhaust memory (a "
        "decompression bomb), or far larger than any model needs. Scale it down first, e.g. to 4096 pixels on its "
        "longer side."
    )


def _damaged(name: str, kind: str, exc: BaseException | str) -> str:
    reason = str(exc).strip().rstrip(".") or type(exc).__name__
    return (
        f"{name} is a damaged or incomplete {kind.upper()} image ({reason}): a copy or download may have stopped part "
        "way. Pass the complete image."
    )


def document_kind(head: bytes) -> str | None:
    """What a file that poses as an image but is a document is, from its first bytes: SVG drawings and PDFs."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"%pdf"):
        return "a PDF document"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text) or b"<!doctype svg" in text:
        return "an SVG drawing (vector graphics)"
    return None


def declared_size(file: BinaryIO, kind: str) -> tuple[int, int] | None:
    """The width and height an image's header declares, read from its first bytes (a JPEG's first segments), before
    any decoder sees it; None where the header does not say (Pillow's size is then checked instead)."""
    file.seek(0)
    head = file.read(_HEAD_BYTES)
    if kind == "png" and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if kind == "gif" and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if kind == "webp":
        return _webp_size(head)
    if kind == "jpeg":
        return _jpeg_size(file)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


_JPEG_FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
"""Start-of-frame markers, which state the image's size (not C4, C8, CC: tables and a reserved marker)."""


def _jpeg_size(file: BinaryIO) -> tuple[int, int] | None:
    """The size in a JPEG's start-of-frame segment, walking the segments before it (seeking past their bodies)."""
    file.seek(2)
    for _ in range(_MAX_JPEG_SEGMENTS):
        byte = file.read(1)
        while byte and byte != b"\xff":  # bytes between segments (not allowed, but seen)
            byte = file.read(1)
        while byte == b"\xff":  # fill bytes
            byte = file.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a body
            continue
        if marker in (0xD9, 0xDA):  # the image data (or its end) before any frame: no size in the header
            return None
        body = file.read(2)
        if len(body) < 2:
            return None
        length = int.from_bytes(body, "big")
        if marker in _JPEG_FRAME_MARKERS:
            frame = file.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return (width, height) if height else None  # 0: a height given after the image data (DNL)
        file.seek(length - 2, 1)
    return None
