"""Hostile and broken media files, class by class: files that name other files (playlists, concat lists,
manifests), bombs by size, count, depth and aspect, display matrices that are no rotation, clocks that restart, and
files cut short. Each is a clear error or an honest answer, and a bomb costs at most a few hundred MB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llava_video_mcp.tools.errors import DecodeError, LimitError, VideoToolError
from llava_video_mcp.tools.frames import media_duration, orientation_from_matrix, probe, sample_frames
from tests.media import (
    encode_all,
    encode_video,
    joined_clips,
    moving_frame,
    png_video,
    reference_frames,
    rgb_frame,
    sample_count_bomb,
    with_display_matrix,
)

ONE = 1 << 16
W = 1 << 30
"""A display matrix's 16.16 fixed-point one, and its last entry's 2.30 one."""


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real video outside the folder the playlists are in: what a playlist must never make the server read."""
    folder = tmp_path_factory.mktemp("outside")
    return encode_video(folder / "secret.ts", seconds=2.0, fps=10)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def referencing_files(folder: Path, secret: Path) -> dict[str, Path]:
    """Every kind of file that names other files, each naming the secret video."""
    relative = "../" * len(folder.parts) + str(secret).lstrip("/")
    hls = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{}\n#EXT-X-ENDLIST\n"
    return {
        "hls with a file:// segment": write(folder / "a.m3u8", hls.format(secret.as_uri())),
        "hls with a ../ segment": write(folder / "b.m3u8", hls.format(relative)),
        "hls named .mp4": write(folder / "c.mp4", hls.format(secret.as_uri())),
        "live hls": write(folder / "d.m3u8", hls.format(secret).replace("#EXT-X-ENDLIST\n", "")),
        "plain m3u": write(folder / "e.m3u", f"{secret}\n"),
        "ffconcat list": write(folder / "f.ffconcat", f"ffconcat version 1.0\nfile '{secret}'\n"),
        "concat list": write(folder / "g.txt", f"file '{secret}'\n"),
        "dash manifest": write(
            folder / "h.mpd",
            '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"><Period><AdaptationSet>'
            f'<Representation id="1" bandwidth="1"><BaseURL>{secret.as_uri()}</BaseURL></Representation>'
            "</AdaptationSet></Period></MPD>",
        ),
        "master playlist listing itself": write(
            folder / "i.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=96x64\ni.m3u8\n"
        ),
    }


CASES = [
    "hls with a file:// segment",
    "hls with a ../ segment",
    "hls named .mp4",
    "live hls",
    "plain m3u",
    "ffconcat list",
    "concat list",
    "dash manifest",
    "master playlist listing itself",
]


@pytest.mark.parametrize("case", CASES)
def test_files_that_name_other_files_are_refused_unopened(case: str, tmp_path: Path, secret: Path) -> None:
    path = referencing_files(tmp_path, secret)[case]
    with pytest.raises(DecodeError) as refused:
        sample_frames(path, 2)
    message = str(refused.value)
    assert "names other files or URLs" in message or "format this server does not read" in message, message
    assert path.name in message


