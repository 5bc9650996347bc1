"""The MCPServer app: two tools over `tools.video_qa`, the model owned by the lifespan.

Tools run their blocking work (download, decode, generate) in a worker thread and report progress back to the
client from there. Failures the caller can act on (`VideoToolError`) reach the client as `ToolError` with their
message; anything else is a bug and stays a crash, logged with its traceback.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
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

from server.contract import StrictTool
from server.settings import Settings
from tools.backends.loader import LazyBackend
from tools.cancel import Cancelled, CancelToken
from tools.errors import VideoToolError
from tools.frames import MAX_FRAMES
from tools.results import VideoAnswer
from tools.sources import VideoFetcher
from tools.untrusted import MAX_QUESTION_CHARS
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
    progress_interval_s: float = 5.0


def build_server(settings: Settings, provider: LazyBackend | None = None) -> MCPServer[AppState]:
    """The MCP app; `provider` is the model already brought up at start, if it was."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        model = provider if provider is not None else LazyBackend(settings.backend_config())
        if settings.preload or settings.endpoint:
            await anyio.to_thread.run_sync(model.get)
        fetcher = VideoFetcher(
            settings.cache_dir, settings.fetch_policy(), cache_max_bytes=int(settings.cache_max_gb * 2**30)
        )
        yield AppState(qa=VideoQA(fetcher, model), progress_interval_s=settings.progress_interval_s)

    tools = [
        StrictTool.from_function(tool, annotations=_ANNOTATIONS, structured_output=True)
        for tool in (describe_video, compare_videos)
    ]
    return MCPServer("llava-video-mcp", instructions=INSTRUCTIONS, lifespan=lifespan, version=_version(), tools=tools)


async def describe_video(
    ctx: Context[AppState, Any],
    source: Source,
    question: Annotated[
        str | None,
        Field(
            max_length=MAX_QUESTION_CHARS,
            description="What to answer about the video; leave empty for a detailed description.",
        ),
    ] = None,
    num_frames: Annotated[
        int, Field(ge=1, le=MAX_FRAMES, description="Frames sampled uniformly over the video or the range.")
    ] = 8,
    start_s: Annotated[float | None, Field(ge=0, description="Start of the time range to sample, seconds.")] = None,
    end_s: Annotated[float | None, Field(gt=0, description="End of the time range to sample, seconds.")] = None,
    fps: Annotated[
        float | None,
        Field(gt=0, le=60, description="At most this many frames per second of the range; num_frames stays the cap."),
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
        lambda progress, cancel: qa.describe(
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
            cancel=cancel,
        ),
    )


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
    question: Annotated[
        str,
        Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="The question to answer across all the videos."),
    ],
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
        lambda progress, cancel: qa.compare(
            sources,
            question,
            frames_per_video=frames_per_video,
            transcript=TranscriptOptions(include_transcript, language),
            max_new_tokens=max_new_tokens,
            progress=progress,
            cancel=cancel,
        ),
    )


class _ProgressRelay:
    """Sends a call's progress to the client: each stage as the worker reports it, and the current stage again
    whenever `interval_s` passes without news, so clients whose timeouts reset on progress keep waiting through
    long model stages and long waits in the queue. Values only ever increase, as MCP requires."""

    def __init__(self, ctx: Context[AppState, Any], interval_s: float, cancel: CancelToken) -> None:
        self._ctx = ctx
        self._cancel = cancel
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._progress = 0.0
        self._total = 1.0
        self._message = "Starting"
        self._stage_started = self._last_sent = time.monotonic()

    def _next(self, progress: float | None, total: float | None, message: str | None) -> tuple[float, float, str]:
        with self._lock:
            if message is not None and message != self._message:
                self._message = message
                self._stage_started = time.monotonic()
            self._total = total if total is not None else self._total
            self._progress = max(progress if progress is not None else self._progress, self._progress + 1e-6)
            self._last_sent = time.monotonic()
            return self._progress, self._total, self._message

    def from_worker(self, progress: float, total: float, message: str) -> None:
        if self._cancel.cancelled:
            return
        log.info("%s", message)
        value, limit, text = self._next(progress, total, message)
        anyio.from_thread.run(functools.partial(self._ctx.report_progress, value, limit, text))

    async def heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.interval_s / 4)
            with self._lock:
                quiet = time.monotonic() - self._last_sent >= self.interval_s
                elapsed = time.monotonic() - self._stage_started
            if quiet:
                value, limit, text = self._next(None, None, None)
                await self._ctx.report_progress(value, limit, f"{text} ({elapsed:.0f} s so far)")


_STOP_WAIT_S = 30.0
"""Longest wait, after a cancellation, for the worker to reach its next checkpoint (it checks at least every
token, chunk of frames and download chunk, so this bound is only a guard against a stuck library call)."""


async def _run_in_thread(
    ctx: Context[AppState, Any], work: Callable[[Callable[[float, float, str], None], CancelToken], T]
) -> T:
    """Run blocking work off the event loop, relaying its progress to the client; map anticipated errors.

    When the client cancels the call, the worker is told through its cancel token and stops at its next
    checkpoint; this waits for that (shielded), so the model is free again before the cancellation completes.
    """
    cancel = CancelToken()
    relay = _ProgressRelay(ctx, ctx.request_context.lifespan_context.progress_interval_s, cancel)
    finished = threading.Event()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work(relay.from_worker, cancel))
        except BaseException as exc:  # handed to the event loop below
            failure.append(exc)
        finally:
            finished.set()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(relay.heartbeat)
            await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
            group.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        cancel.cancel()
        log.info("call cancelled by the client; stopping its work")
        with anyio.CancelScope(shield=True):
            started = time.monotonic()
            stopped = await anyio.to_thread.run_sync(finished.wait, _STOP_WAIT_S)
            log.info(
                "cancelled call %s after %.2f s", "stopped" if stopped else "still running", time.monotonic() - started
            )
        raise
    if failure:
        if isinstance(failure[0], VideoToolError):
            log.info("tool error: %s", failure[0])
            raise ToolError(str(failure[0])) from failure[0]
        if isinstance(failure[0], Cancelled):
            raise ToolError("The call was cancelled.") from failure[0]
        raise failure[0]
    return outcome[0]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llava-video-mcp")
    except PackageNotFoundError:
        return "0.0.0"
