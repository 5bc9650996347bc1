"""Evidence mode (`--model none`): no model is loaded, downloaded or checked; the tools return what the pipeline
chose, heard and read (the frames as images labelled with their times, the transcript, on-screen text, scenes) for
the calling agent to look at, through the real MCP client in memory and through the terminal command."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from pydantic import ValidationError

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.checks import check
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.backends import LazyBackend
from tests.media import cut_scenes, with_subtitles
from tests.screens import SLIDE, TERMINAL, recall, screen_video, slide_picture, terminal_picture, textured_maker
from tests.support import error_text, run, with_images

pytestmark = pytest.mark.anyio

SUBTITLES = """WEBVTT

00:00:03.000 --> 00:00:05.000
Here is the quarterly review.

00:00:44.000 --> 00:00:46.000
The database refused the connection.
"""


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60 s 720p H.264 talk with subtitles beside it: a slide 0-20 s, a moving picture 20-40 s, a terminal 40-60 s."""
    folder = tmp_path_factory.mktemp("talk")
    shows = [(0.0, lambda i: slide_picture(SLIDE)), (20.0, textured_maker), (40.0, lambda i: terminal_picture()),
             (60.0, textured_maker)]  # fmt: skip
    video = screen_video(folder / "plain.mp4", shows)
    return with_subtitles(video, folder, "talk", SUBTITLES)


@pytest.fixture
def no_model_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if the model's loader is even set up, let alone asked for the model."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model's loader was used with --model none")

    monkeypatch.setattr(LazyBackend, "__init__", refuse)
    monkeypatch.setattr(LazyBackend, "get", refuse)


@pytest.fixture
async def client(tmp_path: Path, no_model_built: None) -> AsyncIterator[Client]:
    async with Client(build_server(Settings(model="none", cache_dir=tmp_path / "cache"))) as connected:
        yield connected


async def test_the_tools_say_there_is_no_model_and_frames_come_back_as_images(client: Client) -> None:
    tools = {tool.name: tool.description or "" for tool in (await client.list_tools()).tools}
    for name, description in tools.items():
        assert "no model runs on this server (--model none)" in description.lower(), name
        assert "images" in description, name
    assert "minutes" not in tools["describe_video"]
    instructions = client.instructions
    assert instructions is not None
    assert "you are the eye" in instructions


async def test_describe_returns_frames_words_and_text_on_screen_and_no_answer(client: Client, talk: Path) -> None:
    result, images = await with_images(client, "describe_video", source=str(talk), num_frames=6)
    assert "answer" not in result
    assert "model" not in result
    assert "attached as images for you to look at" in result["note"]
    [video] = result["videos"]
    times = [frame["timestamp_s"] for frame in video["frames"]]
    assert len(times) == len(images) == 6  # return_frames is on, one image a frame, whatever the call said
    assert all(image.format == "JPEG" and max(image.size) <= 768 for image in images)
    assert [cue["text"] for cue in video["transcript"]] == [
        "Here is the quarterly review.",
        "The database refused the connection.",
    ]
    shown = [line["text"] for line in video["on_screen_text"]]
    assert recall(SLIDE, shown) >= 0.9
    assert recall(TERMINAL, shown) >= 0.9
    assert result["timings"]["model_load_s"] == 0
    assert result["tokens"] == {"generated": 0, "reused": 0}
    sheet, _ = await with_images(client, "describe_video", source=str(talk), num_frames=3, return_frames="sheet")
    assert len(sheet["videos"][0]["frames"]) == 3  # frames style all the same


async def test_scenes_asked_for_are_given_frame_by_frame(client: Client, tmp_path: Path) -> None:
    cuts = cut_scenes(tmp_path / "scenes.mp4", [4.0, 6.0, 5.0])
    result, images = await with_images(
        client, "describe_video", source=str(tmp_path / "scenes.mp4"), num_frames=3, sampling="scenes"
    )
    frames = result["videos"][0]["frames"]
    assert [frame["scene"] for frame in frames] == [1, 2, 3]
    assert [frame["timestamp_s"] < cut for frame, cut in zip(frames, [*cuts, 99.0], strict=True)] == [True] * 3
    assert len(images) == 3


async def test_compare_returns_each_videos_frames_labelled_and_no_answer(client: Client, talk: Path) -> None:
    result, images = await with_images(
        client, "compare_videos", sources=[str(talk), {"source": str(talk), "start_s": 40.0}], question="Same room?",
        frames_per_video=2,
    )  # fmt: skip
    assert "answer" not in result
    assert "model" not in result
    assert "V1, V2" in result["note"]
    assert len(images) == 4
    assert [len(video["frames"]) for video in result["videos"]] == [2, 2]
    assert result["videos"][1]["frames"][0]["timestamp_s"] >= 40.0


async def test_find_moments_answers_from_words_else_gives_candidates_to_judge(client: Client, talk: Path) -> None:
    worded, images = await with_images(
        client, "find_moments", source=str(talk), query="the database refused", max_moments=1
    )
    [moment] = worded["moments"]
    assert 44.0 <= moment["start_s"] < moment["end_s"] <= 46.0
    assert moment["basis"] == ["subtitles"]
    assert len(images) == len(moment["frames"]) == 2
    judged, images = await with_images(
        client, "find_moments", source=str(talk), query="the database refused", max_moments=3
    )
    moments = judged["moments"]
    assert moments[0]["basis"] == ["subtitles"]  # the words first
    spread = moments[1:]
    assert len(spread) == 5  # six ranges of 10 s, less the one the words cover
    assert all(m["basis"] == ["frames"] and "not judged" in m["description"] for m in spread)
    assert all(m["end_s"] - m["start_s"] == pytest.approx(10.0) for m in spread)
    assert len(images) == sum(len(m["frames"]) for m in moments) == 12
    assert "for you to judge" in judged["videos"][0]["note"]
    assert "model" not in judged


async def test_a_full_watch_is_refused_with_what_to_do_instead(client: Client, talk: Path) -> None:
    result = await client.call_tool("describe_video", {"source": str(talk), "coverage": "full"})
    assert result.is_error
    assert 'coverage="sampled"' in error_text(result)
    assert "--model none" in error_text(result)


def test_no_model_is_checked_at_start_and_an_engine_needs_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hub"))
    assert check(Settings(model="None", cache_dir=tmp_path / "cache")).looking_only
    with pytest.raises(ValidationError, match="--model is none"):
        Settings(model="none", endpoint="http://127.0.0.1:8000/v1")


def test_the_terminal_command_describes_without_a_model(tmp_path: Path, talk: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    # An empty, offline hub: any model asked for would fail.
    offline = {"HF_HOME": str(tmp_path / "empty-hub"), "HF_HUB_OFFLINE": "1"}
    done = run("describe", str(talk), "--model", "none", "--frames", "4", "--json", "--frames-dir", str(frames),
               "--cache-dir", str(tmp_path / "cache"), env=offline)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "answer" not in result
    assert len(result["videos"][0]["frames"]) == 4
    assert re.search(r"4 images written", done.stderr), done.stderr
    assert len(list(frames.glob("describe-1-*.jpg"))) == 4
    plain = run("describe", str(talk), "--model", "none", "--frames", "2", "--frames-dir", str(frames),
                "--cache-dir", str(tmp_path / "cache"), env=offline)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert "attached as images for you to look at" in plain.stdout
