"""Opening a media file for decoding: FFmpeg reads exactly the one local file it is given, and a hostile file costs
at most a few hundred MB and a few seconds.

FFmpeg's demuxers can follow references inside a file: an HLS playlist or a DASH manifest names segments
(`file://` URLs, `../` paths, network URLs), a concat list names other files, an image2 pattern reads a numbered
sequence of files. A file the server may read could then make it read files it may not (outside `--allow-dir`), or
open network connections around the download guard. So a file is opened

- with one protocol, `file`, and a container format from `ALLOWED_FORMATS`, single-file formats only. Playlists,
  concat lists, manifests and image sequences are refused before their header is read (FFmpeg checks the probed
  format against the allow-list first), with an error that says what the file is. A playlist behind a URL is
  resolved by the downloader (yt-dlp), under its guards, into media it downloads.
- with sizes checked before anything large is allocated: an mp4 whose tables declare more samples than the file
  can hold is refused unopened (a 1.5 KB file can declare 20,000,000 frames, and FFmpeg would build an index for
  all of them); the decoder refuses frames over `MAX_FRAME_PIXELS` (`max_pixels`, also while FFmpeg probes the
  stream); the declared frame size, bit depth and aspect ratio are checked before the first frame is decoded; and
  no single allocation inside FFmpeg may exceed `MAX_FFMPEG_ALLOCATION` (`av_max_alloc`), the last line against a
  table or index that a file declares larger than it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import av
import av.container
import av.error
import av.video.stream

from llava_video_mcp.tools.errors import DecodeError, LimitError

log = logging.getLogger(__name__)

ALLOWED_FORMATS = (
    # Video containers that hold their media in themselves.
    "mov", "mp4", "matroska", "webm", "avi", "mpegts", "flv", "ogg", "asf", "mpeg", "mxf", "nut", "ivf", "obu",
    "gif", "yuv4mpegpipe",
    # Elementary streams (refused later with their own message when they carry no timestamps).
    "h264", "hevc", "m4v", "mpegvideo", "mjpeg",
    # Audio and still images: read only to say what they are.
    "wav", "mp3", "aac", "flac",
    "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe",
)  # fmt: skip
"""FFmpeg demuxer names (`format_whitelist`) of formats that reference no other file. Not hls, dash, concat,
image2, webm_dash_manifest, sdp, rtp, rtsp, tee or any other demuxer that opens more than the file itself."""

MAX_FRAME_PIXELS = 7680 * 4320
"""8K UHD. Larger frames are refused by the decoder itself (`max_pixels`), whatever the container declares."""
MAX_FRAME_BYTES = 128 * 2**20
"""One decoded frame in its own pixel format: 8K at 8 bits is 50 MB; 8K at 16 bits RGBA (265 MB) is refused."""
MAX_ASPECT = 10.0
"""Wider or taller than 10:1 is no video a model can read (a 2x4000 stream would become a 512,000 px contact sheet)."""
DECODE_MEMORY = 256 * 2**20
"""Frames the decoder's threads may hold at once: fewer threads for larger frames."""
MAX_FFMPEG_ALLOCATION = 128 * 2**20
"""Largest single allocation FFmpeg may make: a 24-hour, 60 fps mp4's index (5.2 M entries) fits."""
_MOOV_LIMIT = 64 * 2**20
"""A 10-hour, 60 fps mp4's sample tables take about 20 MB."""
_HEAD_BYTES = 4096


def open_input(path: Path, name: str) -> av.container.InputContainer:
    """The file opened for reading, one protocol and an allowed format only; DecodeError saying what it is when
    it cannot be read. `name` is how messages call the file (a URL for a download)."""
    _check_declared_samples(path, name)
    try:
        return av.open(
            str(path),
            mode="r",
            metadata_errors="ignore",
            container_options={"protocol_whitelist": "file", "format_whitelist": ",".join(ALLOWED_FORMATS)},
            # For every stream's decoder, also those FFmpeg opens to probe the streams (where a frame bomb would
            # go off before any check of ours could run).
            options={"max_pixels": str(MAX_FRAME_PIXELS)},
        )
    except av.error.FFmpegError as exc:
        raise DecodeError(_unreadable(path, name, exc)) from exc


