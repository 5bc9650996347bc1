"""Sampled frames kept in memory per file and sampling plan, so a follow-up question skips decoding."""

from __future__ import annotations

from pathlib import Path

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError
from llava_video_mcp.tools.frames._plan import SampledVideo, SamplingPlan
from llava_video_mcp.tools.frames._sampler import sample_with_plan
from llava_video_mcp.tools.lru import ByteLRU


class SampleCache:
    """Sampled frames per (file, plan) for the life of the process, least recently used out first.

    A second question about the same video and plan skips decoding. Keyed on the file's identity (resolved path,
    size, modification time), so a file replaced in place is decoded again.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self._store: ByteLRU[tuple[object, ...], SampledVideo] = ByteLRU(max_bytes)

    def sample(
        self, path: Path, plan: SamplingPlan, cancel: CancelToken | None = None, index_file: Path | None = None
    ) -> tuple[SampledVideo, bool]:
        """The sampled video, and whether it came from this cache."""
        try:
            stat = path.stat()
        except OSError as exc:
            raise DecodeError(f"{path} cannot be read ({exc.strerror}).") from exc
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, plan)
        kept = self._store.get(key)
        if kept is not None:
            return kept, True
        sampled = sample_with_plan(path, plan, cancel=cancel, index_file=index_file)
        size = sum(f.image.width * f.image.height * len(f.image.getbands()) for f in sampled.frames)
        self._store.put(key, sampled, size)
        return sampled, False
