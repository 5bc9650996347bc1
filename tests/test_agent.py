"""The agent's side of a call, through the real MCP client: cancellation that stops the work, a queue that says it
is one, a lean and exact contract, compact results, errors that say whether to retry, evidence frames, and
per-source ranges in compare_videos."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ImageContent, TextContent
from PIL import Image, ImageChops, ImageStat

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer import VideoAnswer
from llava_video_mcp.tools.answer.evidence import (
    LABEL_HEIGHT,
    MAX_FRAME_SIDE,
    SHEET_MAX_BYTES,
    LabelledFrame,
    draw_label,
    sheet_layout,
)
from llava_video_mcp.tools.backends import LazyBackend, Prompt
from llava_video_mcp.tools.backends.transformers import TransformersBackend
from llava_video_mcp.tools.cancel import Cancelled, CancelToken
from llava_video_mcp.tools.frames import sample_frames
from tests.httpserver import LoopbackServer
from tests.support import GUIDE, call, error_text, frames_of, images_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tiny_model: Path, tmp_path: Path) -> Settings:
    return Settings(
        ocr_engine="none", model=str(tiny_model), device="cpu", dtype="float32", cache_dir=tmp_path / "cache"
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with Client(build_server(settings)) as connected:
        yield connected


# Cancellation


async def test_a_cancelled_generation_stops_and_frees_the_model(
    client: Client, h264_mp4: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await call(client, "describe_video", source=str(h264_mp4), num_frames=2, max_new_tokens=1)  # model loaded
    generating = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if (message or "").startswith("Generating: "):
            generating.set()

    async def long_call(scope: anyio.CancelScope) -> None:
        with scope:
            await client.call_tool(
                "describe_video",
                {"source": str(h264_mp4), "num_frames": 4, "max_new_tokens": 4096},
                progress_callback=on_progress,
            )

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as group:
        group.start_soon(long_call, scope)
        await generating.wait()
        scope.cancel()
    started = time.monotonic()
    # 4,096 tokens would hold the model for many seconds; the next call gets it at once.
    quick = await call(client, "describe_video", source=str(h264_mp4), num_frames=2, max_new_tokens=2)
    assert time.monotonic() - started < 3.0
    assert quick.timings.queue_s < 1.0
    assert "describe_video cancelled by the client" in caplog.text
    stopped = next(r.getMessage() for r in caplog.records if "after the cancellation" in r.getMessage())
    assert "stopped" in stopped
    assert float(stopped.split(" stopped ")[1].split(" s ")[0]) < 1.0


async def test_a_cancelled_download_stops_and_leaves_nothing(
    client: Client, tmp_path: Path, h264_mp4: Path, settings: Settings
) -> None:
    site = LoopbackServer(serving(tmp_path / "www", h264_mp4))
    site.drip["/slow.mp4"] = 0.002
    with site.running():
        scope = anyio.CancelScope()

        async def download() -> None:
            with scope:
                await client.call_tool("describe_video", {"source": site.url("slow.mp4")})

        async with anyio.create_task_group() as group:
            group.start_soon(download)
            videos = settings.cache_dir / "videos"
            await anyio.to_thread.run_sync(wait_for, lambda: bool(list(videos.glob(".partial-*/*.part"))))
            cancelled_at = time.monotonic()
            scope.cancel()
        assert time.monotonic() - cancelled_at < 1.5
        assert not list(videos.glob(".partial-*"))
        answer = await call(client, "describe_video", source=site.url("clip.mp4"), num_frames=1, max_new_tokens=1)
        assert len(answer.videos[0].frames) == 1


def serving(root: Path, video: Path) -> Path:
    root.mkdir()
    (root / "clip.mp4").write_bytes(video.read_bytes())
    return root


def wait_for(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_cancelled_before_the_prefix_is_built_stores_nothing(tiny_model: Path, h264_mp4: Path) -> None:
    backend = TransformersBackend.load(str(tiny_model), device="cpu", dtype="float32")
    prompt = Prompt(frames_of(h264_mp4, 3), GUIDE + "What?", len(GUIDE))
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        backend.generate(prompt, 8, cancel=cancel)
    assert backend.generate(prompt, 8).reused_tokens == 0  # nothing half-built was kept


def test_cancelled_mid_answer_keeps_a_whole_prefix(tiny_model: Path, h264_mp4: Path) -> None:
    backend = TransformersBackend.load(str(tiny_model), device="cpu", dtype="float32")
    images = frames_of(h264_mp4, 3)
    cancel = CancelToken()

    def cancel_at_five(fraction: float, message: str) -> None:
        if message.startswith("Generating: 5 "):
            cancel.cancel()

    with pytest.raises(Cancelled):
        backend.generate(Prompt(images, GUIDE + "What?", len(GUIDE)), 200, cancel_at_five, cancel)
    follow_up = backend.generate(Prompt(images, GUIDE + "And then?", len(GUIDE)), 8)
    cold = TransformersBackend.load(str(tiny_model), device="cpu", dtype="float32")
    assert follow_up.reused_tokens > 0
    assert follow_up.token_ids == cold.generate(Prompt(images, GUIDE + "And then?", len(GUIDE)), 8).token_ids


# Queueing


async def test_a_queued_call_says_it_waits(tiny_model: Path, tmp_path: Path, h264_mp4: Path) -> None:
    settings = Settings(
        ocr_engine="none", model=str(tiny_model), device="cpu", cache_dir=tmp_path / "cache", progress_interval_s=0.2
    )
    provider = LazyBackend(settings.backend_config())
    backend, _ = provider.get()
    holding, release = threading.Event(), threading.Event()
    messages: list[str] = []

    def another_call_holds_the_model() -> None:
        # A call in progress, as the queue sees one: it holds the model's only turn until the test lets it go.
        def hold(fraction: float, message: str) -> None:
            holding.set()
            release.wait(60)

        backend.answer(Prompt(frames_of(h264_mp4, 1), GUIDE + "?", len(GUIDE)), 1, hold)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")
        if (message or "").startswith("Waiting for the model") and message.endswith(" s so far)"):
            release.set()  # it said it waits, and said so again while waiting: the model is free now

    async with Client(build_server(settings, provider)) as client, anyio.create_task_group() as group:
        group.start_soon(anyio.to_thread.run_sync, another_call_holds_the_model)
        assert await anyio.to_thread.run_sync(holding.wait, 60)
        with anyio.fail_after(120):
            result = await client.call_tool(
                "describe_video",
                {"source": str(h264_mp4), "num_frames": 2, "max_new_tokens": 2},
                progress_callback=on_progress,
            )
        release.set()
    waiting = [m for m in messages if m.startswith("Waiting for the model: 1 call ahead")]
    assert waiting, messages
    assert any(m.endswith(" s so far)") for m in waiting), messages  # heartbeats while it waits
    answer = VideoAnswer.model_validate(result.structured_content)
    assert answer.timings.queue_s >= 0.2  # at least one heartbeat's interval
    assert answer.timings.queue_s + answer.timings.inference_s <= answer.timings.total_s


# The contract


async def test_tools_list_is_lean(client: Client) -> None:
    listed = await client.list_tools()
    wire = listed.model_dump_json(by_alias=True, exclude_none=True)
    assert len(wire) <= 7200, len(wire)  # all three tools (7000 before frame_max_side: 279 bytes, 100 trimmed)
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == {"describe_video", "compare_videos", "find_moments"}
    assert (tools["describe_video"].title, tools["compare_videos"].title) == ("Describe a video", "Compare videos")
    for tool in tools.values():
        schemas = json.dumps([tool.input_schema, tool.output_schema])
        assert '"title"' not in schemas.replace('"title": {', "")  # no generated titles; a field named title is fine
        assert "Arguments" not in schemas
        assert "\n    " not in (tool.description or "")
        for word in ("729 tokens", "reuses", "minutes on CPU", "small", "384 px"):
            assert word in (tools["describe_video"].description or "")


async def test_results_are_compact(client: Client, h264_mp4: Path) -> None:
    values: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        values.append(progress)

    result = await client.call_tool(
        "describe_video",
        {"source": str(h264_mp4), "question": "What is moving?", "max_new_tokens": 16},
        progress_callback=on_progress,
    )
    [text] = [block for block in result.content if isinstance(block, TextContent)]
    # 8 frames, a short answer: what the envelope costs an agent.
    assert len(text.text.encode()) <= 1024, len(text.text.encode())
    assert json.loads(text.text) == result.structured_content
    assert "\n" not in text.text
    answer = VideoAnswer.model_validate(result.structured_content)
    for seconds in answer.timings.model_dump(exclude_none=True).values():
        assert seconds == round(seconds, 3)
    assert all(value == round(value, 3) for value in values)
    assert values == sorted(set(values))


async def test_errors_say_whether_a_retry_may_help(client: Client, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    missing = await client.call_tool("describe_video", {"source": str(tmp_path / "none.mp4")})
    unreachable = await client.call_tool("describe_video", {"source": f"http://127.0.0.1:{closed}/v.mp4"})
    mistyped = await client.call_tool("describe_video", {"source": "x", "num_frames": "eight"})
    assert [r.is_error for r in (missing, unreachable, mistyped)] == [True, True, True]
    assert [(r.meta or {}).get("retryable") for r in (missing, unreachable, mistyped)] == [False, True, False]
    assert error_text(missing).startswith("No file at")  # the error itself, no wrapper text


class BrokenModel:
    """A model provider with a bug in it (named as a stand-in: nothing real fails this way on demand)."""

    label = "broken"
    loaded = None

    def get(self, on_download: Any = None) -> Any:
        raise RuntimeError("a bug: secret internal state 0xdeadbeef")

    def close(self) -> None:
        return None


async def test_a_bug_is_an_error_with_an_incident_id_and_the_server_keeps_serving(
    settings: Settings, h264_mp4: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Client(build_server(settings, BrokenModel())) as broken:  # type: ignore[arg-type]
        with caplog.at_level(logging.ERROR):
            result = await broken.call_tool("describe_video", {"source": str(h264_mp4), "num_frames": 1})
        assert result.is_error
        text = error_text(result)
        assert "Error executing tool" not in text
        assert "0xdeadbeef" not in text  # internals stay in the log
        [incident] = re.findall(r"incident ([0-9a-f]{8})", text)
        assert any(incident in record.getMessage() and record.exc_info for record in caplog.records)
        listed = await broken.list_tools()  # still serving
        assert len(listed.tools) == 3


# Evidence frames


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference over pixels and channels, 0-255."""
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return float(ImageStat.Stat(diff).mean[0] + ImageStat.Stat(diff).mean[1] + ImageStat.Stat(diff).mean[2]) / 3


