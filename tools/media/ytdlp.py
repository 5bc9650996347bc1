"""yt-dlp behind one typed module: its options, its progress hooks and the mapping of its exceptions.

yt-dlp ships no type information and prints to stdout by default, which on the stdio transport is the MCP
protocol stream; `quiet` alone still prints download progress. So every console channel is closed here and
its messages go to Python logging (stderr) instead. Nothing else in the project imports yt_dlp.

A fetch is two steps on one `YoutubeDL`: extract the metadata (so that limits are checked and the cache is
consulted before any video byte moves), then download from that same metadata.

Nothing a server sends may make this process read, write or wait without bound:

- a page, manifest or API answer that yt-dlp reads whole (to look for a video in it) is cut at `MAX_PAGE_BYTES`;
- the bytes actually written are counted as they arrive (direct files, HLS and DASH fragments alike), so
  `max_bytes` holds without a Content-Length, for chunked and endless bodies too;
- the whole fetch has a deadline, and cancelling the call stops it;
- only http and https URLs are fetched, at every hop (a redirect, a playlist's segment, a page's meta refresh or
  og:video): file://, ftp:// and every other scheme are refused with the URL that led there, and no program
  (ffmpeg, rtmpdump) is ever started: live streams and streams over other protocols are refused before any media.

Each of these stops a fetch by shutting its sockets down (`netguard.ConnectionWatch`): that also ends a read
blocked on a server that drips a byte at a time, and yt-dlp then fails as on a network error, cleaning up after
itself; the reason the watch was cut decides the error the caller gets.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import yt_dlp
from yt_dlp.networking.exceptions import HTTPError, IncompleteRead, TransportError
from yt_dlp.utils import ContentTooShortError, GeoRestrictedError, UnsupportedError

from llava_video_mcp.tools.cancel import Cancelled, CancelToken
from llava_video_mcp.tools.errors import DownloadError, LimitError, SourceError, VideoToolError
from llava_video_mcp.tools.media.netguard import (
    LOCAL_TRY,
    ConnectionWatch,
    NonPublicAddressError,
    ProgramRefusedError,
    SchemeRefusedError,
    check_scheme,
)
from llava_video_mcp.tools.progress import DownloadProgress

MAX_PAGE_BYTES = 8 * 2**20
"""Most read from a page, manifest or API answer: real ones are far smaller; an endless one stops here."""
_CANCELLED, _DEADLINE, _TOO_LARGE = "the call was cancelled", "the download deadline passed", "over the size limit"
FETCHED_PROTOCOLS = ("http", "https", "m3u8", "m3u8_native", "http_dash_segments")
"""What yt-dlp's own downloaders fetch over http(s): direct files, HLS and DASH. Others (rtmp, rtsp, mms, f4m, ...)
would need a program such as ffmpeg or rtmpdump."""

log = logging.getLogger(__name__)

# The smallest stream of at least 384 px (the model's input size) capped at 480p, video-only first; else the
# largest below 384; else the smallest there is. Never a pair to merge: that would need ffmpeg.
VIDEO_FORMAT = "wv[height>=384][height<=480]/wv*[height>=384][height<=480]/bv[height<=480]/bv*[height<=480]/wv*/w"
READABLE_FORMAT = (
    "wv[height>=720][height<=1080]/wv*[height>=720][height<=1080]/bv[height<=1080]/bv*[height<=1080]/" + VIDEO_FORMAT
)
"""Where text on screen will be read: the smallest stream of 720p to 1080p, else the largest up to 1080p (a 14 px
label of a 1080p screen recording is unreadable at 480p); else what the model's format takes."""
AUDIO_FORMAT = "wa[abr>=32]/wa"
"""The smallest adequate audio-only stream (opus or m4a at 32 kbit/s and up: speech recognition reads 16 kHz), for
sites that serve sound apart from the picture, fetched only when speech will be heard."""

ProgressHook = DownloadProgress


@dataclass(frozen=True)
class DownloadOptions:
    timeout_s: float = 30.0
    retries: int = 3
    max_bytes: int | None = None
    deadline_s: float | None = None
    """Longest the whole fetch (metadata and download) may take."""
    cookies: Path | None = None
    subtitle_language: str | None = "en"
    """Fetch subtitles or automatic captions in this language; None fetches none."""
    sound: bool = False
    """Fetch the sound as well where the picture comes without it (and there are no subtitles): speech will be
    heard. It counts against `max_bytes` with the picture."""
    readable: bool = False
    """Fetch a picture to read text in (READABLE_FORMAT) rather than the model's small one: on-screen text will be
    read. It counts against `max_bytes` like any picture."""


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
    audio: Path | None = None
    """The sound, fetched apart from a picture that has none."""
    silent_picture: bool = False
    """The picture came without sound (its format is video only), whether or not the sound was fetched too."""


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


