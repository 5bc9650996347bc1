"""The download cache on disk: content-addressed entries with URL aliases, written whole or not at all.

An entry is named after the video's canonical identity (yt-dlp's extractor and video id for site URLs, the URL
itself for direct files) and holds `video.<ext>`, subtitles if any, and `meta.json` with the video's size and hash.
Each URL seen is also recorded as an alias of its entry, so asking again for the same URL touches no network at all.

An entry is written under a temporary name in the cache folder (a staging folder) and renamed into place only
when complete, so an interrupted or failed download never leaves anything a later call would trust. The process
that writes a staging folder holds a lock on it; a staging folder whose lock nobody holds was left by a process
that died (kill -9, a crash, a power cut) and is removed when a server starts and before each eviction pass.
Calls for the same URL take turns (a wait that stops at once on cancellation). Past the size cap, the least
recently used entries go first; an entry that a call is using is never removed. An entry whose video was cut short
or changed on disk after the download is not trusted: it is fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.files import write_whole

try:
    import fcntl
except ImportError:  # Windows: staging folders are then cleaned only by the process that made them
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_META = "meta.json"
_STAGING_PREFIX = ".partial-"
_STAGING_LOCK = ".owner"
LOCAL_STORE_MAX_BYTES = 256 * 2**20
"""Packet indexes and window notes of local files: a 60-minute video's index is about 1 MB, its notes far less."""


