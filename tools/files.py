"""Files written whole or not at all, for everything the server keeps on disk beside a video (packet indexes, scene
cuts, window notes, heard speech, cache records): a reader, another thread or a restarted server never sees a part
of one.

Nothing is written through a symbolic link inside a folder the server keeps (`keep_links_out`): a link planted
there (by another program, or a user with write access to the cache) would otherwise turn the server's writes
into writes anywhere the link points.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from contextlib import suppress
from pathlib import Path

NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
"""Opening fails (ELOOP) rather than follow a symbolic link at the last part of the path (where the system has it)."""

_kept: set[Path] = set()
_kept_guard = threading.Lock()


def keep_links_out(folder: Path) -> None:
    """From now on, `write_whole` refuses to write below `folder` through a symbolic link inside it (`folder`
    itself may be one: where it lies is the user's choice)."""
    with _kept_guard:
        _kept.add(Path(os.path.abspath(folder)))


def planted_link(path: Path) -> Path | None:
    """The first part of `path` below a kept folder that is a symbolic link (or not a folder, above the last
    part), or None when there is none."""
    absolute = Path(os.path.abspath(path))
    with _kept_guard:
        roots = [root for root in _kept if absolute.is_relative_to(root)]
    for root in roots:
        part = root
        for name in absolute.relative_to(root).parts:
            part = part / name
            try:
                mode = part.lstat().st_mode
            except FileNotFoundError:
                break
            if stat.S_ISLNK(mode) or (part != absolute and not stat.S_ISDIR(mode)):
                return part
    return None


def write_whole(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` through a hidden sibling named for this process and thread (so writers never share
    one), renamed over `path` once complete. On failure the sibling is removed and the OSError raised. A symbolic
    link in the way is never written through: one at `path` is replaced by the file, one above it inside a kept
    folder is refused (ELOOP)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    if (link := planted_link(path.parent)) is not None:
        raise OSError(errno.ELOOP, "a symbolic link or file stands where the cache has a folder", str(link))
    with suppress(FileNotFoundError):
        partial.unlink()  # left by a thread of a process that died with this one's number
    body = data if isinstance(data, bytes) else data.encode()
    try:
        # O_EXCL: a link planted at the sibling's name is an error, never followed.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_FOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        with os.fdopen(fd, "wb") as file:
            file.write(body)
        os.replace(partial, path)  # a rename replaces a link at `path`; it does not follow it
    except OSError:
        with suppress(OSError):
            partial.unlink()
        raise
