"""A tool call's blocking work in worker threads: its progress relayed to the client, its cancellation passed in,
and its outcome turned into the call's result.

- Threads: a call's downloads run first, in a pool of their own (`Pools.downloads`, --max-concurrent-downloads),
  then the rest of the call in the calls' pool (`Pools.calls`). Forty slow downloads then hold download threads
  only: a call on a cached or local video, and every new session, are still served. A call waiting for a thread
  holds none, and its progress says what it waits for.
- Progress: each stage as the worker reports it, and the current stage again whenever `interval_s` passes without
  news (a long generation, a wait in the queue), so clients whose timeouts reset on progress keep waiting. Values
  only ever increase, as MCP requires, and are rounded to what a client can show.
- Cancellation: when the client cancels (MCP `notifications/cancelled`, or the HTTP stream closes), the handler's
  scope is cancelled, but a thread cannot be stopped from outside. The worker's cancel token is set instead, and
  the work stops at its next checkpoint (a download chunk, a packet, a chunk of frames, a token); the handler waits
  for that, so the model is free before the cancellation completes.
- Outcome: an answer becomes a result with structured content, its compact JSON as text, and the evidence images;
  a failure the caller can act on becomes an error result whose text says what to change and whose `_meta` says
  whether trying again may help. Anything else is a bug: the agent gets an error with a short incident id, and the
  traceback goes to the log under that id.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from llava_video_mcp.server.contract import answer_result, error_result, incident_result
from llava_video_mcp.tools.answer import Answered
from llava_video_mcp.tools.cancel import Cancelled, CancelToken
from llava_video_mcp.tools.errors import VideoToolError

log = logging.getLogger(__name__)

Progress = Callable[[float, float, str], None]
Work = Callable[[Progress, CancelToken], Answered]
"""The blocking work: called with a progress callback (progress, total, message) and a cancel token."""
Download = Callable[[Progress, CancelToken], None]
"""A download the work needs, run first in the downloads' pool (the work then finds the video in the cache)."""

CALL_THREADS = 32
"""Calls running in threads at once; more wait for a thread without holding one. The model serves one call at a
time in process (an engine, --max-concurrent-requests): the others wait in its queue."""

_STOP_WAIT_S = 30.0
"""Longest wait, after a cancellation, for the worker to reach its next checkpoint (it checks at least every
token, chunk of frames, packet and download chunk, so this bound only guards against a stuck library call)."""


class Calls:
    """The calls in flight in this process, so that stopping the server can cancel them all."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._tokens: set[CancelToken] = set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)

    def add(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens.add(token)

    def discard(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens.discard(token)
            self._lock.notify_all()

    def cancel_all(self) -> None:
        with self._lock:
            tokens = list(self._tokens)
        for token in tokens:
            token.cancel()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no call is in flight; whether that happened within `timeout_s`."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._tokens, timeout_s)


ACTIVE_CALLS = Calls()


@dataclass(frozen=True)
class Pools:
    """The thread pools of a server's calls: one for downloads, one for the rest of each call."""

    downloads: anyio.CapacityLimiter
    calls: anyio.CapacityLimiter

    @classmethod
    def create(cls, max_downloads: int, max_calls: int = CALL_THREADS) -> Pools:
        """Made inside the server's event loop."""
        return cls(anyio.CapacityLimiter(max_downloads), anyio.CapacityLimiter(max_calls))


