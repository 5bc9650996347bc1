"""Abuse of the server itself: slow downloads that would take every worker thread, and, over HTTP, tokens in query
strings, connections that send nothing or trickle their headers, floods of idle connections, and the log lines a
flood makes. The server keeps serving an authorised client throughout."""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from tests.engines import free_port
from tests.httpserver import LoopbackServer
from tests.support import HEADERS, INITIALIZE, call, server_command

pytestmark = pytest.mark.anyio

SLOW = 6
"""Slow downloads started at once, against a pool of 2."""


@pytest.fixture
def site(tmp_path: Path, h264_mp4: Path) -> Iterator[LoopbackServer]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "clip.mp4").write_bytes(h264_mp4.read_bytes())
    server = LoopbackServer(root)
    for number in range(SLOW):
        server.drip[f"/slow-{number}.mp4"] = 0.002
    with server.running():
        yield server


async def test_slow_downloads_do_not_hold_back_cached_calls(
    tiny_model: Path, tmp_path: Path, site: LoopbackServer
) -> None:
    settings = Settings(ocr_engine="none",
        model=str(tiny_model), device="cpu", cache_dir=tmp_path / "cache", max_concurrent_downloads=2,
        download_deadline_s=600,
    )  # fmt: skip
    waiting: set[int] = set()
    all_but_two_wait = anyio.Event()

    def downloading() -> set[int]:
        return {n for n in range(SLOW) if site.count(f"slow-{n}.mp4")}

    async with Client(build_server(settings)) as client:
        await call(client, "describe_video", source=site.url("clip.mp4"), num_frames=1, max_new_tokens=1)

        async def slow(number: int, scope: anyio.CancelScope) -> None:
            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                if (message or "").startswith("Waiting for a download"):
                    waiting.add(number)
                    if len(waiting) == SLOW - 2:
                        all_but_two_wait.set()

            with scope:
                await client.call_tool(
                    "describe_video", {"source": site.url(f"slow-{number}.mp4")}, progress_callback=on_progress
                )

        scopes = [anyio.CancelScope() for _ in range(SLOW)]
        async with anyio.create_task_group() as group:
            for number, scope in enumerate(scopes):
                group.start_soon(slow, number, scope)
            with anyio.fail_after(60):
                await all_but_two_wait.wait()
            await anyio.to_thread.run_sync(site.wait_until, lambda: len(downloading()) == 2)
            with anyio.fail_after(60):  # every download thread is taken; a cached video is still served
                cached = await call(client, "describe_video", source=site.url("clip.mp4"), num_frames=2,
                                    max_new_tokens=1)  # fmt: skip
            assert cached.videos[0].from_cache
            assert len(downloading()) == 2  # the others wait without a thread, and without a connection
            assert waiting.isdisjoint(downloading())
            for scope in scopes:
                scope.cancel()


# Over HTTP: a real server, misbehaving clients on loopback.

TOKEN = "query-token-0123456789abcdef"


