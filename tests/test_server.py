"""The tools through the real MCP client, talking to the real server in memory."""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer import VideoAnswer
from llava_video_mcp.tools.answer.progress import WorkPlan
from llava_video_mcp.tools.backends import DEFAULT_MODEL
from llava_video_mcp.tools.frames import to_model_image, uniform_targets
from tests.httpserver import LoopbackServer
from tests.media import encode_audio_only, nearest_reference, reference_frames
from tests.reference import reference_generate, reference_text
from tests.support import call, error_text

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(tiny_model: Path, tmp_path: Path) -> AsyncIterator[Client]:
    # float32 throughout, so answers can be compared with a direct float32 transformers call.
    app = build_server(
        Settings(ocr_engine="none", model=str(tiny_model), device="cpu", dtype="float32", cache_dir=tmp_path / "cache")
    )
    async with Client(app) as connected:
        yield connected


async def test_the_tools_are_listed_with_schemas(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"describe_video", "compare_videos", "find_moments"}
    for tool in tools.values():
        assert tool.output_schema is not None
        found = "moments" if tool.name == "find_moments" else "answer"
        assert {found, "videos", "model", "timings", "tokens"} <= set(tool.output_schema["properties"])
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint
        assert tool.annotations.open_world_hint
    describe = tools["describe_video"].input_schema
    assert describe["required"] == ["source"]
    assert describe["properties"]["num_frames"]["maximum"] == 32
    assert tools["compare_videos"].input_schema["properties"]["sources"]["maxItems"] == 4


async def test_describe_video_matches_a_direct_reference(client: Client, h264_mp4: Path, tiny_model: Path) -> None:
    question = "What is moving?"
    answer = await call(client, "describe_video", source=str(h264_mp4), question=question, max_new_tokens=16)

    [video] = answer.videos
    assert (video.codec, video.width, video.height, video.fps) == ("h264", 96, 64, 10.0)
    assert video.duration_s == pytest.approx(3.0)
    assert (video.start_s, video.end_s, video.frames_requested) == (0.0, 3.0, 8)
    reference = reference_frames(h264_mp4)
    expected = [nearest_reference(reference, t) for t in uniform_targets(0.0, 3.0, 8)]
    assert [f.timestamp_s for f in video.frames] == [round(t, 6) for t, _ in expected]
    assert [f.index for f in video.frames] == list(range(8))

    times = ", ".join(f"{t:.2f} s" for t, _ in expected)
    text = (
        f'The 8 images are frames of one video "clip.mp4" (3.0 s long), in time order, taken at {times}.\n\n{question}'
    )
    token_ids = reference_generate(tiny_model, [to_model_image(f, 384) for _, f in expected], text, 16)
    assert answer.answer == reference_text(tiny_model, token_ids)
    assert answer.tokens.generated == len(token_ids) == 16
    assert answer.stopped_by_token_limit
    assert answer.question == question
    assert (answer.model.id, answer.model.device, answer.model.dtype) == (str(tiny_model), "cpu", "float32")
    assert answer.model.prefill_dtype == "float32"
    assert answer.timings.model_load_s > 0
    assert answer.timings.total_s >= answer.timings.inference_s


async def test_no_question_asks_for_a_description(client: Client, vp9_webm: Path) -> None:
    answer = await call(client, "describe_video", source=str(vp9_webm), num_frames=3, max_new_tokens=4)
    assert answer.question.startswith("Describe this video in detail")
    assert len(answer.videos[0].frames) == 3


async def test_time_range(client: Client, h264_mp4: Path) -> None:
    answer = await call(
        client, "describe_video", source=str(h264_mp4), num_frames=2, start_s=1, end_s=2, max_new_tokens=2
    )
    assert [f.timestamp_s for f in answer.videos[0].frames] == [1.2, 1.7]


