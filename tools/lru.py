"""One byte-bounded store, least recently used out first, for what the server keeps in memory between calls:
sampled frames (`frames.SampleCache`) and the attention state of prompt prefixes (`backends.prefix_cache`)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class ByteLRU(Generic[Key, Value]):
    """Values by key, `max_bytes` in all as their owners count them; safe to share between threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, tuple[Value, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Key) -> Value | None:
        """The value, now the most recently used; None when it is not kept."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def take(self, key: Key) -> Value | None:
        """The value, removed from the store (while its user changes it in place)."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return None
            self._bytes -= entry[1]
            return entry[0]

    def kept(self) -> list[tuple[Value, int]]:
        """What is kept now, each value with its size, least recently used first (for inspection)."""
        with self._lock:
            return list(self._entries.values())

    def put(self, key: Key, value: Value, size: int) -> bool:
        """Keep the value, least recently used ones out to make room; False when it alone is over the budget."""
        if size > self.max_bytes:
            return False
        with self._lock:
            if key in self._entries:
                self._bytes -= self._entries.pop(key)[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
        return True