def peak_rss(call: str) -> tuple[str, float]:
    """Run `call` (Python, after importing the frames stage's surface) in a fresh process; what it printed (the
    error's message, or OK) and how much its peak memory grew, in MB."""
    code = f"""
import json, resource
from pathlib import Path
from llava_video_mcp.tools.frames import *
from llava_video_mcp.tools.errors import VideoToolError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    {call}
    outcome = "OK"
except VideoToolError as exc:
    outcome = type(exc).__name__ + ": " + str(exc)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps([outcome, grown]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    outcome, grown = json.loads(done.stdout.strip().splitlines()[-1])
    return str(outcome), float(grown)


def test_a_file_declaring_millions_of_frames_is_refused_before_its_index_is_built(tmp_path: Path) -> None:
    one_frame = encode_video(tmp_path / "one.mp4", seconds=0.1, fps=10, width=16, height=16, bframes=False)
    bomb = sample_count_bomb(one_frame, tmp_path / "bomb.mp4")
    assert bomb.stat().st_size < 2000
    outcome, grown = peak_rss(f"sample_frames(Path({str(bomb)!r}), 4)")
    assert outcome.startswith("DecodeError: bomb.mp4 declares 20,000,000 samples"), outcome
    assert grown < 100


@pytest.mark.parametrize(
    ("declared", "actual", "message"),
    [
        ((64, 64), (16000, 16000), "no frame size could be read"),  # the container lies: the decoder refuses
        ((16000, 16000), (16000, 16000), "no frame size could be read"),
        ((5000, 5000), (5000, 5000), "MB each decoded"),  # under the pixel cap, but 16-bit RGBA: 191 MB a frame
    ],
)
def test_frame_bombs_cost_little_and_say_why(
    tmp_path: Path, declared: tuple[int, int], actual: tuple[int, int], message: str
) -> None:
    bomb = png_video(tmp_path / "frames.mov", declared=declared, actual=actual)
    assert bomb.stat().st_size < 20_000
    outcome, grown = peak_rss(f"sample_frames(Path({str(bomb)!r}), 3)")
    assert outcome.startswith(("DecodeError", "LimitError")), outcome
    assert message in outcome, outcome
    assert grown < 300


def test_an_extreme_aspect_ratio_is_refused(tmp_path: Path) -> None:
    sliver = png_video(tmp_path / "sliver.mov", declared=(2, 4000), actual=(2, 4000))
    with pytest.raises(LimitError, match=r"2x4000 pixels, an aspect ratio beyond 10:1"):
        sample_frames(sliver, 2)


def white_block_corner(image: np.ndarray) -> str:
    """Which corner of the upright frame holds the white block: top-left, top-right, bottom-left, bottom-right."""
    height, width = image.shape[:2]
    quarters = {
        "top-left": image[: height // 3, : width // 3],
        "top-right": image[: height // 3, -width // 3 :],
        "bottom-left": image[-height // 3 :, : width // 3],
        "bottom-right": image[-height // 3 :, -width // 3 :],
    }
    return max(quarters, key=lambda corner: float(quarters[corner].mean()))


@pytest.mark.parametrize(
    ("case", "matrix", "size", "corner"),
    [
        ("none", [ONE, 0, 0, 0, ONE, 0, 0, 0, W], (32, 16), "top-left"),
        ("rotated 90 counter-clockwise", [0, -ONE, 0, ONE, 0, 0, 0, 0, W], (16, 32), "bottom-left"),
        ("rotated 180", [-ONE, 0, 0, 0, -ONE, 0, 0, 0, W], (32, 16), "bottom-right"),
        ("mirrored left to right", [-ONE, 0, 0, 0, ONE, 0, 0, 0, W], (32, 16), "top-right"),
        ("mirrored top to bottom", [ONE, 0, 0, 0, -ONE, 0, 0, 0, W], (32, 16), "bottom-left"),
        ("all zeros: no change", [0] * 9, (32, 16), "top-left"),
    ],
)
def test_display_matrices_turn_frames_as_players_do(
    tmp_path: Path, case: str, matrix: list[int], size: tuple[int, int], corner: str
) -> None:
    video = with_display_matrix(tmp_path / "m.mp4", matrix)
    sampled = sample_frames(video, 1)
    [frame] = sampled.frames
    assert frame.image.size == size, case
    assert (sampled.info.width, sampled.info.height) == size
    assert white_block_corner(np.asarray(frame.image)) == corner, case
    assert sampled.info.mirrored == case.startswith("mirrored")


def test_matrix_reading_follows_ffmpegs_command_line() -> None:
    assert orientation_from_matrix([0, -ONE, 0, ONE, 0, 0, 0, 0, W]).rotation == 90
    assert orientation_from_matrix([0, ONE, 0, -ONE, 0, 0, 0, 0, W]).rotation == 270
    mirror = orientation_from_matrix([-ONE, 0, 0, 0, ONE, 0, 0, 0, W])
    assert (mirror.rotation, mirror.mirrored) == (0, True)
    assert orientation_from_matrix([0] * 9) == orientation_from_matrix([ONE, 0, 0, 0, ONE, 0, 0, 0, W])


def test_clips_joined_with_restarting_clocks_are_placed_end_to_end(tmp_path: Path) -> None:
    joined = joined_clips(tmp_path / "joined.ts", tmp_path)
    info = probe(joined)
    assert info.duration_s == pytest.approx(4.0)
    assert info.restarts_s == pytest.approx((2.0,))
    sampled = sample_frames(joined, 2, start_s=2.5, end_s=3.5)
    assert [f.timestamp_s for f in sampled.frames] == pytest.approx([2.7, 3.2])
    assert sampled.note is not None
    assert "timestamps start again at 2.00 s" in sampled.note
    # The frame shown at 2.7 s is the second clip's frame at 0.7 s, not the first clip's.
    second = reference_frames(tmp_path / "second.ts")
    _, expected = min(second, key=lambda item: abs(item[0] - 0.7))
    got = np.asarray(sampled.frames[0].image, dtype=int)
    assert np.abs(got - expected.to_ndarray(format="rgb24").astype(int)).mean() < 8
    first_clip_frame = moving_frame(7, 96, 64).astype(int)
    assert np.abs(got - first_clip_frame).mean() > 20


@pytest.fixture
def cut_short(tmp_path: Path) -> Path:
    """A 4 s mp4 with its index in front (as streaming sites serve them), cut at 60% of its bytes."""
    import av

    whole = encode_video(tmp_path / "whole.mp4", seconds=4.0, fps=10)
    front = tmp_path / "front.mp4"
    with av.open(str(whole)) as source, av.open(str(front), "w", options={"movflags": "faststart"}) as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    data = front.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    return cut


def test_a_file_cut_short_is_named_damaged_not_the_range(cut_short: Path) -> None:
    sampled = sample_frames(cut_short, 4)
    assert sampled.note is not None
    assert "header says it lasts 4.0 s" in sampled.note
    assert max(f.timestamp_s for f in sampled.frames) < 2.5
    with pytest.raises(DecodeError, match=r"damaged or was partly downloaded.*range asked for \(0-3.5 s\)"):
        sample_frames(cut_short, 4, end_s=3.5)


def test_every_refusal_is_a_tool_error_class(tmp_path: Path, secret: Path) -> None:
    """Whatever the file, the sampler raises one of the errors the tools turn into clear messages."""
    files = list(referencing_files(tmp_path, secret).values())
    files.append(png_video(tmp_path / "lying.mov", declared=(64, 64), actual=(16000, 16000)))
    for path in files:
        with pytest.raises(VideoToolError):
            sample_frames(path, 2)


def test_the_duration_limit_holds_when_the_header_states_none(tmp_path: Path) -> None:
    import av

    from llava_video_mcp.tools.media import FetchPolicy, VideoFetcher

    live = tmp_path / "live.mkv"  # written as a live stream: no duration in its header, no index
    with av.open(str(live), "w", format="matroska", options={"live": "1"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        encode_all(container, stream, (rgb_frame(moving_frame(i, 96, 64), i) for i in range(30)))
    with av.open(str(live)) as opened:
        assert opened.duration is None
    fetcher = VideoFetcher(tmp_path / "cache", FetchPolicy(max_duration_s=2), inspect=media_duration)
    with pytest.raises(LimitError, match=r"lasts 3 s, over the limit of 2 s"):
        fetcher.fetch(str(live))
