"""A damaged cache, through the real MCP client: a cached video cut short or changed on disk is fetched again, a
damaged packet index is made again, folders replaced by files give an error naming --cache-dir (or cost only a
time saver), and a call waiting for another call's download stops at once when cancelled."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.cancel import Cancelled, CancelToken
from llava_video_mcp.tools.files import write_whole
from llava_video_mcp.tools.frames import media_duration
from llava_video_mcp.tools.media import FetchPolicy, VideoFetcher
from tests.httpserver import LoopbackServer
from tests.support import call, error_text, wait_for_partial_download

pytestmark = pytest.mark.anyio


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def site(tmp_path: Path, h264_mp4: Path) -> Iterator[LoopbackServer]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "clip.mp4").write_bytes(h264_mp4.read_bytes())
    server = LoopbackServer(root)
    with server.running():
        yield server


@pytest.fixture
async def client(tiny_model: Path, cache: Path) -> AsyncIterator[Client]:
    settings = Settings(ocr_engine="none", model=str(tiny_model), device="cpu", dtype="float32", cache_dir=cache)
    async with Client(build_server(settings)) as connected:
        yield connected


def replace_with_file(folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("not a folder")


def staging_left(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.name.startswith(".partial-")]


def cached_video(cache: Path) -> Path:
    [video] = [p for p in (cache / "videos").glob("[!.]*/video.*")]
    return video


@pytest.mark.parametrize("damage", ["cut short", "changed in place"])
async def test_a_damaged_cached_video_is_fetched_again(
    client: Client, site: LoopbackServer, cache: Path, damage: str
) -> None:
    arguments = {"source": site.url("clip.mp4"), "num_frames": 2, "max_new_tokens": 2}
    first = await call(client, "describe_video", **arguments)
    assert not first.videos[0].from_cache
    video = cached_video(cache)
    data = video.read_bytes()
    if damage == "cut short":
        video.write_bytes(data[: len(data) // 2])
    else:
        video.write_bytes(data[:100] + bytes(len(data) - 100))
    again = await call(client, "describe_video", **arguments)
    assert not again.videos[0].from_cache  # fetched anew, not served as "not a readable video" forever
    assert [f.timestamp_s for f in again.videos[0].frames] == [f.timestamp_s for f in first.videos[0].frames]
    assert site.count("clip.mp4") >= 2
    assert cached_video(cache).read_bytes() == data


async def test_a_touched_but_intact_video_stays_cached(client: Client, site: LoopbackServer, cache: Path) -> None:
    arguments = {"source": site.url("clip.mp4"), "num_frames": 2, "max_new_tokens": 2}
    await call(client, "describe_video", **arguments)
    os.utime(cached_video(cache), ns=(0, 0))  # the file was touched, its bytes are the same
    again = await call(client, "describe_video", **arguments)
    assert again.videos[0].from_cache


async def test_a_damaged_packet_index_is_made_again(client: Client, vp9_webm: Path, cache: Path) -> None:
    await call(client, "describe_video", source=str(vp9_webm), num_frames=2, max_new_tokens=1)
    [index] = list((cache / "local").glob("*/index.bin"))
    whole = index.read_bytes()
    for frames, damaged in enumerate((whole[:10], whole[: len(whole) - 5], b"garbage"), start=3):
        index.write_bytes(damaged)
        again = await call(client, "describe_video", source=str(vp9_webm), num_frames=frames, max_new_tokens=1)
        assert len(again.videos[0].frames) == frames
        assert not again.videos[0].frames_from_cache  # sampled anew, from an index made again
        assert index.read_bytes() == whole


@pytest.mark.parametrize("folder", ["videos", "aliases"])
async def test_cache_folders_replaced_by_files_give_an_error_naming_the_flag(
    client: Client, site: LoopbackServer, cache: Path, folder: str
) -> None:
    replace_with_file(cache / folder)
    result = await client.call_tool("describe_video", {"source": site.url("clip.mp4"), "num_frames": 1})
    assert result.is_error
    text = error_text(result)
    assert "--cache-dir" in text, text
    assert "cannot be used" in text
    (cache / folder).unlink()
    fixed = await call(client, "describe_video", source=site.url("clip.mp4"), num_frames=1, max_new_tokens=1)
    assert len(fixed.videos[0].frames) == 1
    assert not staging_left(cache)


async def test_a_damaged_folder_for_local_files_costs_only_the_time_saver(
    client: Client, vp9_webm: Path, cache: Path
) -> None:
    replace_with_file(cache / "local")
    answer = await call(client, "describe_video", source=str(vp9_webm), num_frames=2, max_new_tokens=1)
    assert len(answer.videos[0].frames) == 2
    watched = await call(client, "describe_video", source=str(vp9_webm), num_frames=1, max_new_tokens=1,
                         coverage="full")  # fmt: skip
    assert watched.segments


def test_waiting_for_another_calls_download_stops_at_once(tmp_path: Path, site: LoopbackServer) -> None:
    site.drip["/slow.mp4"] = 0.002  # 200 KB a byte at a time: holds the turn for minutes, unless cancelled
    fetcher = VideoFetcher(tmp_path / "cache", FetchPolicy(download_deadline_s=120), inspect=media_duration)
    first, second = CancelToken(), CancelToken()
    outcomes: dict[str, BaseException | None] = {}

    def fetch(name: str, token: CancelToken) -> None:
        try:
            fetcher.fetch(site.url("slow.mp4"), cancel=token)
            outcomes[name] = None
        except BaseException as exc:
            outcomes[name] = exc

    downloading = threading.Thread(target=fetch, args=("first", first))
    downloading.start()
    wait_for_partial_download(tmp_path / "cache")
    waiting = threading.Thread(target=fetch, args=("second", second))
    waiting.start()
    try:
        cancelled_at = time.monotonic()
        second.cancel()
        waiting.join(timeout=10)
        assert not waiting.is_alive()
        assert time.monotonic() - cancelled_at < 2
        assert isinstance(outcomes["second"], Cancelled)
        assert downloading.is_alive()  # the first call's download goes on
    finally:
        first.cancel()
        downloading.join(timeout=30)
    assert isinstance(outcomes["first"], Cancelled)
    assert not list((tmp_path / "cache" / "videos").glob(".partial-*"))
    shutil.rmtree(tmp_path / "cache")


def test_a_kept_file_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    kept = tmp_path / "notes.json"
    write_whole(kept, "old")
    write_whole(kept, b"new")
    assert kept.read_text() == "new"
    (tmp_path / "taken").mkdir()
    with pytest.raises(IsADirectoryError):
        write_whole(tmp_path / "taken", "a folder stands there")  # the rename fails at the very end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json", "taken"]  # no part left behind
    assert kept.read_text() == "new"
