"""The MCPServer app: two tools over `tools.video_qa`, the model owned by the lifespan.

Tools run their blocking work (download, decode, generate) in a worker thread and report progress back to the
client from there. Failures the caller can act on (`VideoToolError`) reach the client as `ToolError` with their
message; anything else is a bug and stays a crash, logged with its traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from server.settings import Settings
from tools.backend import LazyBackend
from tools.errors import VideoToolError
from tools.frames import MAX_FRAMES
from tools.results import VideoAnswer
from tools.sources import VideoFetcher
from tools.video_qa import MAX_VIDEOS, MIN_VIDEOS, TranscriptOptions, VideoQA

log = logging.getLogger(__name__)

T = TypeVar("T")

INSTRUCTIONS = (
    "Tools that watch videos for you. describe_video answers a question about one video (or describes it); "
    "compare_videos answers one question across 2-4 videos seen together. A source is a local file path, a direct "
    "http(s) link to a video file, or a page URL on any site yt-dlp supports. Results carry the timestamps of the "
    "frames the model saw: ask again with start_s/end_s to look closer at a moment."
)
_ANNOTATIONS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)

Source = Annotated[
    str,
    Field(
        description="Local video file path, direct http(s) URL of a video file, or a video page URL yt-dlp supports."
    ),
]
MaxNewTokens = Annotated[int, Field(ge=1, le=4096, description="Upper bound on the answer's length in tokens.")]
IncludeTranscript = Annotated[
    bool, Field(description="Give the model the video's subtitles or captions for the sampled range, when it has any.")
]
Language = Annotated[
    str,
    Field(
        min_length=2,
        max_length=16,
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$",
        description="Language of the subtitles to use, e.g. en, de, pt-BR.",
    ),
]


@dataclass(frozen=True)
class AppState:
    qa: VideoQA


def build_server(settings: Settings) -> MCPServer[AppState]:
    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        model = LazyBackend(settings.model, device=settings.device, dtype=settings.dtype)
        if settings.preload:
            await anyio.to_thread.run_sync(model.get)
        fetcher = VideoFetcher(
            settings.cache_dir, settings.fetch_policy(), cache_max_bytes=int(settings.cache_max_gb * 2**30)
        )
        yield AppState(qa=VideoQA(fetcher, model))

    app: MCPServer[AppState] = MCPServer(
        "llava-video-mcp", instructions=INSTRUCTIONS, lifespan=lifespan, version=_version()
    )

    @app.tool(annotations=_ANNOTATIONS, structured_output=True)
    async def describe_video(
        ctx: Context[AppState, Any],
        source: Source,
        question: Annotated[
            str | None, Field(description="What to answer about the video; leave empty for a detailed description.")
        ] = None,
        num_frames: Annotated[
            int, Field(ge=1, le=MAX_FRAMES, description="Frames sampled uniformly over the video or the range.")
        ] = 8,
        start_s: Annotated[float | None, Field(ge=0, description="Start of the time range to sample, seconds.")] = None,
        end_s: Annotated[float | None, Field(gt=0, description="End of the time range to sample, seconds.")] = None,
        fps: Annotated[
            float | None,
            Field(
                gt=0, le=60, description="At most this many frames per second of the range; num_frames stays the cap."
            ),
        ] = None,
        keyframes_only: Annotated[
            bool,
            Field(description="Faster, approximate: use the keyframe nearest each sample point (true times reported)."),
        ] = False,
        include_transcript: IncludeTranscript = True,
        language: Language = "en",
        max_new_tokens: MaxNewTokens = 256,
    ) -> VideoAnswer:
        """Watch one video and answer a question about it, or describe it when no question is given.

        Frames are sampled uniformly (optionally within start_s..end_s) and shown to a vision-language model.
        The result holds the answer and the evidence: video metadata and the exact timestamp of every frame seen.
        """
        qa = ctx.request_context.lifespan_context.qa
        return await _run_in_thread(
            ctx,
            lambda progress: qa.describe(
                source,
                question,
                num_frames=num_frames,
                start_s=start_s,
                end_s=end_s,
                fps=fps,
                keyframes_only=keyframes_only,
                transcript=TranscriptOptions(include_transcript, language),
                max_new_tokens=max_new_tokens,
                progress=progress,
            ),
        )

    @app.tool(annotations=_ANNOTATIONS, structured_output=True)
    async def compare_videos(
        ctx: Context[AppState, Any],
        sources: Annotated[
            list[str],
            Field(
                min_length=MIN_VIDEOS,
                max_length=MAX_VIDEOS,
                description="2 to 4 sources (file paths or URLs), compared in this order as Video 1, Video 2, ...",
            ),
        ],
        question: Annotated[str, Field(min_length=1, description="The question to answer across all the videos.")],
        frames_per_video: Annotated[
            int, Field(ge=1, le=MAX_FRAMES // MIN_VIDEOS, description="Frames sampled from each video.")
        ] = 6,
        include_transcript: IncludeTranscript = True,
        language: Language = "en",
        max_new_tokens: MaxNewTokens = 256,
    ) -> VideoAnswer:
        """Answer one question across 2-4 videos, whose frames the model sees together in one context.

        The model is told which frames belong to which video and when each was taken.
        """
        qa = ctx.request_context.lifespan_context.qa
        return await _run_in_thread(
            ctx,
            lambda progress: qa.compare(
                sources,
                question,
                frames_per_video=frames_per_video,
                transcript=TranscriptOptions(include_transcript, language),
                max_new_tokens=max_new_tokens,
                progress=progress,
            ),
        )

    return app


async def _run_in_thread(ctx: Context[AppState, Any], work: Callable[[Callable[[float, float, str], None]], T]) -> T:
    """Run blocking work off the event loop, relaying its progress to the client; map anticipated errors."""

    def progress(done: float, total: float, message: str) -> None:
        log.info("%s", message)
        anyio.from_thread.run(functools.partial(ctx.report_progress, done, total, message))

    try:
        return await anyio.to_thread.run_sync(lambda: work(progress))
    except VideoToolError as exc:
        log.info("tool error: %s", exc)
        raise ToolError(str(exc)) from exc


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llava-video-mcp")
    except PackageNotFoundError:
        return "0.0.0"
