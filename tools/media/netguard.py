"""Guards on the connections a download makes, whichever HTTP library yt-dlp picks.

A Python audit hook sees every `socket.connect` with the socket and the address actually dialled, in the
connecting thread. Two guards use it:

- `public_only()`: for servers whose callers are not fully trusted. A URL's host is checked before any request
  is made, but that alone would not stop a redirect to 127.0.0.1, or a name that resolves differently a second
  time, so each connection is also refused while the calling thread is inside the block if its address is not
  public. This holds however many redirects are followed.
- `ConnectionWatch`: keeps the sockets a thread opens, so that another thread can cut them. A download blocked
  in `recv` on a silent or dripping server cannot be stopped from outside any other way: cancelling a call, or a
  fetch that outlives its deadline, shuts its sockets down, and every later connection of the thread is refused.
  While it watches, the thread also opens only http and https URLs, at every hop (urllib audits each request a
  redirect makes, so a 302 to ftp:// is refused before it connects), and starts no program (yt-dlp hands some
  streams to ffmpeg or rtmpdump, which would fetch around every guard here).

What counts as public (`is_public`): a global unicast address. IPv6 addresses that carry an IPv4 address are judged
by that address: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), 6to4 (2002::/16) and NAT64's
well-known prefix (64:ff9b::/96), so 64:ff9b::7f00:1 is loopback and refused while 64:ff9b::808:808 is allowed;
NAT64's local-use prefix (64:ff9b:1::/48), which translates into private networks by design, is refused.

Other threads, and the same thread outside the blocks, are not affected.
"""

from __future__ import annotations

import _socket
import ipaddress
import socket
import sys
import threading
import urllib.error
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

from llava_video_mcp.tools.errors import SourceError


class NonPublicAddressError(OSError):
    """A connection to a loopback, private, link-local or otherwise non-public address was refused."""


class ConnectionsCutError(OSError):
    """A connection was refused because its watch was cut (the call was cancelled, or its deadline passed)."""


class SchemeRefusedError(urllib.error.URLError):
    """A request for a URL that is not http or https (file://, ftp://, ...) was refused. A URLError, so that
    yt-dlp's downloaders fail on it as on any network error, closing their files."""

    def __init__(self, url: str) -> None:
        super().__init__(f"request for {url} refused: only http and https URLs are fetched")
        self.url = url


class ProgramRefusedError(OSError):
    """A download tried to start a program (ffmpeg, rtmpdump), which could fetch around every guard."""


FETCHED_SCHEMES = ("http", "https")


def check_scheme(url: str) -> None:
    """Raise SchemeRefusedError for a URL whose scheme is not http or https; a watch of this thread keeps it (a
    downloader may carry on past a refused fragment, and the refusal must still be the call's answer)."""
    if urlsplit(url).scheme.lower() not in FETCHED_SCHEMES:
        watch = getattr(_guarded, "watch", None)
        if watch is not None and watch.refused is None:
            watch.refused = url
        raise SchemeRefusedError(url)


class ConnectionWatch:
    """The sockets one thread connects while `watching()`; `cut()` shuts them all down, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.reason: str | None = None
        self.refused: str | None = None
        """The first URL refused for its scheme while watching."""

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if self.reason is not None:
                raise ConnectionsCutError(f"connection refused: {self.reason}")
            self._sockets.add(sock)

    def cut(self, reason: str) -> None:
        """Shut every socket down (a blocked read returns at once) and refuse new ones; the first reason stays."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close_all(self) -> None:
        """Close every watched socket's file descriptor. A transfer that was cut can leave its response object
        unclosed inside yt-dlp; the socket then stays open until garbage collection finds it (and warns). Closing
        at the descriptor level releases it now, whoever still holds the object."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):
                _socket.socket.close(sock)  # socket.socket.close waits for its makefile() readers; this does not

    @contextmanager
    def watching(self) -> Iterator[ConnectionWatch]:
        """Within this block, this thread's connections are kept by this watch."""
        _install_hook()
        previous = getattr(_guarded, "watch", None)
        _guarded.watch = self
        try:
            yield self
        finally:
            _guarded.watch = previous


_guarded = threading.local()
_hook_lock = threading.Lock()
_hook_installed = False


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def is_public(address: str) -> bool:
    """Whether a connection to this address reaches the public internet (see the module's docstring)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return False
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64 or ip in _IPV4_COMPATIBLE:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    return ip.is_global and not ip.is_multicast


def check_public_url(url: str) -> None:
    """Refuse a URL whose host resolves to any non-public address, before any request is made."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise SourceError(f"{url} has no host name.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (OSError, ValueError) as exc:
        raise SourceError(f"Could not resolve the host of {url} ({exc}). Check the URL.") from exc
    blocked = sorted(a for a in addresses if not is_public(a))
    if blocked:
        raise SourceError(
            f"Refused {url}: {host} resolves to {', '.join(blocked)}, which is not a public address, and {LOCAL_TRY}"
        )


LOCAL_TRY = (
    "this server fetches only from public addresses. Use a public URL; to try it on your own machine, start the "
    "server with --no-block-private-urls (and --allow-dir FOLDER for local files)."
)
"""The end of every refusal of a private address: both flags a local try needs, named once."""


@contextmanager
def public_only() -> Iterator[None]:
    """Within this block, this thread's sockets may connect to public addresses only."""
    _install_hook()
    previous = getattr(_guarded, "active", False)
    _guarded.active = True
    try:
        yield
    finally:
        _guarded.active = previous


def _install_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)
            _hook_installed = True


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "urllib.Request":
        if getattr(_guarded, "watch", None) is not None and args and isinstance(args[0], str):
            check_scheme(args[0])
        return
    if event == "subprocess.Popen":
        if getattr(_guarded, "watch", None) is not None:
            program = args[0] if args else "a program"
            raise ProgramRefusedError(f"a download tried to start {program}; downloads start no programs here")
        return
    if event != "socket.connect":
        return
    watch = getattr(_guarded, "watch", None)
    if watch is not None and args and isinstance(args[0], socket.socket):
        watch.add(args[0])
    if not getattr(_guarded, "active", False):
        return
    address = args[1] if len(args) > 1 else None
    if isinstance(address, tuple) and address and isinstance(address[0], str) and not is_public(address[0]):
        raise NonPublicAddressError(f"connection to non-public address {address[0]} refused")
