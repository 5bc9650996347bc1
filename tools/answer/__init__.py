"""Stage 5, the tools' logic: a question answered from sampled frames (`sampled`), or from notes on every window of
a range (`watch`, over `windows`), or when something happens (`moments`), as named steps over the stages before
(`steps`), with what is said taken from subtitles or heard in the sound (`hearing`), the results and the evidence
built once (`results`, `evidence`) and progress that measures work (`progress`).

Nothing here (or anywhere in `tools`) imports MCP: `VideoQA` is usable from a notebook (see `qa`).
"""

from llava_video_mcp.tools.answer.evidence import Evidence
from llava_video_mcp.tools.answer.hearing import Hearing, Transcript
from llava_video_mcp.tools.answer.progress import download_progress
from llava_video_mcp.tools.answer.qa import Clip, Coverage, VideoQA
from llava_video_mcp.tools.answer.results import (
    Answered,
    FrameInfo,
    ModelInfo,
    Moment,
    MomentsAnswer,
    Segment,
    Timings,
    TokenCounts,
    TranscriptCue,
    VideoAnswer,
    VideoInfo,
)
from llava_video_mcp.tools.answer.steps import FRAME_SIDE, WITH_TRANSCRIPT, Sampling, TranscriptOptions
from llava_video_mcp.tools.answer.watch import WindowOptions
from llava_video_mcp.tools.limits import MAX_MOMENTS, MAX_VIDEOS, MIN_VIDEOS
from llava_video_mcp.tools.progress import Progress, no_progress

__all__ = [
    "FRAME_SIDE",
    "MAX_MOMENTS",
    "MAX_VIDEOS",
    "MIN_VIDEOS",
    "WITH_TRANSCRIPT",
    "Answered",
    "Clip",
    "Coverage",
    "Evidence",
    "FrameInfo",
    "Hearing",
    "ModelInfo",
    "Moment",
    "MomentsAnswer",
    "Progress",
    "Sampling",
    "Segment",
    "Timings",
    "TokenCounts",
    "Transcript",
    "TranscriptCue",
    "TranscriptOptions",
    "VideoAnswer",
    "VideoInfo",
    "VideoQA",
    "WindowOptions",
    "download_progress",
    "no_progress",
]