class Served:
    """The installed server over HTTP, its stderr read as it comes (a busy log must never fill the pipe)."""

    def __init__(self, args: list[str], **popen: Any) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [server_command(), "--transport", "http", "--port", str(self.port), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ | {"HF_HUB_OFFLINE": "1", "LLAVA_VIDEO_MCP_AUTH_TOKEN": TOKEN},
            **popen,
        )
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()

    def wait_for(self, needle: str, timeout_s: float = 60) -> None:
        with self._changed:
            found = self._changed.wait_for(lambda: any(needle in line for line in self._lines), timeout_s)
        assert found, f"no {needle!r} in: {''.join(self._lines[-20:])}"

    def stop(self) -> str:
        """Ctrl-C, and the whole log."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        finally:
            self.process.kill()
            self._reader.join(timeout=10)
            assert self.process.stderr is not None
            self.process.stderr.close()
        return "".join(self._lines)


@pytest.fixture
def http_server(tiny_model: Path, tmp_path: Path) -> Iterator[Served]:
    served = Served(
        ["--model", str(tiny_model), "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--max-connections",
         "16", "-v"]
    )  # fmt: skip
    try:
        served.wait_for("Uvicorn running")
        yield served
    finally:
        served.stop()


async def authorised_client_works(port: int) -> None:
    authorised = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, trust_env=False)
    url = f"http://127.0.0.1:{port}/mcp"
    with anyio.fail_after(60):
        async with authorised, Client(streamable_http_client(url, http_client=authorised)) as client:
            listed = await client.list_tools()
    assert {tool.name for tool in listed.tools} == {"describe_video", "compare_videos", "find_moments"}


async def test_a_token_in_the_query_string_is_refused_and_never_logged(http_server: Served) -> None:
    port = http_server.port
    async with httpx2.AsyncClient(timeout=10, trust_env=False) as plain:
        for query in (f"token={TOKEN}", f"access_token={TOKEN}", f"auth={TOKEN}&x=1"):
            refused = await plain.post(f"http://127.0.0.1:{port}/mcp?{query}", json=INITIALIZE, headers=HEADERS)
            assert refused.status_code == 401
    await authorised_client_works(port)
    log = http_server.stop()
    assert TOKEN not in log
    assert '"POST /mcp HTTP/1.1" 401' in log  # the access log is there, without the query string


def open_connection(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=60)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed this connection (a read returns end of file, or a reset when bytes were still
    arriving) before the socket's timeout."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_silent_and_trickling_connections_are_closed(http_server: Served) -> None:
    port = http_server.port
    silent = open_connection(port)
    trickling = open_connection(port)
    lines_sent = 0
    stop = threading.Event()

    def trickle() -> None:
        nonlocal lines_sent
        with suppress(OSError):
            trickling.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while not stop.wait(1.0):
                trickling.sendall(f"X-Slow-{lines_sent}: 1\r\n".encode())
                lines_sent += 1

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        assert await anyio.to_thread.run_sync(closed_by_server, silent)
        assert await anyio.to_thread.run_sync(closed_by_server, trickling)
    finally:
        stop.set()
        sender.join(timeout=10)
        silent.close()
        trickling.close()
    assert lines_sent < 30  # closed at its deadline, though it kept sending
    await authorised_client_works(port)


async def test_a_flood_of_idle_connections_does_not_shut_out_a_client(http_server: Served) -> None:
    port = http_server.port
    flood = [open_connection(port) for _ in range(60)]  # --max-connections 16
    try:
        await authorised_client_works(port)
    finally:
        for sock in flood:
            sock.close()
    assert http_server.process.poll() is None


async def test_the_file_limit_is_never_reached(tiny_model: Path, tmp_path: Path) -> None:
    def small_file_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    served = Served(
        ["--model", str(tiny_model), "--device", "cpu", "--cache-dir", str(tmp_path / "cache")],
        preexec_fn=small_file_limit,
    )
    flood: list[socket.socket] = []
    try:
        served.wait_for("Uvicorn running")
        for _ in range(400):  # more than the process may have descriptors
            with suppress(OSError):
                flood.append(open_connection(served.port))
        await authorised_client_works(served.port)
    finally:
        for sock in flood:
            sock.close()
        log = served.stop()
    assert "Too many open files" not in log
    assert "out of system resource" not in log
    assert len(log) < 200_000


def test_a_flood_of_failed_accepts_logs_a_few_lines() -> None:
    from llava_video_mcp.server.http_guard import RateLimited

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    flooded = logging.getLogger("test.flooded")
    flooded.propagate = False
    flooded.addHandler(Keep())
    flooded.addFilter(RateLimited(interval_s=60))
    for _ in range(5000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            flooded.error("socket.accept() out of system resource", exc_info=True)
    flooded.error("something else")
    assert len(records) == 2
