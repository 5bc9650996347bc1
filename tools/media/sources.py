"""Resolving a source (local path or URL) to a local video file, downloading URLs into the cache (`cache.py`):
asking again for a URL touches no network at all, and another URL of the same video reuses the file after metadata
extraction alone. Calls for the same URL take turns, so it is downloaded once.

Whether a file is a video this server can read, and how long it lasts, is the frames stage's to say: the fetcher
is given that as `inspect` (the server passes `frames.media_duration`), so a download that is no readable video is
not kept, and the duration limit holds for files whose header states none. Whether a file is a still image (told by
its content, never its name), and whether it is one this server can read, is the frames stage's to say too
(`inspect_image`, `frames.image_facts`): `fetch_media` then gives a `LocalImage` where `fetch` gives a `LocalVideo`,
under the same checks (allowed folders, private URLs, the download limits, the cache). A damaged or hostile image is
refused there, and never kept in the cache.

Sources come from strangers: a source is checked as text before anything is done with it (length, control
characters, URL syntax), a local path must lie in the allowed folders before the server even looks whether it
exists (so refusals tell nothing about files outside them), and a subtitle file beside a video passes the same
check as the video.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError, DownloadError, LimitError, SourceError, VideoToolError
from llava_video_mcp.tools.media import netguard, ytdlp
from llava_video_mcp.tools.media.cache import VideoCache, entry_key
from llava_video_mcp.tools.untrusted import short_title

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Needs:
    """What a fetch must bring besides the picture, for the tracks to be read (each track says what it needs, and
    a call brings what all of them need: `a | b`)."""

    subtitles: str | None = None
    """Subtitles in this language, when the site (or a file beside a local video) has them."""
    sound: bool = False
    """The sound, where a site serves it apart from the picture."""
    readable_picture: bool = False
    """A picture large enough to read text in (720p where the site has it), not the model's small one."""

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.subtitles or other.subtitles,
            self.sound or other.sound,
            self.readable_picture or other.readable_picture,
        )


SUBTITLES_ONLY = Needs(subtitles="en")
"""What a fetch brings when the caller says nothing: English subtitles where there are some."""


MAX_SOURCE_CHARS = 4096
"""Longer than any path (PATH_MAX) or sensible URL: anything longer is not a source."""

Inspect = Callable[[Path, str], float]
"""Reads a fetched file, called by a name for messages (its URL for a download): its duration in seconds, or a
DecodeError when it is no video this server can read."""


@dataclass(frozen=True)
class ImageFacts:
    """What the frames stage read from a still image: its format and size, as displayed."""

    format: str
    """png, jpeg, webp or gif (from the file's content)."""
    width: int
    height: int
    """As displayed: after the EXIF orientation, so a portrait photo stored sideways is taller than wide."""
    animated: bool = False
    """It holds more frames (an animated GIF, WebP or PNG): only the first is read."""


InspectImage = Callable[[Path, str], ImageFacts | None]
"""Reads a fetched file, called by a name for messages: its facts when its content is a still image, None when it
is none (it is then the video `Inspect`'s to read); a DecodeError or LimitError when it is an image this server
cannot read (damaged, cut short, too large to decode, a document posing as an image)."""


@dataclass(frozen=True)
class FetchPolicy:
    """What a server lets callers fetch, and the limits of each fetch."""

    max_duration_s: float = 3 * 3600
    max_download_bytes: int | None = 2 * 2**30
    download_deadline_s: float | None = 3600.0
    download_timeout_s: float = 30.0
    download_retries: int = 3
    cookies: Path | None = None
    block_private_urls: bool = False
    local_files: bool = True
    allowed_dirs: Sequence[Path] = field(default_factory=tuple)
    """When not empty, local paths must resolve (symlinks and `..` followed) inside one of these folders."""


