"""Attention state (KV cache) of prompt prefixes, kept for follow-up questions about the same frames, in the
shared byte-bounded store (`tools.lru`), sized from the device (`transformers.prefix_cache_budget`)."""

from __future__ import annotations

from typing import Any

from llava_video_mcp.tools.lru import ByteLRU

PrefixCache = ByteLRU[str, Any]
"""Prefix key (tokens and pixels) -> a transformers cache, taken out while a generation extends it."""


def cache_bytes(cache: Any) -> int:
    """Bytes held by a transformers cache's keys and values."""
    return sum(
        int(t.numel() * t.element_size())
        for layer in cache.layers
        for t in (layer.keys, layer.values)
        if t is not None and hasattr(t, "numel")
    )
