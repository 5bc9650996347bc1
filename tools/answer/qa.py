"""The two capabilities, as plain functions over a fetcher and a model: no MCP here.

Usable from a notebook:

    from llava_video_mcp.tools.answer import VideoQA
    from llava_video_mcp.tools.backends import BackendConfig, LazyBackend, LazySpeech, SpeechConfig
    from llava_video_mcp.tools.frames import media_duration
    from llava_video_mcp.tools.media import VideoFetcher, default_cache_dir
    from llava_video_mcp.tools.tracks import SpeechTrack, SubtitlesTrack, Tracks

    fetcher = VideoFetcher(default_cache_dir(), inspect=media_duration)
    qa = VideoQA(fetcher, LazyBackend(BackendConfig()))  # subtitles only
    speech = SpeechTrack(LazySpeech(SpeechConfig()))     # and speech heard by Whisper where there are none
    qa = VideoQA(fetcher, model, tracks=Tracks([SubtitlesTrack(), speech]))
    print(qa.describe("clip.mp4", "What is the cat doing?").answer)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from llava_video_mcp.tools.answer.evidence import Evidence
from llava_video_mcp.tools.answer.moments import MomentSearch
from llava_video_mcp.tools.answer.progress import download_progress
from llava_video_mcp.tools.answer.results import MomentsAnswer, VideoAnswer
from llava_video_mcp.tools.answer.sampled import VideoRequest, answer_sampled
from llava_video_mcp.tools.answer.steps import FRAME_SIDE, Sampling, Stages
from llava_video_mcp.tools.answer.watch import FullWatch, WindowOptions
from llava_video_mcp.tools.backends import ModelProvider
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import LimitError
from llava_video_mcp.tools.frames import SampleCache, SamplingPlan
from llava_video_mcp.tools.limits import MAX_FRAMES, MAX_VIDEOS, MIN_VIDEOS
from llava_video_mcp.tools.media import VideoFetcher
from llava_video_mcp.tools.progress import Progress, no_progress
from llava_video_mcp.tools.prompt import DEFAULT_QUESTION
from llava_video_mcp.tools.tracks import WITH_TRANSCRIPT, SubtitlesTrack, Tracks, TranscriptOptions
from llava_video_mcp.tools.untrusted import clean_question


@dataclass(frozen=True)
class Clip:
    """A source for compare_videos, optionally restricted to a time range of its own."""

    source: str
    start_s: float | None = None
    end_s: float | None = None


Coverage = Literal["sampled", "full"]
"""`sampled`: frames spread over the range, one model call. `full`: every window of the range watched (see
`watch`)."""


Download = Callable[[Progress, CancelToken], None]
"""A download a call needs, to run before it (the call then finds the video in the cache)."""


@dataclass(frozen=True)
class Downloads:
    """What a call downloads before its work, and the `VideoQA` its work runs on: that one counts these downloads
    as the call's own (its result says it downloaded the video, and how long that took)."""

    downloads: list[Download]
    qa: VideoQA