@dataclass(frozen=True)
class LocalVideo:
    """A source resolved to a readable local file."""

    source: str
    path: Path
    title: str | None
    """As `untrusted.short_title` cuts it: the same in the result and in every prompt."""
    from_cache: bool
    fetch_s: float
    subtitles: Path | None = None
    audio: Path | None = None
    """The sound, where a site served it apart from the picture; None: the video file's own."""
    sound_note: str | None = None
    """Why the sound the site serves apart from the picture is missing (and how to get it), when it is: the
    picture is then answered from alone."""
    cache_key: str | None = None
    store: Path | None = None
    """A folder for what is derived from this video (its packet index, notes on its windows): the cache entry of a
    download, so that it goes when the video goes; a folder of its own under the cache for a local file."""


@dataclass(frozen=True)
class LocalImage:
    """A source resolved to a readable local still image (its first frame, for an animated one)."""

    source: str
    path: Path
    width: int
    height: int
    """As displayed (after the EXIF orientation)."""
    format: str
    """png, jpeg, webp or gif, from the content."""
    title: str | None
    """As `untrusted.short_title` cuts it, like a video's."""
    from_cache: bool
    fetch_s: float
    animated: bool = False
    cache_key: str | None = None


LocalMedia = LocalVideo | LocalImage
"""What `fetch_media` resolves a source to."""


def not_a_video(image: LocalImage) -> DecodeError:
    """The refusal of a still image where only a video is taken."""
    return DecodeError(f"{_shown(image.source)} is a still image ({image.format}), not a video. Pass a video file.")


