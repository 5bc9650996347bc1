"""What keeps the HTTP transport serving when clients misbehave, and its log clean.

- **Slow and silent connections.** uvicorn's keep-alive timeout starts only after a first response, so a connection
  that sends nothing, or trickles its headers a line a second, stays open for ever. Here every connection has
  `HEADER_TIMEOUT_S` to send a whole request (headers and body) from the moment it opens or its last response ends,
  and is closed otherwise. Long answers and event streams are not affected: the clock stops once a request is in.
- **Floods of connections.** Open connections are capped (`--max-connections`, and below the process's file limit,
  which is raised to its hard limit at start): a connection beyond the cap closes the oldest idle one. asyncio
  accepts a whole batch before any new connection is seen, so the listening socket itself (`GuardedListener`)
  refuses, on the spot, a connection beyond the cap and one batch: answered 503 and closed before its descriptor
  is kept. The process never runs out of file descriptors, so an authorised client is served during a flood.
- **Logs.** The access log shows paths without their query strings (a token sent there is refused, and must not be
  written down either), the bearer token is masked wherever it would appear, and a message repeated in a flood
  (asyncio's failed accepts come with a traceback each) is written once per `LOG_REPEAT_S`, with a count.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from contextlib import suppress
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

log = logging.getLogger("llava_video_mcp")

HEADER_TIMEOUT_S = 10.0
"""Time a connection has to send a whole request: real clients take milliseconds."""
LOG_REPEAT_S = 10.0
BACKLOG = 128
"""Connections the kernel queues for accepting; asyncio accepts up to this many at once, before any of them is
seen by the cap, so the cap leaves room for them."""
_RESERVED_FILES = BACKLOG + 64
"""Descriptors kept free beyond those open at start: one accept's batch, downloads, the cache, the model's files."""


def connection_cap(wanted: int) -> int:
    """The most connections to keep open: `wanted`, or fewer where the file limit (raised to its hard limit)
    would not leave room for the rest of the server."""
    if resource is None:
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
            soft = max(soft, target)
        except (ValueError, OSError):
            pass
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 64
    return max(4, min(wanted, soft - open_now - _RESERVED_FILES))


_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Admission:
    """Connections accepted and not yet closed, counted where they are accepted and where they are lost."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0

    def admit(self) -> bool:
        if self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open = max(self.open - 1, 0)


class GuardedListener(socket.socket):
    """A listening socket that refuses, at accept, the connections beyond its admission's limit: each is sent a
    503 and closed on the spot, so it never holds a descriptor."""

    admission: Admission

    def accept(self) -> tuple[socket.socket, Any]:
        while True:
            connection, address = super().accept()  # BlockingIOError when none is waiting: asyncio stops there
            if self.admission.admit():
                return connection, address
            with suppress(OSError):
                connection.setblocking(False)
                connection.send(_REFUSED)
            connection.close()
            if self.admission.refused % 1000 == 1:
                log.warning("HTTP: %d connections open, the most allowed: new ones are refused", self.admission.open)


def listeners(host: str, port: int, admission: Admission) -> list[socket.socket]:
    """Listening sockets for `host` (every address it names, as asyncio would bind them), guarded."""
    made: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    for family, kind, proto, _, address in socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        if (family, address) in seen:
            continue
        seen.add((family, address))
        listener = GuardedListener(family, kind, proto)
        listener.admission = admission
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind(address)
        listener.listen(BACKLOG)
        listener.setblocking(False)
        made.append(listener)
    return made


def guarded_protocol(
    max_connections: int, admission: Admission, header_timeout_s: float = HEADER_TIMEOUT_S
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request deadline and a cap on open connections, shared by one server."""
    opened: OrderedDict[Any, None] = OrderedDict()
    """The server's open connections, oldest first."""

    class Guarded(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _waited_cycle: Any = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            opened[self] = None
            if len(opened) > max_connections:
                idle = next((c for c in opened if c is not self and c.idle), None)
                if idle is None:
                    log.warning("HTTP: %d connections open, none idle: a new one was refused", len(opened) - 1)
                    transport.write(_REFUSED)
                    transport.close()
                    return
                idle.transport.abort()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if opened.pop(self, False) is None:
                admission.release()
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        @property
        def idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._waited_cycle = self.cycle
            self._deadline = self.loop.call_later(header_timeout_s, self._expire)

        def _expire(self) -> None:
            self._deadline = None
            no_new_request = self.cycle is self._waited_cycle
            body_still_coming = self.conn.their_state is h11.SEND_BODY
            if (no_new_request or body_still_coming) and not self.transport.is_closing():
                log.info("HTTP: closed a connection that sent no whole request in %.0f s", header_timeout_s)
                self.transport.close()

    return Guarded


class QueryStringsOut(logging.Filter):
    """The access log's request path without its query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            record.args = (*record.args[:2], record.args[2].split("?", 1)[0], *record.args[3:])
        return True


class Masked(logging.Filter):
    """A secret masked wherever a log record would show it."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._secret in message:
            record.msg = message.replace(self._secret, "[token]")
            record.args = None
        return True


class RateLimited(logging.Filter):
    """Each distinct message at most once per `interval_s`; the next one that passes says how many were dropped,
    and repeats carry no traceback."""

    def __init__(self, interval_s: float = LOG_REPEAT_S) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)[:200]
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.getMessage()} (and {dropped} more like it, not logged)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def guard_logs(token: str | None) -> None:
    """Install the log filters on the loggers and handlers an HTTP server writes through."""
    logging.getLogger("uvicorn.access").addFilter(QueryStringsOut())
    logging.getLogger("asyncio").addFilter(RateLimited())
    logging.getLogger("uvicorn.error").addFilter(RateLimited())
    if token:
        for handler in logging.getLogger().handlers:
            handler.addFilter(Masked(token))
