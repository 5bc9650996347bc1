"""An HTTP server on 127.0.0.1 for real yt-dlp downloads in tests: serves files, counts requests, records
headers, and can redirect, stall, answer with an error status, or cut a response short."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class LoopbackServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        self.headers: dict[str, list[dict[str, str]]] = {}
        self.truncate: set[str] = set()
        self.redirects: dict[str, str] = {}
        self.stall_s: dict[str, float] = {}
        self.status: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(server.root), **kwargs)

            def _special(self) -> bool:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests[path] += 1
                    server.headers.setdefault(path, []).append(dict(self.headers.items()))
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

    @contextmanager
    def running(self) -> Iterator[LoopbackServer]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
            thread.join(timeout=5)
