"""Cancelling a call that runs in a worker thread.

The MCP server runs each call's blocking work (download, decoding, the model) in a thread, and a thread cannot be
stopped from outside. So the work checks a token at the points where stopping is cheap and leaves nothing half
done: between download chunks, between decoded frames, between chunks of frames encoded, between generated tokens,
and while waiting for a turn at the model.
"""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """The caller cancelled the call; work stopped where it was and kept nothing half done."""


class CancelToken:
    """Set once by whoever owns the call; checked by the work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

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


def never() -> CancelToken:
    """A token nobody cancels, for callers that do not cancel (notebooks, benchmarks)."""
    return CancelToken()
