"""An HTTP server on 127.0.0.1 for real yt-dlp downloads in tests: serves files, counts requests, records
headers, and can misbehave as hostile or broken servers do: redirect (in loops too), stall, answer with an error
status, cut a response short, send a file chunked with no length, send an endless body, or drip bytes slowly.
Every misbehaviour is bounded in bytes and time, and stops when the client hangs up."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import HTTPServer, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@contextmanager
def serving(httpd: HTTPServer) -> Iterator[None]:
    """Serve `httpd` from a thread while the block runs; shut it down and close its socket after."""
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class LoopbackServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        self.headers: dict[str, list[dict[str, str]]] = {}
        self.truncate: set[str] = set()
        self.redirects: dict[str, str] = {}
        self.stall_s: dict[str, float] = {}
        self.status: dict[str, int] = {}
        self.chunked: set[str] = set()
        self.endless: dict[str, str] = {}
        """path -> Content-Type of a body that never ends (bounded at 512 MB or 120 s)."""
        self.drip: dict[str, float] = {}
        """path -> seconds between single bytes of a (nominally large) video body."""
        self._lock = threading.Condition()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(server.root), **kwargs)

            def _special(self) -> bool:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests[path] += 1
                    server.headers.setdefault(path, []).append(dict(self.headers.items()))
                    server._lock.notify_all()
                if path in server.stall_s:
                    time.sleep(server.stall_s[path])
                if path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
                if path in server.status:
                    self.send_response(server.status[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
                if self.command == "GET" and path in server.chunked:
                    self._send_chunked((server.root / path.lstrip("/")).read_bytes())
                    return True
                if self.command == "GET" and path in server.endless:
                    self._send_endless(server.endless[path])
                    return True
                if self.command == "GET" and path in server.drip:
                    self._send_drip(server.drip[path])
                    return True
                if path in server.truncate and self.command == "GET":
                    body = (server.root / path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return True
                return False

            def _send_chunked(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(body), 16384):
                    piece = body[start : start + 16384]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")

            def _send_endless(self, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                filler = (b"<p>more</p>" if "html" in content_type else b"\0") * 6000
                chunk = f"{len(filler):x}\r\n".encode() + filler + b"\r\n"
                deadline = time.monotonic() + 120
                for _ in range(512 * 2**20 // len(filler)):
                    if time.monotonic() > deadline:
                        break
                    self.wfile.write(chunk)

            def _send_drip(self, interval_s: float) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(200_000))
                self.end_headers()
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(interval_s)

            def do_GET(self) -> None:
                if not self._special():
                    super().do_GET()

            def do_HEAD(self) -> None:
                if not self._special():
                    super().do_HEAD()

            def guess_type(self, path: Any) -> str:
                if str(path).endswith(".m3u8"):
                    return "application/vnd.apple.mpegurl"
                if str(path).endswith(".vtt"):
                    return "text/vtt"
                return super().guess_type(path)

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # Clients that hang up mid-body (size limits, timeouts) are part of the tests, not server faults.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def count(self, name: str) -> int:
        return self.requests["/" + name]

    def wait_until(self, condition: Callable[[], bool], timeout_s: float = 60) -> None:
        """Until `condition()` holds (checked at each request); AssertionError after `timeout_s`."""
        with self._lock:
            assert self._lock.wait_for(condition, timeout_s), "the server never saw the requests waited for"

    @contextmanager
    def running(self) -> Iterator[LoopbackServer]:
        with serving(self._httpd):
            yield self
