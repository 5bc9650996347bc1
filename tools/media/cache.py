"""The download cache on disk: content-addressed entries with URL aliases, written whole or not at all.

An entry is named after the video's canonical identity (yt-dlp's extractor and video id for site URLs, the URL
itself for direct files) and holds `video.<ext>`, subtitles if any, and `meta.json` with the video's size and hash.
Each URL seen is also recorded as an alias of its entry, so asking again for the same URL touches no network at all.

An entry is written under a temporary name in the cache folder (a staging folder) and renamed into place only
when complete, so an interrupted or failed download never leaves anything a later call would trust. The process
that writes a staging folder holds a lock on it; a staging folder whose lock nobody holds was left by a process
that died (kill -9, a crash, a power cut) and is removed when a server starts and before each eviction pass.

Several servers may share one cache folder (each MCP host on a machine starts its own server, with the same default
folder), so what protects an entry lives on disk, as locks on files (`flock`) that the system drops when their
holder dies, however it dies:
- an entry in use is held with a shared lock on its `.in-use` file; eviction takes that lock exclusively before it
  removes anything, so an entry that any process is reading is never removed, and a crashed reader holds nothing;
- calls for the same URL or video take turns across processes too (a lock file under `locks/`, removed by its
  holder after its turn), so two servers asking for one URL download it once. Waiting stops at once on cancellation.
Past the size cap, the least recently used entries go first. An entry whose video was cut short or changed on disk
after the download, or that holds a symbolic link (planted: the server makes none), is not trusted: it is fetched
again. Nothing is written through a link inside the cache: a planted link is removed or replaced, never followed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.files import NO_FOLLOW, keep_links_out, write_whole
from llava_video_mcp.tools.turns_by_name import TurnsByName

try:
    import fcntl
except ImportError:  # Windows: in-use marks and turns hold within one process, staging folders are cleaned by theirs
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_META = "meta.json"
_IN_USE = ".in-use"
_LOCKS = "locks"
_STAGING_PREFIX = ".partial-"
_STAGING_LOCK = ".owner"
_TURN_POLL_S = 0.05
"""How often a call waiting for another process's turn looks again (a lock on a file cannot wake a waiter that
may also be cancelled; within a process the wait is woken at once)."""
_KEY = re.compile(r"[0-9a-f]{32}")
LOCAL_STORE_MAX_BYTES = 256 * 2**20
"""Packet indexes and window notes of local files: a 60-minute video's index is about 1 MB, its notes far less."""


