"""How many calls a backend serves at once, and the queue in front of it.

The local model serves one call at a time; a serving engine batches many, up to `--max-concurrent-requests`.
Either way the calls beyond that wait here, in arrival order, and are told how many calls are ahead of them, so
a queued call never looks like a running one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.progress import WaitReport

_POLL_S = 0.2
"""How often a waiting call looks at its cancel token."""


class Turns:
    """Admits up to `capacity` calls at once; the others wait first in, first out."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1; got {capacity}")
        self.capacity = capacity
        self._changed = threading.Condition()
        self._running = 0
        self._waiting: deque[object] = deque()

    @contextmanager
    def turn(self, cancel: CancelToken, on_wait: WaitReport | None = None) -> Iterator[float]:
        """Hold a turn for the block; yields the seconds spent waiting for it. Raises `Cancelled` while waiting."""
        started = time.perf_counter()
        ticket = object()
        reported = -1
        with self._changed:
            self._waiting.append(ticket)
        try:
            while True:
                cancel.check()
                with self._changed:
                    if self._running < self.capacity and self._waiting[0] is ticket:
                        self._waiting.popleft()
                        self._running += 1
                        self._changed.notify_all()
                        break
                    ahead = self._waiting.index(ticket) + self._running - self.capacity + 1
                    if ahead == reported or on_wait is None:
                        self._changed.wait(_POLL_S)  # checked and waited under one lock: no wake-up is missed
                        continue
                reported = ahead
                on_wait(ahead)  # outside the lock: reporting may block on the client
        except BaseException:
            with self._changed:
                self._waiting.remove(ticket)
                self._changed.notify_all()
            raise
        try:
            yield time.perf_counter() - started
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()
