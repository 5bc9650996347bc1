"""A track's blocks kept beside the cached video: one file a block, per track and model (the key), written whole or
not at all, checked as they are read back. A block that is not as it was written (damaged on disk) is removed and
read again, never served; a folder that cannot be written (a damaged cache) only costs the reuse."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from llava_video_mcp.tools.files import write_whole
from llava_video_mcp.tools.media import LocalVideo
from llava_video_mcp.tools.timeline import TimedText

log = logging.getLogger(__name__)

MAX_KEPT_BYTES = 256 * 1024
"""A kept block larger than this is damaged: 30 s of speech or of text on screen is a few kilobytes."""

Bounds = Callable[[int], tuple[float, float]]
"""Where the cues of block `number` may start: (first, last), seconds on the video's timeline."""


class BlockStore:
    """The kept blocks of one track of one video (in `folder`; None: nothing is kept)."""

    def __init__(self, folder: Path | None, bounds: Bounds) -> None:
        self.folder = folder
        self.bounds = bounds

    @classmethod
    def beside(cls, video: LocalVideo, track: str, bounds: Bounds) -> BlockStore:
        """The store of `track`'s blocks beside the cached video (none for a video with no cache entry)."""
        return cls(video.store / track if video.store is not None else None, bounds)

    @staticmethod
    def key(*parts: object) -> str:
        """The name of one reading's blocks: what they depend on (format, model, file, language...)."""
        return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()[:32]

    def language(self, key: str) -> str | None:
        """The language told for these blocks, when one was."""
        if self.folder is None:
            return None
        try:
            told = json.loads((self.folder / key / "language.json").read_text())
        except (OSError, ValueError):
            return None
        return told if isinstance(told, str) and told.isalpha() and len(told) <= 8 else None

    def put_language(self, key: str, language: str) -> None:
        if self.folder is None:
            return
        try:
            (self.folder / key).mkdir(parents=True, exist_ok=True)
            write_whole(self.folder / key / "language.json", json.dumps(language))
        except OSError as exc:
            log.warning("could not keep the language told at %s (%s)", self.folder, exc.strerror or exc)

    def get(self, key: str, number: int, duration_s: float) -> list[TimedText] | None:
        """Block `number` as it was kept (of a video `duration_s` long); None when it was not kept, or was damaged
        since (then it is removed: it is read again)."""
        if self.folder is None:
            return None
        path = self.folder / key / f"{number:06d}.json"
        cues: list[TimedText] | None = None
        try:
            size = path.stat().st_size
            if size <= MAX_KEPT_BYTES:
                cues = self._checked(json.loads(path.read_text()), number, duration_s)
            why = f"{size} bytes" if size > MAX_KEPT_BYTES else "not what was written"
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            why = f"{type(exc).__name__}: {str(exc)[:100]}"
        if cues is None:
            log.warning("a block kept at %s is damaged (%s); reading it again", path, why)
            with suppress(OSError):
                path.unlink()
        return cues

    def put(self, key: str, number: int, cues: Sequence[TimedText]) -> None:
        if self.folder is None:
            return
        folder = self.folder / key
        try:
            folder.mkdir(parents=True, exist_ok=True)
            kept = [[c.start_s, c.end_s, c.text, *([] if c.confidence is None else [c.confidence])] for c in cues]
            write_whole(folder / f"{number:06d}.json", json.dumps(kept))
        except OSError as exc:
            log.warning("could not keep a block at %s (%s)", folder, exc.strerror or exc)

    def _checked(self, data: object, number: int, duration_s: float) -> list[TimedText] | None:
        """A kept block's cues, or None when they are not what `put` writes: usable cues starting within the
        block's bounds, in time order."""
        if not isinstance(data, list):
            return None
        first_s, last_s = self.bounds(number)
        cues: list[TimedText] = []
        for item in data:
            if not (isinstance(item, list) and len(item) in (3, 4)):
                return None
            start_s, end_s, text, *sure = item
            if not usable(start_s, end_s, text, first_s, last_s, duration_s) or (cues and start_s < cues[-1].start_s):
                return None
            if sure and not (_finite(sure[0]) and 0.0 <= sure[0] <= 1.0):
                return None
            cues.append(TimedText(float(start_s), float(end_s), text, float(sure[0]) if sure else None))
        return cues


def usable(start_s: object, end_s: object, text: object, first_s: float, last_s: float, end_most_s: float) -> bool:
    """Whether a cue has finite times, starts in [first_s, last_s] before it ends, ends by `end_most_s`, and says
    something."""
    if not (_finite(start_s) and _finite(end_s) and isinstance(text, str) and text):
        return False
    return first_s <= float(start_s) <= last_s and float(start_s) < float(end_s) <= end_most_s  # type: ignore[arg-type]


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
