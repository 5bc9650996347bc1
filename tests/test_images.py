"""Still images as sources: told apart from videos by their content, fetched from folders and URLs under the guards
videos get (allowed folders, private URLs, the download limits, the cache), prepared for the model as video frames
are; and hostile images (a decompression bomb, files cut short, a GIF of 10,000 frames, documents and text posing as
images, a body that never ends), each a clear error with the server still serving.

The fetcher takes images where the frames stage reads them (`inspect_image=image_facts`, as the server wires it);
through the MCP client describe_video answers about a readable image, and a hostile one is refused for what is wrong
with it (how an image reaches the model beside videos: tests/test_images_prompt.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp import Client
from PIL import Image

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError, LimitError, SourceError, VideoToolError
from llava_video_mcp.tools.frames import image_for_model, media_duration
from llava_video_mcp.tools.media import FetchPolicy, LocalImage, LocalVideo, VideoFetcher
from tests.httpserver import LoopbackServer
from tests.images import (
    BLUE,
    HOSTILE,
    RED,
    entries,
    fetcher_for,
    hostile_file,
    image_bytes,
    many_frames_gif,
    near,
    noise_bytes,
    png_bomb,
)
from tests.support import call, error_text


@pytest.mark.parametrize(
    ("kind", "name"),
    [("PNG", "photo.jpg"), ("JPEG", "scan.png"), ("WEBP", "clip.mp4"), ("GIF", "picture")],
)
def test_an_image_is_told_by_its_content_and_prepared_as_frames_are(tmp_path: Path, kind: str, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(image_bytes(kind))
    image = fetcher_for(tmp_path / "cache").fetch_media(str(path))
    assert isinstance(image, LocalImage)
    assert (image.source, image.path, image.format) == (str(path), path.resolve(), kind.lower())
    assert (image.width, image.height, image.animated) == (640, 480, False)
    model_image = image_for_model(image)
    assert (model_image.mode, model_image.size) == ("RGB", (512, 384))  # the shorter side at 384, as video frames
    assert near(model_image.getpixel((256, 192)), RED)
    assert image_for_model(image, min_side=1000).size == (640, 480)  # never scaled up


def test_a_video_named_as_an_image_is_a_video(tmp_path: Path, h264_mp4: Path) -> None:
    path = tmp_path / "still.png"
    path.write_bytes(h264_mp4.read_bytes())
    assert isinstance(fetcher_for(tmp_path / "cache").fetch_media(str(path)), LocalVideo)


def test_the_exif_orientation_turns_a_photo_upright(tmp_path: Path) -> None:
    # Stored 640x480, left half red and right half blue, with "turn 90 degrees clockwise to show" (orientation 6):
    # shown 480x640, red on top.
    stored = Image.new("RGB", (640, 480), BLUE)
    stored.paste(Image.new("RGB", (320, 480), RED))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "portrait.jpg"
    stored.save(path, exif=exif, quality=95)
    image = fetcher_for(tmp_path / "cache").fetch_media(str(path))
    assert isinstance(image, LocalImage)
    assert (image.width, image.height) == (480, 640)
    model_image = image_for_model(image)
    assert model_image.size == (384, 512)
    assert near(model_image.getpixel((192, 100)), RED, 30)
    assert near(model_image.getpixel((192, 412)), BLUE, 30)


def test_transparent_parts_are_laid_over_white(tmp_path: Path) -> None:
    path = tmp_path / "logo.png"
    logo = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    logo.paste(Image.new("RGBA", (100, 100), (*RED, 255)))
    logo.save(path)
    image = fetcher_for(tmp_path / "cache").fetch_media(str(path))
    assert isinstance(image, LocalImage)
    model_image = image_for_model(image)
    assert near(model_image.getpixel((50, 50)), RED)
    assert model_image.getpixel((150, 50)) == (255, 255, 255)


def test_a_gif_of_10000_frames_gives_its_first(tmp_path: Path) -> None:
    path = tmp_path / "many.gif"
    path.write_bytes(many_frames_gif())
    image = fetcher_for(tmp_path / "cache").fetch_media(str(path))
    assert isinstance(image, LocalImage)
    assert (image.format, image.width, image.height, image.animated) == ("gif", 32, 24, True)
    assert near(image_for_model(image).getpixel((16, 12)), RED)


def test_a_call_that_takes_videos_only_refuses_an_image(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes("PNG"))
    fetcher = fetcher_for(tmp_path / "cache")
    with pytest.raises(DecodeError, match=r"photo.png is a still image \(png\), not a video. Pass a video file."):
        fetcher.fetch(str(path))
    with pytest.raises(DecodeError, match="still image"), fetcher.fetched(str(path)):
        pass
    # As today's server has it (no image reader given): refused by the video reader, with the same words.
    with pytest.raises(DecodeError, match=r"photo.png is a still image \(png\), not a video"):
        VideoFetcher(tmp_path / "cache", inspect=media_duration).fetch(str(path))


def test_an_image_outside_the_allowed_folders_is_refused(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "photo.png").write_bytes(image_bytes("PNG"))
    (allowed / "photo.png").write_bytes(image_bytes("PNG"))
    fetcher = fetcher_for(tmp_path / "cache", FetchPolicy(allowed_dirs=(allowed,)))
    with pytest.raises(SourceError, match="is outside the folders this server may read"):
        fetcher.fetch_media(str(outside / "photo.png"))
    with pytest.raises(SourceError, match="is outside the folders this server may read"):
        fetcher.fetch_media(str(allowed / ".." / "outside" / "photo.png"))
    assert isinstance(fetcher.fetch_media(str(allowed / "photo.png")), LocalImage)


# Images from URLs


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LoopbackServer]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "photo.png").write_bytes(image_bytes("PNG", colour=BLUE))
    (root / "picture").write_bytes(image_bytes("JPEG"))  # no name to tell what it is
    (root / "noise.png").write_bytes(noise_bytes("PNG"))
    (root / "cut.png").write_bytes(noise_bytes("PNG")[:20_000])  # served whole: the file itself is cut short
    (root / "bomb.png").write_bytes(png_bomb())
    server = LoopbackServer(root)
    server.endless["/forever.png"] = "image/png"
    with server.running():
        yield server


def test_an_image_url_is_downloaded_once_and_kept(tmp_path: Path, site: LoopbackServer) -> None:
    with fetcher_for(tmp_path / "cache").fetched_media(site.url("photo.png")) as first:
        assert isinstance(first, LocalImage)
        assert (first.format, first.width, first.height, first.from_cache) == ("png", 640, 480, False)
        assert first.cache_key is not None
        assert near(image_for_model(first).getpixel((10, 10)), BLUE)
    requests = site.count("photo.png")
    again = fetcher_for(tmp_path / "cache").fetch_media(site.url("photo.png"))
    assert isinstance(again, LocalImage)
    assert (again.path, again.format, again.width, again.height, again.from_cache) == (
        first.path,
        "png",
        640,
        480,
        True,
    )
    assert site.count("photo.png") == requests  # asked again, the network is not touched

    unnamed = fetcher_for(tmp_path / "cache").fetch_media(site.url("picture"))
    assert isinstance(unnamed, LocalImage)
    assert unnamed.format == "jpeg"


def test_an_image_downloaded_ahead_is_reported_as_downloaded(tmp_path: Path, site: LoopbackServer) -> None:
    fetcher = fetcher_for(tmp_path / "cache")
    token = CancelToken()
    took = fetcher.download(site.url("photo.png"), cancel=token)
    assert took is not None  # the seconds the download took, for the call's result
    with fetcher.fetched_media(site.url("photo.png"), cancel=token) as image:
        assert isinstance(image, LocalImage)
        assert image.from_cache
    assert fetcher.download(site.url("photo.png"), cancel=token) is None  # in the cache already


def test_a_video_call_refuses_an_image_url_and_a_later_image_call_finds_it_cached(
    tmp_path: Path, site: LoopbackServer
) -> None:
    fetcher = fetcher_for(tmp_path / "cache")
    with pytest.raises(DecodeError, match=r"photo.png is a still image \(png\), not a video"):
        fetcher.fetch(site.url("photo.png"))
    requests = site.count("photo.png")
    image = fetcher.fetch_media(site.url("photo.png"))
    assert isinstance(image, LocalImage)
    assert image.from_cache
    assert site.count("photo.png") == requests


def test_image_urls_meet_the_download_guards(tmp_path: Path, site: LoopbackServer) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(SourceError, match="not a public address"):
        fetcher_for(cache, FetchPolicy(block_private_urls=True)).fetch_media(site.url("photo.png"))
    with pytest.raises(LimitError, match=r"larger than the download limit of .* MB.*Raise --max-download-mb"):
        fetcher_for(cache, FetchPolicy(max_download_bytes=4096)).fetch_media(site.url("noise.png"))
    assert entries(cache) == []


def test_an_image_url_that_never_ends_is_stopped_at_the_download_limit(tmp_path: Path, site: LoopbackServer) -> None:
    policy = FetchPolicy(max_download_bytes=2**20, download_retries=0)
    with pytest.raises(LimitError, match=r"larger than the download limit of 1 MB \(counted as it arrived\)"):
        fetcher_for(tmp_path / "cache", policy).fetch_media(site.url("forever.png"))
    assert entries(tmp_path / "cache") == []
    assert isinstance(fetcher_for(tmp_path / "cache", policy).fetch_media(site.url("photo.png")), LocalImage)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("cut.png", DecodeError, r"/cut.png is a damaged or incomplete PNG image \(image file is truncated\)"),
        ("bomb.png", LimitError, r"/bomb.png declares a PNG image of 100000x100000 pixels"),
    ],
)
def test_a_hostile_image_download_is_refused_and_not_kept(
    tmp_path: Path, site: LoopbackServer, name: str, error: type[VideoToolError], message: str
) -> None:
    with pytest.raises(error, match=f"^http://127.0.0.1:{site.port}{message}"):
        fetcher_for(tmp_path / "cache").fetch_media(site.url(name))
    assert entries(tmp_path / "cache") == []


@pytest.mark.parametrize(("case", "name", "data", "error", "message"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_image_is_a_clear_error(
    tmp_path: Path, case: str, name: str, data: bytes | None, error: type[VideoToolError], message: str
) -> None:
    path = hostile_file(tmp_path, name, data)
    fetcher = fetcher_for(tmp_path / "cache")
    with pytest.raises(error, match=message):
        fetcher.fetch_media(str(path))
    good = tmp_path / "good.png"
    good.write_bytes(image_bytes("PNG"))
    assert isinstance(fetcher.fetch_media(str(good)), LocalImage)


# Through the MCP client: a readable image is answered, a hostile one is a clear error


@pytest.fixture
async def client(tiny_model: Path, tmp_path: Path) -> AsyncIterator[Client]:
    settings = Settings(
        ocr_engine="none",
        model=str(tiny_model),
        device="cpu",
        dtype="float32",
        cache_dir=tmp_path / "cache",
        max_download_mb=0.5,
        download_timeout_s=5,
        download_retries=0,
    )
    async with Client(build_server(settings)) as connected:
        yield connected


MCP_CASES = [(case[0], case[1], case[2], case[4]) for case in HOSTILE if not case[1].endswith(".gif")] + [
    # A GIF is read by the video tools as a video, as before (an animated one plays); what is left of one cut short
    # is watched.
    ("an image URL cut short", "URL:cut.png", None, r"/cut.png is a damaged or incomplete PNG image"),
    ("a bomb at a URL", "URL:bomb.png", None, r"/bomb.png declares a PNG image of 100000x100000 pixels"),
    ("an image URL that never ends", "URL:forever.png", None, r"larger than the download limit of 0.5 MB"),
]
READABLE = [
    ("a PNG", "photo.png", image_bytes("PNG")),
    ("a JPEG named .jpg", "photo.jpg", image_bytes("JPEG")),
    ("a WebP", "photo.webp", image_bytes("WEBP")),
    ("an image URL", "URL:photo.png", None),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("case", "name", "data", "message"), MCP_CASES, ids=[case[0] for case in MCP_CASES])
async def test_a_hostile_image_given_to_a_tool_is_a_tool_error_and_the_server_keeps_serving(
    client: Client,
    site: LoopbackServer,
    h264_mp4: Path,
    tmp_path: Path,
    case: str,
    name: str,
    data: bytes | None,
    message: str,
) -> None:
    source = site.url(name[4:]) if name.startswith("URL:") else str(hostile_file(tmp_path, name, data))
    result = await client.call_tool("describe_video", {"source": source, "num_frames": 2, "max_new_tokens": 2})
    assert result.is_error
    assert re.search(message, error_text(result)), error_text(result)
    good = await call(client, "describe_video", source=str(h264_mp4), num_frames=2, max_new_tokens=2)
    assert good.videos[0].frames is not None
    assert len(good.videos[0].frames) == 2


@pytest.mark.anyio
@pytest.mark.parametrize(("case", "name", "data"), READABLE, ids=[case[0] for case in READABLE])
async def test_describe_video_answers_about_an_image(
    client: Client, site: LoopbackServer, tmp_path: Path, case: str, name: str, data: bytes | None
) -> None:
    source = site.url(name[4:]) if name.startswith("URL:") else str(hostile_file(tmp_path, name, data))
    answer = await call(client, "describe_video", source=source, max_new_tokens=2)
    [seen] = answer.videos
    assert (seen.kind, seen.width, seen.height) == ("image", 640, 480)
    assert (seen.duration_s, seen.frames, seen.codec) == (None, None, None)
    assert answer.question.startswith("Describe this image")