class VideoQA:
    def __init__(
        self,
        fetcher: VideoFetcher,
        model: ModelProvider,
        samples: SampleCache | None = None,
        windows: WindowOptions | None = None,
        tracks: Tracks | None = None,
        frame_side: int = FRAME_SIDE,
    ) -> None:
        """`tracks`: what the prompt reads besides the frames (subtitles only unless given more: see `tracks`);
        `frame_side`: the side frames are decoded to, the model family's (`FrameCost.side`)."""
        self.stages = Stages(fetcher, model, tracks if tracks is not None else Tracks([SubtitlesTrack()]), frame_side)
        self.samples = samples if samples is not None else SampleCache()
        self.windows = windows if windows is not None else WindowOptions()

    @property
    def model(self) -> ModelProvider:
        return self.stages.model

    @property
    def tracks(self) -> Tracks:
        """What is read beside the frames, in the order the prompt shows it."""
        return self.stages.tracks

    def downloads(self, sources: Sequence[str], transcript: TranscriptOptions) -> Downloads:
        """The downloads a call about `sources` needs first (one per source not in the cache yet, bringing what the
        tracks need), and the `VideoQA` the call then runs on."""
        call = replace(self.stages, ahead={})
        qa = copy.copy(self)
        qa.stages = call
        needs = call.tracks.needs(transcript)

        def download(number: int, source: str) -> Download:
            def run(progress: Progress, cancel: CancelToken) -> None:
                hook = download_progress(progress, 0, 1, number)
                took_s = call.fetcher.download(
                    source,
                    needs=needs,
                    on_progress=hook,
                    cancel=cancel,
                )
                if took_s is not None:
                    call.ahead[source] = took_s

            return run

        wanted = [download(n, source) for n, source in enumerate(sources, 1) if call.fetcher.needs_download(source)]
        return Downloads(wanted, qa)

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
        sampling: Sampling = "uniform",
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
        frame_max_side: int | None = None,
    ) -> VideoAnswer:
        """Answer a question about one video, or describe it when no question is given.

        With `evidence`, the result's `images` hold JPEGs of the frames the model saw (see `evidence`; with
        `frame_max_side`, one a frame at up to that many pixels on the long side, decoded again where needed). With
        `coverage="full"`, the whole range is watched window by window, `num_frames` frames each, and the answer
        comes from the windows' notes (see `watch`). With `sampling="scenes"`, every scene of the range is seen (see
        `steps.Sampling`)."""
        plan = SamplingPlan(num_frames, start_s, end_s, fps, keyframes_only, self.stages.frame_side)
        asked = clean_question(question) or DEFAULT_QUESTION
        if coverage == "full" and self.stages.looking_only:
            raise LimitError(
                'coverage="full" has a model write notes on every window, and this server runs without one (--model '
                'none). Ask with coverage="sampled" (up to 32 frames, returned as images) over parts of the range '
                "with start_s/end_s, or start the server with a model."
            )
        if coverage == "full" and (evidence != "none" or frame_max_side is not None):
            raise LimitError(
                'coverage="full" answers from notes on every window of the range and returns no frames, so '
                "return_frames and frame_max_side do not apply to it. Leave them out, or ask with "
                'coverage="sampled" (start_s/end_s for a moment) to get the frames seen.'
            )
        if coverage == "full":
            watch = FullWatch(self.stages, self.windows, progress, cancel)
            return watch.answer(source, asked, plan, transcript, max_new_tokens)
        request = VideoRequest(source, plan, sampling)
        return answer_sampled(
            self.stages, self.samples, [request], asked, transcript, max_new_tokens, evidence, progress, cancel,
            frame_max_side,
        )  # fmt: skip

    def compare(
        self,
        sources: Sequence[str | Clip],
        question: str,
        *,
        frames_per_video: int = 6,
        transcript: TranscriptOptions = WITH_TRANSCRIPT,
        max_new_tokens: int = 256,
        evidence: Evidence = "none",
        sampling: Sampling = "uniform",
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
        frame_max_side: int | None = None,
    ) -> VideoAnswer:
        """Answer one question across 2 to 4 sources, all their frames in one model context; each source may be a
        `Clip` with a time range of its own, or a still image (one image at its place, see `sampled`)."""
        if not MIN_VIDEOS <= len(sources) <= MAX_VIDEOS:
            raise LimitError(f"compare_videos takes {MIN_VIDEOS} to {MAX_VIDEOS} sources; got {len(sources)}.")
        if len(sources) * frames_per_video > MAX_FRAMES:
            raise LimitError(
                f"{len(sources)} videos x {frames_per_video} frames is {len(sources) * frames_per_video} frames; "
                f"at most {MAX_FRAMES} fit in one call. Use frames_per_video={MAX_FRAMES // len(sources)} or fewer."
            )
        asked = clean_question(question)
        if asked is None:
            raise LimitError("compare_videos needs a question, e.g. 'What differs between these videos?'.")
        clips = [source if isinstance(source, Clip) else Clip(source) for source in sources]
        requests = [
            VideoRequest(
                clip.source,
                SamplingPlan(frames_per_video, clip.start_s, clip.end_s, min_side=self.stages.frame_side),
                sampling,
            )
            for clip in clips
        ]
        return answer_sampled(
            self.stages, self.samples, requests, asked, transcript, max_new_tokens, evidence, progress, cancel,
            frame_max_side,
        )  # fmt: skip

    def moments(
        self,
        source: str,
        query: str,
        *,
        start_s: float | None = None,
        end_s: float | None = None,
        max_moments: int = 3,
        evidence: Evidence = "none",
        reference: str | None = None,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
        frame_max_side: int | None = None,
    ) -> MomentsAnswer:
        """When `query` happens in the video (or its range): 1 to `max_moments` time ranges, best first, each with
        its frames and what it rests on (see `moments`). The range is watched as `coverage="full"` watches it, and
        each reuses the other's notes. `reference`: a still image of what the query is about, shown to the model
        with each window it looks at closely."""
        search = MomentSearch(self.stages, self.windows, progress, cancel)
        return search.find(source, query, start_s, end_s, max_moments, evidence, reference, frame_max_side)
