"""The steps every kind of answer is made of, shared by a sampled question (`sampled`) and a full watch (`watch`):
fetching with byte progress (still images too, where a call takes them), the packet index's place, the model brought
up with a stage of its own, a prompt made harmless for the backend at hand, a model call with its time on the clock,
and the scene changes of a video."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from llava_video_mcp.tools.answer.progress import download_progress, model_download_progress
from llava_video_mcp.tools.answer.results import Clock
from llava_video_mcp.tools.backends import Generation, InferenceProgress, ModelProvider, Prompt, VideoLanguageBackend
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import LimitError, ModelError
from llava_video_mcp.tools.frames import Cut, SamplingPlan, checked_range, detect_scenes, outline, scene_targets
from llava_video_mcp.tools.media import LocalImage, LocalMedia, LocalVideo, VideoFetcher, not_a_video
from llava_video_mcp.tools.progress import Progress
from llava_video_mcp.tools.prompt import Safe
from llava_video_mcp.tools.timeline import clock
from llava_video_mcp.tools.tracks import Tracks, TranscriptOptions
from llava_video_mcp.tools.untrusted import neutralise

FRAME_SIDE = 384
"""Shorter side frames are decoded to when the model's family does not say (the SigLIP input of llava-interleave).
The same on every call, so an answer never depends on whether the model happened to be loaded yet."""


class NoModel:
    """No model at all (`--model none`, evidence mode): the calls return what was chosen, heard and read, the frames
    as images for the calling agent to look at, and never load, download or ask a model."""

    label = "none"
    loaded = None

    def get(self, on_download: Callable[[int, int | None], None] | None = None) -> tuple[VideoLanguageBackend, float]:
        raise ModelError(
            "This server runs without a model (--model none): it returns frames, transcript and on-screen text for "
            "you to look at. Start it with a model (--model, or --endpoint) for this."
        )

    def close(self) -> None:
        return None


@dataclass
class Stages:
    """What a call reads through: the fetcher, the model, the tracks, the side frames are decoded to (the model
    family's, known before it loads), and the downloads made ahead of the call (`VideoQA.downloads`)."""

    fetcher: VideoFetcher
    model: ModelProvider
    tracks: Tracks
    frame_side: int = FRAME_SIDE
    ahead: dict[str, float] = field(default_factory=dict)
    """Source -> seconds its download took, for downloads made ahead of this call: it counts them as its own."""

    @property
    def looking_only(self) -> bool:
        """No model (`NoModel`): the calling agent looks at the frames itself."""
        return isinstance(self.model, NoModel)


Sampling = Literal["uniform", "scenes"]
"""`uniform`: frames at the centres of equal slices of the range. `scenes`: every scene of the range seen (see
`frames.scene_targets`), at the cost of one look at every frame of the video, kept for later calls."""


@contextmanager
def fetched(
    stages: Stages,
    sources: Sequence[str],
    transcript: TranscriptOptions,
    parts: Sequence[Progress],
    clock: Clock,
    cancel: CancelToken | None,
) -> Iterator[list[LocalVideo]]:
    """The sources as local video files, in order, each kept from eviction while the block runs, with what the
    tracks need (subtitles, the sound where a site serves it apart); `parts[i]` reports the fetch of source i. A
    still image is refused (an animated GIF is a video: see `as_video`)."""
    with fetched_media(stages, sources, transcript, parts, clock, cancel) as media:
        yield [as_video(stages, one) for one in media]


@contextmanager
def fetched_media(
    stages: Stages,
    sources: Sequence[str],
    transcript: TranscriptOptions,
    parts: Sequence[Progress],
    clock: Clock,
    cancel: CancelToken | None,
) -> Iterator[list[LocalMedia]]:
    """`fetched` for calls that take still images too: each source a video or a still image, told by its content
    (an animated GIF is a video, as `as_video` says)."""
    needs = stages.tracks.needs(transcript)
    found: list[LocalMedia] = []
    with ExitStack() as in_use:
        for number, (source, progress) in enumerate(zip(sources, parts, strict=True), 1):
            progress(0, 1, f"Fetching video {number}/{len(sources)}: {source}")
            hook = download_progress(progress, 0, 1, number)
            media = in_use.enter_context(
                stages.fetcher.fetched_media(
                    source,
                    needs=needs,
                    on_progress=hook,
                    cancel=cancel,
                )
            )
            if isinstance(media, LocalImage) and played(media):
                media = as_video(stages, media)
            ahead_s = stages.ahead.pop(media.source, None) if media.from_cache else None
            found.append(
                media if ahead_s is None else replace(media, from_cache=False, fetch_s=ahead_s + media.fetch_s)
            )
        clock.add("fetch_s", sum(media.fetch_s for media in found))
        yield found


def played(image: LocalImage) -> bool:
    """An animated GIF is played as a video, its frames with their times (the video reader plays GIFs); any other
    image is one still image, the first frame of an animated WebP or PNG."""
    return image.animated and image.format == "gif"


def as_video(stages: Stages, media: LocalMedia) -> LocalVideo:
    """The source as a video: an animated GIF read by the video reader, under the duration limit; a still image
    refused (`not_a_video`)."""
    if isinstance(media, LocalVideo):
        return media
    if not played(media):
        raise not_a_video(media)
    fetcher = stages.fetcher
    duration_s = fetcher.inspect(media.path, media.source)
    if duration_s > fetcher.policy.max_duration_s:
        raise LimitError(
            f"The video at {media.source} lasts {duration_s:.0f} s, over the limit of "
            f"{fetcher.policy.max_duration_s:g} s. Raise --max-duration-s to allow it."
        )
    cache = fetcher.cache
    store = cache.videos / media.cache_key if media.cache_key is not None else cache.local_store(media.path)
    return LocalVideo(
        media.source, media.path, media.title, media.from_cache, media.fetch_s, cache_key=media.cache_key, store=store
    )


def index_file(video: LocalVideo) -> Path | None:
    """Where the video's packet index is kept, so later calls, plans and windows need not scan the file again."""
    return video.store / "index.bin" if video.store is not None else None


def scene_cuts(video: LocalVideo, duration_s: float, progress: Progress, cancel: CancelToken | None) -> list[Cut]:
    """The video's scene changes, found once and kept beside it (with the packet index)."""
    whole = clock(duration_s)

    def report(at_s: float) -> None:
        progress(min(at_s, duration_s), max(duration_s, 1e-9), f"Finding scene changes: {clock(at_s)} of {whole}")

    keep = video.store / "scenes.json" if video.store is not None else None
    return detect_scenes(video.path, cancel, keep, report)


def scene_plan(
    video: LocalVideo, plan: SamplingPlan, progress: Progress, cancel: CancelToken | None
) -> tuple[SamplingPlan, list[Cut]]:
    """`plan` with its frames placed so that every scene of its range is seen, and the video's cuts."""
    info, _ = outline(video.path, index_file(video))
    start, end = checked_range(plan.start_s, plan.end_s, info.duration_s, info.stated_duration_s)
    cuts = scene_cuts(video, info.duration_s, progress, cancel)
    return replace(plan, times_s=tuple(scene_targets(cuts, start, end, plan.frame_count(end - start)))), cuts


def ask(
    backend: VideoLanguageBackend,
    prompt: Prompt,
    max_new_tokens: int,
    relay: InferenceProgress,
    clock: Clock,
    cancel: CancelToken | None,
) -> Generation:
    """One model call, its time (waiting for a turn included) and its wait added to the clock."""
    with timed(clock, "model_s"):
        generation = backend.answer(prompt, max_new_tokens, relay, cancel)
    clock.add("queue_s", generation.queue_s)
    return generation


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
