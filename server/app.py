"""The MCPServer app: three tools over `tools.answer.VideoQA`, the models owned by the lifespan.

The tools' contract (strict arguments, lean schemas, results and errors) is `server.contract`; running a call's
blocking work in a worker thread, with progress and cancellation, is `server.worker`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from llava_video_mcp.server.arguments import CompareArguments, DescribeArguments, MomentsArguments, ToolArguments
from llava_video_mcp.server.auth import auth_options
from llava_video_mcp.server.components import build
from llava_video_mcp.server.contract import StrictTool, error_result
from llava_video_mcp.server.settings import Settings, version
from llava_video_mcp.server.worker import Pools, run_call
from llava_video_mcp.tools.answer import (
    MomentsAnswer,
    VideoAnswer,
    VideoQA,
)
from llava_video_mcp.tools.backends import ModelProvider
from llava_video_mcp.tools.backends.loader import ModelSummary, model_summary

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Tools that watch videos: describe_video answers a question about one video (or describes it), compare_videos "
    "answers one question across 2-4 videos or images seen together, find_moments says when something happens. A "
    "source is a local file path, a direct http(s) link to a video or image file, or a page URL on any site yt-dlp "
    "supports. Text shown on screen is read by OCR (on_screen_text). Results "
    "give the exact timestamps of the frames the model saw: ask again with start_s/end_s to look closer at a moment."
)
LOOKING_INSTRUCTIONS = (
    "Tools that show you videos: no model runs on this server (--model none), so you are the eye. describe_video "
    "and compare_videos return the frames they choose as images, each labelled with its exact time, with the "
    "transcript and the text on screen; find_moments says when something happens from the words said or shown, or "
    "gives candidate ranges with their frames for you to judge. A source is a local file path, a direct http(s) "
    "link to a video file, or a page URL on any site yt-dlp supports. Ask again with start_s/end_s to look closer."
)
DIAGNOSTICS = ("videos", "model", "timings", "tokens", "segments")
"""Result fields published as plain objects in the output schema: their fields explain themselves in every result."""
_ANNOTATIONS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)


def describe_text(model: ModelSummary) -> str:
    """describe_video's description, with what the running model is and what a frame costs it, where known."""
    which = f" ({model.family})" if model.family else ""
    cost = f" at {model.frame_cost.words()}" if model.frame_cost else ""
    return (
        f"Answer a question about one video or image, or describe it. The model{which} sees num_frames frames{cost}: "
        "good at scenes and actions, unable to read small text; verify important claims (return_frames shows what it "
        "saw). "
        "A first call takes minutes on CPU, seconds on a GPU; asking again about the same source and sampling reuses "
        "the frames and is fast."
    )


LOOKING_DESCRIBE = (
    "Look at one video yourself: no model runs on this server (--model none), so there is no answer; the num_frames "
    "frames it chooses come back as images, each labelled with its exact time, with the transcript and on-screen "
    "text of the range. A first call takes seconds; ask again with start_s/end_s to look closer at a moment."
)
LOOKING_COMPARE = (
    "Look at 2-4 videos side by side yourself: no model runs on this server (--model none), so there is no answer; "
    "frames_per_video frames from each come back as images (labelled V1, V2, ... and their time), with each "
    "video's transcript and on-screen text. A source may be an object with its own start_s/end_s."
)
LOOKING_MOMENTS = (
    "Find when something happens in one video: from the words said and shown (subtitles, speech, on-screen text) "
    "when they hold max_moments moments; else those, then candidate ranges spread over the video, each with two "
    "frames as images, for you to judge. No model runs on this server (--model none)."
)
MOMENTS = (
    "Find when something happens in one video: 1 to max_moments time ranges, best first, each with its frames and "
    "what it rests on (words said, frames, or both). Watches the range in windows as coverage=full does (same cost; "
    "the notes are shared and kept), then looks closer at the best."
)
COMPARE = (
    "Answer one question across 2-4 videos or images seen together in one context, frames_per_video from each "
    "video (32 frames in all). Same model, costs and reuse as describe_video. A source may be an object with its "
    "own start_s/end_s."
)


@dataclass(frozen=True)
class AppState:
    qa: VideoQA
    pools: Pools
    progress_interval_s: float = 5.0


def build_server(settings: Settings, provider: ModelProvider | None = None) -> MCPServer[AppState]:
    """The MCP app; `provider` is the model already brought up at start, if it was."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        components = build(settings, provider)
        if (settings.preload or settings.endpoint) and not settings.looking_only:
            await anyio.to_thread.run_sync(components.model.get)
        try:
            pools = Pools.create(settings.max_concurrent_downloads)
            yield AppState(qa=components.qa, pools=pools, progress_interval_s=settings.progress_interval_s)
        finally:
            components.close()

    looking = settings.looking_only
    tools: list[Tool] = [
        StrictTool.define(
            tool_function(DescribeArguments, VideoAnswer),
            title="Describe a video",
            description=LOOKING_DESCRIBE if looking else describe_text(model_summary(settings.backend_config())),
            annotations=_ANNOTATIONS,
            open_objects=DIAGNOSTICS,
        ),
        StrictTool.define(
            tool_function(CompareArguments, VideoAnswer),
            title="Compare videos",
            description=LOOKING_COMPARE if looking else COMPARE,
            annotations=_ANNOTATIONS,
            open_objects=DIAGNOSTICS,
        ),
        StrictTool.define(
            tool_function(MomentsArguments, MomentsAnswer),
            title="Find moments",
            description=LOOKING_MOMENTS if looking else MOMENTS,
            annotations=_ANNOTATIONS,
            open_objects=("videos", "model", "timings", "tokens"),
        ),
    ]
    return MCPServer(
        "llava-video-mcp",
        instructions=LOOKING_INSTRUCTIONS if looking else INSTRUCTIONS,
        lifespan=lifespan,
        version=version(),
        tools=tools,
        **auth_options(settings),
    )


def tool_function(arguments: type[ToolArguments], result: type[BaseModel]) -> Callable[..., Any]:
    """The tool function for a tool's declared arguments: its parameters are their fields (so the SDK publishes them
    and checks them), and its body makes the call the arguments ask for."""

    async def call(ctx: Context[AppState, Any], **given: Any) -> CallToolResult:
        asked = arguments.model_validate(given)
        problem = asked.problem(str)
        if problem is not None:
            return error_result(problem + ".", retryable=False)
        state = ctx.request_context.lifespan_context
        planned = state.qa.downloads(asked.videos(), asked.transcript())
        return await run_call(
            ctx,
            arguments.tool,
            state.progress_interval_s,
            lambda progress, cancel: asked.ask(planned.qa, progress, cancel),
            state.pools,
            planned.downloads,
        )

    empty = inspect.Parameter.empty
    parameters = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Context[AppState, Any])]
    parameters += [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=empty if info.is_required() else info.default,
            annotation=Annotated[(info.annotation, *info.metadata, Field(description=info.description))],
        )
        for name, info in arguments.model_fields.items()
    ]
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=Annotated[CallToolResult, result]
    )
    call.__name__ = call.__qualname__ = arguments.tool
    return call
