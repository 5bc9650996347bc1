"""Scene changes found by looking at every frame, on videos made here whose hard cuts fall between keyframes (a
fixed GOP, the encoder's scene detection off), and frames chosen so that every scene is seen."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.backends import Ready
from llava_video_mcp.tools.backends.fake import FakeBackend
from llava_video_mcp.tools.cancel import Cancelled, CancelToken
from llava_video_mcp.tools.frames import (
    PROGRESS_EVERY_S,
    Cut,
    detect_scenes,
    outline,
    sample_frames,
    scene_numbers,
    scene_targets,
)
from tests.media import REEL_LOOKS, cut_scenes, scene_reel
from tests.support import call

LENGTHS = [2.0, 10.0, 3.0, 20.0, 1.0, 24.0]
"""A 2 s intro, a 3 s insert and a 1 s flash among long scenes: uniform frames would miss the short ones."""


@pytest.fixture(scope="module")
def six_scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    path = tmp_path_factory.mktemp("scenes") / "six.mp4"
    return path, cut_scenes(path, LENGTHS, gop_s=3.3)  # keyframes every 33 frames: none on a cut


def test_hard_cuts_between_keyframes_are_found_exact_to_the_frame(six_scenes: tuple[Path, list[float]]) -> None:
    path, made = six_scenes
    keyframes = outline(path)[1]
    assert not set(made) & {round(k, 3) for k in keyframes}  # no cut is on a keyframe: keyframes cannot find them
    assert [c.time_s for c in detect_scenes(path)] == pytest.approx(made, abs=1e-6)


@pytest.mark.parametrize(
    ("name", "made", "most"),
    [
        ("static.mp4", {"lengths_s": [20.0]}, 0),
        ("fades.mp4", {"lengths_s": [8.0, 8.0, 8.0], "fade_s": 2.0}, 0),
        ("flashing.mp4", {"lengths_s": [20.0], "flashing": True}, 0),
    ],
)
def test_no_storm_of_false_cuts(tmp_path: Path, name: str, made: dict[str, object], most: int) -> None:
    path = tmp_path / name
    cut_scenes(path, **made)  # type: ignore[arg-type]
    assert len(detect_scenes(path)) <= most


SIZES = [(256, 144), (640, 360)]
"""Two sizes of the same content: cuts must not depend on the frame's size (thumbnails average, never sample)."""


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_every_cut_in_grainy_moving_footage_is_found_and_nothing_else(tmp_path: Path, width: int, height: int) -> None:
    path = tmp_path / "reel.mp4"
    made = scene_reel(path, width=width, height=height, scene_s=1.5, fade_s=0.5, flash_frames=3)
    assert len(made) == 8  # between textured, grainy scenes: panning, a bright object, fast, shaking
    assert not set(made) & {round(k, 3) for k in outline(path)[1]}  # no keyframe at any cut
    cuts = detect_scenes(path)
    assert [c.time_s for c in cuts] == pytest.approx(made, abs=1e-6)  # exact to the frame; no cut at fade or flash


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize(
    "made",
    [*({"looks": [look]} for look in REEL_LOOKS), {"fade_s": 0.6}, {"flash_frames": 3}, {"flash_frames": 1}],
    ids=[*REEL_LOOKS, "fade-through-black", "3-frame-flash", "1-frame-flash"],
)
def test_one_shot_has_no_cut(tmp_path: Path, made: dict[str, object], width: int, height: int) -> None:
    path = tmp_path / "shot.mp4"
    scene_reel(path, width=width, height=height, scene_s=2.0, cuts=0, **made)  # type: ignore[arg-type]
    assert detect_scenes(path) == []


def test_cuts_are_kept_beside_the_video_and_read_back(tmp_path: Path, six_scenes: tuple[Path, list[float]]) -> None:
    path, made = six_scenes
    keep = tmp_path / "store" / "scenes.json"
    seen: list[float] = []
    started = time.monotonic()
    first = detect_scenes(path, keep=keep, on_progress=seen.append)
    assert seen == sorted(seen)
    assert 1 <= len(seen) <= 1 + (time.monotonic() - started) / PROGRESS_EVERY_S  # once at the start, then by the clock
    kept = json.loads(keep.read_text())
    kept["cuts"] = [[1.5, 99.0]]  # what was kept is what a second call reads: no second look at the frames
    keep.write_text(json.dumps(kept))
    assert detect_scenes(path, keep=keep, on_progress=seen.append) == [Cut(1.5, 99.0)]
    keep.write_text("{damaged")
    assert detect_scenes(path, keep=keep) == first  # damaged: looked at again, and kept again
    assert [c.time_s for c in detect_scenes(path, keep=keep)] == pytest.approx(made)


def test_cancelling_stops_the_look(six_scenes: tuple[Path, list[float]], tmp_path: Path) -> None:
    path, _ = six_scenes
    cancel = CancelToken()

    def stop(at_s: float) -> None:
        cancel.cancel()

    with pytest.raises(Cancelled):
        detect_scenes(path, cancel, keep=tmp_path / "scenes.json", on_progress=stop)
    assert not list(tmp_path.iterdir())  # nothing half found is kept


