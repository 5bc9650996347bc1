"""Attention state (KV cache) of prompt prefixes, kept for follow-up questions about the same frames."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class PrefixCache:
    """Least recently used out first, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0

    def take(self, key: str) -> Any | None:
        """The cache for this key, removed from the store while a generation extends it."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._bytes -= entry[1]
        return entry[0]

    def put(self, key: str, cache: Any, size: int) -> bool:
        """Keep the cache (evicting older ones); False when it alone is larger than the whole budget."""
        if size > self.max_bytes:
            return False
        self._entries[key] = (cache, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._bytes -= evicted
        return True


def cache_bytes(cache: Any) -> int:
    """Bytes held by a transformers cache's keys and values."""
    return sum(
        int(t.numel() * t.element_size())
        for layer in cache.layers
        for t in (layer.keys, layer.values)
        if t is not None and hasattr(t, "numel")
    )
