"""The tests' llava builder is the one `llava-video-mcp selftest` ships (`llava_video_mcp.testing.tiny_llava`)."""

from llava_video_mcp.testing.tiny_llava import CHAT_TEMPLATE, FULL_0_5B, TINY, build_llava, build_tokenizer

__all__ = ["CHAT_TEMPLATE", "FULL_0_5B", "TINY", "build_llava", "build_tokenizer"]
