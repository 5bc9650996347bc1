"""yt-dlp behind one typed module: its options, its progress hooks and the mapping of its exceptions.

yt-dlp ships no type information and prints to stdout by default, which on the stdio transport is the MCP
protocol stream; `quiet` alone still prints download progress. So every console channel is closed here and
its messages go to Python logging (stderr) instead. Nothing else in the project imports yt_dlp.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yt_dlp
from yt_dlp.networking.exceptions import HTTPError, IncompleteRead, TransportError
from yt_dlp.utils import ContentTooShortError, GeoRestrictedError, UnsupportedError

from tools.errors import DownloadError

log = logging.getLogger(__name__)

# The smallest video-only stream of at least 384 px (the model's input size), capped at 480p; else the best
# video-only stream up to 480p; else a single file with audio (direct links, sites without split streams).
# Never a pair to merge: that would need ffmpeg.
VIDEO_FORMAT = "wv[height>=384][height<=480]/bv[height<=480]/wv/b[height<=480]/w"

ProgressHook = Callable[[int, int | None], None]
"""Called with (bytes downloaded, total bytes if known)."""


@dataclass(frozen=True)
class DownloadedVideo:
    path: Path
    title: str | None
    extractor: str
    video_id: str


class _LogToStderr:
    """The logger yt-dlp calls instead of printing; everything it says goes to Python logging."""

    def debug(self, msg: str) -> None:
        log.debug("%s", msg)

    def info(self, msg: str) -> None:
        log.debug("%s", msg)

    def warning(self, msg: str) -> None:
        log.info("%s", msg)

    def error(self, msg: str) -> None:
        log.info("%s", msg)


def download(url: str, dest_dir: Path, *, on_progress: ProgressHook | None = None) -> DownloadedVideo:
    """Download the video at `url` (a page yt-dlp supports or a direct file) into `dest_dir`."""

    def hook(status: dict[str, Any]) -> None:
        if on_progress is not None and status.get("status") == "downloading":
            total = status.get("total_bytes") or status.get("total_bytes_estimate")
            on_progress(int(status.get("downloaded_bytes") or 0), int(total) if total else None)

    options: dict[str, Any] = {
        "format": VIDEO_FORMAT,
        "outtmpl": {"default": str(dest_dir / "video.%(ext)s")},
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _LogToStderr(),
        "progress_hooks": [hook],
        "cachedir": False,
        "socket_timeout": 30,
        "retries": 3,
        "color": {"stdout": "never", "stderr": "never"},
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as exc:
        raise _explain(url, exc) from exc
    if info is None:
        raise DownloadError(f"yt-dlp found nothing to download at {url}. Check that the URL points to a video.")
    if info.get("_type") == "playlist":
        raise DownloadError(f"{url} is a playlist. Pass the URL of a single video from it.")
    requested = info.get("requested_downloads") or []
    filepath = requested[0].get("filepath") if requested else None
    if not filepath or not Path(filepath).is_file():
        raise DownloadError(f"yt-dlp reported no downloaded file for {url}. The site may offer no video stream.")
    return DownloadedVideo(
        path=Path(filepath),
        title=info.get("title"),
        extractor=str(info.get("extractor_key") or info.get("extractor") or "generic"),
        video_id=str(info.get("id") or ""),
    )


def _explain(url: str, exc: yt_dlp.utils.DownloadError) -> DownloadError:
    """Turn yt-dlp's error into one that says what went wrong and what to try."""
    host = urlsplit(url).hostname or url
    for cause in _causes(exc):
        if isinstance(cause, HTTPError):
            return DownloadError(
                f"{host} answered HTTP {cause.status} {cause.reason or ''}".rstrip()
                + f" for {url}. Check that the URL is right and the video is public."
            )
        if isinstance(cause, UnsupportedError):
            return DownloadError(
                f"No video found at {url}: it is not a direct video file and yt-dlp has no extractor for that page. "
                "Pass a direct link to a video file or the page of a single video on a site yt-dlp supports."
            )
        if isinstance(cause, (ContentTooShortError, IncompleteRead)):
            return _dropped(host, url)
        if isinstance(cause, GeoRestrictedError):
            return DownloadError(f"The video at {url} is not available from this server's country.")
        if isinstance(cause, TransportError):
            return DownloadError(f"Could not reach {host} ({cause.msg or cause}). Check the URL and the network.")
    message = str(exc).removeprefix("ERROR: ").strip()
    # The downloader reports a short read as text only, with no exception attached.
    short = _SHORT_READ.search(message)
    if short:
        return _dropped(host, url, f" (got {short[1]} of {short[2]} bytes)")
    return DownloadError(f"Downloading {url} failed: {message}")


_SHORT_READ = re.compile(r"Downloaded (\d+) bytes, expected (\d+) bytes")


def _dropped(host: str, url: str, detail: str = "") -> DownloadError:
    return DownloadError(
        f"The connection to {host} dropped before {url} was complete{detail}, even after retries; "
        "nothing was kept. Try again, or check the server."
    )


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps, through yt-dlp's exc_info and Python's cause chain."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        exc_info = getattr(current, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1 and isinstance(exc_info[1], BaseException):
            pending.append(exc_info[1])
        wrapped = getattr(current, "cause", None)
        if isinstance(wrapped, BaseException):
            pending.append(wrapped)
        pending.append(current.__cause__)
        pending.append(current.__context__)
    return seen
