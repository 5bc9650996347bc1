"""The MCPServer app: three tools over `tools.answer.VideoQA`, the models owned by the lifespan.

The tools' contract (strict arguments, lean schemas, results and errors) is `server.contract`; running a call's
blocking work in a worker thread, with progress and cancellation, is `server.worker`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from llava_video_mcp.server.auth import auth_options
from llava_video_mcp.server.components import build
from llava_video_mcp.server.contract import StrictTool
from llava_video_mcp.server.settings import Settings, version
from llava_video_mcp.server.worker import Download, Pools, run_call
from llava_video_mcp.tools.answer import (
    MAX_MOMENTS,
    MAX_VIDEOS,
    MIN_VIDEOS,
    Clip,
    MomentsAnswer,
    Progress,
    TranscriptOptions,
    VideoAnswer,
    VideoQA,
    download_progress,
)
from llava_video_mcp.tools.backends import ModelProvider
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.frames import MAX_FRAMES
from llava_video_mcp.tools.untrusted import MAX_QUESTION_CHARS

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Tools that watch videos: describe_video answers a question about one video (or describes it), compare_videos "
    "answers one question across 2-4 videos seen together, find_moments says when something happens. A source is a "
    "local file path, a direct http(s) link to a video file, or a page URL on any site yt-dlp supports. Results "
    "give the exact timestamps of the frames the model saw: ask again with start_s/end_s to look closer at a moment."
)
DIAGNOSTICS = ("videos", "model", "timings", "tokens", "segments")
"""Result fields published as plain objects in the output schema: their fields explain themselves in every result."""
_ANNOTATIONS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)

DESCRIBE = (
    "Answer a question about one video, or describe it. The model (llava-interleave, small: 0.5B unless the server "
    "runs a larger one) sees num_frames frames at 384 px, 729 tokens each: good at scenes and actions, unable to "
    "read small text; verify important claims (return_frames shows what it saw). A first call takes minutes on CPU, "
    "seconds on a GPU; asking again about the same source and sampling reuses the frames and is fast."
)
MOMENTS = (
    "Find when something happens in one video: 1 to max_moments time ranges, best first, each with its frames and "
    "what it rests on (words said, frames, or both). Watches the range in windows as coverage=full does (same cost; "
    "the notes are shared and kept), then looks closer at the best."
)
COMPARE = (
    "Answer one question across 2-4 videos seen together in one context, frames_per_video from each (32 frames in "
    "all). Same model, costs and reuse as describe_video. A source may be an object with its own start_s/end_s."
)

Source = Annotated[str, Field(description="Local path, http(s) video URL, or video page URL.")]
MaxNewTokens = Annotated[int, Field(ge=1, le=4096)]
IncludeTranscript = Annotated[bool, Field(description="Give the model what is said: subtitles, else speech.")]
Language = Annotated[
    str | None,
    Field(max_length=16, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$", description="Of subtitles (en), and of speech."),
]
ReturnFrames = Annotated[
    Literal["none", "sheet", "frames"], Field(description="Also return the frames seen: one sheet, or a JPEG each.")
]
Scenes = Annotated[Literal["uniform", "scenes"], Field(description="scenes: a frame in every scene.")]
Start = Annotated[float | None, Field(ge=0, description="Sample from this second on.")]
End = Annotated[float | None, Field(gt=0, description="Sample up to this second.")]


class SourceRange(BaseModel):
    """A source with its own start_s/end_s."""

    model_config = ConfigDict(extra="forbid")

    source: str
    start_s: Annotated[float | None, Field(ge=0)] = None
    end_s: Annotated[float | None, Field(gt=0)] = None


@dataclass(frozen=True)
class AppState:
    qa: VideoQA
    pools: Pools
    progress_interval_s: float = 5.0

    def downloads(self, sources: list[str], transcript: TranscriptOptions) -> list[Download]:
        """The downloads a call needs first, one per source not in the cache yet (run in their own pool)."""
        language = transcript.language if transcript.include else None
        fetcher = self.qa.fetcher
        hears = transcript.include and self.qa.hearing.hears

        def download(number: int, source: str) -> Download:
            def run(progress: Progress, cancel: CancelToken) -> None:
                hook = download_progress(progress, 0, 1, number)
                fetcher.download(source, subtitle_language=language, sound=hears, on_progress=hook, cancel=cancel)

            return run

        return [download(n, source) for n, source in enumerate(sources, 1) if fetcher.needs_download(source)]


def build_server(settings: Settings, provider: ModelProvider | None = None) -> MCPServer[AppState]:
    """The MCP app; `provider` is the model already brought up at start, if it was."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        components = build(settings, provider)
        if settings.preload or settings.endpoint:
            await anyio.to_thread.run_sync(components.model.get)
        try:
            pools = Pools.create(settings.max_concurrent_downloads)
            yield AppState(qa=components.qa, pools=pools, progress_interval_s=settings.progress_interval_s)
        finally:
            components.close()

    tools: list[Tool] = [
        StrictTool.define(
            describe_video,
            title="Describe a video",
            description=DESCRIBE,
            annotations=_ANNOTATIONS,
            open_objects=DIAGNOSTICS,
        ),
        StrictTool.define(
            compare_videos,
            title="Compare videos",
            description=COMPARE,
            annotations=_ANNOTATIONS,
            open_objects=DIAGNOSTICS,
        ),
        StrictTool.define(
            find_moments,
            title="Find moments",
            description=MOMENTS,
            annotations=_ANNOTATIONS,
            open_objects=("videos", "model", "timings", "tokens"),
        ),
    ]
    return MCPServer(
        "llava-video-mcp",
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        version=version(),
        tools=tools,
        **auth_options(settings),
    )


