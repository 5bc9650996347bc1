"""The tests' Whisper builder is the one `llava-video-mcp selftest` ships (`llava_video_mcp.testing.tiny_whisper`)."""

from llava_video_mcp.testing.tiny_whisper import (
    BASE,
    LARGE_V3_TURBO,
    LAYOUTS,
    TIMESTAMPS,
    TINY,
    build_tokenizer,
    build_whisper,
    special_tokens,
)

__all__ = [
    "BASE",
    "LARGE_V3_TURBO",
    "LAYOUTS",
    "TIMESTAMPS",
    "TINY",
    "build_tokenizer",
    "build_whisper",
    "special_tokens",
]
