"""yt-dlp behind one typed module: its options, its progress hooks and the mapping of its exceptions.

yt-dlp ships no type information and prints to stdout by default, which on the stdio transport is the MCP
protocol stream; `quiet` alone still prints download progress. So every console channel is closed here and
its messages go to Python logging (stderr) instead. Nothing else in the project imports yt_dlp.

A fetch is two steps on one `YoutubeDL`: extract the metadata (so that limits are checked and the cache is
consulted before any video byte moves), then download from that same metadata.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yt_dlp
from yt_dlp.networking.exceptions import HTTPError, IncompleteRead, TransportError
from yt_dlp.utils import ContentTooShortError, GeoRestrictedError, UnsupportedError

from tools.errors import DownloadError, LimitError, SourceError
from tools.netguard import NonPublicAddressError

log = logging.getLogger(__name__)

# The smallest stream of at least 384 px (the model's input size) capped at 480p, video-only first; else the
# largest below 384; else the smallest there is. Never a pair to merge: that would need ffmpeg.
VIDEO_FORMAT = "wv[height>=384][height<=480]/wv*[height>=384][height<=480]/bv[height<=480]/bv*[height<=480]/wv*/w"

ProgressHook = Callable[[int, int | None], None]
"""Called with (bytes downloaded, total bytes if known)."""


@dataclass(frozen=True)
class DownloadOptions:
    timeout_s: float = 30.0
    retries: int = 3
    max_bytes: int | None = None
    cookies: Path | None = None
    subtitle_language: str | None = "en"
    """Fetch subtitles or automatic captions in this language; None fetches none."""


@dataclass(frozen=True)
class VideoMetadata:
    url: str
    extractor: str
    video_id: str
    title: str | None
    duration_s: float | None
    size_bytes: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class DownloadedVideo:
    path: Path
    subtitles: Path | None


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


class YtdlpSession:
    """One yt-dlp instance writing into `dest_dir`: extract, then (if still wanted) download."""

    def __init__(self, dest_dir: Path, options: DownloadOptions, on_progress: ProgressHook | None = None) -> None:
        self._options = options

        def hook(status: dict[str, Any]) -> None:
            if on_progress is not None and status.get("status") == "downloading":
                total = status.get("total_bytes") or status.get("total_bytes_estimate")
                on_progress(int(status.get("downloaded_bytes") or 0), int(total) if total else None)

        params: dict[str, Any] = {
            "format": VIDEO_FORMAT,
            "outtmpl": {"default": str(dest_dir / "video.%(ext)s"), "subtitle": str(dest_dir / "video.%(ext)s")},
            "noplaylist": True,
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "logger": _LogToStderr(),
            "progress_hooks": [hook],
            "cachedir": False,
            "socket_timeout": options.timeout_s,
            "retries": options.retries,
            "fragment_retries": options.retries,
            "concurrent_fragment_downloads": 1,  # the address guard watches this thread only
            "fixup": "never",  # fixups need ffmpeg; the decoder reads the streams as they come
            "color": {"stdout": "never", "stderr": "never"},
        }
        if options.max_bytes is not None:
            params["max_filesize"] = options.max_bytes
        if options.cookies is not None:
            params["cookiefile"] = str(options.cookies)
        if options.subtitle_language:
            params |= {
                "writesubtitles": True,
                "writeautomaticsub": True,
                "subtitleslangs": [options.subtitle_language, f"{re.escape(options.subtitle_language)}-.*"],
                "subtitlesformat": "vtt/srt/best",
            }
        self._ydl = yt_dlp.YoutubeDL(params)

    def __enter__(self) -> YtdlpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self._ydl.close()

    def extract(self, url: str) -> VideoMetadata:
        with _explained(url, self._options):
            info = self._ydl.extract_info(url, download=False)
        if info is None:
            raise DownloadError(f"yt-dlp found nothing to download at {url}. Check that the URL points to a video.")
        if info.get("_type") == "playlist":
            raise DownloadError(f"{url} is a playlist. Pass the URL of a single video from it.")
        if info.get("is_live"):
            raise DownloadError(f"{url} is a live stream. Pass a recorded video.")
        extractor = str(info.get("extractor_key") or info.get("extractor") or "Generic")
        size = info.get("filesize") or info.get("filesize_approx")
        duration = info.get("duration")
        return VideoMetadata(
            url=url,
            extractor=extractor,
            video_id=str(info.get("id") or ""),
            title=info.get("title"),
            duration_s=float(duration) if duration else None,
            size_bytes=int(size) if size else None,
            raw=info,
        )

    def download(self, metadata: VideoMetadata) -> DownloadedVideo:
        with _explained(metadata.url, self._options):
            info = self._ydl.process_ie_result(dict(metadata.raw), download=True)
        requested = info.get("requested_downloads") or []
        filepath = requested[0].get("filepath") if requested else None
        if not filepath or not Path(filepath).is_file():
            if self._options.max_bytes is not None:
                # yt-dlp skips a file over max_filesize without an error: the path just never appears.
                raise LimitError(
                    f"The video at {metadata.url} is larger than the download limit of "
                    f"{self._options.max_bytes / 2**20:.0f} MB. Raise --max-download-mb to fetch it."
                )
            raise DownloadError(f"yt-dlp reported no downloaded file for {metadata.url}.")
        subtitles = None
        for track in (info.get("requested_subtitles") or {}).values():
            path = track.get("filepath")
            if path and Path(path).is_file():
                subtitles = Path(path)
                break
        return DownloadedVideo(path=Path(filepath), subtitles=subtitles)


@contextmanager
def _explained(url: str, options: DownloadOptions) -> Iterator[None]:
    try:
        yield
    except yt_dlp.utils.DownloadError as exc:
        raise _explain(url, exc, options) from exc


_SHORT_READ = re.compile(r"Downloaded (\d+) bytes, expected (\d+) bytes")
_NEEDS_LOGIN = re.compile(
    r"sign in|log ?in|cookies|private video|members[- ]only|age[- ]restricted|confirm your age|not a bot", re.I
)


def _explain(url: str, exc: yt_dlp.utils.DownloadError, options: DownloadOptions) -> Exception:
    """Turn yt-dlp's error into one that says what went wrong and what to try."""
    host = urlsplit(url).hostname or url
    message = str(exc).removeprefix("ERROR: ").strip()
    causes = _causes(exc)

    def found(*kinds: type[BaseException]) -> BaseException | None:
        return next((c for c in causes if isinstance(c, kinds)), None)

    if (blocked := found(NonPublicAddressError)) is not None:
        return SourceError(
            f"Refused {url}: it led to {str(blocked).removeprefix('connection to ')}, and this server fetches "
            "only from public addresses (--block-private-urls). Use a public URL."
        )
    if isinstance(http := found(HTTPError), HTTPError):
        http.response.close()  # the error holds the open response; ours outlives it in the cause chain
        if http.status in (401, 403) and options.cookies is None:
            return DownloadError(
                f"{host} answered HTTP {http.status} for {url}: the video needs a login. Start the server "
                "with --cookies FILE (cookies exported from a browser signed in to the site, Netscape format)."
            )
        return DownloadError(
            f"{host} answered HTTP {http.status} {http.reason or ''}".rstrip()
            + f" for {url}. Check that the URL is right and the video is public."
        )
    if found(UnsupportedError) is not None:
        return DownloadError(
            f"No video found at {url}: it is not a direct video file and yt-dlp has no extractor for that page. "
            "Pass a direct link to a video file or the page of a single video on a site yt-dlp supports."
        )
    if found(GeoRestrictedError) is not None:
        return DownloadError(f"The video at {url} is not available from this server's country.")
    if found(ContentTooShortError, IncompleteRead) is not None:
        return _dropped(host, url)
    if found(TimeoutError) is not None:
        return _timed_out(host, url, options)
    if isinstance(transport := found(TransportError), TransportError):
        return DownloadError(f"Could not reach {host} ({transport.msg or transport}). Check the URL and the network.")
    if _NEEDS_LOGIN.search(message):
        hint = (
            "The cookies given with --cookies were not enough: export them again from a browser signed in to the site."
            if options.cookies is not None
            else "Start the server with --cookies FILE (cookies exported from a browser signed in to the site, "
            "Netscape format)."
        )
        return DownloadError(f"The video at {url} needs a login or an age check ({message}). {hint}")
    # The downloader reports a short read as text only, with no exception attached.
    short = _SHORT_READ.search(message)
    if short:
        return _dropped(host, url, f" (got {short[1]} of {short[2]} bytes)")
    if "timed out" in message.lower():
        return _timed_out(host, url, options)
    return DownloadError(f"Downloading {url} failed: {message}")


def _timed_out(host: str, url: str, options: DownloadOptions) -> DownloadError:
    return DownloadError(
        f"{host} did not answer within {options.timeout_s:g} s for {url}, even after {options.retries} retries. "
        "Try again later, or raise --download-timeout-s."
    )


def _dropped(host: str, url: str, detail: str = "") -> DownloadError:
    return DownloadError(
        f"The connection to {host} dropped before {url} was complete{detail}, even after retries; "
        "nothing was kept. Try again, or check the server."
    )


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps, through yt-dlp's exc_info and cause, and Python's chain."""
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