async def describe_video(
    ctx: Context[AppState, Any],
    source: Source,
    question: Annotated[
        str | None, Field(max_length=MAX_QUESTION_CHARS, description="Empty: describe the video in detail.")
    ] = None,
    num_frames: Annotated[int, Field(ge=1, le=MAX_FRAMES, description="Frames spread evenly over the range.")] = 8,
    start_s: Start = None,
    end_s: End = None,
    fps: Annotated[float | None, Field(gt=0, le=60, description="At most this many frames a second.")] = None,
    keyframes_only: Annotated[bool, Field(description="Faster: nearest keyframes instead of exact frames.")] = False,
    include_transcript: IncludeTranscript = True,
    language: Language = None,
    max_new_tokens: MaxNewTokens = 256,
    return_frames: ReturnFrames = "none",
    coverage: Annotated[
        Literal["sampled", "full"],
        Field(description="full: watch the whole range in windows, then answer from their notes (slower, cached)."),
    ] = "sampled",
    sampling: Scenes = "uniform",
) -> Annotated[CallToolResult, VideoAnswer]:
    state = ctx.request_context.lifespan_context
    transcript = TranscriptOptions(include_transcript, language)
    return await run_call(
        ctx,
        "describe_video",
        state.progress_interval_s,
        lambda progress, cancel: state.qa.describe(
            source,
            question,
            num_frames=num_frames,
            start_s=start_s,
            end_s=end_s,
            fps=fps,
            keyframes_only=keyframes_only,
            transcript=transcript,
            max_new_tokens=max_new_tokens,
            evidence=return_frames,
            coverage=coverage,
            sampling=sampling,
            progress=progress,
            cancel=cancel,
        ),
        state.pools,
        state.downloads([source], transcript),
    )


async def compare_videos(
    ctx: Context[AppState, Any],
    sources: Annotated[
        list[str | SourceRange],
        Field(min_length=MIN_VIDEOS, max_length=MAX_VIDEOS, description="Videos 1, 2, ... in this order."),
    ],
    question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)],
    frames_per_video: Annotated[int, Field(ge=1, le=MAX_FRAMES // MIN_VIDEOS)] = 6,
    include_transcript: IncludeTranscript = True,
    language: Language = None,
    max_new_tokens: MaxNewTokens = 256,
    return_frames: ReturnFrames = "none",
    sampling: Scenes = "uniform",
) -> Annotated[CallToolResult, VideoAnswer]:
    state = ctx.request_context.lifespan_context
    clips = [Clip(s.source, s.start_s, s.end_s) if isinstance(s, SourceRange) else s for s in sources]
    transcript = TranscriptOptions(include_transcript, language)
    return await run_call(
        ctx,
        "compare_videos",
        state.progress_interval_s,
        lambda progress, cancel: state.qa.compare(
            clips,
            question,
            frames_per_video=frames_per_video,
            transcript=transcript,
            max_new_tokens=max_new_tokens,
            evidence=return_frames,
            sampling=sampling,
            progress=progress,
            cancel=cancel,
        ),
        state.pools,
        state.downloads([clip if isinstance(clip, str) else clip.source for clip in clips], transcript),
    )


async def find_moments(
    ctx: Context[AppState, Any],
    source: Source,
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="What to find.")],
    start_s: Start = None,
    end_s: End = None,
    max_moments: Annotated[int, Field(ge=1, le=MAX_MOMENTS)] = 3,
    return_frames: ReturnFrames = "none",
) -> Annotated[CallToolResult, MomentsAnswer]:
    state = ctx.request_context.lifespan_context
    return await run_call(
        ctx,
        "find_moments",
        state.progress_interval_s,
        lambda progress, cancel: state.qa.moments(
            source,
            query,
            start_s=start_s,
            end_s=end_s,
            max_moments=max_moments,
            evidence=return_frames,
            progress=progress,
            cancel=cancel,
        ),
        state.pools,
        state.downloads([source], TranscriptOptions()),
    )