async def test_compare_videos_puts_all_frames_in_one_context(
    client: Client, http_server: LoopbackServer, vp9_webm: Path
) -> None:
    sources = [http_server.url("clip.mp4"), str(vp9_webm)]
    answer = await call(
        client, "compare_videos", sources=sources, question="Which one is longer?", frames_per_video=4, max_new_tokens=4
    )
    assert [v.source for v in answer.videos] == sources
    assert [v.codec for v in answer.videos] == ["h264", "vp9"]
    assert [f.index for v in answer.videos for f in v.frames] == list(range(8))
    assert answer.videos[0].title == "clip"
    assert not answer.videos[0].from_cache
    # 8 frames x 16 image tokens each are all in the prompt.
    assert answer.tokens.prompt > 8 * 16

    again = await call(
        client, "compare_videos", sources=sources, question="Same?", frames_per_video=2, max_new_tokens=2
    )
    assert again.videos[0].from_cache
    assert again.timings.model_load_s == 0


async def test_progress_is_reported_at_each_stage(tiny_model: Path, tmp_path: Path, h264_mp4: Path) -> None:
    async with Client(build_server(Settings(model=str(tiny_model), device="cpu", cache_dir=tmp_path))) as client:
        await _progress_at_each_stage(client, h264_mp4)  # the server as it starts by default: the screen read


async def _progress_at_each_stage(client: Client, h264_mp4: Path) -> None:
    messages: list[str] = []
    values: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")
        values.append(100 * progress / (total or 1))

    arguments = {"source": str(h264_mp4), "num_frames": 2, "max_new_tokens": 2}
    result = await client.call_tool("describe_video", arguments, progress_callback=on_progress)
    assert not result.is_error
    stages = [m.split(" ")[0] for m in messages]
    # the first call reads the screen (the OCR engine is on where installed; beside the speech track, so its last
    # word is reported) and loads the model
    assert [s for s in stages if s not in ("Read", "Reading")][:4] == ["Fetching", "Sampling", "Loading", "Running"]
    assert stages.index("Read") < stages.index("Loading")
    assert stages[-1] == "Done"
    assert "Generating: 2 of at most 2 tokens" in messages
    assert values == sorted(set(values))  # MCP: progress only ever increases
    # The bar measures work: the model's part (most of a call) starts after the shares of fetching, sampling,
    # hearing (the speech model is on by default) and loading, not at two thirds of the stages.
    shares = WorkPlan.SHARES
    before = shares["fetch"] + shares["sample"] + shares["hear"] + shares["load"]
    assert values[stages.index("Running")] == pytest.approx(100 * before / sum(shares.values()), abs=1)
    messages.clear()
    values.clear()
    await client.call_tool("describe_video", arguments | {"num_frames": 3}, progress_callback=on_progress)
    assert "Loading" not in [m.split(" ")[0] for m in messages]  # loaded once


async def test_long_stages_send_heartbeats(tiny_model: Path, tmp_path: Path, h264_mp4: Path) -> None:
    settings = Settings(
        ocr_engine="none", model=str(tiny_model), device="cpu", cache_dir=tmp_path, progress_interval_s=0.02
    )
    messages: list[str] = []
    values: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")
        values.append(progress)

    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "describe_video",
            {"source": str(h264_mp4), "num_frames": 8, "max_new_tokens": 300},
            progress_callback=on_progress,
        )
    assert not result.is_error
    assert any(m.endswith(" s so far)") for m in messages)
    assert values == sorted(set(values))