def entry_key(text: str) -> str:
    """The name an entry or alias is kept under: a hash of what identifies it."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class VideoCache:
    """Downloaded videos on disk, with URL aliases, LRU eviction past a size cap, and in-use protection that holds
    across the processes sharing the folder."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.videos = root / "videos"
        self.aliases = root / "aliases"
        keep_links_out(root)
        self._in_use: Counter[str] = Counter()
        self._leases: dict[str, int] = {}
        """Entry -> the open in-use file whose shared lock tells other processes this one reads the entry."""
        self._guard = threading.Lock()
        self._turns = TurnsByName()
        weakref.finalize(self, _close_all, self._leases)

    @contextmanager
    def locked(self, name: str, cancel: CancelToken | None = None) -> Iterator[None]:
        """Hold `name` for the block: calls for the same URL or video take turns, in this process and in others
        sharing the folder. Waiting for a turn stops at once when the call is cancelled (the cancellation wakes
        the wait)."""
        token = cancel if cancel is not None else CancelToken()
        with self._turns.taken(name, token), self._turn_on_disk(name, token):
            yield

    @contextmanager
    def _turn_on_disk(self, name: str, token: CancelToken) -> Iterator[None]:
        """The turn among processes: an exclusive lock on `locks/<name's key>`, removed by its holder when done
        (a waiter that then holds the removed file sees so and takes the new one)."""
        if fcntl is None:
            yield
            return
        path = own_folder(self.root / _LOCKS) / entry_key(name)
        while (fd := _lock_in_place(path, fcntl.LOCK_EX, replace_link=True)) is None:
            token.check()
            token.wait(_TURN_POLL_S)
        try:
            yield
        finally:
            with suppress(OSError):
                path.unlink()
            os.close(fd)

    def _alias_key(self, url: str) -> str | None:
        """The entry a URL is an alias of, as recorded (a link planted for the record, or anything but a key in
        it, is no record)."""
        alias = self.aliases / entry_key(url)
        try:
            if not stat.S_ISREG(alias.lstat().st_mode):
                return None
            key = alias.read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None
        return key if _KEY.fullmatch(key) else None

    def entry_for_alias(self, url: str) -> str | None:
        key = self._alias_key(url)
        return key if key is not None and self.load(key) is not None else None

    def has_alias(self, url: str) -> bool:
        """Whether the URL was fetched before and its entry is there (not checked for damage: `load` does that)."""
        key = self._alias_key(url)
        return key is not None and (self.videos / key / _META).is_file()

    def load(self, key: str) -> dict[str, object] | None:
        """The entry's metadata, or None when there is no entry or it is damaged: its video is no longer the file
        that was downloaded (truncated, or changed on disk), or a symbolic link was planted in it. Such an entry is
        fetched again."""
        entry = self.videos / key
        try:
            if entry.is_symlink() or (entry.is_dir() and _has_links(entry)):
                log.warning("the cached video %s is damaged (a symbolic link was planted); fetching it again", key)
                return None
            meta = json.loads((entry / _META).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or not all(_plain_name(meta.get(k)) for k in ("file", "audio", "subtitles")):
            return None
        video = entry / str(meta.get("file", ""))
        if not video.is_file() or not _intact(video, meta):
            log.warning("the cached video %s is damaged (its size or content changed); fetching it again", key)
            return None
        return meta

    def add(self, staging: Path, key: str, meta: dict[str, object]) -> None:
        """Move a complete download into place (atomically) and record its metadata, with the video's size and
        hash (so a file damaged later is noticed). The entry is held for the caller from the moment it is there
        (as by `acquire`): release it with `release`."""
        video = staging / str(meta["file"])
        meta = meta | {"size": video.stat().st_size, "mtime_ns": video.stat().st_mtime_ns, "sha256": _digest(video)}
        (staging / _META).write_text(json.dumps(meta))
        with suppress(OSError):  # the folder stops being a staging folder; its lock stays held until closed
            (staging / _STAGING_LOCK).unlink()
        lease = _lock_in_place(staging / _IN_USE, fcntl.LOCK_SH) if fcntl is not None else None
        try:
            entry = self.videos / key
            _remove(entry)  # a damaged entry (or a link planted in its place)
            staging.rename(entry)
        except BaseException:
            if lease is not None:
                os.close(lease)
            raise
        with self._guard:
            self._in_use[key] += 1
            if lease is not None:
                if (held := self._leases.pop(key, None)) is not None:
                    os.close(held)  # the lease of the entry replaced
                self._leases[key] = lease

    def lacks_sound(self, key: str) -> bool:
        """Whether the entry's sound should be fetched: its picture came without sound and with no subtitles to read
        instead, and the sound was never sought; or the sound fetched apart is no longer in the entry."""
        meta = self.load(key)
        if meta is None or meta.get("subtitles"):
            return False
        audio = meta.get("audio")
        if isinstance(audio, str):
            return not _regular_file(self.videos / key / audio)
        return "sound_sought" not in meta and bool(meta.get("silent_picture"))

    def amend(self, key: str, sound: Path | None) -> None:
        """Add the sound fetched for an entry (None: the site has none to give), kept whole or not at all."""
        entry = self.videos / key
        meta = json.loads((entry / _META).read_text())
        if sound is not None:
            sound.replace(entry / sound.name)  # a rename: a link planted at that name is replaced, not followed
        meta["audio"] = sound.name if sound is not None else None
        meta["sound_sought"] = True
        write_whole(entry / _META, json.dumps(meta))

    def alias(self, url: str, key: str) -> None:
        own_folder(self.aliases)
        write_whole(self.aliases / entry_key(url), key)

    def touch(self, key: str) -> None:
        os.utime(self.videos / key / _META, follow_symlinks=False)

    def acquire(self, key: str) -> bool:
        """Mark the entry in use until `release`: in this process, and on disk (a shared lock on its in-use file)
        for the other processes sharing the folder, whose eviction then leaves it. False, with nothing held, when
        the entry is not there to hold (gone, being evicted, or damaged)."""
        with self._guard:
            if self._in_use[key] == 0 and fcntl is not None:
                entry = self.videos / key
                try:
                    lease = None if entry.is_symlink() else _lock_in_place(entry / _IN_USE, fcntl.LOCK_SH)
                except OSError:  # no entry, or a link planted at its in-use file: not held, and `load` says why
                    lease = None
                if lease is None:
                    return False
                self._leases[key] = lease
            self._in_use[key] += 1
            return True

    def release(self, key: str) -> None:
        with self._guard:
            self._in_use[key] -= 1
            if self._in_use[key] <= 0:
                del self._in_use[key]
                if (lease := self._leases.pop(key, None)) is not None:
                    os.close(lease)

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh staging folder, locked by this process while the block runs, and removed after it."""
        folder = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=own_folder(self.videos)))
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
        used out first. One holding a symbolic link (planted) is removed: it starts afresh."""
        stat_ = video.stat()
        folder = self.root / "local" / entry_key(f"{video}:{stat_.st_size}:{stat_.st_mtime_ns}")
        with suppress(OSError):  # a damaged folder for local files costs only the time saver
            _remove_link(folder.parent)
            if folder.is_symlink() or (folder.is_dir() and _has_links(folder)):
                log.warning("removed %s from the cache: a symbolic link was planted in it", folder)
                _remove(folder)
            if folder.is_dir():
                os.utime(folder)
            elif folder.parent.is_dir():
                self._trim_local_stores(keep=folder)
        return folder  # made by the first thing written there

    def _trim_local_stores(self, keep: Path) -> None:
        stores = []
        for folder in (self.root / "local").iterdir():
            try:
                size = _size(folder, deep=True)
                stores.append((folder.lstat().st_mtime, size, folder))
            except OSError:
                continue
        total = sum(size for _, size, _ in stores)
        for _, size, folder in sorted(stores):
            if total <= LOCAL_STORE_MAX_BYTES:
                break
            if folder != keep:
                _remove(folder)
                total -= size

    def remove_abandoned_staging(self) -> None:
        """Remove staging folders that no live process holds: downloads killed part way (and links planted in
        their place)."""
        if self.videos.is_symlink():  # what lies where it points is not the cache's to clean
            _remove_link(self.videos)
            return
        for folder in self.videos.glob(_STAGING_PREFIX + "*"):
            if not folder.is_symlink() and _held(folder / _STAGING_LOCK):
                continue
            _remove(folder)
            log.info("removed %s, left by a download that was killed part way", folder.name)

    def evict(self) -> None:
        """Remove least recently used entries until the cache fits its cap; entries in use, in this process or in
        another sharing the folder, stay."""
        self.remove_abandoned_staging()
        entries = []
        for entry in self.videos.glob("[!.]*"):
            try:
                if entry.is_symlink():
                    entry.unlink()  # planted: no entry of ours, and what it points to is not ours to remove
                    continue
                used = os.stat(entry / _META, follow_symlinks=False).st_mtime
                entries.append((used, _size(entry), entry.name))
            except FileNotFoundError:
                self._evict(entry.name)  # a folder with no record: what a removal cut short left
            except OSError:
                continue
        total = sum(size for _, size, _ in entries)
        for _, size, key in sorted(entries):
            if total <= self.max_bytes:
                break
            if self._evict(key):
                total -= size
                log.info("evicted %s from the cache (least recently used)", key)

    def _evict(self, key: str) -> bool:
        """Remove the entry unless a call holds it, in this process or another; whether it was removed."""
        entry = self.videos / key
        with self._guard:  # an `acquire` in this process waits for the removal, then finds no entry
            if self._in_use[key] > 0:
                return False
            if fcntl is None:
                _remove(entry)
                return True
            try:
                lease = _lock_in_place(entry / _IN_USE, fcntl.LOCK_EX)
            except FileNotFoundError:
                return False  # gone already
            except OSError:  # a link planted at its in-use file: damaged, held by no one
                _remove(entry)
                return True
            if lease is None:
                return False  # another process is reading it
            try:
                _remove(entry)
            finally:
                os.close(lease)
            return True


def own_folder(folder: Path) -> Path:
    """`folder`, a folder of the cache's own, made if missing. A symbolic link planted in its place is removed (not
    followed); a file there is an error that names it."""
    _remove_link(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not stat.S_ISDIR(folder.lstat().st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(folder))
    return folder


def _remove_link(path: Path) -> None:
    if path.is_symlink():
        log.warning("removed the symbolic link %s planted in the cache", path)
        path.unlink()


def _remove(path: Path) -> None:
    """Remove a file, folder or link, never following a link (removing a link leaves what it points to)."""
    with suppress(FileNotFoundError):
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)  # it removes the links inside a folder, never their targets


def _has_links(folder: Path) -> bool:
    """Whether a symbolic link lies anywhere inside `folder` (none is followed to look)."""
    folders = [folder]
    while folders:
        with os.scandir(folders.pop()) as items:
            for item in items:
                if item.is_symlink():
                    return True
                if item.is_dir(follow_symlinks=False):
                    folders.append(Path(item.path))
    return False


def _size(folder: Path, *, deep: bool = False) -> int:
    """The bytes of the files in `folder` (with `deep`, in its folders too), links not followed."""
    total = 0
    folders = [folder]
    while folders:
        with os.scandir(folders.pop()) as items:
            for item in items:
                if item.is_file(follow_symlinks=False):
                    total += item.stat(follow_symlinks=False).st_size
                elif deep and item.is_dir(follow_symlinks=False):
                    folders.append(Path(item.path))
    return total


def _plain_name(value: object) -> bool:
    """Whether a name recorded in an entry's metadata is a file's name in that entry (or no name): never a path."""
    if value is None:
        return True
    return isinstance(value, str) and value not in ("", ".", "..") and "/" not in value and os.sep not in value


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


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
    stat_ = video.stat()
    if stat_.st_size != meta["size"]:
        return False
    return stat_.st_mtime_ns == meta.get("mtime_ns") or _digest(video) == meta.get("sha256")


_staging_folders: set[Path] = set()
"""This process's staging folders, for a stop that cannot wait for every download to unwind."""
_staging_guard = threading.Lock()


def remove_own_staging() -> None:
    """Remove this process's staging folders (when it stops): no partial download outlives the server."""
    with _staging_guard:
        folders = list(_staging_folders)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _open_lock_file(path: Path) -> int:
    """The lock file at `path`, made if missing; a link there is an error (ELOOP), never followed."""
    return os.open(path, os.O_RDWR | os.O_CREAT | NO_FOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)


def _lock_in_place(path: Path, operation: int, *, replace_link: bool = False) -> int | None:
    """The lock file at `path` opened and locked (`fcntl.LOCK_SH` or `LOCK_EX`) without waiting; None when another
    holder's lock is in the way, or the file was removed or replaced meanwhile (its remover held it). A lock file
    that vanished while the caller waited for it is no lock on what is now at `path`, hence the check after. A link
    at `path` is an error (ELOOP), or with `replace_link` is removed and a lock file made in its place."""
    assert fcntl is not None
    try:
        fd = _open_lock_file(path)
    except OSError as exc:
        if not (replace_link and exc.errno == errno.ELOOP):
            raise
        _remove_link(path)
        fd = _open_lock_file(path)
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        now = os.stat(path, follow_symlinks=False)
        held = os.fstat(fd)
        if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _close_all(leases: dict[str, int]) -> None:
    for lease in leases.values():
        with suppress(OSError):
            os.close(lease)
    leases.clear()


def _held(lock_path: Path) -> bool:
    """Whether a live process holds the lock of a staging folder."""
    if fcntl is None:
        return True
    try:
        fd = _open_lock_file(lock_path)
    except OSError:
        return False  # no lock file (the folder was never finished being made), or a link planted there
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
