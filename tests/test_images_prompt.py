"""Still images beside videos, through the real MCP client: what reaches the model. The model is the shipped
`FakeBackend` (a stand-in, named as one, that keeps every prompt it is given), or `Scripted` of test_moments for
find_moments; the images and videos are made here.

An image and a video compared in one call are one context in the given order, each image one image named as the agent
named it (`Image 2`), with no time; describe_video answers about one image; find_moments shows a reference image with
each window it looks at closely; an animated GIF is still played as a video; hostile images are clear errors with the
server still serving."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from PIL import Image

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer import MomentsAnswer, VideoAnswer
from llava_video_mcp.tools.backends import Ready
from llava_video_mcp.tools.backends.fake import FakeBackend
from llava_video_mcp.tools.backends.families import FAMILIES
from tests.images import BLUE, HOSTILE, RED, hostile_file, image_bytes, near
from tests.support import Scripted, error_text

pytestmark = pytest.mark.anyio


@dataclass
class Served:
    client: Client
    model: FakeBackend


@asynccontextmanager
async def serving(tmp_path: Path, model: FakeBackend) -> AsyncIterator[Served]:
    settings = Settings(
        ocr_engine="none", model="stand-in", cache_dir=tmp_path / "cache", asr_model="none", window_s=10
    )
    async with Client(build_server(settings, Ready(model))) as client:
        yield Served(client, model)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path, FakeBackend()) as running:
        yield running


def picture(folder: Path, name: str, colour: tuple[int, int, int], kind: str = "PNG") -> Path:
    path = folder / name
    path.write_bytes(image_bytes(kind, colour=colour))
    return path


def gif(path: Path, colours: list[tuple[int, int, int]]) -> Path:
    frames = [Image.new("RGB", (64, 48), colour) for colour in colours]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)
    path.write_bytes(buffer.getvalue())
    return path


async def answered(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, error_text(result)
    assert result.structured_content is not None
    return result.structured_content


async def test_an_image_and_a_video_compared_reach_the_model_as_one_context_in_order(
    served: Served, tmp_path: Path, h264_mp4: Path
) -> None:
    photo = picture(tmp_path, "photo.png", RED)
    sources = [str(photo), str(h264_mp4), str(picture(tmp_path, "blue.jpg", BLUE, "JPEG"))]
    result = await answered(
        served.client, "compare_videos", sources=sources, question="Is the photo in the video?", frames_per_video=3
    )
    [prompt] = served.model.prompts
    assert len(prompt.images) == 5  # the photo, 3 frames, the other image: in the order given
    assert near(prompt.images[0].getpixel((5, 5)), RED)
    assert near(prompt.images[4].getpixel((5, 5)), BLUE)
    assert prompt.images[0].size == (512, 384)  # scaled as frames are: the shorter side to the model's
    times = ", ".join(f"{t['timestamp_s']:.2f} s" for t in result["videos"][1]["frames"])
    guide = prompt.text[: prompt.question_start]
    assert guide.startswith(
        "The 5 images are frames from 1 video and 2 still images, in order.\n"
        'Image 1: Image 1 "photo.png", a still image.\n'
        f'Images 2-4: Video 2 "clip.mp4" (3.0 s long), taken at {times}.\n'
        'Image 5: Image 3 "blue.jpg", a still image.'
    ), guide
    assert prompt.text.endswith("Is the photo in the video?")
    first, video, last = result["videos"]
    assert first == {"kind": "image", "source": str(photo), "title": "photo.png", "width": 640, "height": 480,
                     "from_cache": True}  # fmt: skip
    assert "kind" not in video
    assert [f["index"] for f in video["frames"]] == [1, 2, 3]
    assert last["kind"] == "image"


async def test_describe_video_on_an_image_asks_about_one_image(served: Served, tmp_path: Path) -> None:
    photo = picture(tmp_path, "photo.webp", RED, "WEBP")
    result = await answered(served.client, "describe_video", source=str(photo), question="What colour is it?")
    [prompt] = served.model.prompts
    assert len(prompt.images) == 1
    assert prompt.text == 'The image is a still image "photo.webp".\n\nWhat colour is it?'
    assert result["answer"] == "A scripted answer."
    assert result["videos"][0]["kind"] == "image"
    described = await answered(served.client, "describe_video", source=str(photo), return_frames="frames")
    assert described["question"].startswith("Describe this image in detail")


async def test_a_time_range_on_an_image_is_refused(served: Served, tmp_path: Path, h264_mp4: Path) -> None:
    photo = picture(tmp_path, "photo.png", RED)
    result = await served.client.call_tool(
        "compare_videos",
        {"sources": [str(h264_mp4), {"source": str(photo), "start_s": 1}], "question": "Same?"},
    )
    assert result.is_error
    assert "is a still image: start_s/end_s apply to videos only" in error_text(result)


async def test_an_animated_gif_is_a_video_and_a_still_gif_an_image(served: Served, tmp_path: Path) -> None:
    moving = gif(tmp_path / "moving.gif", [RED, BLUE, RED, BLUE, RED, BLUE])
    still = gif(tmp_path / "still.gif", [BLUE])
    result = await answered(
        served.client, "compare_videos", sources=[str(moving), str(still)], question="Same?", frames_per_video=3
    )
    played, image = result["videos"]
    assert "kind" not in played
    assert len(played["frames"]) == 3
    assert image["kind"] == "image"
    [prompt] = served.model.prompts
    assert len(prompt.images) == 4


async def test_find_moments_shows_the_reference_image_with_each_window_it_looks_at(
    tmp_path: Path, h264_mp4: Path
) -> None:
    logo = picture(tmp_path, "logo.png", RED)
    async with serving(tmp_path, Scripted(ranking="1", look="1, 2\nThe logo shows.")) as running:
        result = await answered(
            running.client, "find_moments", source=str(h264_mp4), query="the logo", reference=str(logo),
            max_moments=1,
        )  # fmt: skip
        answer = MomentsAnswer.model_validate(result)
        [looked] = [p for p in running.model.prompts if "In which of these frames" in p.text]
        frames = len(looked.images) - 1
        assert near(looked.images[-1].getpixel((5, 5)), RED)
        assert f'Image {frames + 1}: the reference image "logo.png", a still image.' in looked.text
        assert "(the reference image shows it)" in looked.text
        assert answer.moments[0].description == "The logo shows."
        # Notes and ranking are text about the video alone: the reference joins only the closer look.
        assert all(len(p.images) != frames + 1 for p in running.model.prompts if p is not looked)

        refused = await running.client.call_tool(
            "find_moments", {"source": str(h264_mp4), "query": "the logo", "reference": str(h264_mp4)}
        )
        assert refused.is_error
        assert "is a video. Pass a still image" in error_text(refused)


STILL_HOSTILE = [(case[0], case[1], case[2], case[4]) for case in HOSTILE if not case[1].endswith(".gif")]


@pytest.mark.parametrize("tool", ["compare_videos", "find_moments"])
@pytest.mark.parametrize(("case", "name", "data", "message"), STILL_HOSTILE, ids=[c[0] for c in STILL_HOSTILE])
async def test_a_hostile_image_among_sources_or_as_reference_is_a_clear_error(
    served: Served,
    tmp_path: Path,
    h264_mp4: Path,
    tool: str,
    case: str,
    name: str,
    data: bytes | None,
    message: str,
) -> None:
    bad = str(hostile_file(tmp_path, name, data))
    if tool == "compare_videos":
        arguments: dict[str, Any] = {"sources": [str(h264_mp4), bad], "question": "Same?"}
    else:
        arguments = {"source": str(h264_mp4), "query": "the logo", "reference": bad}
    result = await served.client.call_tool(tool, arguments)
    assert result.is_error
    assert re.search(message, error_text(result)), error_text(result)
    good = await answered(served.client, "describe_video", source=str(h264_mp4), num_frames=2)
    assert len(VideoAnswer.model_validate(good).videos[0].frames or []) == 2


def test_every_family_says_how_it_takes_a_still_image() -> None:
    takes = {family.name: family.still_images for family in FAMILIES}
    assert takes.pop("llava-onevision") == "video frame"  # video-native: one more frame of its video input
    assert set(takes.values()) == {"image"}