def entry_key(text: str) -> str:
    """The name an entry or alias is kept under: a hash of what identifies it."""
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
        self._turns = threading.Condition()
        self._held: set[str] = set()

    @contextmanager
    def locked(self, name: str, cancel: CancelToken | None = None) -> Iterator[None]:
        """Hold `name` for the block: calls for the same URL or video take turns. Waiting for a turn stops at once
        when the call is cancelled (the cancellation wakes the wait)."""
        token = cancel if cancel is not None else CancelToken()
        with token.on_cancel(self._wake_waiters), self._turns:
            while name in self._held:
                token.check()
                self._turns.wait()
            token.check()
            self._held.add(name)
        try:
            yield
        finally:
            with self._turns:
                self._held.discard(name)
                self._turns.notify_all()

    def _wake_waiters(self) -> None:
        with self._turns:
            self._turns.notify_all()

    def entry_for_alias(self, url: str) -> str | None:
        try:
            key = (self.aliases / entry_key(url)).read_text().strip()
        except OSError:
            return None
        return key if self.load(key) is not None else None

    def has_alias(self, url: str) -> bool:
        """Whether the URL was fetched before and its entry is there (not checked for damage: `load` does that)."""
        try:
            key = (self.aliases / entry_key(url)).read_text().strip()
            return (self.videos / key / _META).is_file()
        except OSError:
            return False

    def load(self, key: str) -> dict[str, object] | None:
        """The entry's metadata, or None when there is no entry or its video is no longer the file that was
        downloaded (truncated, or changed on disk): such an entry is fetched again."""
        entry = self.videos / key
        try:
            meta = json.loads((entry / _META).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        video = entry / str(meta.get("file", ""))
        if not video.is_file() or not _intact(video, meta):
            log.warning("the cached video %s is damaged (its size or content changed); fetching it again", key)
            return None
        return meta

    def add(self, staging: Path, key: str, meta: dict[str, object]) -> None:
        """Move a complete download into place (atomically) and record its metadata, with the video's size and
        hash (so a file damaged later is noticed)."""
        video = staging / str(meta["file"])
        meta = meta | {"size": video.stat().st_size, "mtime_ns": video.stat().st_mtime_ns, "sha256": _digest(video)}
        (staging / _META).write_text(json.dumps(meta))
        with suppress(OSError):  # the folder stops being a staging folder; its lock stays held until closed
            (staging / _STAGING_LOCK).unlink()
        entry = self.videos / key
        if entry.exists():
            shutil.rmtree(entry)
        staging.rename(entry)

    def lacks_sound(self, key: str) -> bool:
        """Whether the entry's picture came without sound, it has no subtitles to read instead, and its sound was
        never sought."""
        meta = self.load(key)
        if meta is None or meta.get("subtitles") or "sound_sought" in meta:
            return False
        return bool(meta.get("silent_picture"))

    def amend(self, key: str, sound: Path | None) -> None:
        """Add the sound fetched for an entry (None: the site has none to give), kept whole or not at all."""
        entry = self.videos / key
        meta = json.loads((entry / _META).read_text())
        if sound is not None:
            sound.replace(entry / sound.name)
            meta["audio"] = sound.name
        meta["sound_sought"] = True
        write_whole(entry / _META, json.dumps(meta))

    def alias(self, url: str, key: str) -> None:
        self.aliases.mkdir(parents=True, exist_ok=True)
        write_whole(self.aliases / entry_key(url), key)

    def touch(self, key: str) -> None:
        os.utime(self.videos / key / _META)

    def acquire(self, key: str) -> None:
        with self._guard:
            self._in_use[key] += 1

    def release(self, key: str) -> None:
        with self._guard:
            self._in_use[key] -= 1

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh staging folder, locked by this process while the block runs, and removed after it."""
        self.videos.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self.videos))
        lock = (folder / _STAGING_LOCK).open("w")
        with _staging_guard:
            _staging_folders.add(folder)
        try:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield folder
        finally:
            lock.close()
            shutil.rmtree(folder, ignore_errors=True)
            with _staging_guard:
                _staging_folders.discard(folder)

    def local_store(self, video: Path) -> Path:
        """The folder for what is derived from a local video, keyed by the file's identity (path, size, modification
        time), so an edited file starts afresh. The folders are kept to LOCAL_STORE_MAX_BYTES, least recently
        used out first."""
        stat = video.stat()
        folder = self.root / "local" / entry_key(f"{video}:{stat.st_size}:{stat.st_mtime_ns}")
        if folder.is_dir():
            os.utime(folder)
        elif folder.parent.is_dir():
            self._trim_local_stores(keep=folder)
        return folder  # made by the first thing written there

    def _trim_local_stores(self, keep: Path) -> None:
        stores = []
        for folder in (self.root / "local").iterdir():
            try:
                size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                stores.append((folder.stat().st_mtime, size, folder))
            except OSError:
                continue
        total = sum(size for _, size, _ in stores)
        for _, size, folder in sorted(stores):
            if total <= LOCAL_STORE_MAX_BYTES:
                break
            if folder != keep:
                shutil.rmtree(folder, ignore_errors=True)
                total -= size

    def remove_abandoned_staging(self) -> None:
        """Remove staging folders that no live process holds: downloads killed part way."""
        for folder in self.videos.glob(_STAGING_PREFIX + "*"):
            if _held(folder / _STAGING_LOCK):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed %s, left by a download that was killed part way", folder.name)

    def evict(self) -> None:
        """Remove least recently used entries until the cache fits its cap; entries in use stay."""
        self.remove_abandoned_staging()
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


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _intact(video: Path, meta: dict[str, object]) -> bool:
    """Whether the cached video is still the file downloaded: the same size, and the same content when it was
    written to since (its hash is read only then). Entries from before sizes were recorded are trusted."""
    if "size" not in meta:
        return True
    stat = video.stat()
    if stat.st_size != meta["size"]:
        return False
    return stat.st_mtime_ns == meta.get("mtime_ns") or _digest(video) == meta.get("sha256")


_staging_folders: set[Path] = set()
"""This process's staging folders, for a stop that cannot wait for every download to unwind."""
_staging_guard = threading.Lock()


def remove_own_staging() -> None:
    """Remove this process's staging folders (when it stops): no partial download outlives the server."""
    with _staging_guard:
        folders = list(_staging_folders)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _held(lock_path: Path) -> bool:
    """Whether a live process holds the lock of a staging folder."""
    if fcntl is None:
        return True
    try:
        with lock_path.open("a") as lock:
            return not _try_lock(lock)
    except OSError:
        return False  # no lock file: the folder was never finished being made


def _try_lock(lock: IO[str]) -> bool:
    assert fcntl is not None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(lock, fcntl.LOCK_UN)
    return True
