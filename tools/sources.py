"""Resolving a source (local path or URL) to a local video file, downloading URLs into a cache.

A cache entry is a folder named after the URL's hash holding `video.<ext>` and `meta.json`. It is written under
a temporary name in the same cache folder and renamed into place only when complete, so an interrupted or
failed download never leaves an entry that a later call would trust.
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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tools import ytdlp
from tools.errors import SourceError

log = logging.getLogger(__name__)

_META = "meta.json"


@dataclass(frozen=True)
class LocalVideo:
    """A source resolved to a readable local file."""

    source: str
    path: Path
    title: str | None
    from_cache: bool
    fetch_s: float


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

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._videos_dir = cache_dir / "videos"
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def fetch(self, source: str, on_progress: ytdlp.ProgressHook | None = None) -> LocalVideo:
        text = source.strip()
        if not text:
            raise SourceError("The source is empty. Pass a local video file path or an http(s) URL.")
        scheme = urlsplit(text).scheme.lower()
        if scheme in {"http", "https"}:
            return self._fetch_url(text, on_progress)
        if scheme == "file":
            return _local_file(source, Path(unquote(urlsplit(text).path)))
        if "://" in text:
            raise SourceError(f"Unsupported URL scheme '{scheme}' in {text}. Pass an http(s) URL or a local file path.")
        return _local_file(source, Path(text))

    def _fetch_url(self, url: str, on_progress: ytdlp.ProgressHook | None) -> LocalVideo:
        started = time.perf_counter()
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        with self._lock_for(key):
            cached = self._cached(key)
            if cached is not None:
                path, title = cached
                log.info("cache hit for %s", url)
                return LocalVideo(url, path, title, from_cache=True, fetch_s=time.perf_counter() - started)
            path, title = self._download(url, key, on_progress)
        return LocalVideo(url, path, title, from_cache=False, fetch_s=time.perf_counter() - started)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _cached(self, key: str) -> tuple[Path, str | None] | None:
        entry = self._videos_dir / key
        try:
            meta = json.loads((entry / _META).read_text())
        except (OSError, ValueError):
            return None
        path = entry / str(meta.get("file", ""))
        if not path.is_file():
            return None
        title = meta.get("title")
        return path, title if isinstance(title, str) else None

    def _download(self, url: str, key: str, on_progress: ytdlp.ProgressHook | None) -> tuple[Path, str | None]:
        self._videos_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".partial-{key}-", dir=self._videos_dir))
        try:
            downloaded = ytdlp.download(url, staging, on_progress=on_progress)
            meta = {
                "url": url,
                "file": downloaded.path.name,
                "title": downloaded.title,
                "extractor": downloaded.extractor,
                "video_id": downloaded.video_id,
            }
            (staging / _META).write_text(json.dumps(meta))
            entry = self._videos_dir / key
            if entry.exists():
                shutil.rmtree(entry)
            staging.rename(entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return entry / downloaded.path.name, downloaded.title


def _local_file(source: str, path: Path) -> LocalVideo:
    resolved = path.expanduser()
    if not resolved.is_absolute():
        resolved = Path.cwd() / resolved
    if not resolved.exists():
        raise SourceError(
            f"No file at {resolved}. Pass the absolute path of an existing video file, or an http(s) URL"
            + ("" if path.is_absolute() else f" (relative paths are taken from the server's folder, {Path.cwd()})")
            + "."
        )
    if not resolved.is_file():
        raise SourceError(f"{resolved} is not a file (it is a folder or a device). Pass a video file.")
    return LocalVideo(source, resolved, resolved.name, from_cache=True, fetch_s=0.0)
