"""Files written whole or not at all, for everything the server keeps on disk beside a video (packet indexes, scene
cuts, window notes, heard speech, cache records): a reader, another thread or a restarted server never sees a part
of one."""

from __future__ import annotations

import os
import threading
from contextlib import suppress
from pathlib import Path


def write_whole(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` through a hidden sibling named for this process and thread (so writers never share
    one), renamed over `path` once complete. On failure the sibling is removed and the OSError raised."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        if isinstance(data, bytes):
            partial.write_bytes(data)
        else:
            partial.write_text(data)
        partial.replace(path)
    except OSError:
        with suppress(OSError):
            partial.unlink()
        raise