@pytest.fixture
def bad_files(tmp_path: Path, h264_mp4: Path) -> dict[str, str]:
    from PIL import Image

    (tmp_path / "notes.mp4").write_text("not a video\n" * 100)
    Image.new("RGB", (16, 16)).save(tmp_path / "still.png")
    (tmp_path / "truncated.mp4").write_bytes(h264_mp4.read_bytes()[:1500])
    data = bytearray(h264_mp4.read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    data[start:end] = bytes(end - start)
    (tmp_path / "blank.mp4").write_bytes(bytes(data))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    return {
        "TEXT": str(tmp_path / "notes.mp4"),
        "PNG": str(tmp_path / "still.png"),
        "TRUNCATED": str(tmp_path / "truncated.mp4"),
        "NO_FRAMES": str(tmp_path / "blank.mp4"),
        "AUDIO": str(encode_audio_only(tmp_path / "sound.m4a")),
        "UNREACHABLE": f"http://127.0.0.1:{closed_port}/clip.mp4",
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"source": "/no/such/video.mp4"}, "No file at /no/such/video.mp4"),
        ({"source": "TEXT"}, "not a readable video"),
        ({"source": "PNG", "coverage": "full"}, "still image (png), not a video"),  # describe answers a still
        ({"source": "TRUNCATED"}, "not a readable video"),
        ({"source": "NO_FRAMES"}, "could be decoded"),
        ({"source": "AUDIO"}, "has no video stream"),
        ({"source": "UNREACHABLE"}, "Could not reach 127.0.0.1"),
        ({"source": "VIDEO", "start_s": 10}, "start_s=10.0 is at or past the end of the video, which lasts 3.000 s"),
        ({"source": "VIDEO", "start_s": 1, "end_s": 7}, "end_s=7.0 is past the end of the video"),
        ({"source": "VIDEO", "num_frames": 0}, "num_frames"),
        ({"source": "VIDEO", "num_frames": 33}, "num_frames"),
        ({"source": "VIDEO", "sampling": "shots"}, "sampling"),
        ({"source": "TRUNCATED", "sampling": "scenes"}, "not a readable video"),
        ({"source": "NO_FRAMES", "sampling": "scenes"}, "could be decoded"),
        ({"source": "URL:missing.mp4"}, "answered HTTP 404"),
        ({"source": "URL:page.html"}, "No video found at"),
        ({"source": "ftp://host/video.mp4"}, "Unsupported URL scheme 'ftp'"),
    ],
)
async def test_bad_input_is_a_tool_error_and_the_next_call_works(
    client: Client,
    http_server: LoopbackServer,
    h264_mp4: Path,
    bad_files: dict[str, str],
    arguments: dict[str, Any],
    message: str,
) -> None:
    shorthand = bad_files | {"VIDEO": str(h264_mp4)}
    source = arguments["source"]
    arguments = arguments | {
        "source": http_server.url(source[4:]) if source.startswith("URL:") else shorthand.get(source, source)
    }
    result = await client.call_tool("describe_video", arguments)
    assert result.is_error
    assert message in error_text(result)

    good = await call(client, "describe_video", source=str(h264_mp4), num_frames=2, max_new_tokens=2)
    assert len(good.videos[0].frames) == 2


@pytest.mark.parametrize(
    ("count", "frames_per_video", "message"),
    [(1, 2, "sources"), (5, 2, "sources"), (3, 12, "at most 32 fit in one call. Use frames_per_video=10 or fewer")],
)
async def test_compare_limits(client: Client, h264_mp4: Path, count: int, frames_per_video: int, message: str) -> None:
    result = await client.call_tool(
        "compare_videos",
        {"sources": [str(h264_mp4)] * count, "question": "Same?", "frames_per_video": frames_per_video},
    )
    assert result.is_error
    assert message in error_text(result)
    good = await call(
        client, "compare_videos", sources=[str(h264_mp4)] * 2, question="Same?", frames_per_video=1, max_new_tokens=1
    )
    assert len(good.videos) == 2


async def test_unloadable_model_is_a_tool_error_and_the_server_keeps_serving(tmp_path: Path, h264_mp4: Path) -> None:
    app = build_server(Settings(model=str(tmp_path / "missing-model"), device="cpu", cache_dir=tmp_path))
    async with Client(app) as client:
        for _ in range(2):
            result = await client.call_tool("describe_video", {"source": str(h264_mp4), "num_frames": 1})
            assert result.is_error
            assert "No model folder at" in error_text(result)
            assert "--model" in error_text(result)
        assert len((await client.list_tools()).tools) == 3


async def test_hub_model_without_network_says_how_to_use_a_local_folder(tmp_path: Path, h264_mp4: Path) -> None:
    app = build_server(Settings(model=DEFAULT_MODEL, device="cpu", cache_dir=tmp_path))  # HF_HUB_OFFLINE=1
    async with Client(app) as client:
        result = await client.call_tool("describe_video", {"source": str(h264_mp4), "num_frames": 1})
    assert result.is_error
    assert f"The model '{DEFAULT_MODEL}' is not in the local Hugging Face cache" in error_text(result)
    assert f"hf download {DEFAULT_MODEL} --local-dir FOLDER" in error_text(result)
    assert "--model FOLDER" in error_text(result)