def test_every_scene_gets_a_frame_and_the_longest_the_extra_ones() -> None:
    bounds = [0.0, 2.0, 12.0, 15.0, 35.0, 36.0, 60.0]
    cuts = [Cut(t, 30.0) for t in bounds[1:-1]]
    six = scene_targets(cuts, 0.0, 60.0, 6)
    assert six == [1.0, 7.0, 13.5, 25.0, 35.5, 48.0]  # one in each scene, at its middle
    eight = scene_targets(cuts, 0.0, 60.0, 8)
    assert len(eight) == 8
    per_scene = [sum(a <= t < b for t in eight) for a, b in itertools.pairwise(bounds)]
    assert per_scene == [1, 1, 1, 2, 1, 2]  # the two longest scenes (20 s and 24 s) get the extra frames
    assert scene_targets([], 0.0, 60.0, 3) == [10.0, 30.0, 50.0]  # no cuts: uniform


def test_with_more_scenes_than_frames_the_most_distinct_come_first() -> None:
    cuts = [Cut(2.0, 20.0), Cut(12.0, 90.0), Cut(15.0, 40.0), Cut(35.0, 15.0), Cut(36.0, 60.0)]
    three = scene_targets(cuts, 0.0, 60.0, 3)
    assert three == [1.0, 13.5, 48.0]  # the range's first scene, then the scenes opened by the two strongest cuts
    inside = scene_targets(cuts, 10.0, 40.0, 2)  # only the cuts inside the range count
    assert inside == [11.0, 13.5]


def test_a_frame_at_a_cut_opens_the_new_scene() -> None:
    cuts = [Cut(12.0, 90.0), Cut(2.0, 20.0)]  # in any order
    assert scene_numbers(cuts, [0.0, 1.999, 2.0, 11.0, 12.0, 50.0]) == [1, 1, 2, 2, 3, 3]
    assert scene_numbers([], [0.0, 5.0]) == [1, 1]


# Through the tools


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Client]:
    """The server with the vision model a stand-in (FakeBackend, named as such): these tests are about which frames
    and windows it is given."""
    settings = Settings(
        ocr_engine="none", model="stand-in", cache_dir=tmp_path / "cache", asr_model="none", window_s=10
    )
    async with Client(build_server(settings, Ready(FakeBackend()))) as client:
        yield client


def scene_of(t: float) -> int:
    bounds = list(itertools.accumulate(LENGTHS))
    return sum(t >= b - 1e-6 for b in bounds)


@pytest.mark.anyio
async def test_scene_sampling_sees_every_scene(served: Client, six_scenes: tuple[Path, list[float]]) -> None:
    path, _ = six_scenes
    six = await call(served, "describe_video", source=str(path), num_frames=6, sampling="scenes")
    times = [f.timestamp_s for f in six.videos[0].frames]
    assert sorted(scene_of(t) for t in times) == [0, 1, 2, 3, 4, 5]
    three = await call(served, "describe_video", source=str(path), num_frames=3, sampling="scenes")
    assert len({scene_of(f.timestamp_s) for f in three.videos[0].frames}) == 3
    uniform = await call(served, "describe_video", source=str(path), num_frames=6)
    assert [f.timestamp_s for f in uniform.videos[0].frames] == [
        f.timestamp_s for f in sample_frames(path, 6).frames
    ]  # the default is unchanged
    assert len({scene_of(f.timestamp_s) for f in uniform.videos[0].frames}) < 6  # and misses short scenes
    compared = await call(
        served, "compare_videos", sources=[str(path), str(path)], question="Same?", frames_per_video=6,
        sampling="scenes",
    )  # fmt: skip
    for video in compared.videos:
        assert sorted(scene_of(f.timestamp_s) for f in video.frames) == [0, 1, 2, 3, 4, 5]


@pytest.mark.anyio
async def test_the_frame_guide_says_which_scene_each_frame_is_in(
    tmp_path: Path, six_scenes: tuple[Path, list[float]]
) -> None:
    path, _ = six_scenes
    stand_in = FakeBackend()
    settings = Settings(ocr_engine="none", model="stand-in", cache_dir=tmp_path / "cache", asr_model="none")
    async with Client(build_server(settings, Ready(stand_in))) as client:
        await call(client, "describe_video", source=str(path), num_frames=8, sampling="scenes")
        await call(client, "describe_video", source=str(path), num_frames=8)
    by_scene, uniform = (prompt.text for prompt in stand_in.prompts)
    labelled = [(float(t), int(n)) for t, n in re.findall(r"(\d+\.\d+) s \(scene (\d+)\)", by_scene)]
    assert len(labelled) == 8
    assert [n for _, n in labelled] == [scene_of(t) + 1 for t, _ in labelled]  # the scene each frame is really in
    assert {n for _, n in labelled} == {1, 2, 3, 4, 5, 6}
    assert "scene" not in uniform  # uniform frames: the guide is as before


@pytest.mark.anyio
async def test_full_coverage_windows_end_at_cuts_between_keyframes(
    served: Client, six_scenes: tuple[Path, list[float]]
) -> None:
    path, made = six_scenes
    watched = await call(served, "describe_video", source=str(path), coverage="full", num_frames=2)
    segments = watched.segments or []
    ends = [s.end_s for s in segments]
    assert 15.0 in ends  # the 3 s insert's cut, between keyframes: windows used to end only at keyframes
    for segment in segments:
        assert segment.end_s - segment.start_s <= 10.0 + 1e-6
        assert segment.end_s in made or segment.end_s == pytest.approx(segment.start_s + 10) or segment is segments[-1]