async def test_return_frames_as_a_contact_sheet(client: Client, h264_mp4: Path) -> None:
    result = await client.call_tool(
        "describe_video", {"source": str(h264_mp4), "num_frames": 6, "max_new_tokens": 1, "return_frames": "sheet"}
    )
    answer = VideoAnswer.model_validate(result.structured_content)
    [sheet] = images_of(result)
    [block] = [b for b in result.content if isinstance(b, ImageContent)]
    assert len(base64.b64decode(block.data)) <= SHEET_MAX_BYTES
    # The layout is the evidence module's: tiles in frame order, each the frame seen, labelled with its timestamp.
    decoded = sample_frames(h264_mp4, 6, min_side=384).frames
    labels = [f"{frame.timestamp_s:.2f} s" for frame in answer.videos[0].frames]
    frames = [LabelledFrame(f.image, text) for f, text in zip(decoded, labels, strict=True)]
    layout = sheet_layout(frames)
    assert sheet.size == (layout.columns * layout.tile[0], 2 * layout.tile[1])
    for index, frame in enumerate(frames):
        box = layout.box(index)
        tile = sheet.crop(box)
        picture = frame.image.resize(layout.picture, Image.Resampling.LANCZOS)
        expected = draw_label(picture, frame.label)
        assert difference(tile, expected) < 6  # the same picture and label, up to JPEG's loss
        # The whole frame is there, its bottom rows too (burned-in subtitles): the label is on a band below it.
        assert difference(tile.crop((0, 0, *layout.picture)), picture) < 6
        band = (0, tile.height - LABEL_HEIGHT, tile.width, tile.height)
        other = draw_label(picture, "99.99 s")
        assert difference(tile.crop(band), expected.crop(band)) < difference(tile.crop(band), other.crop(band))


