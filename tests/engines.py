"""OpenAI-compatible engines on 127.0.0.1 for the remote backend's tests.

- `served_model`: the real thing, `transformers serve FOLDER` (transformers' `serving` extra) on a free port,
  serving the tiny model the in-process tests load, so both backends can be compared token for token.
- `Relay`: a TCP relay in front of an engine that counts how many connections are open at once (the openai SDK's
  connection pool opens a second connection only while the first carries a request, so the count shows how many
  requests were in flight together); it can also slow a link down and cut it, as a network or a dying engine would.
- `MisbehavingEngine`: a fake, named as such, for the failures a real engine cannot be made to produce on demand
  (401, 429, 5xx, a 400 about the context, a malformed or empty stream, silence). It records what it was sent.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import ProxyHandler, build_opener

from tests.httpserver import serving

_DIRECT = build_opener(ProxyHandler({}))
"""No proxy from the environment: these requests stay on loopback."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def transformers_command() -> str:
    command = shutil.which("transformers", path=str(Path(sys.executable).parent))
    assert command, "the transformers CLI is not installed here (pip install 'transformers[serving]')"
    return command


@dataclass
class ServedModel:
    folder: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 120.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [transformers_command(), "serve", str(self.folder), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"},
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"transformers serve exited early:\n{self.log.read_text()[-2000:]}"
            try:
                with _DIRECT.open(f"{self.url}/models", timeout=1) as response:
                    if self.folder.name in response.read().decode():
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"transformers serve did not answer within {timeout_s} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@contextmanager
def served_model(folder: Path, log: Path) -> Iterator[ServedModel]:
    engine = ServedModel(folder, free_port(), log)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


class Relay:
    """Relays 127.0.0.1:port to a target port, counting connections open at the same time. Each POST is held for
    `delay_s` first, as a slow network would, so every request stays in flight at least that long. With `pace_s`,
    the engine's replies are passed on a few KB at a time, `pace_s` apart, so a stream is still arriving when a test
    acts on its first tokens; `cut` then drops every open connection, as an engine that stops would."""

    def __init__(self, target_port: int, delay_s: float = 0.0, pace_s: float = 0.0) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.pace_s = pace_s
        self.open_now = 0
        self.most_open = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = False

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _pipe(self, source: socket.socket, target: socket.socket, pace_s: float = 0.0) -> None:
        try:
            while data := source.recv(4096 if pace_s else 65536):
                if data.startswith(b"POST "):
                    time.sleep(self.delay_s)
                target.sendall(data)
                time.sleep(pace_s)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
            with self._lock:
                self.open_now += 1
                self.most_open = max(self.most_open, self.open_now)
                self._sockets |= {client, upstream}
            back = threading.Thread(target=self._pipe, args=(upstream, client, self.pace_s), daemon=True)
            back.start()
            self._pipe(client, upstream)
            back.join()
            with self._lock:
                self.open_now -= 1
                self._sockets -= {client, upstream}

    def cut(self) -> None:
        """Drop every open connection at once; what the engine sent and was not yet passed on is lost."""
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @contextmanager
    def running(self) -> Iterator[Relay]:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._closed = True
            self._listener.close()
            thread.join(timeout=5)


@dataclass
class Script:
    """What the fake engine does: per path, a status and a body (or a stream of SSE lines); `stall_s` before."""

    models: list[str] = field(default_factory=lambda: ["served-model"])
    chat_status: int = 200
    chat_body: Any = None
    stream_lines: list[str] | None = None
    stall_s: float = 0.0
    endless_line: str | None = None
    """Sent after `stream_lines` again and again, until the client hangs up (or 2 million times, or 120 s)."""
    models_page: str | None = None
    """Sent as text/html for every GET, as a web server that is not an engine would."""
    models_status: int = 200
    """Of every GET (the list of models): 404 as a server at a URL without /v1 answers."""


class MisbehavingEngine:
    """A FAKE OpenAI-compatible server: answers from a `Script`, records requests (path, headers, body)."""

    def __init__(self) -> None:
        self.script = Script()
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                engine.requests.append((self.path, dict(self.headers.items()), body))
                return body

            def _json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._record()
                if engine.script.models_page is not None:
                    page = engine.script.models_page.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if engine.script.models_status != 200:
                    self._json(engine.script.models_status, {"error": {"message": "Not Found"}})
                    return
                models = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in engine.script.models]
                self._json(200, {"object": "list", "data": models})

            def do_POST(self) -> None:
                self._record()
                script = engine.script
                time.sleep(script.stall_s)
                if script.stream_lines is None:
                    self._json(script.chat_status, script.chat_body or {})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for line in script.stream_lines:
                    self.wfile.write(line.encode() + b"\n\n")
                    self.wfile.flush()
                if script.endless_line is not None:
                    endless = script.endless_line.encode() + b"\n\n"
                    deadline = time.monotonic() + 120
                    for _ in range(2_000_000):
                        if time.monotonic() > deadline:
                            break
                        self.wfile.write(endless)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that gives up mid-answer (timeouts are part of the tests) is not a server fault.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @contextmanager
    def running(self) -> Iterator[MisbehavingEngine]:
        with serving(self._httpd):
            yield self


def chunk(content: str | None = None, finish_reason: str | None = None, usage: dict[str, Any] | None = None) -> str:
    """One SSE line of a chat-completion stream."""
    choices = (
        []
        if content is None and finish_reason is None
        else [{"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish_reason}]
    )
    payload = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "served-model", "choices": choices}
    if usage is not None:
        payload["usage"] = usage
    return "data: " + json.dumps(payload)
