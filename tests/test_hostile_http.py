"""Abuse of the server itself: slow downloads that would take every worker thread, and, over HTTP, tokens in query
strings, connections that send nothing or trickle their headers, floods of idle connections, and the log lines a
flood makes. The server keeps serving an authorised client throughout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.settings import Settings
from tests.httpserver import LoopbackServer
from tests.test_server import call

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
    settings = Settings(
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
