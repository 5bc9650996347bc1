"""Cancelling a call that runs in a worker thread.

The MCP server runs each call's blocking work (download, decoding, the model) in a thread, and a thread cannot be
stopped from outside. So the work checks a token at the points where stopping is cheap and leaves nothing half
done: between download chunks, between decoded frames, between chunks of frames encoded, between generated tokens,
and while waiting for a turn at the model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Cancelled(Exception):
    """The caller cancelled the call; work stopped where it was and kept nothing half done."""


class CancelToken:
    """Set once by whoever owns the call; checked by the work."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def cancel(self) -> None:
        """Mark the call cancelled and run the registered callbacks (they unblock work stuck in I/O)."""
        with self._lock:
            self._event.set()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    @contextmanager
    def on_cancel(self, callback: Callable[[], None]) -> Iterator[None]:
        """Within the block, `callback` runs when the call is cancelled (at once if it already was)."""
        with self._lock:
            already = self._event.is_set()
            if not already:
                self._callbacks.append(callback)
        if already:
            callback()
        try:
            yield
        finally:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise `Cancelled` if the call was cancelled."""
        if self._event.is_set():
            raise Cancelled("the call was cancelled")

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s`, waking early on cancellation; whether the call was cancelled."""
        return self._event.wait(timeout_s)
