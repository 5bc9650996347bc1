"""Fetching that holds up: the cache, limits, cookies, HLS variants, subtitles and the safety rules, with the real
yt-dlp against a server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yt_dlp

from llava_video_mcp.tools.errors import DownloadError, LimitError, SourceError
from llava_video_mcp.tools.frames import media_duration, probe
from llava_video_mcp.tools.media import FetchPolicy, Needs, VideoFetcher, netguard
from llava_video_mcp.tools.media.sources import find_sidecar
from llava_video_mcp.tools.media.ytdlp import DownloadOptions, explain
from llava_video_mcp.tools.prompt import bounded, parse_subtitles
from llava_video_mcp.tools.timeline import in_range
from tests.httpserver import LoopbackServer
from tests.media import encode_video
from tests.support import VTT


@pytest.fixture(scope="session")
def site_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    encode_video(root / "clip.mp4")
    encode_video(root / "other.mp4", seconds=2.0)
    (root / "clip.en.vtt").write_text(VTT)
    variants = {"v240": (426, 240, 200_000), "v480": (854, 480, 600_000), "v720": (1280, 720, 1_200_000)}
    master = "#EXTM3U\n"
    for name, (width, height, bandwidth) in variants.items():
        for segment in range(2):
            encode_video(
                root / f"{name}_{segment}.ts", width=width, height=height, seconds=1.0, start_s=segment, gop=10
            )
        (root / f"{name}.m3u8").write_text(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
            + "".join(f"#EXTINF:1.0,\n{name}_{i}.ts\n" for i in range(2))
            + "#EXT-X-ENDLIST\n"
        )
        master += f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={width}x{height},CODECS="avc1.64001e"\n'
        master += f"{name}.m3u8\n"
    (root / "master.m3u8").write_text(master)
    (root / "talk.html").write_text(
        "<html><head><title>A talk</title></head><body><video controls>"
        '<source src="clip.mp4" type="video/mp4">'
        '<track kind="subtitles" src="clip.en.vtt" srclang="en" label="English"></video></body></html>'
    )
    return root


@pytest.fixture
def site(site_root: Path) -> Iterator[LoopbackServer]:
    server = LoopbackServer(site_root)
    with server.running():
        (site_root / "long.html").write_text(
            '<html><head><title>Long</title><script type="application/ld+json">'
            + json.dumps(
                {
                    "@context": "https://schema.org",
                    "@type": "VideoObject",
                    "name": "Long talk",
                    "contentUrl": server.url("clip.mp4"),
                    "duration": "PT4H",
                    "uploadDate": "2024-01-01",
                    "thumbnailUrl": server.url("thumb.jpg"),
                    "description": "A long talk",
                }
            )
            + "</script></head><body>talk</body></html>"
        )
        yield server


def entries(cache: Path) -> list[str]:
    videos = cache / "videos"
    return sorted(p.name for p in videos.iterdir()) if videos.exists() else []


# Cache


def test_a_cache_hit_needs_no_network(tmp_path: Path, site_root: Path) -> None:
    server = LoopbackServer(site_root)
    with server.running():
        url = server.url("clip.mp4")
        first = VideoFetcher(tmp_path, inspect=media_duration).fetch(url)
    # The server is gone: a second call must not need it, metadata included.
    second = VideoFetcher(tmp_path, inspect=media_duration).fetch(url)
    assert second.from_cache
    assert second.path == first.path


def test_concurrent_calls_download_once(tmp_path: Path, site: LoopbackServer) -> None:
    fetcher = VideoFetcher(tmp_path, inspect=media_duration)
    site.stall_s["/clip.mp4"] = 0.3
    results = []

    def fetch() -> None:
        video = fetcher.fetch(site.url("clip.mp4"))
        results.append(video.from_cache)
        fetcher.cache.release(video.cache_key or "")

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True, True]
    single = LoopbackServer(site.root)
    with single.running():
        VideoFetcher(tmp_path / "alone", inspect=media_duration).fetch(single.url("clip.mp4"))
    assert site.count("clip.mp4") == single.count("clip.mp4")


def test_eviction_keeps_the_cap_and_spares_files_in_use(tmp_path: Path, site: LoopbackServer) -> None:
    size = (site.root / "clip.mp4").stat().st_size
    fetcher = VideoFetcher(tmp_path, cache_max_bytes=int(size * 1.5), inspect=media_duration)
    with fetcher.fetched(site.url("clip.mp4")) as clip:
        fetcher.fetch(site.url("other.mp4"))  # over the cap, but clip.mp4 is in use
        assert clip.path.is_file()
        assert len(entries(tmp_path)) == 2
    fetcher.fetch(site.url("v240_0.ts"))
    assert not clip.path.exists()  # least recently used, and no longer in use
    assert len(entries(tmp_path)) == 2


# Limits


def test_duration_limit_is_checked_before_downloading(tmp_path: Path, site: LoopbackServer) -> None:
    fetcher = VideoFetcher(tmp_path, FetchPolicy(max_duration_s=3600), inspect=media_duration)
    with pytest.raises(LimitError, match=r"lasts 14400 s, over the limit of 3600 s\. Raise --max-duration-s"):
        fetcher.fetch(site.url("long.html"))
    # yt-dlp's extractor probes the linked file (headers and first bytes) to recognise it; a download would be a
    # second request.
    assert site.count("clip.mp4") == 1
    assert entries(tmp_path) == []


def test_duration_limit_from_the_container_when_the_site_says_nothing(tmp_path: Path, site: LoopbackServer) -> None:
    with pytest.raises(LimitError, match="lasts 3 s, over the limit of 2 s"):
        VideoFetcher(tmp_path, FetchPolicy(max_duration_s=2), inspect=media_duration).fetch(site.url("clip.mp4"))
    assert entries(tmp_path) == []
    with pytest.raises(LimitError, match="Raise --max-duration-s"):
        VideoFetcher(tmp_path, FetchPolicy(max_duration_s=2), inspect=media_duration).fetch(str(site.root / "clip.mp4"))


def test_download_size_limit(tmp_path: Path, site: LoopbackServer) -> None:
    fetcher = VideoFetcher(tmp_path, FetchPolicy(max_download_bytes=4096), inspect=media_duration)
    with pytest.raises(LimitError, match=r"larger than the download limit of 0.00390625 MB .*Raise --max-download-mb"):
        fetcher.fetch(site.url("clip.mp4"))
    assert entries(tmp_path) == []


def test_download_size_limit_counts_hls_fragments(tmp_path: Path, site: LoopbackServer) -> None:
    # A playlist states no size: only the bytes of the fragments as they arrive can stop it.
    fetcher = VideoFetcher(tmp_path, FetchPolicy(max_download_bytes=20_000), inspect=media_duration)
    with pytest.raises(LimitError, match=r"larger than the download limit of 0.0190735 MB \(counted as it arrived\)"):
        fetcher.fetch(site.url("master.m3u8"))
    assert entries(tmp_path) == []


def test_slow_server_times_out_with_the_flag_named(tmp_path: Path, site: LoopbackServer) -> None:
    site.stall_s["/clip.mp4"] = 3
    fetcher = VideoFetcher(tmp_path, FetchPolicy(download_timeout_s=0.5, download_retries=0), inspect=media_duration)
    with pytest.raises(DownloadError, match=r"did not answer within 0\.5 s.*--download-timeout-s"):
        fetcher.fetch(site.url("clip.mp4"))
    assert entries(tmp_path) == []


# Site realities


def test_hls_takes_the_smallest_variant_of_at_least_384_px(tmp_path: Path, site: LoopbackServer) -> None:
    video = VideoFetcher(tmp_path, inspect=media_duration).fetch(site.url("master.m3u8"))
    info = probe(video.path)
    assert (info.width, info.height) == (854, 480)
    assert site.count("v480_0.ts") == 1
    assert site.count("v240_0.ts") == site.count("v720_0.ts") == 0


def test_a_picture_to_read_text_in_is_720p_where_the_site_has_it(tmp_path: Path, site: LoopbackServer) -> None:
    video = VideoFetcher(tmp_path, inspect=media_duration).fetch(
        site.url("master.m3u8"), needs=Needs(readable_picture=True)
    )
    assert (probe(video.path).width, probe(video.path).height) == (1280, 720)
    assert site.count("v720_0.ts") == 1
    assert site.count("v240_0.ts") == site.count("v480_0.ts") == 0


def test_cookies_are_sent(tmp_path: Path, site: LoopbackServer) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tsecret-value\n")
    VideoFetcher(tmp_path / "cache", FetchPolicy(cookies=cookies), inspect=media_duration).fetch(site.url("clip.mp4"))
    assert any("session=secret-value" in h.get("Cookie", "") for h in site.headers["/clip.mp4"])


def test_forbidden_asks_for_cookies(tmp_path: Path, site: LoopbackServer) -> None:
    site.status["/private.mp4"] = 403
    with pytest.raises(DownloadError, match=r"HTTP 403 .* needs a login\. Start the server with --cookies FILE"):
        VideoFetcher(tmp_path, inspect=media_duration).fetch(site.url("private.mp4"))


@pytest.mark.parametrize(
    "message",
    [
        "Sign in to confirm you're not a bot. Use --cookies-from-browser or --cookies for the authentication.",
        "This video is age-restricted; some formats may be missing",
        "Private video. Sign in if you've been granted access to this video",
    ],
)
def test_login_walls_mention_cookies(message: str) -> None:
    error = yt_dlp.utils.DownloadError(
        f"ERROR: {message}", (yt_dlp.utils.ExtractorError, yt_dlp.utils.ExtractorError(message, expected=True), None)
    )
    explained = explain("https://video.example/watch?v=1", error, DownloadOptions())
    assert "--cookies FILE" in str(explained)


def test_site_subtitles_are_fetched_with_the_video(tmp_path: Path, site: LoopbackServer) -> None:
    video = VideoFetcher(tmp_path, inspect=media_duration).fetch(site.url("talk.html"))
    assert video.title == "A talk (1)" or video.title == "A talk"
    assert video.subtitles is not None
    assert [c.text for c in parse_subtitles(video.subtitles.read_text())] == ["Hello there", "Goodbye & thanks"]
    again = VideoFetcher(tmp_path, inspect=media_duration).fetch(site.url("talk.html"))
    assert again.from_cache
    assert again.subtitles == video.subtitles


def test_no_subtitles_when_turned_off(tmp_path: Path, site: LoopbackServer) -> None:
    video = VideoFetcher(tmp_path, inspect=media_duration).fetch(site.url("talk.html"), needs=Needs())
    assert video.subtitles is None
    assert site.count("clip.en.vtt") == 0


def test_subtitle_parsing_and_bounds() -> None:
    srt = "1\n00:00:01,000 --> 00:00:02,000\nOne\n\n2\n00:00:03,000 --> 00:00:04,500\nTwo\n"
    assert [(c.start_s, c.end_s, c.text) for c in parse_subtitles(srt)] == [(1.0, 2.0, "One"), (3.0, 4.5, "Two")]
    rolling = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nthe cat\n\n00:00:02.000 --> 00:00:03.000\nthe cat sat\n"
    assert [c.text for c in parse_subtitles(rolling)] == ["the cat sat"]
    cues = parse_subtitles(VTT)
    assert [c.text for c in in_range(cues, 1.6, 3.0)] == ["Goodbye & thanks"]
    many = parse_subtitles(
        "WEBVTT\n\n" + "".join(f"00:00:{i:02d}.000 --> 00:00:{i:02d}.900\nline {i}\n\n" for i in range(60))
    )
    kept = bounded(many, max_chars=200)
    assert sum(len(c.text) + 12 for c in kept) <= 200
    assert kept[0].text == "line 0"
    assert kept[-1].start_s > 40  # spread over the whole range, not just its start


def test_local_sidecar_subtitles(tmp_path: Path, site_root: Path) -> None:
    video = tmp_path / "lecture.mp4"
    video.write_bytes((site_root / "clip.mp4").read_bytes())
    assert find_sidecar(video, "en") is None
    (tmp_path / "lecture.en.vtt").write_text(VTT)
    assert (
        VideoFetcher(tmp_path / "cache", inspect=media_duration).fetch(str(video)).subtitles
        == tmp_path / "lecture.en.vtt"
    )


# Safety


def test_private_address_is_refused_before_any_request(tmp_path: Path, site: LoopbackServer) -> None:
    fetcher = VideoFetcher(tmp_path, FetchPolicy(block_private_urls=True), inspect=media_duration)
    with pytest.raises(SourceError, match=r"resolves to 127\.0\.0\.1, which is not a public address") as refused:
        fetcher.fetch(site.url("clip.mp4"))
    assert sum(site.requests.values()) == 0
    assert "--no-block-private-urls" in str(refused.value)  # the way to try it locally, both flags in one message
    assert "--allow-dir" in str(refused.value)


def test_redirect_to_a_private_address_is_refused(
    tmp_path: Path, site: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Named stand-in: no public host is reachable here, so 127.0.0.1 plays the public server and the redirect
    # goes to 127.0.0.2, which stays non-public. The guard checks the address of every connection made.
    monkeypatch.setattr(netguard, "is_public", lambda address: address == "127.0.0.1")
    site.redirects["/hop.mp4"] = f"http://127.0.0.2:{site.port}/clip.mp4"
    fetcher = VideoFetcher(tmp_path, FetchPolicy(block_private_urls=True, download_retries=0), inspect=media_duration)
    with pytest.raises(SourceError, match=r"led to non-public address 127\.0\.0\.2.*--no-block-private-urls"):
        fetcher.fetch(site.url("hop.mp4"))
    assert site.count("hop.mp4") == 1
    assert site.count("clip.mp4") == 0
    assert entries(tmp_path) == []


def test_redirects_are_followed_when_allowed(tmp_path: Path, site: LoopbackServer) -> None:
    site.redirects["/a.mp4"] = "/b.mp4"
    site.redirects["/b.mp4"] = "/clip.mp4"
    video = VideoFetcher(tmp_path, inspect=media_duration).fetch(site.url("a.mp4"))
    assert probe(video.path).frame_count == 30


def test_allow_dir_refuses_escapes(tmp_path: Path, site_root: Path) -> None:
    allowed = tmp_path / "videos"
    allowed.mkdir()
    (allowed / "ok.mp4").write_bytes((site_root / "clip.mp4").read_bytes())
    (allowed / "link.mp4").symlink_to(site_root / "clip.mp4")
    fetcher = VideoFetcher(tmp_path / "cache", FetchPolicy(allowed_dirs=(allowed,)), inspect=media_duration)
    assert fetcher.fetch(str(allowed / "ok.mp4")).path == allowed / "ok.mp4"
    for escape in (allowed / "link.mp4", allowed / ".." / ".." / site_root.name / "clip.mp4"):
        with pytest.raises(SourceError, match=r"outside the folders this server may read .*--allow-dir"):
            fetcher.fetch(str(escape))


def test_local_files_off(tmp_path: Path, site_root: Path) -> None:
    with pytest.raises(SourceError, match=r"Local files are off on this server.*--allow-dir FOLDER"):
        VideoFetcher(tmp_path, FetchPolicy(local_files=False), inspect=media_duration).fetch(
            str(site_root / "clip.mp4")
        )


@pytest.mark.parametrize("source", ["-v", "--exec=touch /tmp/pwned", "-o/tmp/x"])
def test_dash_arguments_are_only_paths(tmp_path: Path, source: str) -> None:
    with pytest.raises(SourceError, match="No file at"):
        VideoFetcher(tmp_path, inspect=media_duration).fetch(source)
    assert not Path("/tmp/pwned").exists()


def test_geo_restriction_is_named() -> None:
    cause = yt_dlp.utils.GeoRestrictedError("The uploader has not made this video available in your country.")
    error = yt_dlp.utils.DownloadError(f"ERROR: {cause}", (type(cause), cause, None))
    assert "not available from this server's country" in str(explain("https://v.example/1", error, DownloadOptions()))


def test_a_cut_connection_is_released_at_the_end_of_its_session() -> None:
    # A response object left unclosed (as yt-dlp may leave one when a transfer is cut) keeps its socket's descriptor
    # open after close(); close_all releases it at once instead of at garbage collection.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        watch = netguard.ConnectionWatch()
        with watch.watching():
            client = socket.create_connection(listener.getsockname())
        reader = client.makefile("rb")
        watch.cut("test")
        client.close()
        assert client.fileno() != -1  # the reader still holds it
        watch.close_all()
        assert client.fileno() == -1
        reader.close()
        listener.accept()[0].close()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata endpoints
        ("0.0.0.0", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("224.0.0.1", False),  # multicast
        ("255.255.255.255", False),
        ("::", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::7f00:1", False),  # IPv4-compatible
        ("fe80::1%eth0", False),  # link-local with a zone
        ("fc00::1", False),  # unique local
        ("ff02::1", False),  # multicast
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("2002:808:808::", True),  # 6to4 around 8.8.8.8
        # NAT64 (decided): the well-known prefix is judged by the IPv4 address it carries; the local-use prefix
        # translates into private networks by design and is refused.
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::a00:1", False),
        ("64:ff9b::808:808", True),
        ("64:ff9b:1::808:808", False),
    ],
)
def test_what_counts_as_a_public_address(address: str, public: bool) -> None:
    from llava_video_mcp.tools.media.netguard import is_public

    assert is_public(address) is public
