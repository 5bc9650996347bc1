"""find_moments and the full watch against what would hurt them: a model reply of thousands of digits, a range over
the window limit, two calls watching one video at once, a blank query on the command line; and a decode that must
let its decoder go when it ends.

Each goes through the real entry point: the in-memory MCP client, or the terminal command.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer import MomentsAnswer
from llava_video_mcp.tools.backends import Generation, InferenceProgress, Prompt, Ready
from llava_video_mcp.tools.cancel import CancelToken
from tests.media import encode_video
from tests.test_moments import NeverLoaded, Scripted, garden, moments, served  # noqa: F401  (garden: a fixture)
from tests.test_running import run
from tests.test_server import call, error_text

pytestmark = pytest.mark.anyio

SCENE_PASS = "Finding scene changes"


def is_notes(prompt: Prompt) -> bool:
    """A window's notes being written: frames shown, and not for a closer look."""
    return bool(prompt.images) and "In which of these frames" not in prompt.text


async def test_a_reply_of_thousands_of_digits_is_data(tmp_path: Path, garden: Path) -> None:
    flood = "9" * 5_000
    model = Scripted(ranking=f"{flood} 0{flood} 2", look=f"{flood}\nThe kite spreads its wings.")
    async with served(tmp_path, Ready(model)) as client:
        found = await moments(client, source=str(garden), query="a blue door", max_moments=1)
    [moment] = found.moments
    assert moment.basis == ["frames"]
    assert 10.0 <= moment.start_s < moment.end_s <= 20.0  # the second window, the only number in range
    assert moment.description == "The kite spreads its wings."  # no frame named: the window stays whole


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cyclic garbage collector stopped, as on an idle server where nothing allocates."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def threads_back_to(count: int, process: psutil.Process) -> int:
    """The process's thread count once it is back to `count`, or what it still is after 10 s."""
    with anyio.move_on_after(10):
        while process.num_threads() > count:
            await anyio.sleep(0.02)
    return process.num_threads()


async def test_a_decode_lets_its_decoder_go_when_it_ends(tmp_path: Path, collector_off: None) -> None:
    # A display matrix on every frame: reading it must not tie the frame (and its decoder) into a cycle.
    first = encode_video(tmp_path / "first.mp4", width=640, height=360, seconds=2, rotation=90)
    second = encode_video(tmp_path / "second.mp4", width=640, height=360, seconds=2, rotation=90)
    model = Scripted()
    process = psutil.Process()
    async with served(tmp_path, Ready(model)) as client:
        await call(client, "describe_video", source=str(first), num_frames=4)  # the server's own threads start
        settled = process.num_threads()
        answer = await call(client, "describe_video", source=str(second), num_frames=4)
        assert (answer.videos[0].width, answer.videos[0].height) == (360, 640)  # turned upright
        assert await threads_back_to(settled, process) <= settled
