"""Sampled frames kept in memory per file and sampling plan, so a follow-up question skips decoding."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError
from llava_video_mcp.tools.frames._plan import SampledVideo, SamplingPlan
from llava_video_mcp.tools.frames._sampler import sample_with_plan


class SampleCache:
    """Sampled frames per (file, plan) for the life of the process, least recently used out first.

    A second question about the same video and plan skips decoding. Keyed on the file's identity (resolved path,
    size, modification time), so a file replaced in place is decoded again.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[object, ...], tuple[SampledVideo, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def sample(
        self, path: Path, plan: SamplingPlan, cancel: CancelToken | None = None, index_file: Path | None = None
    ) -> tuple[SampledVideo, bool]:
        """The sampled video, and whether it came from this cache."""
        try:
            stat = path.stat()
        except OSError as exc:
            raise DecodeError(f"{path} cannot be read ({exc.strerror}).") from exc
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, plan)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry[0], True
        sampled = sample_with_plan(path, plan, cancel=cancel, index_file=index_file)
        size = sum(f.image.width * f.image.height * len(f.image.getbands()) for f in sampled.frames)
        with self._lock:
            if size <= self.max_bytes and key not in self._entries:
                self._entries[key] = (sampled, size)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (_, evicted) = self._entries.popitem(last=False)
                    self._bytes -= evicted
        return sampled, False
