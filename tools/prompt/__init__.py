"""Stage 3, images and text -> what the model reads: subtitles as timestamped cues, and every prompt text as a pure
function (`templates`). Text from strangers is made harmless by `tools.untrusted`, shared by every stage."""

from llava_video_mcp.tools.prompt.subtitles import (
    MAX_TRANSCRIPT_CHARS,
    bounded,
    bounded_tracks,
    parse_subtitles,
    read_cues,
    render,
)
from llava_video_mcp.tools.prompt.templates import (
    DEFAULT_IMAGE_QUESTION,
    DEFAULT_QUESTION,
    MAP_INSTRUCTION,
    PromptText,
    Safe,
    Seen,
    SeenImage,
    SeenVideo,
    condense_prompt,
    look_question,
    notes_prompt,
    question_prompt,
    rank_prompt,
    span_label,
    window_prompt,
)
from llava_video_mcp.tools.timeline import TimedText, clock

__all__ = [
    "DEFAULT_IMAGE_QUESTION",
    "DEFAULT_QUESTION",
    "MAP_INSTRUCTION",
    "MAX_TRANSCRIPT_CHARS",
    "PromptText",
    "Safe",
    "Seen",
    "SeenImage",
    "SeenVideo",
    "TimedText",
    "bounded",
    "bounded_tracks",
    "clock",
    "condense_prompt",
    "look_question",
    "notes_prompt",
    "parse_subtitles",
    "question_prompt",
    "rank_prompt",
    "read_cues",
    "render",
    "span_label",
    "window_prompt",
]
