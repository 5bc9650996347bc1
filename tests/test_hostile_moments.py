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
from tests.media import cut_scenes, encode_video
from tests.support import LENGTHS, SUBTITLES, NeverLoaded, Scripted, call, error_text, moments, run, served

pytestmark = pytest.mark.anyio

SCENE_PASS = "Finding scene changes"


@pytest.fixture(scope="module")
def garden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_moments' video: six scenes over 60 s, and its subtitles beside it."""
    folder = tmp_path_factory.mktemp("garden")
    path = folder / "garden.mp4"
    cut_scenes(path, LENGTHS, gop_s=3.3)
    (folder / "garden.vtt").write_text(SUBTITLES)
    return path


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
        while process.num_threads() > count:  # noqa: ASYNC110  (no event tells that a thread has ended)
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


async def test_a_range_over_the_window_limit_is_refused_before_any_decode(tmp_path: Path, garden: Path) -> None:
    settings = Settings(
        ocr_engine="none", model="stand-in", cache_dir=tmp_path / "cache", asr_model="none", window_s=10, max_windows=4
    )
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(build_server(settings, NeverLoaded(Scripted()))) as client:
        for tool, arguments in (
            ("find_moments", {"query": "a blue door"}),
            ("describe_video", {"coverage": "full"}),
        ):
            result = await client.call_tool(tool, {"source": str(garden), **arguments}, progress_callback=on_progress)
            assert result.is_error, tool
            text = error_text(result)
            assert "windows of at most 10 s, over this server's limit of 4 (--max-windows)" in text, text
            assert "start_s/end_s" in text
        assert not [m for m in messages if SCENE_PASS in m], messages
        assert not list((tmp_path / "cache").rglob("scenes.json"))  # no scene pass ran

        # The subtitles, read without decoding, still answer what they hold; and say so when they hold too few.
        said = await moments(client, source=str(garden), query="red kite lands", max_moments=1)
        assert [(m.start_s, m.end_s) for m in said.moments] == [(20.0, 22.5)]
        short = await client.call_tool("find_moments", {"source": str(garden), "query": "red kite", "max_moments": 2})
        assert short.is_error
        assert "The subtitles hold 1 moment of the query: max_moments=1 finds it without watching." in error_text(short)


class Held(Scripted):
    """Scripted, whose first window notes wait until `go` is set: the other call has begun meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def generate(
        self,
        prompt: Prompt,
        max_new_tokens: int,
        on_progress: InferenceProgress = lambda fraction, message: None,
        cancel: CancelToken | None = None,
    ) -> Generation:
        if is_notes(prompt) and not self.go.wait(timeout=30):
            raise AssertionError("the second call never began")
        return super().generate(prompt, max_new_tokens, on_progress, cancel)


async def test_two_calls_watching_one_video_take_turns(tmp_path: Path, garden: Path) -> None:
    model = Held()
    heard: dict[str, list[str]] = {"describe": [], "moments": []}
    watching = anyio.Event()
    results: dict[str, Any] = {}

    async def on_describe(progress: float, total: float | None, message: str | None) -> None:
        heard["describe"].append(message or "")
        if (message or "").startswith("Running "):
            watching.set()  # its scene pass is done and its windows are planned: it holds its turn

    async def on_moments(progress: float, total: float | None, message: str | None) -> None:
        heard["moments"].append(message or "")
        model.go.set()

    async with served(tmp_path, Ready(model)) as client:

        async def describe() -> None:
            arguments = {"source": str(garden), "coverage": "full", "num_frames": 8}
            results["describe"] = await client.call_tool("describe_video", arguments, progress_callback=on_describe)

        async def find() -> None:
            arguments = {"source": str(garden), "query": "a blue door", "max_moments": 1}
            results["moments"] = await client.call_tool("find_moments", arguments, progress_callback=on_moments)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                group.start_soon(describe)
                await watching.wait()
                group.start_soon(find)

    for name, result in results.items():
        assert not result.is_error, (name, error_text(result))
    windows = len(results["describe"].structured_content["segments"])
    found = MomentsAnswer.model_validate(results["moments"].structured_content)
    assert sum(is_notes(p) for p in model.prompts) == windows  # each window's notes written once
    assert found.segments_from_cache == windows
    assert [name for name, said in heard.items() if any(SCENE_PASS in m for m in said)] == ["describe"]


def test_a_blank_query_on_the_command_line_is_a_usage_error() -> None:
    out = run("moments", "clip.mp4", "-q", "   ", "--model", "/nonexistent/model/folder")
    assert out.returncode == 2, out.stderr
    assert out.stderr == "llava-video-mcp moments: --query needs words saying what to find; got '   '.\n"
