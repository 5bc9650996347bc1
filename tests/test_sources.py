"""Sources: local paths in place, URLs through the real yt-dlp from a server on 127.0.0.1, into the cache."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from llava_video_mcp.tools.errors import DownloadError, SourceError
from llava_video_mcp.tools.frames import media_duration, probe
from llava_video_mcp.tools.media import VideoFetcher
from tests.httpserver import LoopbackServer


def cache_entries(cache: Path) -> list[str]:
    videos = cache / "videos"
    return sorted(p.name for p in videos.iterdir()) if videos.exists() else []


def test_local_file_is_read_in_place(tmp_path: Path, h264_mp4: Path) -> None:
    video = VideoFetcher(tmp_path / "cache", inspect=media_duration).fetch(str(h264_mp4))
    assert video.path == h264_mp4
    assert video.title == "clip.mp4"
    assert not (tmp_path / "cache").exists()


def test_file_url_is_a_local_file(tmp_path: Path, h264_mp4: Path) -> None:
    video = VideoFetcher(tmp_path, inspect=media_duration).fetch(h264_mp4.as_uri())
    assert video.path == h264_mp4


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"No file at .*nope\.mp4\. Pass the absolute path"):
        VideoFetcher(tmp_path, inspect=media_duration).fetch(str(tmp_path / "nope.mp4"))


def test_folder_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is not a file"):
        VideoFetcher(tmp_path, inspect=media_duration).fetch(str(tmp_path))


@pytest.mark.parametrize("source", ["ftp://example.invalid/a.mp4", "   "])
def test_unusable_source_text(tmp_path: Path, source: str) -> None:
    with pytest.raises(SourceError):
        VideoFetcher(tmp_path, inspect=media_duration).fetch(source)


def test_url_is_downloaded_once_then_served_from_cache(tmp_path: Path, http_server: LoopbackServer) -> None:
    fetcher = VideoFetcher(tmp_path / "cache", inspect=media_duration)
    first = fetcher.fetch(http_server.url("clip.mp4"))
    assert not first.from_cache
    assert first.path.is_file()
    assert probe(first.path).codec == "h264"
    requests_after_first = sum(http_server.requests.values())
    assert requests_after_first >= 1

    second = VideoFetcher(tmp_path / "cache", inspect=media_duration).fetch(http_server.url("clip.mp4"))
    assert second.from_cache
    assert second.path == first.path
    assert sum(http_server.requests.values()) == requests_after_first
    assert len(cache_entries(tmp_path / "cache")) == 1


def test_webm_url(tmp_path: Path, http_server: LoopbackServer) -> None:
    video = VideoFetcher(tmp_path, inspect=media_duration).fetch(http_server.url("clip.webm"))
    assert video.path.suffix == ".webm"
    assert probe(video.path).codec == "vp9"


def test_http_404_is_named(tmp_path: Path, http_server: LoopbackServer) -> None:
    with pytest.raises(DownloadError, match=r"answered HTTP 404"):
        VideoFetcher(tmp_path / "cache", inspect=media_duration).fetch(http_server.url("missing.mp4"))
    assert cache_entries(tmp_path / "cache") == []


def test_page_without_video_is_unsupported(tmp_path: Path, http_server: LoopbackServer) -> None:
    with pytest.raises(DownloadError, match="No video found at"):
        VideoFetcher(tmp_path / "cache", inspect=media_duration).fetch(http_server.url("page.html"))
    assert cache_entries(tmp_path / "cache") == []


def test_unreachable_host(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nothing listens there
    with pytest.raises(DownloadError, match=r"Could not reach 127\.0\.0\.1"):
        VideoFetcher(tmp_path / "cache", inspect=media_duration).fetch(f"http://127.0.0.1:{port}/clip.mp4")


def test_dropped_connection_leaves_nothing_in_the_cache(tmp_path: Path, http_server: LoopbackServer) -> None:
    fetcher = VideoFetcher(tmp_path / "cache", inspect=media_duration)
    with pytest.raises(DownloadError, match=r"dropped before .*cut\.mp4 was complete \(got \d+ of \d+ bytes\)"):
        fetcher.fetch(http_server.url("cut.mp4"))
    assert cache_entries(tmp_path / "cache") == []
    http_server.truncate.clear()
    video = fetcher.fetch(http_server.url("cut.mp4"))
    assert not video.from_cache
    assert probe(video.path).frame_count == 30
