"""Calls that work on the same thing take turns: one holder of a name at a time, in this process.

The download cache takes turns per URL and per entry (with a lock on disk besides, for other processes), the
speech track per video's unheard blocks, the on-screen track per video's unread blocks: the second call then finds
what the first kept. A waiting call is told once (`on_wait`, for its progress), and stops waiting at once when it is
cancelled: the cancellation wakes the wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from llava_video_mcp.tools.cancel import CancelToken


def _nothing() -> None:
    return None


class TurnsByName:
    """One holder of a name at a time; the others wait, cancellably."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held: set[str] = set()

    @contextmanager
    def taken(
        self, name: str, cancel: CancelToken | None = None, on_wait: Callable[[], None] = _nothing
    ) -> Iterator[None]:
        """Hold `name` for the block. `on_wait` is called once, before waiting, when another call holds it."""
        token = cancel if cancel is not None else CancelToken()
        with self._changed:
            busy = name in self._held
        if busy:
            on_wait()
        with token.on_cancel(self._wake), self._changed:
            while name in self._held:
                token.check()
                self._changed.wait()
            token.check()
            self._held.add(name)
        try:
            yield
        finally:
            with self._changed:
                self._held.discard(name)
                self._changed.notify_all()

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()
