"""Resolving a source (local path or URL) to a local video file, downloading URLs into a cache.

The cache is content-addressed: an entry is named after the video's canonical identity (yt-dlp's extractor and
video id for site URLs, the URL itself for direct files) and holds `video.<ext>`, subtitles if any, and
`meta.json`. Each URL seen is also recorded as an alias of its entry, so asking again for the same URL touches
no network at all, and another URL of the same video reuses the file after metadata extraction alone.

An entry is written under a temporary name in the cache folder and renamed into place only when complete, so an
interrupted or failed download never leaves anything a later call would trust. Calls for the same URL take
turns, so it is downloaded once. Past the size cap, the least recently used entries go first; an entry that a
call is using is never removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tools import netguard, ytdlp
from tools.errors import LimitError, SourceError
from tools.frames import header_duration
from tools.transcript import find_sidecar

log = logging.getLogger(__name__)

_META = "meta.json"


@dataclass(frozen=True)
class FetchPolicy:
    """What a server lets callers fetch, and the limits of each fetch."""

    max_duration_s: float = 3 * 3600
    max_download_bytes: int | None = 2 * 2**30
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
    from_cache: bool
    fetch_s: float
    subtitles: Path | None = None
    cache_key: str | None = None


def default_cache_dir() -> Path:
    """The per-user cache folder for this platform."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llava-video-mcp"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class VideoCache:
    """Downloaded videos on disk, with URL aliases, LRU eviction past a size cap, and in-use protection."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.videos = root / "videos"
        self.aliases = root / "aliases"
        self._in_use: Counter[str] = Counter()
        self._guard = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        with self._guard:
            lock = self._key_locks.setdefault(name, threading.Lock())
        with lock:
            yield

    def entry_for_alias(self, url: str) -> str | None:
        try:
            key = (self.aliases / _hash(url)).read_text().strip()
        except OSError:
            return None
        return key if self.load(key) is not None else None

    def load(self, key: str) -> dict[str, object] | None:
        entry = self.videos / key
        try:
            meta = json.loads((entry / _META).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or not (entry / str(meta.get("file", ""))).is_file():
            return None
        return meta

    def add(self, staging: Path, key: str, meta: dict[str, object]) -> None:
        """Move a complete download into place (atomically) and record its metadata."""
        (staging / _META).write_text(json.dumps(meta))
        entry = self.videos / key
        if entry.exists():
            shutil.rmtree(entry)
        staging.rename(entry)

    def alias(self, url: str, key: str) -> None:
        self.aliases.mkdir(parents=True, exist_ok=True)
        target = self.aliases / _hash(url)
        partial = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(key)
        partial.replace(target)

    def touch(self, key: str) -> None:
        os.utime(self.videos / key / _META)

    def acquire(self, key: str) -> None:
        with self._guard:
            self._in_use[key] += 1

    def release(self, key: str) -> None:
        with self._guard:
            self._in_use[key] -= 1

    def staging_dir(self) -> Path:
        self.videos.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".partial-", dir=self.videos))

    def evict(self) -> None:
        """Remove least recently used entries until the cache fits its cap; entries in use stay."""
        entries = []
        for entry in self.videos.glob("[!.]*"):
            try:
                used = (entry / _META).stat().st_mtime
            except OSError:
                continue
            size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
            entries.append((used, size, entry.name))
        total = sum(size for _, size, _ in entries)
        for _, size, key in sorted(entries):
            if total <= self.max_bytes:
                break
            with self._guard:
                busy = self._in_use[key] > 0
            if busy:
                continue
            shutil.rmtree(self.videos / key, ignore_errors=True)
            total -= size
            log.info("evicted %s from the cache (least recently used)", key)


class VideoFetcher:
    """Turns sources into local files: local paths as they are, URLs through yt-dlp into the cache."""

    def __init__(
        self,
        cache_dir: Path,
        policy: FetchPolicy | None = None,
        cache_max_bytes: int = 5 * 2**30,
    ) -> None:
        self.policy = policy if policy is not None else FetchPolicy()
        self.cache = VideoCache(cache_dir, cache_max_bytes)

    @contextmanager
    def fetched(
        self, source: str, *, subtitle_language: str | None = "en", on_progress: ytdlp.ProgressHook | None = None
    ) -> Iterator[LocalVideo]:
        """The source as a local file, protected from cache eviction while the block runs."""
        video = self.fetch(source, subtitle_language=subtitle_language, on_progress=on_progress)
        try:
            yield video
        finally:
            if video.cache_key is not None:
                self.cache.release(video.cache_key)

    def fetch(
        self, source: str, *, subtitle_language: str | None = "en", on_progress: ytdlp.ProgressHook | None = None
    ) -> LocalVideo:
        """The source as a local file; a cached one is marked in use until `cache.release(video.cache_key)`."""
        text = source.strip()
        if not text:
            raise SourceError("The source is empty. Pass a local video file path or an http(s) URL.")
        scheme = urlsplit(text).scheme.lower()
        if scheme in {"http", "https"}:
            return self._fetch_url(text, subtitle_language, on_progress)
        if scheme == "file":
            return self._local_file(source, Path(unquote(urlsplit(text).path)), subtitle_language)
        if "://" in text:
            raise SourceError(f"Unsupported URL scheme '{scheme}' in {text}. Pass an http(s) URL or a local file path.")
        return self._local_file(source, Path(text), subtitle_language)

    def _fetch_url(self, url: str, language: str | None, on_progress: ytdlp.ProgressHook | None) -> LocalVideo:
        started = time.perf_counter()
        policy = self.policy
        if policy.block_private_urls:
            netguard.check_public_url(url)
        with self.cache.locked("url:" + url):
            key = self.cache.entry_for_alias(url)
            if key is not None:
                log.info("cache hit for %s", url)
                return self._cached(url, key, started)
            options = ytdlp.DownloadOptions(
                timeout_s=policy.download_timeout_s,
                retries=policy.download_retries,
                max_bytes=policy.max_download_bytes,
                cookies=policy.cookies,
                subtitle_language=language,
            )
            with netguard.public_only() if policy.block_private_urls else nullcontext():
                return self._download(url, options, on_progress, started)

    def _download(
        self, url: str, options: ytdlp.DownloadOptions, on_progress: ytdlp.ProgressHook | None, started: float
    ) -> LocalVideo:
        staging = self.cache.staging_dir()
        try:
            with ytdlp.YtdlpSession(staging, options, on_progress) as session:
                metadata = session.extract(url)
                self._check_size(url, metadata.size_bytes)
                if metadata.duration_s is not None:
                    self._check_duration(url, metadata.duration_s)
                key = _hash(
                    f"url:{url}"
                    if metadata.extractor.lower() == "generic"
                    else f"{metadata.extractor}:{metadata.video_id}"
                )
                with self.cache.locked("key:" + key):
                    if self.cache.load(key) is not None:
                        self.cache.alias(url, key)
                        return self._cached(url, key, started)
                    downloaded = session.download(metadata)
                    if metadata.duration_s is None:
                        self._check_duration(url, header_duration(downloaded.path))
                    meta: dict[str, object] = {
                        "url": url,
                        "file": downloaded.path.name,
                        "subtitles": downloaded.subtitles.name if downloaded.subtitles else None,
                        "title": metadata.title,
                        "extractor": metadata.extractor,
                        "video_id": metadata.video_id,
                        "duration_s": metadata.duration_s,
                    }
                    self.cache.add(staging, key, meta)
                    self.cache.alias(url, key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        video = self._claim(url, key, from_cache=False, started=started)
        self.cache.evict()
        return video

    def _check_size(self, url: str, size_bytes: int | None) -> None:
        limit = self.policy.max_download_bytes
        if limit is not None and size_bytes is not None and size_bytes > limit:
            raise LimitError(
                f"The video at {url} is {size_bytes / 2**20:.0f} MB, over the download limit of "
                f"{limit / 2**20:.0f} MB. Raise --max-download-mb to fetch it."
            )

    def _check_duration(self, source: str, duration_s: float) -> None:
        """The one duration limit, whether the length came from the site, the downloaded file or a local file."""
        if duration_s > self.policy.max_duration_s:
            raise LimitError(
                f"The video at {source} lasts {duration_s:.0f} s, over the limit of "
                f"{self.policy.max_duration_s:.0f} s. Raise --max-duration-s to allow it."
            )

    def _cached(self, url: str, key: str, started: float) -> LocalVideo:
        video = self._claim(url, key, from_cache=True, started=started)
        self.cache.touch(key)
        return video

    def _claim(self, url: str, key: str, *, from_cache: bool, started: float) -> LocalVideo:
        """The cache entry as a local video, marked in use (before any eviction can reach it)."""
        self.cache.acquire(key)
        video = self._entry(url, key, from_cache=from_cache, started=started)
        if video is None:
            self.cache.release(key)
            raise SourceError(f"The cache entry for {url} vanished before it could be read. Try again.")
        return video

    def _entry(self, url: str, key: str, *, from_cache: bool, started: float) -> LocalVideo | None:
        meta = self.cache.load(key)
        if meta is None:
            return None
        entry = self.cache.videos / key
        title = meta.get("title")
        subtitles = meta.get("subtitles")
        return LocalVideo(
            source=url,
            path=entry / str(meta["file"]),
            title=title if isinstance(title, str) else None,
            from_cache=from_cache,
            fetch_s=time.perf_counter() - started,
            subtitles=entry / subtitles if isinstance(subtitles, str) else None,
            cache_key=key,
        )

    def _local_file(self, source: str, path: Path, language: str | None) -> LocalVideo:
        policy = self.policy
        if not policy.local_files:
            raise SourceError(
                "Local files are off on this server (it serves over HTTP with no --allow-dir). Pass an http(s) URL."
            )
        resolved = path.expanduser()
        if not resolved.is_absolute():
            resolved = Path.cwd() / resolved
        if not resolved.exists():
            raise SourceError(
                f"No file at {resolved}. Pass the absolute path of an existing video file, or an http(s) URL"
                + ("" if path.is_absolute() else f" (relative paths are taken from the server's folder, {Path.cwd()})")
                + "."
            )
        real = resolved.resolve()
        if policy.allowed_dirs and not any(real.is_relative_to(d.resolve()) for d in policy.allowed_dirs):
            allowed = ", ".join(str(d) for d in policy.allowed_dirs)
            raise SourceError(f"{resolved} is outside the folders this server may read ({allowed}; see --allow-dir).")
        if not real.is_file():
            raise SourceError(f"{resolved} is not a file (it is a folder or a device). Pass a video file.")
        self._check_duration(source, header_duration(real))
        subtitles = find_sidecar(real, language) if language else None
        return LocalVideo(source, real, resolved.name, from_cache=True, fetch_s=0.0, subtitles=subtitles)
