"""Long videos watched in full (`coverage="full"`), through the real MCP client, on a 4-minute video made here:
dark and light scenes (x264 puts a keyframe at each cut), low frame rate to keep encoding fast, and subtitles
beside it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer import VideoAnswer
from llava_video_mcp.tools.answer.windows import plan_windows
from llava_video_mcp.tools.frames import outline
from tests.engines import Relay, ServedModel
from tests.media import CUTS, scenes
from tests.support import call, error_text

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="session")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scenes(tmp_path_factory.mktemp("long") / "talk.mp4")


@pytest.fixture
def settings(tiny_model: Path, tmp_path: Path) -> Settings:
    return Settings(
        ocr_engine="none", model=str(tiny_model), device="cpu", dtype="float32", cache_dir=tmp_path / "cache"
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with Client(build_server(settings)) as connected:
        yield connected


def test_windows_tile_the_range_and_cut_at_scene_changes(talk: Path) -> None:
    info, keyframes = outline(talk)
    assert set(CUTS) <= set(keyframes)
    windows = plan_windows(0.0, info.duration_s, 60.0, keyframes)
    assert [(w.start_s, w.end_s) for w in windows] == [(0, 45), (45, 100), (100, 160), (160, 220), (220, 240)]
    assert plan_windows(10.0, 70.0, 60.0, []) == plan_windows(10.0, 70.0, 60.0, [0.0, 30.0])


async def test_full_coverage_watches_every_window(client: Client, talk: Path) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    arguments = {"source": str(talk), "coverage": "full", "num_frames": 4, "max_new_tokens": 8}
    result = await client.call_tool("describe_video", arguments, progress_callback=on_progress)
    assert not result.is_error, error_text(result)
    answer = VideoAnswer.model_validate(result.structured_content)
    segments = answer.segments or []
    assert [(s.start_s, s.end_s) for s in segments] == [(0, 45), (45, 100), (100, 160), (160, 220), (220, 240)]
    for segment in segments:
        assert segment.frames
        assert all(segment.start_s <= t <= segment.end_s for t in segment.frames)
        assert len(segment.frames) <= 4
        assert segment.notes is not None
    said = {segment.start_s: [cue.text for cue in segment.transcript or []] for segment in segments}
    assert said == {0: ["Welcome to the first scene."], 45: ["Now it is light."], 100: ["Halfway."], 160: [],
                    220: ["Goodbye."]}  # fmt: skip
    assert answer.segments_from_cache == 0
    assert answer.videos[0].frames == []
    assert "Window 2 of 5 (00:45-01:40): Generating: " in " ".join(messages)
    assert any(m.startswith("Answering from the notes of 5 windows") for m in messages)

    started = time.monotonic()
    again = await call(client, "describe_video", **arguments | {"question": "When does it get light?"})
    second_s = time.monotonic() - started
    assert again.segments_from_cache == 5
    assert [s.notes for s in again.segments or []] == [s.notes for s in segments]
    assert second_s < answer.timings.total_s / 2


async def test_notes_outlive_the_server(settings: Settings, talk: Path) -> None:
    arguments = {"source": str(talk), "coverage": "full", "num_frames": 2, "max_new_tokens": 2}
    async with Client(build_server(settings)) as first:
        before = await call(first, "describe_video", **arguments)
    async with Client(build_server(settings)) as restarted:
        after = await call(restarted, "describe_video", **arguments | {"question": "What changes?"})
    assert before.segments_from_cache == 0
    assert after.segments_from_cache == len(after.segments or [])


async def test_too_many_windows_is_refused_with_what_fits(tiny_model: Path, tmp_path: Path, talk: Path) -> None:
    settings = Settings(
        ocr_engine="none", model=str(tiny_model), device="cpu", cache_dir=tmp_path / "cache", max_windows=3
    )
    async with Client(build_server(settings)) as client:
        refused = await client.call_tool("describe_video", {"source": str(talk), "coverage": "full"})
        assert refused.is_error
        text = error_text(refused)
        assert "makes 5 windows" in text
        assert "--max-windows" in text
        assert "start_s/end_s" in text
        assert "--window-s 80" in text
        narrowed = await call(
            client, "describe_video", source=str(talk), coverage="full", end_s=120.0, num_frames=1, max_new_tokens=1
        )
        assert len(narrowed.segments or []) == 3


async def test_a_cancelled_watch_keeps_only_whole_notes(client: Client, settings: Settings, talk: Path) -> None:
    second_window = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if (message or "").startswith("Window 2 of 5") and "Generating: " in (message or ""):
            second_window.set()

    async def watch(scope: anyio.CancelScope) -> None:
        with scope:
            await client.call_tool(
                "describe_video",
                {"source": str(talk), "coverage": "full", "num_frames": 4, "max_new_tokens": 8},
                progress_callback=on_progress,
            )

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as group:
        group.start_soon(watch, scope)
        await second_window.wait()
        scope.cancel()
    [store] = list((settings.cache_dir / "local").iterdir())
    notes = sorted((store / "notes").iterdir())
    # The windows finished before the cancellation took hold, each whole; nothing of the one it cut short.
    assert 1 <= len(notes) < 5
    assert all(p.suffix == ".json" and not p.name.startswith(".") for p in notes)
    assert all(json.loads(p.read_text())["notes"] is not None for p in notes)
    resumed = await call(client, "describe_video", source=str(talk), coverage="full", num_frames=4, max_new_tokens=8)
    assert resumed.segments_from_cache == len(notes)


async def test_long_notes_are_condensed_in_stages(client: Client, talk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llava_video_mcp.tools.answer import watch

    monkeypatch.setattr(watch, "REDUCE_CHARS", 500)  # the 5 windows' notes are over 1,500 characters
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    result = await client.call_tool(
        "describe_video",
        {"source": str(talk), "coverage": "full", "num_frames": 2, "max_new_tokens": 4},
        progress_callback=on_progress,
    )
    assert not result.is_error, error_text(result)
    assert any(m.startswith("Condensing the notes") for m in messages), messages


async def test_a_sparse_sampled_call_says_so(client: Client, talk: Path) -> None:
    answer = await call(client, "describe_video", source=str(talk), num_frames=4, max_new_tokens=1)
    note = answer.videos[0].note or ""
    assert "One frame every 60 s over 4.0 min" in note
    assert 'coverage="full"' in note


def test_the_packet_index_is_kept_beside_the_video(talk: Path, tmp_path: Path) -> None:
    from tests.media import encode_video

    # mkv's index lists keyframes only: the stream is demuxed once, and its index kept for every later call.
    mkv = encode_video(tmp_path / "clip.mkv", seconds=4.0)
    index = tmp_path / "mkv-index.bin"
    fresh = outline(mkv)
    assert outline(mkv, index) == fresh
    stamp = index.stat().st_mtime_ns
    assert outline(mkv, index) == fresh
    assert index.stat().st_mtime_ns == stamp  # read, not written again
    # mp4 lists every frame: its own index serves, and nothing needs keeping.
    assert outline(talk, tmp_path / "mp4-index.bin") == outline(talk)
    assert not (tmp_path / "mp4-index.bin").exists()


async def test_windows_run_together_on_a_serving_engine(engine: ServedModel, tmp_path: Path, talk: Path) -> None:
    # Each request is held 0.5 s on its way (a slow link): windows that did not overlap would show one connection.
    counter = Relay(engine.port, delay_s=0.5)
    with counter.running():
        settings = Settings(
            ocr_engine="none", endpoint=counter.url(), cache_dir=tmp_path / "cache", max_concurrent_requests=4
        )
        async with Client(build_server(settings)) as client:
            answer = await call(
                client, "describe_video", source=str(talk), coverage="full", num_frames=1, max_new_tokens=2
            )
    assert len(answer.segments or []) == 5
    assert counter.most_open >= 3


def test_windows_are_read_in_batches_where_the_backend_batches(tiny_model: Path, tmp_path: Path, talk: Path) -> None:
    """On CUDA the in-process backend reads windows 4 at a time (forced here on the CPU): one generate() a batch,
    each window's notes as one by one (float32, left padding), kept notes taken as they are."""
    from llava_video_mcp.tools.answer import VideoQA
    from llava_video_mcp.tools.backends import Ready
    from llava_video_mcp.tools.backends.transformers import TransformersBackend
    from llava_video_mcp.tools.frames import media_duration
    from llava_video_mcp.tools.media import VideoFetcher

    def watched(batch: int, cache: Path) -> tuple[list[str], int, VideoQA]:
        backend = TransformersBackend.load(str(tiny_model), device="cpu", dtype="float32")
        backend.batch_size = batch
        calls = []
        generate = backend.model.generate
        backend.model.generate = lambda *a, **k: calls.append(1) or generate(*a, **k)  # type: ignore[method-assign]
        qa = VideoQA(VideoFetcher(cache, inspect=media_duration), Ready(backend))
        answer = qa.describe(str(talk), "What happens?", num_frames=2, max_new_tokens=4, coverage="full")
        assert answer.segments is not None
        return [segment.notes for segment in answer.segments], len(calls), qa

    one_by_one, sequential_calls, _ = watched(1, tmp_path / "one")
    batched, batched_calls, qa = watched(3, tmp_path / "batched")
    assert batched == one_by_one
    windows = len(one_by_one)
    assert windows == 5
    assert sequential_calls == windows + 1  # each window, then the answer from the notes
    assert batched_calls == 2 + 1  # windows 1-3, windows 4-5, the answer
    again = qa.describe(str(talk), "Who speaks?", num_frames=2, max_new_tokens=4, coverage="full")
    assert again.segments_from_cache == windows
