"""The two capabilities, as plain functions over a fetcher and a model: no MCP here.

Usable from a notebook:

    qa = VideoQA(VideoFetcher(default_cache_dir()), LazyBackend(BackendConfig()))
    print(qa.describe("clip.mp4", "What is the cat doing?").answer)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Literal

from llava_video_mcp.tools.answer.evidence import LabelledFrame, contact_sheet, frame_images, label
from llava_video_mcp.tools.answer.results import FrameInfo, Timings, TokenCounts, TranscriptCue, VideoAnswer, VideoInfo
from llava_video_mcp.tools.answer.steps import (
    DEFAULT_QUESTION,
    FRAME_SIDE,
    WITH_TRANSCRIPT,
    Progress,
    TranscriptOptions,
    WorkPlan,
    download_progress,
    index_file,
    load_model,
    model_info,
    model_progress,
    no_progress,
    subtitle_cues,
)
from llava_video_mcp.tools.answer.watch import FullWatch, WindowOptions
from llava_video_mcp.tools.backends.base import ModelProvider, Prompt
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import LimitError
from llava_video_mcp.tools.frames import MAX_FRAMES, SampleCache, SampledVideo, SamplingPlan
from llava_video_mcp.tools.media.sources import LocalVideo, VideoFetcher
from llava_video_mcp.tools.prompt.subtitles import MAX_TRANSCRIPT_CHARS, Cue, bounded, cues_in_range, render
from llava_video_mcp.tools.untrusted import clean_question, neutralise

MIN_VIDEOS, MAX_VIDEOS = 2, 4


@dataclass(frozen=True)
class VideoRequest:
    source: str
    plan: SamplingPlan


@dataclass(frozen=True)
class Clip:
    """A source for compare_videos, optionally restricted to a time range of its own."""

    source: str
    start_s: float | None = None
    end_s: float | None = None


Evidence = Literal["none", "sheet", "frames"]
"""Images of the frames the model saw, returned with the answer: none, one contact sheet, or one per frame."""


Coverage = Literal["sampled", "full"]
"""`sampled`: frames spread over the range, one model call. `full`: every window of the range watched (see
`tools.coverage`)."""


SPARSE_S = 30.0
"""A sampled call with more seconds than this between frames gets a note that it saw little of its range."""


class VideoQA:
    def __init__(
        self,
        fetcher: VideoFetcher,
        model: ModelProvider,
        samples: SampleCache | None = None,
        windows: WindowOptions | None = None,
    ) -> None:
        self.fetcher = fetcher
        self.model = model
        self.samples = samples if samples is not None else SampleCache()
        self.windows = windows if windows is not None else WindowOptions()

    def describe(
        self,
        source: str,
        question: str | None = None,
        *,
        num_frames: int = 8,
        start_s: float | None = None,
        end_s: float | None = None,
        fps: float | None = None,
        keyframes_only: bool = False,
        transcript: TranscriptOptions = WITH_TRANSCRIPT,
        max_new_tokens: int = 256,
        evidence: Evidence = "none",
        coverage: Coverage = "sampled",
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> VideoAnswer:
        """Answer a question about one video, or describe it when no question is given.

        With `evidence`, the result's `images` hold JPEGs of the frames the model saw (see `tools.evidence`). With
        `coverage="full"`, the whole range is watched window by window, `num_frames` frames each, and the answer
        comes from the windows' notes (see `tools.coverage`)."""
        plan = SamplingPlan(num_frames, start_s, end_s, fps, keyframes_only, FRAME_SIDE)
        if coverage == "full":
            watch = FullWatch(self.fetcher, self.model, self.windows, progress, cancel)
            return watch.answer(source, question, plan, transcript, max_new_tokens)
        requests = [VideoRequest(source, plan)]
        return self._answer(requests, question, transcript, max_new_tokens, evidence, progress, cancel)

    def compare(
        self,
        sources: Sequence[str | Clip],
        question: str,
        *,
        frames_per_video: int = 6,
        transcript: TranscriptOptions = WITH_TRANSCRIPT,
        max_new_tokens: int = 256,
        evidence: Evidence = "none",
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> VideoAnswer:
        """Answer one question across 2 to 4 videos, all their frames in one model context; each source may be a
        `Clip` with a time range of its own."""
        if not MIN_VIDEOS <= len(sources) <= MAX_VIDEOS:
            raise LimitError(f"compare_videos takes {MIN_VIDEOS} to {MAX_VIDEOS} sources; got {len(sources)}.")
        if len(sources) * frames_per_video > MAX_FRAMES:
            raise LimitError(
                f"{len(sources)} videos x {frames_per_video} frames is {len(sources) * frames_per_video} frames; "
                f"at most {MAX_FRAMES} fit in one call. Use frames_per_video={MAX_FRAMES // len(sources)} or fewer."
            )
        if clean_question(question) is None:
            raise LimitError("compare_videos needs a question, e.g. 'What differs between these videos?'.")
        clips = [source if isinstance(source, Clip) else Clip(source) for source in sources]
        requests = [
            VideoRequest(clip.source, SamplingPlan(frames_per_video, clip.start_s, clip.end_s, min_side=FRAME_SIDE))
            for clip in clips
        ]
        return self._answer(requests, question, transcript, max_new_tokens, evidence, progress, cancel)

    def _answer(
        self,
        requests: list[VideoRequest],
        question: str | None,
        transcript: TranscriptOptions,
        max_new_tokens: int,
        evidence: Evidence,
        progress: Progress,
        cancel: CancelToken | None,
    ) -> VideoAnswer:
        started = time.perf_counter()
        asked = clean_question(question) or DEFAULT_QUESTION
        count = len(requests)
        plan = WorkPlan(progress, loading=self.model.loaded is None)

        language = transcript.language if transcript.include else None
        local: list[LocalVideo] = []
        sampled: list[SampledVideo] = []
        from_cache: list[bool] = []
        with ExitStack() as in_use:
            for i, request in enumerate(requests, 1):
                fetching = plan.part("fetch", i - 1, count)
                fetching(0, 1, f"Fetching video {i}/{count}: {request.source}")
                hook = download_progress(fetching, 0, 1, i)
                local.append(
                    in_use.enter_context(
                        self.fetcher.fetched(
                            request.source, subtitle_language=language, on_progress=hook, cancel=cancel
                        )
                    )
                )
            decode_started = time.perf_counter()
            for i, (request, video) in enumerate(zip(requests, local, strict=True), 1):
                plan.part("sample", i - 1, count)(
                    0, 1, f"Sampling {request.plan.num_frames} frames from video {i}/{count}"
                )
                sample, hit = self.samples.sample(video.path, request.plan, cancel, index_file(video))
                sampled.append(sample)
                from_cache.append(hit)
            decode_s = time.perf_counter() - decode_started
            # Read while the cache entries are still held: an evicted entry takes its subtitles with it.
            budget = MAX_TRANSCRIPT_CHARS // len(requests)
            transcripts = [
                bounded(cues_in_range(subtitle_cues(video), sample.start_s, sample.end_s), budget)
                if transcript.include
                else []
                for video, sample in zip(local, sampled, strict=True)
            ]

        total_frames = sum(len(s.frames) for s in sampled)
        backend, load_s = load_model(self.model, plan.part("load"))
        running = plan.part("model")
        running(0, 1, f"Running {backend.model_id} on {total_frames} frames")
        inference_started = time.perf_counter()

        def safe(text: str) -> str:
            return neutralise(text, backend.special_tokens)

        context = frame_guide(local, sampled, safe) + transcript_text(transcripts, safe) + "\n\n"
        prompt = Prompt(
            images=[frame.image for video in sampled for frame in video.frames],
            text=context + safe(asked),
            question_start=len(context),
        )
        generation = backend.answer(prompt, max_new_tokens, model_progress(running, 0, 1), cancel)
        inference_s = time.perf_counter() - inference_started
        running(1, 1, "Done")

        videos = []
        index = 0
        for video, sample, hit, cues in zip(local, sampled, from_cache, transcripts, strict=True):
            frames = []
            for frame in sample.frames:
                frames.append(FrameInfo(index=index, timestamp_s=round(frame.timestamp_s, 3)))
                index += 1
            videos.append(
                VideoInfo(
                    source=video.source,
                    title=video.title,
                    duration_s=round(sample.info.duration_s, 3),
                    fps=round(sample.info.fps, 3) if sample.info.fps else None,
                    width=sample.info.width,
                    height=sample.info.height,
                    codec=sample.info.codec,
                    frame_count=sample.info.frame_count,
                    from_cache=video.from_cache,
                    start_s=round(sample.start_s, 3),
                    end_s=round(sample.end_s, 3),
                    frames_requested=sample.frames_requested,
                    frames=frames,
                    frames_from_cache=hit,
                    note=_with_sparse_note(sample),
                    transcript=[TranscriptCue(start_s=c.start_s, end_s=c.end_s, text=c.text) for c in cues]
                    if cues
                    else None,
                )
            )
        answer = VideoAnswer(
            answer=generation.text,
            question=asked,
            videos=videos,
            model=model_info(backend),
            timings=Timings(
                fetch_s=round(sum(v.fetch_s for v in local), 3),
                decode_s=round(decode_s, 3),
                model_load_s=round(load_s, 3),
                queue_s=round(generation.queue_s, 3),
                inference_s=round(inference_s - generation.queue_s, 3),
                total_s=round(time.perf_counter() - started, 3),
            ),
            tokens=TokenCounts(
                prompt=generation.prompt_tokens,
                generated=generation.generated_tokens,
                reused=generation.reused_tokens,
            ),
            stopped_by_token_limit=generation.hit_token_limit,
        )
        return answer.with_images(_evidence(sampled, evidence))


def _with_sparse_note(sample: SampledVideo) -> str | None:
    """The sampler's note, and one saying so when the frames are far apart: the model then saw little of the range."""
    spacing = (sample.end_s - sample.start_s) / max(len(sample.frames), 1)
    if spacing <= SPARSE_S:
        return sample.note
    sparse = (
        f"One frame every {spacing:.0f} s over {(sample.end_s - sample.start_s) / 60:.1f} min: the model saw little of "
        'this range. Use coverage="full" to watch all of it, or start_s/end_s to look closer at a part.'
    )
    return f"{sample.note} {sparse}" if sample.note else sparse


def _evidence(sampled: Sequence[SampledVideo], evidence: Evidence) -> list[bytes]:
    """JPEGs of the frames the model saw (the same decoded images), each labelled with its reported timestamp."""
    if evidence == "none":
        return []
    several = len(sampled) > 1
    frames = [
        LabelledFrame(frame.image, label(round(frame.timestamp_s, 3), number if several else None))
        for number, sample in enumerate(sampled, 1)
        for frame in sample.frames
    ]
    if evidence == "sheet":
        return [contact_sheet(frames)[0]]
    return frame_images(frames)


def _as_is(text: str) -> str:
    return text


def transcript_text(transcripts: Sequence[Sequence[Cue]], safe: Callable[[str], str] = _as_is) -> str:
    """The subtitles, after the frame guide: timestamped lines, per video when there are several; `safe` makes
    their text harmless in a prompt."""
    if not any(transcripts):
        return ""
    if len(transcripts) == 1:
        return "\n\nSubtitles spoken in that part of the video:\n" + safe(render(transcripts[0]))
    parts = [f"Subtitles of Video {n}:\n{safe(render(cues))}" for n, cues in enumerate(transcripts, 1) if cues]
    return "\n\n" + "\n\n".join(parts)


def frame_guide(
    videos: Sequence[LocalVideo], sampled: Sequence[SampledVideo], safe: Callable[[str], str] = _as_is
) -> str:
    """The text that tells the model which images belong to which video, and when each was taken.

    The chat template renders every image before the text, so this is the only place the model learns it.
    """

    def titled(video: LocalVideo) -> str:
        return f' "{safe(video.title)}"' if video.title else ""

    if len(sampled) == 1:
        sample = sampled[0]
        title = titled(videos[0])
        return (
            f"The {len(sample.frames)} images are frames of one video{title} "
            f"({sample.info.duration_s:.1f} s long), in time order, taken at {_times(sample)}."
        )
    total = sum(len(s.frames) for s in sampled)
    lines = [f"The {total} images are frames from {len(sampled)} videos, in order."]
    first = 1
    for number, (video, sample) in enumerate(zip(videos, sampled, strict=True), 1):
        last = first + len(sample.frames) - 1
        title = titled(video)
        images = f"Image {first}" if first == last else f"Images {first}-{last}"
        lines.append(
            f"{images}: Video {number}{title} ({sample.info.duration_s:.1f} s long), taken at {_times(sample)}."
        )
        first = last + 1
    return "\n".join(lines)


def _times(sample: SampledVideo) -> str:
    return ", ".join(f"{frame.timestamp_s:.2f} s" for frame in sample.frames)