async def test_return_frames_one_by_one_and_follow_ups_reuse_them(client: Client, h264_mp4: Path) -> None:
    arguments = {"source": str(h264_mp4), "num_frames": 3, "max_new_tokens": 1, "return_frames": "frames"}
    first = await client.call_tool("describe_video", arguments)
    again = await client.call_tool("describe_video", arguments | {"question": "And?"})
    images = images_of(first)
    assert len(images) == 3
    assert all(max(image.size) <= MAX_FRAME_SIDE for image in images)
    assert VideoAnswer.model_validate(again.structured_content).videos[0].frames_from_cache
    assert [b.data for b in again.content if isinstance(b, ImageContent)] == [
        b.data for b in first.content if isinstance(b, ImageContent)
    ]


async def test_no_images_unless_asked(client: Client, h264_mp4: Path) -> None:
    result = await client.call_tool("describe_video", {"source": str(h264_mp4), "num_frames": 2, "max_new_tokens": 1})
    assert images_of(result) == []


# compare_videos with a time range per source


async def test_compare_takes_a_range_per_source(client: Client, h264_mp4: Path, vp9_webm: Path) -> None:
    sources: list[Any] = [{"source": str(h264_mp4), "start_s": 1.0, "end_s": 2.0}, str(vp9_webm)]
    answer = await call(
        client, "compare_videos", sources=sources, question="Same?", frames_per_video=3, max_new_tokens=1
    )
    first, second = answer.videos
    assert (first.start_s, first.end_s) == (1.0, 2.0)
    assert all(1.0 <= f.timestamp_s <= 2.0 for f in first.frames)
    assert (second.start_s, second.end_s) == (0.0, second.duration_s)
    outside = await client.call_tool(
        "compare_videos",
        {"sources": [{"source": str(h264_mp4), "start_s": 9}, str(vp9_webm)], "question": "Same?"},
    )
    assert outside.is_error
    assert "start_s=9.0 is at or past the end of the video" in error_text(outside)
    unknown = await client.call_tool(
        "compare_videos", {"sources": [{"source": str(h264_mp4), "from": 1}, str(vp9_webm)], "question": "Same?"}
    )
    assert error_text(unknown) == "sources[0].from is not an argument here."
