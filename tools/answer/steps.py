"""The steps every kind of answer is made of, shared by a sampled question (`sampled`) and a full watch (`watch`):
fetching with byte progress, the packet index's place, the model brought up with a stage of its own, a prompt made
harmless for the backend at hand, and the subtitles of a range."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from llava_video_mcp.tools.answer.progress import Progress, download_progress, model_download_progress
from llava_video_mcp.tools.answer.results import Clock
from llava_video_mcp.tools.backends import ModelProvider, VideoLanguageBackend
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.media import LocalVideo, VideoFetcher
from llava_video_mcp.tools.prompt import Safe
from llava_video_mcp.tools.untrusted import neutralise

FRAME_SIDE = 384
"""Shorter side frames are decoded to: the SigLIP input of llava-interleave (0.5b and 7b). The same on every
call, so an answer never depends on whether the model happened to be loaded yet."""


@dataclass(frozen=True)
class TranscriptOptions:
    include: bool = True
    language: str = "en"

    @property
    def subtitle_language(self) -> str | None:
        """The language to fetch subtitles in, None when they are not wanted."""
        return self.language if self.include else None


WITH_TRANSCRIPT = TranscriptOptions()


@contextmanager
def fetched(
    fetcher: VideoFetcher,
    sources: Sequence[str],
    transcript: TranscriptOptions,
    parts: Sequence[Progress],
    clock: Clock,
    cancel: CancelToken | None,
    sound: bool = False,
) -> Iterator[list[LocalVideo]]:
    """The sources as local files, in order, each kept from eviction while the block runs; `parts[i]` reports the
    fetch of source i; with `sound`, their sound too where a site serves it apart."""
    videos: list[LocalVideo] = []
    with ExitStack() as in_use:
        for number, (source, progress) in enumerate(zip(sources, parts, strict=True), 1):
            progress(0, 1, f"Fetching video {number}/{len(sources)}: {source}")
            hook = download_progress(progress, 0, 1, number)
            videos.append(
                in_use.enter_context(
                    fetcher.fetched(
                        source,
                        subtitle_language=transcript.subtitle_language,
                        sound=sound and transcript.include,
                        on_progress=hook,
                        cancel=cancel,
                    )
                )
            )
        clock.add("fetch_s", sum(video.fetch_s for video in videos))
        yield videos


def index_file(video: LocalVideo) -> Path | None:
    """Where the video's packet index is kept, so later calls, plans and windows need not scan the file again."""
    return video.store / "index.bin" if video.store is not None else None


def load_model(model: ModelProvider, progress: Progress, clock: Clock) -> VideoLanguageBackend:
    """The model, loaded (or its engine reached) with a progress stage of its own the first time."""
    if model.loaded is None:
        progress(0, 1, f"Loading the model {model.label}")
    backend, load_s = model.get(model_download_progress(progress))
    clock.add("load_s", load_s)
    return backend


def safe_for(backend: VideoLanguageBackend) -> Safe:
    """Text from strangers made harmless for this backend's tokenizer."""

    def safe(text: str) -> str:
        return neutralise(text, backend.special_tokens)

    return safe


@contextmanager
def timed(clock: Clock, field: str) -> Iterator[None]:
    """Adds the block's seconds to one of the clock's fields."""
    started = time.perf_counter()
    try:
        yield
    finally:
        clock.add(field, time.perf_counter() - started)
