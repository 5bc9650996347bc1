"""Stage 6, the tools' logic: a question answered from sampled frames (`sampled`), or from notes on every window of
a range (`watch`, over `windows`), or when something happens (`moments`), as named steps over the stages before
(`steps`), with what a range says or shows read by the tracks (`tools.tracks`: a list of `TrackText`, never a
track by name), the results and the evidence built once (`results`, `evidence`) and progress that measures work
(`progress`).

Nothing here (or anywhere in `tools`) imports MCP: `VideoQA` is usable from a notebook (see `qa`).
"""

from llava_video_mcp.tools.answer.evidence import Evidence
from llava_video_mcp.tools.answer.progress import download_progress
from llava_video_mcp.tools.answer.qa import Clip, Coverage, Download, Downloads, VideoQA
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
from llava_video_mcp.tools.answer.steps import FRAME_SIDE, NoModel, Sampling
from llava_video_mcp.tools.answer.watch import WindowOptions
from llava_video_mcp.tools.limits import MAX_MOMENTS, MAX_VIDEOS, MIN_VIDEOS
from llava_video_mcp.tools.progress import Progress, no_progress
from llava_video_mcp.tools.tracks import WITH_TRANSCRIPT, TranscriptOptions

__all__ = [
    "FRAME_SIDE",
    "MAX_MOMENTS",
    "MAX_VIDEOS",
    "MIN_VIDEOS",
    "WITH_TRANSCRIPT",
    "Answered",
    "Clip",
    "Coverage",
    "Download",
    "Downloads",
    "Evidence",
    "FrameInfo",
    "ModelInfo",
    "Moment",
    "MomentsAnswer",
    "NoModel",
    "Progress",
    "Sampling",
    "Segment",
    "Timings",
    "TokenCounts",
    "TranscriptCue",
    "TranscriptOptions",
    "VideoAnswer",
    "VideoInfo",
    "VideoQA",
    "WindowOptions",
    "download_progress",
    "no_progress",
]