async def test_failed_download_leaves_no_cache_entry(
    client: Client, http_server: LoopbackServer, tmp_path: Path
) -> None:
    result = await client.call_tool("describe_video", {"source": http_server.url("cut.mp4"), "num_frames": 1})
    assert result.is_error
    assert "dropped before" in error_text(result)
    assert list((tmp_path / "cache" / "videos").iterdir()) == []
    http_server.truncate.clear()
    answer = await call(client, "describe_video", source=http_server.url("cut.mp4"), num_frames=1, max_new_tokens=1)
    assert not answer.videos[0].from_cache
    shutil.rmtree(tmp_path / "cache")


async def test_concurrent_calls_take_turns_and_load_the_model_once(client: Client, h264_mp4: Path) -> None:
    import anyio

    answers: list[VideoAnswer] = []
    waited: dict[int, list[str]] = {}

    async def one(num_frames: int) -> None:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if (message or "").startswith("Waiting for the model"):
                waited.setdefault(num_frames, []).append(message or "")

        result = await client.call_tool(
            "describe_video",
            {"source": str(h264_mp4), "num_frames": num_frames, "max_new_tokens": 3},
            progress_callback=on_progress,
        )
        answers.append(VideoAnswer.model_validate(result.structured_content))

    async with anyio.create_task_group() as group:
        for n in (1, 2, 3, 4):
            group.start_soon(one, n)
    assert sorted(len(a.videos[0].frames) for a in answers) == [1, 2, 3, 4]
    assert sum(a.timings.model_load_s > 0 for a in answers) == 1
    # They took turns: the calls that found the model busy said so, and waited (the model is loaded once, by
    # the first; the others queue behind it at least that long).
    assert waited, "no call waited for the model"
    assert all(answer.timings.queue_s > 0 for answer in answers if len(answer.videos[0].frames) in waited)


async def test_second_question_reuses_decoded_frames(client: Client, h264_mp4: Path) -> None:
    first = await call(client, "describe_video", source=str(h264_mp4), num_frames=4, max_new_tokens=2)
    second = await call(client, "describe_video", source=str(h264_mp4), num_frames=4, question="And?", max_new_tokens=2)
    assert not first.videos[0].frames_from_cache
    assert second.videos[0].frames_from_cache
    assert second.videos[0].frames == first.videos[0].frames


async def test_sampling_options_reach_the_sampler(client: Client, h264_mp4: Path) -> None:
    by_rate = await call(client, "describe_video", source=str(h264_mp4), num_frames=8, fps=1, max_new_tokens=1)
    assert [f.timestamp_s for f in by_rate.videos[0].frames] == [0.5, 1.5, 2.5]
    assert by_rate.videos[0].note is not None
    keyframes = await call(
        client, "describe_video", source=str(h264_mp4), num_frames=3, keyframes_only=True, max_new_tokens=1
    )
    assert [f.timestamp_s for f in keyframes.videos[0].frames] == [0.0, 1.2, 2.4]
    assert keyframes.videos[0].frame_count == 30


@pytest.fixture
def german_talk(h264_mp4: Path, tmp_path: Path) -> Path:
    from tests.media import with_subtitles
    from tests.support import VTT

    return with_subtitles(h264_mp4, tmp_path, "talk", VTT, ".de.vtt")


async def test_transcript_arguments(client: Client, german_talk: Path) -> None:
    video = german_talk
    english = await call(client, "describe_video", source=str(video), num_frames=1, max_new_tokens=1)
    assert english.videos[0].transcript is None
    german = await call(client, "describe_video", source=str(video), num_frames=1, language="de", max_new_tokens=1)
    assert [c.text for c in german.videos[0].transcript or []] == ["Hello there", "Goodbye & thanks"]
    off = await call(
        client,
        "describe_video",
        source=str(video),
        num_frames=1,
        language="de",
        include_transcript=False,
        max_new_tokens=1,
    )
    assert off.videos[0].transcript is None
    bad = await client.call_tool("describe_video", {"source": str(video), "language": "../../etc"})
    assert bad.is_error
    assert "language" in error_text(bad)