class _BoundedYoutubeDL(yt_dlp.YoutubeDL):  # type: ignore[misc]  # yt-dlp is untyped
    """yt-dlp with every whole-body read (a page, a manifest: `read()` with no size) cut at MAX_PAGE_BYTES.
    Media downloads read in blocks, so they are not affected; their bytes are counted by the progress hook."""

    def urlopen(self, req: Any) -> Any:
        try:
            check_scheme(req if isinstance(req, str) else str(getattr(req, "url", "")))
        except SchemeRefusedError as refused:
            # As a network error: yt-dlp's downloaders then close their files, as they do when a connection fails.
            raise TransportError(str(refused), cause=refused) from refused
        response = super().urlopen(req)
        # The class's own read, and a weak reference: the response must not hold itself alive through its reader.
        read_some, reference, url = type(response).read, weakref.ref(response), response.url

        def read_bounded(amt: int | None = None) -> bytes:
            this = reference()
            assert this is not None
            if amt is not None and amt >= 0:
                return bytes(read_some(this, amt))
            chunks: list[bytes] = []
            size = 0
            while chunk := read_some(this, 64 * 1024):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_PAGE_BYTES:
                    this.close()
                    raise LimitError(
                        f"{url} sent more than {MAX_PAGE_BYTES // 2**20} MB of page data (it is not a video file, and "
                        "no video page is that large), so it was not read further. Pass a direct link to a video file "
                        "or the page of a single video."
                    )
            return b"".join(chunks)

        response.read = read_bounded
        return response


