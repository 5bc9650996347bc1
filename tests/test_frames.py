"""The sampler against real files encoded by PyAV, checked against a plain sequential decode."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from llava_video_mcp.tools.errors import DecodeError, LimitError
from llava_video_mcp.tools.frames import (
    SampleCache,
    SamplingPlan,
    probe,
    sample_frames,
    to_model_image,
    uniform_targets,
)
from tests.media import encode_audio_only, encode_video, nearest_reference, reference_frames


def assert_exact(path: Path, num_frames: int, min_side: int = 384, **range_kwargs: float) -> None:
    sampled = sample_frames(path, num_frames, min_side=min_side, **range_kwargs)  # type: ignore[arg-type]
    reference = reference_frames(path)
    targets = uniform_targets(sampled.start_s, sampled.end_s, num_frames)
    expected = []
    for target in targets:
        t, frame = nearest_reference(reference, target)
        if not expected or expected[-1][0] != t:
            expected.append((t, frame))
    assert [round(f.timestamp_s, 6) for f in sampled.frames] == [round(t, 6) for t, _ in expected]
    for got, (_, frame) in zip(sampled.frames, expected, strict=True):
        want = to_model_image(frame, min_side)
        assert got.image.size == want.size
        assert np.array_equal(np.asarray(got.image), np.asarray(want))


@pytest.mark.parametrize("fixture", ["h264_mp4", "vp9_webm"])
@pytest.mark.parametrize("num_frames", [1, 4, 8])
def test_frames_match_sequential_decode(fixture: str, num_frames: int, request: pytest.FixtureRequest) -> None:
    assert_exact(request.getfixturevalue(fixture), num_frames)


@pytest.mark.parametrize("name", ["clip.ts", "clip.mkv", "clip.mov"])
def test_other_containers(tmp_path: Path, name: str) -> None:
    assert_exact(encode_video(tmp_path / name), 5)


@pytest.mark.parametrize("fixture", ["h264_mp4", "vp9_webm"])
def test_seeking_and_sequential_decoding_agree(fixture: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    seeking = sample_frames(path, 5)
    sequential = sample_frames(path, 5, strategy="sequential")
    assert [f.timestamp_s for f in seeking.frames] == [f.timestamp_s for f in sequential.frames]
    for a, b in zip(seeking.frames, sequential.frames, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert seeking.frames_decoded < sequential.frames_decoded


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("ten_bit.mp4", {"pixel_format": "yuv420p10le"}),
        ("four_two_two.mp4", {"pixel_format": "yuv422p"}),
        ("odd_size.mp4", {"pixel_format": "yuv444p", "width": 97, "height": 65}),
        ("odd_size.webm", {"codec": "libvpx-vp9", "width": 97, "height": 65}),
        ("hevc.mp4", {"codec": "libx265"}),
        ("av1.mkv", {"codec": "libsvtav1", "width": 128, "height": 64}),
        ("audio_first.mkv", {"audio_first": True}),
        ("audio_first.mp4", {"audio_first": True}),
    ],
)
def test_real_world_formats_are_exact(tmp_path: Path, name: str, options: dict[str, Any]) -> None:
    path = encode_video(tmp_path / name, **options)
    assert_exact(path, 4)
    assert_exact(path, 7, start_s=0.5, end_s=2.5)
    info = sample_frames(path, 1).info
    assert (info.width, info.height) == (options.get("width", 96), options.get("height", 64))


def test_rotated_video_comes_out_upright(tmp_path: Path) -> None:
    path = encode_video(tmp_path / "portrait.mp4", width=96, height=64, rotation=90)
    sampled = sample_frames(path, 2)
    assert (sampled.info.width, sampled.info.height, sampled.info.rotation) == (64, 96, 90)
    assert {f.image.size for f in sampled.frames} == {(64, 96)}
    # Turning 90 degrees counter-clockwise takes the stored top row to the displayed left column.
    reference = reference_frames(path)
    stored = nearest_reference(reference, sampled.frames[0].timestamp_s)[1].to_ndarray(format="rgb24")
    shown = np.asarray(sampled.frames[0].image)
    assert np.abs(shown[::-1, 0].astype(int) - stored[0].astype(int)).mean() < 3
    assert_exact(path, 3)


def test_non_zero_start_time_is_the_origin(tmp_path: Path) -> None:
    path = encode_video(tmp_path / "late.ts", start_s=5.0)
    sampled = sample_frames(path, 3)
    assert sampled.info.duration_s == pytest.approx(3.0)
    assert [f.timestamp_s for f in sampled.frames] == pytest.approx([0.5, 1.5, 2.5])
    assert_exact(path, 3)


def test_fps_caps_the_frame_count(h264_mp4: Path) -> None:
    sampled = sample_frames(h264_mp4, 8, fps=1)
    assert [f.timestamp_s for f in sampled.frames] == [0.5, 1.5, 2.5]
    assert sampled.note is not None
    assert "fps=1 over 3.000 s allows 3 frames" in sampled.note
    assert [f.timestamp_s for f in sample_frames(h264_mp4, 2, fps=5).frames] == [0.7, 2.2]
    with pytest.raises(LimitError, match="fps must be greater than 0"):
        sample_frames(h264_mp4, 2, fps=0)


def test_keyframes_only_takes_true_keyframes(h264_mp4: Path) -> None:
    sampled = sample_frames(h264_mp4, 3, keyframes_only=True)
    # gop 12 at 10 fps: keyframes at 0.0, 1.2 and 2.4 s.
    assert [f.timestamp_s for f in sampled.frames] == [0.0, 1.2, 2.4]
    reference = {round(t, 6): frame for t, frame in reference_frames(h264_mp4)}
    for got in sampled.frames:
        frame = reference[round(got.timestamp_s, 6)]
        assert frame.key_frame
        assert np.array_equal(np.asarray(got.image), np.asarray(to_model_image(frame, 384)))
    assert sample_frames(h264_mp4, 8, keyframes_only=True).note == (
        "Asked for 8 frames; the range holds only 3 distinct keyframes near the targets, each returned once."
    )


def test_stream_without_timestamps_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match=r"has no timestamps .* -c copy"):
        sample_frames(encode_video(tmp_path / "raw.h264"), 3)


def test_variable_frame_rate_timestamps_come_from_pts(tmp_path: Path) -> None:
    times = [0.0, 0.05, 0.1, 0.4, 0.45, 1.2, 1.25, 1.3, 2.0, 2.6, 2.65, 2.9]
    path = encode_video(tmp_path / "vfr.mp4", timestamps=times, fps=20)
    assert_exact(path, 5)
    assert_exact(path, 3, start_s=1.0, end_s=2.5)


def test_range_sampling_stays_inside_range(h264_mp4: Path) -> None:
    sampled = sample_frames(h264_mp4, 4, start_s=1.0, end_s=2.0)
    assert sampled.start_s == 1.0
    assert sampled.end_s == 2.0
    assert all(1.0 <= f.timestamp_s <= 2.0 for f in sampled.frames)
    assert_exact(h264_mp4, 4, start_s=1.0, end_s=2.0)


def test_one_frame_is_the_middle(h264_mp4: Path) -> None:
    sampled = sample_frames(h264_mp4, 1)
    assert sampled.frames[0].timestamp_s == pytest.approx(sampled.info.duration_s / 2, abs=0.05)


def test_more_frames_than_the_range_holds_returns_each_once(h264_mp4: Path) -> None:
    sampled = sample_frames(h264_mp4, 8, start_s=1.0, end_s=1.35)
    stamps = [f.timestamp_s for f in sampled.frames]
    assert stamps == sorted(set(stamps))
    assert len(stamps) == 4  # 10 fps: 1.0, 1.1, 1.2, 1.3
    assert sampled.frames_requested == 8
    assert sampled.note == (
        "Asked for 8 frames; the range holds only 4 distinct frames near the targets, each returned once."
    )


def test_frames_are_scaled_down_keeping_aspect(tmp_path: Path) -> None:
    path = encode_video(tmp_path / "wide.mp4", width=640, height=360, seconds=1.0, fps=5)
    sampled = sample_frames(path, 2, min_side=90)
    assert {f.image.size for f in sampled.frames} == {(160, 90)}
    assert sampled.info.width == 640
    assert sampled.info.height == 360


def test_probe_reports_stream_facts(h264_mp4: Path, vp9_webm: Path) -> None:
    info = probe(h264_mp4)
    assert (info.codec, info.width, info.height, info.frame_count) == ("h264", 96, 64, 30)
    assert info.duration_s == pytest.approx(3.0)
    assert info.fps == pytest.approx(10)
    webm = probe(vp9_webm)
    assert (webm.codec, webm.frame_count) == ("vp9", 24)
    assert webm.duration_s == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_s": 5.0}, "start_s=5.0 is at or past the end of the video"),
        ({"end_s": 9.0}, "end_s=9.0 is past the end of the video"),
        ({"start_s": 2.0, "end_s": 1.0}, "must be greater than start_s"),
    ],
)
def test_range_outside_the_video_is_refused(h264_mp4: Path, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(LimitError, match=message):
        sample_frames(h264_mp4, 4, **kwargs)  # type: ignore[arg-type]


def test_frame_count_out_of_range_is_refused(h264_mp4: Path) -> None:
    with pytest.raises(LimitError, match="between 1 and 32"):
        sample_frames(h264_mp4, 33)


def test_text_file_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 50)
    with pytest.raises(DecodeError, match="not a readable video"):
        sample_frames(path, 4)


def test_an_empty_file_is_named_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(DecodeError, match=r"empty.mp4 is empty \(0 bytes\)"):
        sample_frames(path, 4)


def test_image_is_not_a_video(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "still.png"
    Image.new("RGB", (32, 32), "red").save(path)
    with pytest.raises(DecodeError, match="still image"):
        sample_frames(path, 4)


def test_truncated_file_is_refused(tmp_path: Path, h264_mp4: Path) -> None:
    path = tmp_path / "truncated.mp4"
    path.write_bytes(h264_mp4.read_bytes()[:2000])
    with pytest.raises(DecodeError):
        sample_frames(path, 4)


def test_audio_only_file_has_no_video(tmp_path: Path) -> None:
    path = encode_audio_only(tmp_path / "sound.m4a")
    with pytest.raises(DecodeError, match="no video stream"):
        sample_frames(path, 4)


def test_corrupt_video_data_gives_no_frames(tmp_path: Path, h264_mp4: Path) -> None:
    data = bytearray(h264_mp4.read_bytes())
    # Keep the container's header and index, scramble the coded pictures.
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    assert 0 < start < end
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path = tmp_path / "scrambled.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="could be decoded"):
        sample_frames(path, 4)


def test_sample_cache_reuses_frames_per_file_and_plan(tmp_path: Path, h264_mp4: Path) -> None:
    cache = SampleCache()
    plan = SamplingPlan(4)
    first, hit = cache.sample(h264_mp4, plan)
    assert not hit
    again, hit = cache.sample(h264_mp4, SamplingPlan(4))
    assert hit
    assert again is first
    _, hit = cache.sample(h264_mp4, SamplingPlan(4, start_s=1.0))
    assert not hit

    copy = tmp_path / "copy.mp4"
    copy.write_bytes(h264_mp4.read_bytes())
    cache.sample(copy, plan)
    os.utime(copy, ns=(0, 0))  # the file changed: its frames are decoded again
    _, hit = cache.sample(copy, plan)
    assert not hit


def test_sample_cache_is_bounded(h264_mp4: Path) -> None:
    one_sample = 4 * 96 * 64 * 3
    cache = SampleCache(max_bytes=2 * one_sample)
    for start in (0.0, 0.5, 1.0):
        cache.sample(h264_mp4, SamplingPlan(4, start_s=start))
    assert not cache.sample(h264_mp4, SamplingPlan(4, start_s=0.0))[1]  # evicted, least recently used
    assert cache.sample(h264_mp4, SamplingPlan(4, start_s=1.0))[1]


def test_variable_frame_rate_decodes_only_the_wanted_groups(tmp_path: Path) -> None:
    # Frame gaps alternating between 0.5 and 1.5 frame intervals: the keyframes' pts-dts then differ (the first
    # GOP's from the others'), and a seek to a keyframe's pts lands a whole GOP early.
    times, t = [], 0.0
    for i in range(300):
        times.append(t)
        t += (1 / 30) * (0.5 if (i // 15) % 2 else 1.5)
    path = encode_video(tmp_path / "vfr-gops.mp4", timestamps=times, fps=30, width=96, height=64, gop=60)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = Fraction(stream.time_base or 1)
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
    sampled = sample_frames(path, 4)
    # What decoding just the wanted groups costs: from each chosen frame's keyframe to it, in decode order.
    first = min(pts for pts, _ in packets)
    chosen = {
        min((pts for pts, _ in packets), key=lambda pts: abs((pts - first) * time_base - Fraction(f.timestamp_s)))
        for f in sampled.frames
    }
    needed = 0
    for target in chosen:
        position = next(i for i, (pts, _) in enumerate(packets) if pts == target)
        keyframe = max(i for i in range(position + 1) if packets[i][1])
        needed += position - keyframe + 1
    assert sampled.frames_decoded <= needed
    assert_exact(path, 4)
