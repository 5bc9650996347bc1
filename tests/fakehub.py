"""A FAKE Hugging Face hub on 127.0.0.1, serving one model folder as `org/tiny`: just the endpoints that
huggingface_hub's `snapshot_download` uses (revision info, file tree, resolve). No real hub is reachable here; the
real client library talks to this one, so a first model download, with its byte progress, can be tested."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.httpserver import serving

REPO = "org/tiny"
COMMIT = "a" * 40


class FakeHub:
    def __init__(self, folder: Path) -> None:
        self.files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _answer(self, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                hub.requests.append(f"{self.command} {path}")
                if path.startswith(f"/api/models/{REPO}/tree/"):
                    tree = [
                        {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in hub.files.items()
                    ]
                    self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, head)
                elif path.startswith(f"/api/models/{REPO}"):
                    info = {"id": REPO, "sha": COMMIT, "siblings": [{"rfilename": name} for name in hub.files]}
                    self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
                elif path.startswith(f"/{REPO}/resolve/") and path.rsplit("/", 1)[-1] in hub.files:
                    data = hub.files[path.rsplit("/", 1)[-1]]
                    headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": COMMIT}
                    self._send(200, data, headers | {"Content-Type": "application/octet-stream"}, head)
                else:
                    self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, head)

            def do_GET(self) -> None:
                self._answer(head=False)

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FakeHub]:
        with serving(self._httpd):
            yield self