class YtdlpSession:
    """One yt-dlp instance writing into `dest_dir`: extract, then (if still wanted) download.

    Used as a context manager, in the thread that fetches: the fetch's connections are watched from `__enter__`
    to `__exit__`, and cut when `cancel` is set or `options.deadline_s` passes.
    """

    def __init__(
        self,
        dest_dir: Path,
        options: DownloadOptions,
        on_progress: ProgressHook | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        self._options = options
        self._dest_dir = dest_dir
        self._cancel = cancel
        self._watch = ConnectionWatch()
        self._open = ExitStack()
        self._too_large: LimitError | None = None
        self._url = "the video"
        self._earlier_bytes = 0
        """Bytes of the files this session downloaded before the one in progress (the picture, then the sound)."""

        def hook(status: dict[str, Any]) -> None:
            if status.get("status") != "downloading":
                return
            done = self._earlier_bytes + int(status.get("downloaded_bytes") or 0)
            if options.max_bytes is not None and done > options.max_bytes:
                # Stopped by cutting the connections rather than by raising here: yt-dlp's downloaders then fail
                # the way they fail on a network error, closing their files (the HLS and DASH ones would catch an
                # exception from a hook per fragment, and leave the fragment's file open).
                if self._too_large is None:
                    self._too_large = _over_size_limit(self._url, options.max_bytes, "counted as it arrived")
                self._watch.cut(_TOO_LARGE)
            elif on_progress is not None:
                total = status.get("total_bytes") or status.get("total_bytes_estimate")
                on_progress(done, int(total) if total else None)

        params: dict[str, Any] = {
            "format": READABLE_FORMAT if options.readable else VIDEO_FORMAT,
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
            "external_downloader": {"default": "native"},  # HLS and DASH by yt-dlp itself, never ffmpeg
            "color": {"stdout": "never", "stderr": "never"},
            # urllib, whatever else is installed (requests, curl_cffi): the scheme guard reads urllib's audit events
            # of every request and redirect, and the errors are mapped from urllib's.
            "compat_opts": {"prefer-legacy-http-handler"},
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
        self._ydl = _BoundedYoutubeDL(params)

    def __enter__(self) -> YtdlpSession:
        self._open.enter_context(self._watch.watching())
        if self._cancel is not None:
            self._open.enter_context(self._cancel.on_cancel(lambda: self._watch.cut(_CANCELLED)))
        if self._options.deadline_s is not None:
            timer = threading.Timer(self._options.deadline_s, self._watch.cut, args=(_DEADLINE,))
            timer.daemon = True
            timer.start()
            self._open.callback(timer.cancel)
        return self

    def __exit__(self, *exc: object) -> None:
        self._ydl.close()
        self._open.close()
        self._watch.close_all()

    def extract(self, url: str) -> VideoMetadata:
        self._url = url
        with self._explained(url):
            info = self._ydl.extract_info(url, download=False)
        if info is None:
            raise DownloadError(f"yt-dlp found nothing to download at {url}. Check that the URL points to a video.")
        if info.get("_type") == "playlist":
            raise DownloadError(f"{url} is a playlist. Pass the URL of a single video from it.")
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            raise DownloadError(
                f"{url} is a live stream (a playlist that keeps growing, with no end). Pass a recorded video."
            )
        media_url = str(info.get("url") or "")
        if media_url and urlsplit(media_url).scheme.lower() not in ("http", "https"):
            raise _refused_scheme(url, media_url)
        protocols = str(info.get("protocol") or "https").split("+")
        if any(protocol not in FETCHED_PROTOCOLS for protocol in protocols):
            raise DownloadError(
                f"{url} is streamed over {'+'.join(protocols)}, which this server does not fetch (it fetches "
                "http(s) files, HLS and DASH). Pass another link to the video."
            )
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
        if str(metadata.raw.get("protocol") or "http") not in ("http", "https"):
            # yt-dlp would check max_filesize against each fragment of an HLS or DASH stream, and skip the large
            # ones in silence; the byte count of the progress hook holds the limit for the stream as a whole.
            self._ydl.params["max_filesize"] = None
        with self._explained(metadata.url):
            info = self._ydl.process_ie_result(dict(metadata.raw), download=True)
        requested = info.get("requested_downloads") or []
        filepath = requested[0].get("filepath") if requested else None
        if not filepath or not Path(filepath).is_file():
            if self._options.max_bytes is not None:
                # yt-dlp skips a file over max_filesize without an error: the path just never appears.
                raise _over_size_limit(metadata.url, self._options.max_bytes, "by the size the server announced")
            raise DownloadError(f"yt-dlp reported no downloaded file for {metadata.url}.")
        subtitles = None
        for track in (info.get("requested_subtitles") or {}).values():
            path = track.get("filepath")
            if path and Path(path).is_file():
                subtitles = Path(path)
                break
        silent_picture = info.get("acodec") == "none"
        audio = None
        if silent_picture and subtitles is None and self._options.sound:
            self._earlier_bytes = Path(filepath).stat().st_size
            audio = self.download_sound(metadata)
        return DownloadedVideo(Path(filepath), subtitles, audio, silent_picture)

    def download_sound(self, metadata: VideoMetadata) -> Path | None:
        """The smallest adequate audio-only stream, as `audio.<ext>`; None when the site offers none."""
        ydl = self._ydl
        ydl.format_selector = ydl.build_format_selector(AUDIO_FORMAT)
        ydl.params["outtmpl"] = {"default": str(self._dest_dir / "audio.%(ext)s")}
        ydl.params["writesubtitles"] = ydl.params["writeautomaticsub"] = False
        try:
            with self._explained(metadata.url):
                info = ydl.process_ie_result(dict(metadata.raw), download=True)
        except DownloadError as exc:
            if "format is not available" not in str(exc):
                raise
            log.info("%s offers no audio-only stream: its picture is heard as silent", metadata.url)
            return None
        requested = info.get("requested_downloads") or []
        path = requested[0].get("filepath") if requested else None
        return Path(path) if path and Path(path).is_file() else None

    @contextmanager
    def _explained(self, url: str) -> Iterator[None]:
        """yt-dlp's failures as errors that say what to change. A cut watch says why the connections went, also
        when yt-dlp carried on without them (it skips fragments it cannot fetch) and reported success."""
        try:
            yield
        except Exception as exc:
            if (stopped := self._stopped(url, exc)) is not None:
                raise stopped from exc
            if isinstance(exc, VideoToolError):
                raise
            if isinstance(exc, (yt_dlp.utils.YoutubeDLError, OSError)):
                # OSError: a guard's refusal (a scheme, an address, a program) that yt-dlp let through unwrapped.
                raise explain(url, exc, self._options) from exc
            raise
        if (stopped := self._stopped(url, None)) is not None:
            raise stopped

    def _stopped(self, url: str, exc: Exception | None) -> Exception | None:
        """The error for a fetch this process stopped: cancelled, a URL refused for its scheme, over the size limit,
        or past its deadline."""
        reason = self._watch.reason
        if reason == _CANCELLED or (exc is not None and any(isinstance(c, Cancelled) for c in _causes(exc))):
            return Cancelled(_CANCELLED)
        if self._watch.refused is not None:
            return _refused_scheme(url, self._watch.refused)
        if reason == _TOO_LARGE and self._too_large is not None:
            return self._too_large
        if reason == _DEADLINE:
            return LimitError(
                f"Fetching {url} took longer than {self._options.deadline_s:g} s, so it was stopped and nothing was "
                "kept. The server may be very slow, or send data a trickle at a time; raise --download-deadline-s to "
                "wait longer."
            )
        return None


def _over_size_limit(what: str, limit: int, how: str) -> LimitError:
    return LimitError(
        f"{what} is larger than the download limit of {limit / 2**20:g} MB ({how}), so the download was stopped and "
        "nothing was kept. Raise --max-download-mb to fetch it."
    )


_SHORT_READ = re.compile(r"Downloaded (\d+) bytes, expected (\d+) bytes")
_CUT_READ = re.compile(r"(\d+) bytes read, (\d+) more expected")
"""The same short read, as the downloader words it when its retries ran out mid-stream."""
_NEEDS_LOGIN = re.compile(
    r"sign in|log ?in|cookies|private video|members[- ]only|age[- ]restricted|confirm your age|not a bot", re.I
)


def explain(url: str, exc: Exception, options: DownloadOptions) -> Exception:
    """Turn yt-dlp's error into one that says what went wrong and what to try."""
    host = urlsplit(url).hostname or url
    message = str(exc).removeprefix("ERROR: ").strip()
    causes = _causes(exc)

    def found(*kinds: type[BaseException]) -> BaseException | None:
        return next((c for c in causes if isinstance(c, kinds)), None)

    if isinstance(limit := found(VideoToolError), VideoToolError):
        return limit
    if isinstance(refused := found(SchemeRefusedError), SchemeRefusedError):
        return _refused_scheme(url, refused.url)
    if found(ProgramRefusedError) is not None:
        return DownloadError(
            f"{url} needs an external program (ffmpeg or rtmpdump) to download, and this server starts none. Pass "
            "a direct link to a video file, or an HLS or DASH stream."
        )
    if (blocked := found(NonPublicAddressError)) is not None:
        return SourceError(f"Refused {url}: it led to {str(blocked).removeprefix('connection to ')}, and {LOCAL_TRY}")
    if isinstance(http := found(HTTPError), HTTPError):
        http.response.close()  # the error holds the open response; ours outlives it in the cause chain
        location = urljoin(http.response.url or url, http.response.headers.get("Location") or "")
        if 300 <= http.status < 400 and urlsplit(location).scheme.lower() not in ("http", "https"):
            return _refused_scheme(url, location)
        if 300 <= http.status < 400:
            return DownloadError(
                f"{host} kept redirecting {url} (HTTP {http.status}): a redirect loop, or more redirects than a "
                "client follows. Open the URL in a browser to find where the video really is, and pass that URL."
            )
        if http.status in (401, 403) and options.cookies is None:
            return DownloadError(
                f"{host} answered HTTP {http.status} for {url}: the video needs a login. Start the server "
                "with --cookies FILE (cookies exported from a browser signed in to the site, Netscape format)."
            )
        return DownloadError(
            f"{host} answered HTTP {http.status} {http.reason or ''}".rstrip()
            + f" for {url}. Check that the URL is right and the video is public.",
            retryable=http.status in (408, 429) or http.status >= 500,
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
        return DownloadError(
            f"Could not reach {host} ({transport.msg or transport}). Check the URL and the network.", retryable=True
        )
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
    cut = _CUT_READ.search(message)
    if cut:
        return _dropped(host, url, f" (got {cut[1]} of {int(cut[1]) + int(cut[2])} bytes)")
    if "timed out" in message.lower():
        return _timed_out(host, url, options)
    return DownloadError(f"Downloading {url} failed: {message}")


def _refused_scheme(url: str, target: str) -> SourceError:
    shown = target if len(target) <= 200 else target[:199] + "…"
    return SourceError(
        f"Refused {url}: it leads to {shown}, and this server fetches only http and https URLs (at every redirect, "
        "segment and link). Pass an http(s) URL of the video."
    )


def _timed_out(host: str, url: str, options: DownloadOptions) -> DownloadError:
    return DownloadError(
        f"{host} did not answer within {options.timeout_s:g} s for {url}, even after {options.retries} retries. "
        "Try again later, or raise --download-timeout-s.",
        retryable=True,
    )


def _dropped(host: str, url: str, detail: str = "") -> DownloadError:
    return DownloadError(
        f"The connection to {host} dropped before {url} was complete{detail}, even after retries; "
        "nothing was kept. Try again, or check the server.",
        retryable=True,
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