class _ProgressRelay:
    """Progress from the worker to the client. The worker only queues its messages (it never waits for the client:
    a client that stops reading, or a stream closed by a cancellation, must not hold the work at a checkpoint); a
    task on the event loop sends them, in order."""

    def __init__(self, ctx: Context[Any, Any], interval_s: float, cancel: CancelToken) -> None:
        self._ctx = ctx
        self._cancel = cancel
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._progress = 0.0
        self._total = 1.0
        self._message = "Starting"
        self._stage_started = self._last_sent = time.monotonic()
        # Progress may come from threads anyio did not start (the hub downloads a model in a pool of its own).
        self._loop = anyio.lowlevel.current_token()
        self._queue: deque[tuple[float, float, str]] = deque(maxlen=1000)
        self._wake = anyio.Event()

    def _next(self, progress: float | None, total: float | None, message: str | None) -> tuple[float, float, str]:
        with self._lock:
            if message is not None and message != self._message:
                self._message = message
                self._stage_started = time.monotonic()
            self._total = total if total is not None else self._total
            wanted = round(progress, 3) if progress is not None else self._progress
            self._progress = round(max(wanted, self._progress + 0.001), 3)
            self._last_sent = time.monotonic()
            return self._progress, self._total, self._message

    def from_worker(self, progress: float, total: float, message: str) -> None:
        if self._cancel.cancelled:
            return
        log.info("%s", message)
        update = self._next(progress, total, message)
        with self._lock:
            self._queue.append(update)
        with suppress(RuntimeError):  # the event loop is gone: the call is over
            anyio.from_thread.run_sync(lambda: self._wake.set(), token=self._loop)

    async def sender(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Send what the worker queued, in order."""
        while True:
            with self._lock:
                if not self._queue:
                    return
                value, limit, text = self._queue.popleft()
            await self._ctx.report_progress(value, limit, text)

    async def report(self, message: str) -> None:
        """A stage the handler itself is in (waiting for a thread)."""
        log.info("%s", message)
        value, limit, text = self._next(None, None, message)
        await self._ctx.report_progress(value, limit, text)

    async def heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.interval_s / 4)
            with self._lock:
                quiet = time.monotonic() - self._last_sent >= self.interval_s
                elapsed = time.monotonic() - self._stage_started
            if quiet:
                value, limit, text = self._next(None, None, None)
                await self._ctx.report_progress(value, limit, f"{text} ({elapsed:.0f} s so far)")


async def run_call(
    ctx: Context[Any, Any],
    tool: str,
    interval_s: float,
    work: Work,
    pools: Pools,
    downloads: Sequence[Download] = (),
) -> CallToolResult:
    """Run the call's `downloads`, then its `work`, in worker threads, and turn the outcome into the tool's result."""
    cancel = CancelToken()
    relay = _ProgressRelay(ctx, interval_s, cancel)
    outcome: list[Answered] = []
    failure: list[BaseException] = []
    running = threading.Event()
    running.set()  # set while no worker thread runs: what a cancellation waits for

    def in_thread(task: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            ACTIVE_CALLS.add(cancel)
            try:
                task()
            except BaseException as exc:  # handed to the event loop below
                failure.append(exc)
            finally:
                ACTIVE_CALLS.discard(cancel)
                running.set()

        return run

    async def threaded(task: Callable[[], None], limiter: anyio.CapacityLimiter, waiting_for: str) -> None:
        if limiter.available_tokens == 0:
            ahead = limiter.statistics().tasks_waiting + 1
            await relay.report(f"Waiting for {waiting_for}: {ahead} ahead")
        async with limiter:
            running.clear()
            await anyio.to_thread.run_sync(in_thread(task), abandon_on_cancel=True)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(relay.heartbeat)
            group.start_soon(relay.sender)
            for download in downloads:
                await threaded(functools.partial(download, relay.from_worker, cancel), pools.downloads, "a download")
                if failure:
                    break
            if not failure:
                await threaded(lambda: outcome.append(work(relay.from_worker, cancel)), pools.calls, "a thread")
            await relay.flush()  # the last words ("Done") before the result
            group.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        cancel.cancel()
        log.info("%s cancelled by the client; stopping its work", tool)
        with anyio.CancelScope(shield=True):
            started = time.monotonic()
            stopped = await anyio.to_thread.run_sync(running.wait, _STOP_WAIT_S)
            log.info(
                "%s %s %.2f s after the cancellation",
                tool,
                "stopped" if stopped else "is still running",
                time.monotonic() - started,
            )
        raise
    if not failure:
        return answer_result(outcome[0])
    error = failure[0]
    if isinstance(error, VideoToolError):
        log.info("%s refused: %s", tool, error)
        return error_result(str(error), retryable=error.retryable)
    if isinstance(error, Cancelled):
        return error_result("The call was cancelled.", retryable=True)
    if not isinstance(error, Exception):
        raise error  # KeyboardInterrupt, SystemExit: not the call's to answer
    return incident_result(tool, error)
