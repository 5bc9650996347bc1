"""One cache folder shared by several servers (two real processes here), a cached picture whose separate sound is
gone, and symbolic links planted in the cache: the entry another process reads is never evicted, one URL is
downloaded once, the sound is fetched again (or the picture answers with a note), and nothing is ever written
outside the cache."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.backends import Ready
from llava_video_mcp.tools.frames import media_duration
from llava_video_mcp.tools.media import VideoFetcher
from llava_video_mcp.tools.media.cache import entry_key
from tests.httpserver import LoopbackServer
from tests.media import with_sound
from tests.support import Served, call, describe, settings_for

pytestmark = pytest.mark.anyio

HOLDER = """
import sys
from pathlib import Path
from llava_video_mcp.tools.frames import media_duration
from llava_video_mcp.tools.media import VideoFetcher

fetcher = VideoFetcher(Path(sys.argv[1]), cache_max_bytes=int(sys.argv[3]), inspect=media_duration)
with fetcher.fetched(sys.argv[2]) as video:
    print(video.from_cache, video.cache_key, flush=True)
    sys.stdin.readline()
"""
"""A second server's part: fetch a URL into the shared cache, say so, and hold it until told to stop."""


@pytest.fixture
def site(tmp_path: Path, h264_mp4: Path) -> Iterator[LoopbackServer]:
    root = tmp_path / "www"
    root.mkdir()
    for name in ("clip.mp4", "b.mp4", "c.mp4"):
        (root / name).write_bytes(h264_mp4.read_bytes())
    server = LoopbackServer(root)
    with server.running():
        yield server