def prepare_video_stream(name: str, stream: av.video.stream.VideoStream) -> None:
    """Refuse a stream whose frames would be too large to decode, before any is; bound the decoder's memory."""
    codec = stream.codec_context
    width, height = codec.width, codec.height
    if width <= 0 or height <= 0:
        raise DecodeError(
            f"{name}: no frame size could be read from its video stream: its frames are larger than "
            f"{_size(MAX_FRAME_PIXELS)} pixels, or the stream is damaged. Pass a video of at most 8K."
        )
    if width * height > MAX_FRAME_PIXELS:
        raise LimitError(
            f"{name} has frames of {width}x{height} pixels, over this server's limit of "
            f"{_size(MAX_FRAME_PIXELS)} (8K). Scale it down first, e.g. `ffmpeg -i INPUT -vf scale=-2:1080 OUTPUT.mp4`."
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise LimitError(
            f"{name} has frames of {width}x{height} pixels, an aspect ratio beyond {MAX_ASPECT:g}:1 that no "
            "model can read. Crop or pad it to a usual shape first."
        )
    frame_bytes = frame_size_bytes(stream)
    if frame_bytes > MAX_FRAME_BYTES:
        pixel_format = codec.format.name if codec.format is not None else "?"
        raise LimitError(
            f"{name} has frames of {width}x{height} pixels in {pixel_format}, {frame_bytes / 2**20:.0f} MB each "
            f"decoded, over this server's limit of {MAX_FRAME_BYTES // 2**20} MB. Convert it to 8-bit video first, "
            "e.g. `ffmpeg -i INPUT -pix_fmt yuv420p OUTPUT.mp4`."
        )
    codec.options = {"max_pixels": str(MAX_FRAME_PIXELS)}
    codec.thread_type = "AUTO"
    codec.thread_count = max(1, min(DECODE_MEMORY // max(frame_bytes, 1), (os.cpu_count() or 1) + 1))


def frame_size_bytes(stream: av.video.stream.VideoStream) -> int:
    """Bytes of one decoded frame in the stream's own pixel format (8 bytes a pixel when it states none)."""
    codec = stream.codec_context
    bits = codec.format.padded_bits_per_pixel if codec.format is not None else 64
    return codec.width * codec.height * max(int(bits), 8) // 8


def _size(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} million"


def _unreadable(path: Path, name: str, exc: av.error.FFmpegError) -> str:
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        return (
            f"{name} is empty (0 bytes): nothing was written to it, or a copy or download stopped before it began. "
            "Pass the complete video file."
        )
    kind = _referencing_kind(path)
    if kind is None and is_image_name(name):
        return (
            f"{name} is named as an image, but its content is no image or video this server reads ("
            + ("it is text" if _is_text(path) else "its first bytes match no image format")
            + "). Pass a PNG, JPEG, WebP or GIF image, or a video file."
        )
    if kind is not None:
        return (
            f"{name} is {kind}: it names other files or URLs, and this server reads only single media files "
            "(a playlist behind an http(s) URL is fetched by the downloader instead: pass that URL). Pass a video "
            "file (mp4, webm, mkv, mov, ...)."
        )
    if exc.errno == errno.EINVAL:  # the probed format is not on the allow-list
        return (
            f"{name} is in a format this server does not read. Pass a video file (mp4, webm, mkv, mov, avi, ts, "
            "flv, ogg, ...), or convert it first, e.g. `ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4`."
        )
    reason = str(exc.strerror or exc).strip().rstrip(".")
    return (
        f"{name} is not a readable video ({reason}). "
        "Pass a complete video file (mp4, webm, mkv, mov, ...); a partly downloaded or damaged file cannot be read."
    )


def _referencing_kind(path: Path) -> str | None:
    """What a file that names other files is (a playlist, a concat list, a manifest), from its first bytes."""
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
    except OSError:
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"#EXTM3U") or b"#EXT-X-" in text or b"#EXTINF" in text:
        return "an HLS or M3U playlist"
    if text.startswith(b"ffconcat") or text.startswith(b"file ") or text.startswith(b"file '"):
        return "a concat list"
    if b"<MPD" in text or b"urn:mpeg:dash" in text:
        return "a DASH manifest"
    if text.startswith((b"[playlist]", b"<?xml", b"<asx", b"<ASX", b"<smil")):
        return "a playlist"
    if b"\0" not in text and text and all(_looks_like_reference(line) for line in text.splitlines()[:20] if line):
        return "a list of files or URLs (an M3U playlist)"
    return None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".webp", ".gif", ".apng")
"""Names that promise an image: used to word a refusal, never to decide what a file is."""


def is_image_name(name: str) -> bool:
    """Whether a file's name (or a URL's path) promises an image."""
    return name.split("?", 1)[0].split("#", 1)[0].lower().endswith(IMAGE_SUFFIXES)


def _is_text(path: Path) -> bool:
    """Whether a file begins as text (UTF-8, no NUL), from its first bytes."""
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
    except OSError:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the bytes read
            return False
    return b"\0" not in head


def _looks_like_reference(line: bytes) -> bool:
    stripped = line.strip()
    return stripped.startswith((b"#", b"/", b"./", b"../", b"file:", b"http:", b"https:")) or stripped.endswith(
        (b".ts", b".mp4", b".m4s", b".mkv", b".webm", b".m3u8")
    )


def _check_declared_samples(path: Path, name: str) -> None:
    """Refuse an mp4/mov whose sample tables declare more samples than the file could hold (each takes a byte at
    least), before FFmpeg builds an index of that size."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            if file.read(8)[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"):
                return
            for kind, start, length in _boxes(file, 0, size):
                if kind != b"moov":
                    continue
                if length > _MOOV_LIMIT:
                    raise DecodeError(
                        f"{name} declares a {length / 2**20:.0f} MB index (moov), far more than any real video "
                        "has: the file is damaged or made to exhaust memory. Pass another file."
                    )
                file.seek(start)
                for count, data_bytes in _declared_samples(file.read(length)):
                    if data_bytes > size:
                        raise DecodeError(
                            f"{name} declares {count:,} samples ({data_bytes:,} bytes of media) in a file of "
                            f"{size:,} bytes, more than it can hold: the file is damaged or made to exhaust memory. "
                            "Pass another file."
                        )
    except OSError:
        return  # unreadable files get FFmpeg's own error when opened


_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _boxes(file: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body length) of the ISO boxes between `start` and `end` of the file."""
    position = start
    while position + 8 <= end:
        file.seek(position)
        header = file.read(16)
        if len(header) < 8:
            return
        length, kind = struct.unpack(">I4s", header[:8])
        body = position + 8
        if length == 1 and len(header) == 16:
            length = struct.unpack(">Q", header[8:16])[0]
            body += 8
        elif length == 0:
            length = end - position
        if length < body - position:
            return
        yield kind, body, min(length - (body - position), end - body)
        position += length


def _declared_samples(data: bytes) -> Iterator[tuple[int, int]]:
    """(samples, bytes of media at least) that each stsz/stz2 table of a moov body declares: a sample takes a byte
    at least, its stated size when all samples share one."""
    position = 0
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body = position + 8
        if length == 1 and position + 16 <= len(data):
            length = struct.unpack_from(">Q", data, position + 8)[0]
            body += 8
        elif length == 0:
            length = len(data) - position
        if length < body - position:
            return
        end = min(position + length, len(data))
        if kind in _CONTAINERS:
            yield from _declared_samples(data[body:end])
        elif kind == b"stsz" and end - body >= 12:
            sample_size, count = struct.unpack_from(">II", data, body + 4)
            yield count, count * max(sample_size, 1)
        elif kind == b"stz2" and end - body >= 12:
            count = struct.unpack_from(">I", data, body + 8)[0]
            yield count, count
        position += length


def _limit_ffmpeg_allocations() -> None:
    """Cap every single allocation FFmpeg makes (`av_max_alloc`), in the FFmpeg that PyAV loaded."""
    for candidate in _libavutil_candidates():
        try:
            library = ctypes.CDLL(candidate)
            library.av_max_alloc.argtypes = [ctypes.c_size_t]
            library.av_max_alloc(MAX_FFMPEG_ALLOCATION)
            return
        except (OSError, AttributeError):
            continue
    log.debug("could not cap FFmpeg's allocations (no libavutil found beside PyAV)")


def _libavutil_candidates() -> list[str]:
    found: list[str] = []
    maps = Path("/proc/self/maps")
    if maps.is_file():
        found += sorted({line.split()[-1] for line in maps.read_text().splitlines() if "libavutil" in line})
    package = Path(av.__file__).resolve().parent
    for folder in (package.parent / "av.libs", package / ".dylibs", package.parent / "av.libs"):
        if folder.is_dir():
            found += sorted(str(p) for p in folder.iterdir() if p.name.startswith(("libavutil", "avutil")))
    system = ctypes.util.find_library("avutil")
    if system and sys.platform != "win32":
        found.append(system)
    return found


_limit_ffmpeg_allocations()


STILL_IMAGE_FORMATS = {"image2", "apng", "webp_pipe"}


def open_video(path: Path, name: str | None = None) -> av.container.InputContainer:
    """The file opened with its first video stream ready to decode (see `tools.containers`: one file, an allowed
    format, sizes checked); a DecodeError that says what the file is otherwise, calling it `name` (its own name by
    default)."""
    name = name or path.name
    if not path.is_file():
        raise DecodeError(f"{path} is not a file.")
    container = open_input(path, name)
    try:
        format_name = container.format.name
        if format_name in STILL_IMAGE_FORMATS or format_name.endswith("_pipe"):
            raise DecodeError(f"{name} is a still image ({format_name}), not a video. Pass a video file.")
        if not container.streams.video:
            raise DecodeError(f"{name} has no video stream (it may be audio only). Pass a file with video.")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise DecodeError(
                f"{name} has a video stream in a format this server has no decoder for (an unknown or "
                "proprietary codec). Convert it first, e.g. `ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4`."
            )
        prepare_video_stream(name, stream)
    except BaseException:
        container.close()
        raise
    return container


def ffmpeg_reason(exc: av.error.FFmpegError) -> str:
    return str(exc.strerror or exc).strip().rstrip(".")