def default_cache_dir() -> Path:
    """The per-user cache folder for this platform."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llava-video-mcp"


class VideoFetcher:
    """Turns sources into local files: local paths as they are, URLs through yt-dlp into the cache."""

    def __init__(
        self,
        cache_dir: Path,
        policy: FetchPolicy | None = None,
        cache_max_bytes: int = 5 * 2**30,
        *,
        inspect: Inspect,
        inspect_image: InspectImage | None = None,
    ) -> None:
        self.policy = policy if policy is not None else FetchPolicy()
        self.inspect = inspect
        self.inspect_image = inspect_image
        """None: every source is read as a video (a still image is then refused by `inspect`)."""
        self.cache = VideoCache(cache_dir, cache_max_bytes)
        if self.cache.videos.is_dir():
            self.cache.remove_abandoned_staging()

    @contextmanager
    def fetched(
        self,
        source: str,
        *,
        needs: Needs = SUBTITLES_ONLY,
        on_progress: ytdlp.ProgressHook | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[LocalVideo]:
        """The source as a local file, protected from cache eviction while the block runs; with `needs.sound`, its sound
        too where a site serves it apart (speech will be heard). A still image is refused (`not_a_video`)."""
        with self.fetched_media(
            source,
            needs=needs,
            on_progress=on_progress,
            cancel=cancel,
        ) as media:
            if isinstance(media, LocalImage):
                raise not_a_video(media)
            yield media

    @contextmanager
    def fetched_media(
        self,
        source: str,
        *,
        needs: Needs = SUBTITLES_ONLY,
        on_progress: ytdlp.ProgressHook | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[LocalMedia]:
        """`fetched` for a video or a still image (told by the file's content; see `fetch_media`)."""
        media = self.fetch_media(
            source,
            needs=needs,
            on_progress=on_progress,
            cancel=cancel,
        )
        try:
            yield media
        finally:
            if media.cache_key is not None:
                self.cache.release(media.cache_key)

    def needs_download(self, source: str) -> bool:
        """Whether fetching `source` downloads: an http(s) URL with no entry in the cache yet. Looks at two small
        files, never at the network (the server runs downloads in a pool of their own)."""
        try:
            text = checked_source(source)
            scheme = _split_url(text).scheme.lower()
        except SourceError:
            return False
        return scheme in ("http", "https") and not self.cache.has_alias(text)

    def download(
        self,
        source: str,
        *,
        needs: Needs = SUBTITLES_ONLY,
        on_progress: ytdlp.ProgressHook | None = None,
        cancel: CancelToken,
    ) -> float | None:
        """Bring `source` into the cache ahead of the call that needs it (which then finds it there): the seconds
        the download took, None when it was in the cache already. A still image is brought in too (with
        `inspect_image`): the call decides whether it takes one."""
        with self.fetched_media(
            source,
            needs=needs,
            on_progress=on_progress,
            cancel=cancel,
        ) as got:
            return None if got.from_cache else got.fetch_s

    def fetch(
        self,
        source: str,
        *,
        needs: Needs = SUBTITLES_ONLY,
        on_progress: ytdlp.ProgressHook | None = None,
        cancel: CancelToken | None = None,
    ) -> LocalVideo:
        """The source as a local file; a cached one is marked in use until `cache.release(video.cache_key)`. A still
        image is refused (`not_a_video`)."""
        media = self.fetch_media(
            source,
            needs=needs,
            on_progress=on_progress,
            cancel=cancel,
        )
        if isinstance(media, LocalImage):
            if media.cache_key is not None:
                self.cache.release(media.cache_key)
            raise not_a_video(media)
        return media

    def fetch_media(
        self,
        source: str,
        *,
        needs: Needs = SUBTITLES_ONLY,
        on_progress: ytdlp.ProgressHook | None = None,
        cancel: CancelToken | None = None,
    ) -> LocalMedia:
        """The source as a local video or still image, told by the file's content (with `inspect_image`; without
        it, always a video); a cached one is marked in use until `cache.release(media.cache_key)`. The same checks
        hold for both: allowed folders, private URLs, the download limits; the duration limit for videos, the
        frames stage's size limits for images."""
        text = checked_source(source)
        parts = _split_url(text)
        scheme = parts.scheme.lower()
        if scheme in {"http", "https"}:
            return self._fetch_url(text, needs, on_progress, cancel)
        if scheme == "file":
            return self._local_file(source, Path(unquote(parts.path)), needs.subtitles)
        if "://" in text:
            raise SourceError(
                f"Unsupported URL scheme '{_shown(scheme)}' in {_shown(text)}. Pass an http(s) URL or a local file "
                "path."
            )
        return self._local_file(source, Path(text), needs.subtitles)

    def _fetch_url(
        self, url: str, needs: Needs, on_progress: ytdlp.ProgressHook | None, cancel: CancelToken | None
    ) -> LocalMedia:
        started = time.perf_counter()
        policy = self.policy
        if policy.block_private_urls:
            netguard.check_public_url(url)
        try:
            return self._fetch_into_cache(url, needs, on_progress, cancel, started)
        except OSError as exc:  # the network's errors come as VideoToolErrors: this is the cache's own folder
            raise DownloadError(
                f"The download cache in {self.cache.root} (--cache-dir) cannot be used: {exc.strerror or exc}"
                + (f" at {exc.filename}" if exc.filename else "")
                + ". A folder in it may have been replaced by a file, or it is not writable. Remove or repair that "
                "path, or start the server with another --cache-dir."
            ) from exc

    def _fetch_into_cache(
        self,
        url: str,
        needs: Needs,
        on_progress: ytdlp.ProgressHook | None,
        cancel: CancelToken | None,
        started: float,
    ) -> LocalMedia:
        policy = self.policy
        options = ytdlp.DownloadOptions(
            timeout_s=policy.download_timeout_s,
            retries=policy.download_retries,
            max_bytes=policy.max_download_bytes,
            deadline_s=policy.download_deadline_s,
            cookies=policy.cookies,
            subtitle_language=needs.subtitles,
            sound=needs.sound,
            readable=needs.readable_picture,
        )
        with self.cache.locked("url:" + url, cancel):
            key = self.cache.entry_for_alias(url)
            with netguard.public_only() if policy.block_private_urls else nullcontext():
                if key is not None and (video := self._claim(url, key, from_cache=True, started=started)):
                    log.info("cache hit for %s", url)
                    try:
                        if needs.sound and isinstance(video, LocalVideo) and self.cache.lacks_sound(key):
                            note = self._add_sound(url, key, options, on_progress, cancel)
                            amended = self._entry(url, key, from_cache=True, started=started)
                            video = replace(amended if isinstance(amended, LocalVideo) else video, sound_note=note)
                        self.cache.touch(key)
                    except BaseException:
                        self.cache.release(key)
                        raise
                    return video
                return self._download(url, options, on_progress, started, cancel)

    def _add_sound(
        self,
        url: str,
        key: str,
        options: ytdlp.DownloadOptions,
        on_progress: ytdlp.ProgressHook | None,
        cancel: CancelToken | None,
    ) -> str | None:
        """Fetch the sound of a cached video whose picture came without it (or whose sound is no longer in the
        cache), into its entry. When that fails, the cached picture still answers: the note says why the sound is
        missing and how to get it."""
        try:
            with (
                self.cache.staging() as staging,
                ytdlp.YtdlpSession(staging, options, on_progress, cancel) as session,
            ):
                sound = session.download_sound(session.extract(url))
                with self.cache.locked("key:" + key, cancel):
                    self.cache.amend(key, sound)
        except VideoToolError as exc:
            log.warning("the sound of %s could not be fetched: %s", url, exc)
            return (
                f"No speech was heard: the sound of this video, which the site serves apart from the picture, is not "
                f"in the cache and could not be fetched ({exc}). The answer comes from the cached picture alone. Ask "
                f"again when the site can be reached (the sound is then fetched), or remove the cache entry "
                f"{self.cache.videos / key} to download the video whole."
            )
        return None

    def _download(
        self,
        url: str,
        options: ytdlp.DownloadOptions,
        on_progress: ytdlp.ProgressHook | None,
        started: float,
        cancel: CancelToken | None,
    ) -> LocalMedia:
        with self.cache.staging() as staging, ytdlp.YtdlpSession(staging, options, on_progress, cancel) as session:
            metadata = session.extract(url)
            self._check_size(url, metadata.size_bytes)
            if metadata.duration_s is not None:
                self._check_duration(url, metadata.duration_s)
            key = entry_key(
                f"url:{url}" if metadata.extractor.lower() == "generic" else f"{metadata.extractor}:{metadata.video_id}"
            )
            with self.cache.locked("key:" + key, cancel):
                if self.cache.load(key) is not None and (video := self._claim(url, key, True, started)) is not None:
                    self.cache.touch(key)
                    self.cache.alias(url, key)
                    return video
                downloaded = session.download(metadata)
                # A download that is no readable video or image is not kept, and the error names the URL, not the
                # cache file.
                image = self._image_facts(downloaded.path, url)
                if image is None:
                    duration_s = self.inspect(downloaded.path, url)
                    if metadata.duration_s is None:
                        self._check_duration(url, duration_s)
                meta: dict[str, object] = {
                    "url": url,
                    "file": downloaded.path.name,
                    "subtitles": downloaded.subtitles.name if downloaded.subtitles else None,
                    "audio": downloaded.audio.name if downloaded.audio else None,
                    "silent_picture": downloaded.silent_picture,
                    **({"sound_sought": True} if options.sound else {}),
                    "title": short_title(metadata.title),
                    "extractor": metadata.extractor,
                    "video_id": metadata.video_id,
                    "duration_s": metadata.duration_s,
                }
                if image is not None:
                    meta |= {"kind": "image", "format": image.format, "width": image.width, "height": image.height}
                    meta["animated"] = image.animated
                self.cache.add(staging, key, meta)  # and held, so that no eviction reaches it
                try:
                    self.cache.alias(url, key)
                    video = self._entry(url, key, from_cache=False, started=started)
                except BaseException:
                    self.cache.release(key)
                    raise
        if video is None:
            self.cache.release(key)
            raise SourceError(f"The cache entry for {url} vanished before it could be read. Try again.", retryable=True)
        self.cache.evict()
        return video

    def _check_size(self, url: str, size_bytes: int | None) -> None:
        limit = self.policy.max_download_bytes
        if limit is not None and size_bytes is not None and size_bytes > limit:
            raise LimitError(
                f"The video at {url} is {size_bytes / 2**20:.1f} MB, over the download limit of "
                f"{limit / 2**20:g} MB. Raise --max-download-mb to fetch it."
            )

    def _check_duration(self, source: str, duration_s: float) -> None:
        """The one duration limit, whether the length came from the site, the downloaded file or a local file."""
        if duration_s > self.policy.max_duration_s:
            raise LimitError(
                f"The video at {source} lasts {duration_s:.0f} s, over the limit of "
                f"{self.policy.max_duration_s:g} s. Raise --max-duration-s to allow it."
            )

    def _image_facts(self, path: Path, name: str) -> ImageFacts | None:
        return self.inspect_image(path, name) if self.inspect_image is not None else None

    def _claim(self, url: str, key: str, from_cache: bool, started: float) -> LocalMedia | None:
        """The cache entry as a local video or image, marked in use (for every process sharing the cache) before it
        is read, so that no eviction reaches it; None when it is gone or damaged (it is then fetched again)."""
        if not self.cache.acquire(key):
            return None
        video = self._entry(url, key, from_cache=from_cache, started=started)
        if video is None:
            self.cache.release(key)
        return video

    def _entry(self, url: str, key: str, *, from_cache: bool, started: float) -> LocalMedia | None:
        meta = self.cache.load(key)
        if meta is None:
            return None
        entry = self.cache.videos / key
        if meta.get("kind") == "image":
            return _cached_image(url, entry / str(meta["file"]), meta, key, from_cache, time.perf_counter() - started)
        title = meta.get("title")
        subtitles = meta.get("subtitles")
        audio = meta.get("audio")
        return LocalVideo(
            source=url,
            store=entry,
            path=entry / str(meta["file"]),
            title=short_title(title) if isinstance(title, str) else None,
            from_cache=from_cache,
            fetch_s=time.perf_counter() - started,
            subtitles=entry / subtitles if isinstance(subtitles, str) and (entry / subtitles).is_file() else None,
            audio=entry / audio if isinstance(audio, str) and (entry / audio).is_file() else None,
            cache_key=key,
        )

    def _local_file(self, source: str, path: Path, language: str | None) -> LocalMedia:
        policy = self.policy
        if not policy.local_files:
            raise SourceError(
                "Local files are off on this server (it serves over HTTP with no --allow-dir). Pass an http(s) URL; to "
                "try it on your own machine, start the server with --allow-dir FOLDER (and --no-block-private-urls "
                "for URLs on this machine)."
            )
        try:
            resolved = path.expanduser()
        except RuntimeError as exc:  # ~user of a user that does not exist
            raise SourceError(f"{_shown(str(path))} names a home folder that does not exist here.") from exc
        if not resolved.is_absolute():
            resolved = Path.cwd() / resolved
        try:
            real = resolved.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
            raise SourceError(f"{_shown(str(resolved))} cannot be read as a path ({exc}).") from exc
        # Outside the allowed folders is refused before anything else is looked at, so that the answer is the same
        # whether or not a file exists there.
        if not self._allowed(real):
            allowed = ", ".join(str(d) for d in policy.allowed_dirs)
            raise SourceError(
                f"{_shown(str(resolved))} is outside the folders this server may read ({allowed}; see --allow-dir)."
            )
        try:
            exists, is_file = real.exists(), real.is_file()
        except OSError as exc:
            raise SourceError(f"{_shown(str(resolved))} cannot be read ({exc.strerror or exc}).") from exc
        if not exists:
            raise SourceError(
                f"No file at {_shown(str(resolved))}. Pass the absolute path of an existing video file, or an http(s) "
                "URL"
                + ("" if path.is_absolute() else f" (relative paths are taken from the server's folder, {Path.cwd()})")
                + "."
            )
        if not is_file:
            raise SourceError(f"{_shown(str(resolved))} is not a file (it is a folder or a device). Pass a video file.")
        title = short_title(resolved.name)
        image = self._image_facts(real, real.name)
        if image is not None:
            return LocalImage(
                source, real, image.width, image.height, image.format, title, True, 0.0, animated=image.animated
            )
        self._check_duration(source, self.inspect(real, real.name))
        subtitles = find_sidecar(real, language) if language else None
        if subtitles is not None and not self._allowed(subtitles.resolve()):
            log.info("ignored subtitles %s: they lead outside the allowed folders", subtitles)
            subtitles = None
        store = self.cache.local_store(real)
        return LocalVideo(source, real, title, from_cache=True, fetch_s=0.0, subtitles=subtitles, store=store)

    def _allowed(self, real: Path) -> bool:
        """Whether a resolved path lies inside the allowed folders (any path, when none are set)."""
        folders = self.policy.allowed_dirs
        return not folders or any(real.is_relative_to(folder.resolve()) for folder in folders)


def _cached_image(
    url: str, path: Path, meta: dict[str, object], key: str, from_cache: bool, fetch_s: float
) -> LocalImage | None:
    """The image a cache entry holds, from its metadata; None when that metadata is not an image's (damaged)."""
    title, width, height, kind = meta.get("title"), meta.get("width"), meta.get("height"), meta.get("format")
    if not (isinstance(width, int) and isinstance(height, int) and isinstance(kind, str)):
        return None
    return LocalImage(
        source=url,
        path=path,
        width=width,
        height=height,
        format=kind,
        title=short_title(title) if isinstance(title, str) else None,
        from_cache=from_cache,
        fetch_s=fetch_s,
        animated=meta.get("animated") is True,
        cache_key=key,
    )


def checked_source(source: str) -> str:
    """The source as text the server will work with, or a SourceError that says what is wrong with it."""
    text = source.strip()
    if not text:
        raise SourceError("The source is empty. Pass a local video file path or an http(s) URL.")
    if len(text) > MAX_SOURCE_CHARS:
        raise SourceError(
            f"The source is {len(text):,} characters long; a path or URL has at most {MAX_SOURCE_CHARS:,}. Pass the "
            "path of a video file or its URL, not its contents."
        )
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise SourceError(
            f"The source {_shown(text)} contains control characters (line breaks, NUL, escapes), which no path or URL "
            "needs. Pass the path or URL alone."
        )
    return text


def _split_url(text: str) -> SplitResult:
    try:
        return urlsplit(text)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket: http://[::1/x.mp4
        raise SourceError(f"{_shown(text)} is not a valid URL ({exc}). Check the host part.") from exc


def _shown(text: str, limit: int = 200) -> str:
    """Caller text as it may appear in a message: shortened, and with control characters escaped."""
    short = text if len(text) <= limit else text[: limit - 1] + "…"
    return "".join(ch if unicodedata.category(ch) != "Cc" else repr(ch)[1:-1] for ch in short)


def find_sidecar(video: Path, language: str) -> Path | None:
    """A subtitle file beside a local video with the same name: NAME.LANG.vtt, NAME.vtt, or the same in .srt."""
    for name in (
        f"{video.stem}.{language}.vtt",
        f"{video.stem}.vtt",
        f"{video.stem}.{language}.srt",
        f"{video.stem}.srt",
    ):
        candidate = video.with_name(name)
        if candidate.is_file():
            return candidate
    return None