@contextmanager
def second_server(cache: Path, url: str, cap: int) -> Iterator[subprocess.Popen[str]]:
    """A second process on the same cache folder, holding `url`'s entry; killed (as a crash would) at the end."""
    command = [sys.executable, "-c", HOLDER, str(cache), url, str(cap)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        try:
            yield holder
        finally:
            holder.kill()
            holder.wait(timeout=30)


def said(holder: subprocess.Popen[str], timeout_s: float = 120) -> list[str]:
    """The holder's line saying it holds its entry (bounded: a holder that never gets there fails the test)."""
    assert holder.stdout is not None
    ready, _, _ = select.select([holder.stdout], [], [], timeout_s)
    assert ready, "the second process never said it holds the entry"
    line = holder.stdout.readline()
    assert line, f"the second process ended (exit {holder.wait(timeout=10)})"
    return line.split()


def entries(cache: Path) -> set[str]:
    return {p.name for p in (cache / "videos").glob("[!.]*")}


def key_of(fetcher: VideoFetcher, url: str) -> str:
    with fetcher.fetched(url) as video:
        assert video.cache_key is not None
        return video.cache_key


def test_an_entry_another_process_reads_is_not_evicted(tmp_path: Path, site: LoopbackServer) -> None:
    cache = tmp_path / "cache"
    cap = int((site.root / "clip.mp4").stat().st_size * 1.5)  # one video fits
    fetcher = VideoFetcher(cache, cache_max_bytes=cap, inspect=media_duration)
    held = key_of(fetcher, site.url("clip.mp4"))
    with second_server(cache, site.url("clip.mp4"), cap) as holder:
        assert said(holder) == ["True", held]  # a cache hit in the other process, held there
        second = key_of(fetcher, site.url("b.mp4"))  # past the cap: the held entry is the least recently used
        assert entries(cache) == {held, second}
        third = key_of(fetcher, site.url("c.mp4"))
        assert entries(cache) == {held, third}  # what nobody holds went; what the other process holds stayed
    fetcher.cache.evict()  # the other process was killed: its hold went with it
    assert entries(cache) == {third}


def test_two_processes_asking_for_one_url_download_it_once(tmp_path: Path, site: LoopbackServer) -> None:
    cache = tmp_path / "cache"
    site.stall_s["/clip.mp4"] = 1.0  # the other process's download is under way when this one asks
    with second_server(cache, site.url("clip.mp4"), 2**30) as holder:
        site.wait_until(lambda: site.count("clip.mp4") >= 1)
        fetcher = VideoFetcher(cache, inspect=media_duration)
        with fetcher.fetched(site.url("clip.mp4")) as video:
            assert video.from_cache
        assert said(holder)[0] == "False"
    single = LoopbackServer(site.root)
    with single.running():
        VideoFetcher(tmp_path / "alone", inspect=media_duration).fetch(single.url("clip.mp4"))
    assert site.count("clip.mp4") == single.count("clip.mp4")


# A separate sound gone from the cache


def split_root(root: Path) -> Path:
    """HLS with a video-only variant and the sound as a separate rendition, as in test_speech."""
    root.mkdir()
    for segment in range(2):
        with_sound(root / f"v_{segment}.ts", seconds=15, sound="silence", start_s=15 * segment)
        with_sound(root / f"a_{segment}.ts", seconds=15, video=False, start_s=15 * segment)
    playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:15\n#EXT-X-MEDIA-SEQUENCE:0\n"
    for kind in ("v", "a"):
        (root / f"{kind}.m3u8").write_text(
            playlist + "".join(f"#EXTINF:15.0,\n{kind}_{i}.ts\n" for i in range(2)) + "#EXT-X-ENDLIST\n"
        )
    (root / "master.m3u8").write_text(
        '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",LANGUAGE="en",DEFAULT=YES,URI="a.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=64x48,CODECS="avc1.64001e",AUDIO="aud"\nv.m3u8\n'
    )
    return root


@pytest.fixture
async def hearing(tmp_path: Path, tiny_whisper: Path) -> AsyncIterator[tuple[Client, Served]]:
    state = Served(settings_for(tmp_path, tiny_whisper))
    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        yield client, state


def drop_sound(cache: Path) -> None:
    [sound] = (cache / "videos").glob("[!.]*/audio.*")
    sound.unlink()


async def test_a_sound_gone_from_the_cache_is_fetched_again(hearing: tuple[Client, Served], tmp_path: Path) -> None:
    client, state = hearing
    site = LoopbackServer(split_root(tmp_path / "www"))
    with site.running():
        await describe(client, state, source=site.url("master.m3u8"))
        drop_sound(tmp_path / "cache")
        again = await describe(client, state, source=site.url("master.m3u8"))
    assert again.videos[0].from_cache
    assert again.videos[0].transcript_source == "speech"
    assert site.count("a_0.ts") == 2  # the sound alone came again
    assert site.count("v_0.ts") == 1


async def test_a_sound_gone_while_the_site_is_down_answers_from_the_picture(
    hearing: tuple[Client, Served], tmp_path: Path
) -> None:
    client, state = hearing
    site = LoopbackServer(split_root(tmp_path / "www"))
    with site.running():
        first = await describe(client, state, source=site.url("master.m3u8"))
    drop_sound(tmp_path / "cache")
    for _ in range(2):  # every call answers, not only the first
        answer = await describe(client, state, source=site.url("master.m3u8"))
        video = answer.videos[0]
        assert video.from_cache
        assert answer.answer
        assert [f.timestamp_s for f in video.frames] == [f.timestamp_s for f in first.videos[0].frames]
        note = video.note or ""
        assert "the sound of this video" in note, note
        assert "is not in the cache" in note
        assert f"remove the cache entry {tmp_path / 'cache' / 'videos'}" in note


# Symbolic links planted in the cache


@pytest.fixture
async def client(tiny_model: Path, tmp_path: Path) -> AsyncIterator[Client]:
    settings = Settings(
        ocr_engine="none", model=str(tiny_model), device="cpu", dtype="float32", cache_dir=tmp_path / "cache"
    )
    async with Client(build_server(settings)) as connected:
        yield connected


def snapshot(folder: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every path under `folder` with its bytes (files) and modification time, links not followed."""
    seen: dict[str, tuple[bytes | None, int]] = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        body = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        seen[str(path.relative_to(folder))] = (body, info.st_mtime_ns)
    return seen


def plant(link: Path, target: Path) -> None:
    """Put a symbolic link at `link` (whatever was there goes) pointing to `target`."""
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        import shutil

        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


PLACES = [
    "entry folder",
    "video file",
    "meta file",
    "packet index",
    "notes folder",
    "in-use file",
    "alias",
    "videos folder",
    "aliases folder",
    "turn lock of the URL",
    "turn lock of the video",
    "staging folder",
    "locks folder",
]


@pytest.mark.parametrize("place", PLACES)
async def test_a_planted_link_is_never_written_through(
    client: Client, site: LoopbackServer, tmp_path: Path, place: str
) -> None:
    cache = tmp_path / "cache"
    url = site.url("clip.mp4")
    arguments: dict[str, Any] = {"source": url, "num_frames": 2, "max_new_tokens": 2}
    first = await call(client, "describe_video", **arguments)
    first_count = site.count("clip.mp4")
    [entry] = [p for p in (cache / "videos").glob("[!.]*")]
    outside = tmp_path / "outside"
    (outside / "entry").mkdir(parents=True)  # a copy of the entry: followed, the link would lead to a valid one
    for item in entry.iterdir():
        if item.is_file():
            (outside / "entry" / item.name).write_bytes(item.read_bytes())
    (outside / "file").write_bytes((outside / "entry" / "video.mp4").read_bytes())
    (outside / "folder").mkdir()
    missing = outside / "not-there"
    targets = {
        "entry folder": (entry, outside / "entry"),
        "video file": (entry / "video.mp4", outside / "file"),
        "meta file": (entry / "meta.json", outside / "entry" / "meta.json"),
        "packet index": (entry / "index.bin", outside / "file"),
        "notes folder": (entry / "notes", outside / "folder"),
        "in-use file": (entry / ".in-use", missing),
        "alias": (cache / "aliases" / entry_key(url), outside / "file"),
        "videos folder": (cache / "videos", outside / "folder"),
        "aliases folder": (cache / "aliases", outside / "folder"),
        "turn lock of the URL": (cache / "locks" / entry_key("url:" + url), missing),
        "turn lock of the video": (cache / "locks" / entry_key("key:" + entry.name), missing),
        "staging folder": (cache / "videos" / ".partial-planted", outside / "folder"),
        "locks folder": (cache / "locks", outside / "folder"),
    }
    link, target = targets[place]
    plant(link, target)
    before = snapshot(outside)
    again = await call(client, "describe_video", **arguments)
    watched = await call(client, "describe_video", **arguments, coverage="full")  # writes notes too
    assert snapshot(outside) == before  # nothing made, changed or removed outside the cache
    assert [f.timestamp_s for f in again.videos[0].frames] == [f.timestamp_s for f in first.videos[0].frames]
    assert watched.segments
    if link.parent == entry or link == entry:  # a link in an entry damages it: it is downloaded again, not read
        assert not again.videos[0].from_cache
        assert site.count("clip.mp4") == 2 * first_count
    # A planted staging folder is left for the next eviction pass or start; any other link is gone.
    assert not [p for p in cache.rglob("*") if (p.is_symlink() or p.name.startswith(".partial-")) and p != link]


async def test_a_link_planted_in_the_store_of_a_local_file_is_not_followed(
    client: Client, vp9_webm: Path, tmp_path: Path
) -> None:
    await call(client, "describe_video", source=str(vp9_webm), num_frames=2, max_new_tokens=1)
    [store] = (tmp_path / "cache" / "local").iterdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "index.bin").write_bytes(b"not an index")
    plant(store / "index.bin", outside / "index.bin")
    plant(store / "notes", outside)
    before = snapshot(outside)
    await call(client, "describe_video", source=str(vp9_webm), num_frames=3, max_new_tokens=1, coverage="full")
    assert snapshot(outside) == before
    plant(tmp_path / "cache" / "local", outside)
    answer = await call(client, "describe_video", source=str(vp9_webm), num_frames=2, max_new_tokens=1)
    assert len(answer.videos[0].frames) == 2
    assert snapshot(outside) == before
    assert not (tmp_path / "cache" / "local").is_symlink()


async def test_a_server_starting_on_a_planted_videos_link_cleans_nothing_outside(
    tiny_model: Path, site: LoopbackServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / ".partial-someone-elses").mkdir(parents=True)  # looks like abandoned staging, is not the cache's
    (outside / ".partial-someone-elses" / "work").write_text("kept")
    before = snapshot(outside)
    plant(tmp_path / "cache" / "videos", outside)
    settings = Settings(
        ocr_engine="none", model=str(tiny_model), device="cpu", dtype="float32", cache_dir=tmp_path / "cache"
    )
    async with Client(build_server(settings)) as started:
        answer = await call(started, "describe_video", source=site.url("clip.mp4"), num_frames=1, max_new_tokens=1)
    assert len(answer.videos[0].frames) == 1
    assert snapshot(outside) == before
    assert not (tmp_path / "cache" / "videos").is_symlink()
