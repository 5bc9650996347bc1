"""Frames returned at the long side the agent asks for (`frame_max_side`), through the real MCP client in memory:
as the model saw them by default, scaled down when asked smaller, decoded again from the call's file when asked
larger (never beyond the source's own size), a still image read again from its file (EXIF applied); and held to
one byte budget a call."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from mcp import Client
from mcp.types import ImageContent
from PIL import Image

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer.evidence import (
    IMAGES_MAX_BYTES,
    LABEL_HEIGHT,
    AtSide,
    LabelledFrame,
    frame_images,
    label,
)
from llava_video_mcp.tools.backends import Ready
from llava_video_mcp.tools.backends.fake import FakeBackend
from llava_video_mcp.tools.backends.ocr import RapidOcr
from llava_video_mcp.tools.cancel import Cancelled, CancelToken
from llava_video_mcp.tools.frames import SampledFrame, sample_frames
from llava_video_mcp.tools.media import LocalImage
from tests.screens import TERMINAL, recall, screen_video, terminal_picture
from tests.support import error_text, images_of, with_images

pytestmark = pytest.mark.anyio

QUIET = {"read_screen": False, "include_transcript": False}
"""Nothing read or heard: these tests are about the frames (the servers have no OCR engine either, for find_moments)."""


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s 1280x720 H.264 video of a terminal whose 22 px text the model's 384 px frames cannot hold."""
    folder = tmp_path_factory.mktemp("terminal")
    return screen_video(
        folder / "terminal.mp4", [(0.0, lambda i: terminal_picture()), (4.0, lambda i: terminal_picture())]
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1600x1200 JPEG whose EXIF says to turn it a quarter (orientation 6): 1200x1600 as displayed."""
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    picture = Image.new("RGB", (1600, 1200), (200, 40, 40))
    picture.paste((40, 40, 200), (0, 0, 800, 1200))  # the left half blue: the top, once turned upright
    picture.save(path, format="JPEG", exif=exif, quality=90)
    return path


@pytest.fixture
async def looking(tmp_path: Path) -> AsyncIterator[Client]:
    """A server without a model: every call returns its frames, one image each."""
    async with Client(
        build_server(Settings(model="none", ocr_engine="none", cache_dir=tmp_path / "cache"))
    ) as connected:
        yield connected


@pytest.fixture
async def with_model(tmp_path: Path) -> AsyncIterator[Client]:
    """A server with a stand-in model, so that return_frames says what comes back."""
    settings = Settings(model="stand-in", device="cpu", cache_dir=tmp_path / "cache", asr_model="none",
                        ocr_engine="none")  # fmt: skip
    async with Client(build_server(settings, Ready(FakeBackend()))) as connected:
        yield connected


def pictures(found: list[Image.Image]) -> list[tuple[int, int]]:
    """Each image's picture size: the label's band below it taken off."""
    return [(image.width, image.height - LABEL_HEIGHT) for image in found]


# describe_video


async def test_by_default_the_frames_are_the_models_as_before(looking: Client, terminal: Path) -> None:
    result = await looking.call_tool("describe_video", {"source": str(terminal), "num_frames": 2, **QUIET})
    sent = [base64.b64decode(block.data) for block in result.content if isinstance(block, ImageContent)]
    seen = sample_frames(terminal, 2, min_side=384)
    before = frame_images([LabelledFrame(f.image, label(round(f.timestamp_s, 3))) for f in seen.frames])
    assert sent == before  # byte for byte the model's frames, labelled as they always were
    assert pictures(images_of(result)) == [(683, 384)] * 2


async def test_frames_at_the_sources_own_size_can_be_read(looking: Client, terminal: Path) -> None:
    result, found = await with_images(
        looking, "describe_video", source=str(terminal), num_frames=2, frame_max_side=1280, **QUIET
    )
    assert pictures(found) == [(1280, 720)] * 2
    times = [frame["timestamp_s"] for frame in result["videos"][0]["frames"]]
    assert len(times) == 2
    picture = found[0].convert("RGB").crop((0, 0, 1280, 720))
    read = [line.text for line in RapidOcr().read(picture)]
    assert recall(TERMINAL, read) >= 0.9, read


async def test_no_frame_is_made_larger_than_its_source(looking: Client, terminal: Path) -> None:
    _, found = await with_images(
        looking, "describe_video", source=str(terminal), num_frames=2, frame_max_side=1920, **QUIET
    )
    assert pictures(found) == [(1280, 720)] * 2


async def test_a_side_between_the_models_and_the_sources_is_decoded_to_it(looking: Client, terminal: Path) -> None:
    _, found = await with_images(
        looking, "describe_video", source=str(terminal), num_frames=2, frame_max_side=1000, **QUIET
    )
    assert [width for width, _ in pictures(found)] == [1000, 1000]
    assert all(abs(height - 1000 * 720 / 1280) <= 1 for _, height in pictures(found))


async def test_a_smaller_side_scales_the_models_frames_down(looking: Client, terminal: Path) -> None:
    _, found = await with_images(
        looking, "describe_video", source=str(terminal), num_frames=3, frame_max_side=320, **QUIET
    )
    assert pictures(found) == [(320, 180)] * 3


async def test_a_side_out_of_range_or_with_nothing_to_size_is_refused(
    looking: Client, with_model: Client, terminal: Path
) -> None:
    for side in (10, 5000, "big"):
        result = await looking.call_tool("describe_video", {"source": str(terminal), "frame_max_side": side})
        assert result.is_error
        assert "frame_max_side must be" in error_text(result), error_text(result)
    for frames, said in (("sheet", "a contact sheet keeps its own small tiles"), ("none", "this call returns none")):
        result = await with_model.call_tool(
            "describe_video", {"source": str(terminal), "return_frames": frames, "frame_max_side": 800}
        )
        assert result.is_error
        assert said in error_text(result)
        assert 'return_frames="frames"' in error_text(result)
    for asked in ({"return_frames": "frames"}, {"return_frames": "sheet"}, {"frame_max_side": 800}):
        result = await with_model.call_tool("describe_video", {"source": str(terminal), "coverage": "full"} | asked)
        assert result.is_error  # never a silent answer without the frames asked for
        assert 'coverage="full" answers from notes' in error_text(result), error_text(result)
        assert 'coverage="sampled"' in error_text(result)
    answered, found = await with_images(
        with_model,
        "describe_video",
        source=str(terminal),
        num_frames=2,
        return_frames="frames",
        frame_max_side=1280,
        **QUIET,
    )
    assert answered["answer"]
    assert pictures(found) == [(1280, 720)] * 2


async def test_a_still_image_is_read_again_from_its_file_upright(looking: Client, photo: Path) -> None:
    result, [image] = await with_images(looking, "describe_video", source=str(photo), frame_max_side=1000)
    assert result["videos"][0]["kind"] == "image"
    assert pictures([image]) == [(750, 1000)]  # 1200x1600 as displayed, to 1000 on the long side
    top, bottom = image.getpixel((375, 100)), image.getpixel((375, 900))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    assert (top[2] > 150 > top[0], bottom[0] > 150 > bottom[2]) == (True, True)  # turned by its EXIF: blue on top
    _, [small] = await with_images(looking, "describe_video", source=str(photo))
    assert max(pictures([small])[0]) < 1000  # as the model took it, by default


# compare_videos and find_moments


async def test_compare_returns_each_sources_frames_at_the_side(looking: Client, terminal: Path, photo: Path) -> None:
    result, found = await with_images(
        looking,
        "compare_videos",
        sources=[str(terminal), str(photo)],
        question="Same?",
        frames_per_video=2,
        frame_max_side=1200,
        **QUIET,
    )
    assert [len(video.get("frames") or []) for video in result["videos"]] == [2, 0]
    assert pictures(found) == [(1200, 675), (1200, 675), (900, 1200)]


async def test_find_moments_returns_the_moments_frames_at_the_side(with_model: Client, terminal: Path) -> None:
    result, found = await with_images(
        with_model,
        "find_moments",
        source=str(terminal),
        query="the terminal",
        max_moments=1,
        return_frames="frames",
        frame_max_side=1280,
    )
    frames = [time for moment in result["moments"] for time in moment["frames"]]
    assert frames
    assert pictures(found) == [(1280, 720)] * len(frames)


async def test_find_moments_without_a_model_sizes_its_candidates(looking: Client, terminal: Path) -> None:
    result, found = await with_images(
        looking, "find_moments", source=str(terminal), query="the terminal", frame_max_side=640
    )
    assert len(found) == sum(len(moment["frames"]) for moment in result["moments"]) > 0
    assert set(pictures(found)) == {(640, 360)}


# The budget, and cancelling


def noise(seed: int, size: tuple[int, int]) -> Image.Image:
    """A picture JPEG cannot compress: about 1.5 MB at 1920x1080."""
    width, height = size
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_frames_over_the_byte_budget_are_made_smaller_alike_and_say_so(tmp_path: Path) -> None:
    frames = [SampledFrame(float(i), noise(i, (1920, 1080))) for i in range(4)]
    sized = AtSide(1920, None)
    sized.add_video(tmp_path / "unread.mp4", None, (1920, 1080), frames, [label(f.timestamp_s) for f in frames])
    shown = sized.shown()
    assert len(shown.images) == 4
    assert sum(len(data) for data in shown.images) <= IMAGES_MAX_BYTES
    widths = {Image.open(io.BytesIO(data)).width for data in shown.images}
    [width] = widths
    assert width < 1920
    assert shown.note is not None
    assert "frame_max_side=1920" in shown.note
    assert "fewer frames" in shown.note


def test_many_large_frames_are_made_smaller_as_they_come_not_held_whole_first(tmp_path: Path) -> None:
    frames = [SampledFrame(float(i), noise(i, (1920, 1080))) for i in range(14)]  # about 20 MB at 1920 px
    sized = AtSide(1920, None)
    sized.add_video(tmp_path / "unread.mp4", None, (1920, 1080), frames, [label(f.timestamp_s) for f in frames])
    shown = sized.shown()
    assert len(shown.images) == 14
    assert sum(len(data) for data in shown.images) <= IMAGES_MAX_BYTES
    widths = {Image.open(io.BytesIO(data)).width for data in shown.images}
    assert max(widths) - min(widths) <= 2  # alike, those made before the shrink and after it
    assert "at most" in (shown.note or "")


def test_a_cancelled_call_stops_before_decoding_again(terminal: Path) -> None:
    cancel = CancelToken()
    cancel.cancel()
    seen = sample_frames(terminal, 2, min_side=384).frames
    with pytest.raises(Cancelled):
        AtSide(1280, cancel).add_video(terminal, None, (1280, 720), seen, ["a", "b"])


def test_an_image_gone_damaged_since_the_model_took_it_is_returned_as_the_model_saw_it(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (1600, 1200), (20, 40, 200)).save(photo)
    picture = Image.new("RGB", (512, 384), (20, 40, 200))  # as the model took it
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)  # damaged on disk after that
    image = LocalImage(str(photo), photo, 1600, 1200, "png", None, from_cache=False, fetch_s=0.0)
    sized = AtSide(1200, None)
    sized.add_image(image, picture, "Image 1")
    shown = sized.shown()
    [data] = shown.images
    assert Image.open(io.BytesIO(data)).width == 512
    assert "could not be decoded again" in (shown.note or "")
