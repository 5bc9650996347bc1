"""Scene changes as real encodes and real footage show them: a fixed GOP whose every keyframe jumps in quality, and
a cut between two shots of the same colours and brightness; and windows that end at the most distinct cut."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from llava_video_mcp.tools.answer.windows import plan_windows
from llava_video_mcp.tools.frames import Cut, detect_scenes, outline
from tests.media import _reel_scene, _to_and_fro, encode_all, rgb_frame

NIGHT = Path(__file__).parent / "data" / "scenes" / "night.mp4"
"""Real photographs filmed with a slow zoom or pan, a hand-held drift and grain (bench/scenes.py's `film_reel`, 320x180,
24 fps, CRF 26, a fixed GOP of 2 s): the astronaut, the cat (about the astronaut's colours), then a dark wide shot
of a motorcycle and a dark close-up of it: the last cut changes the structure, hardly the colours or brightness."""
NIGHT_CUTS = [2.5, 5.0, 7.5]


def fixed_gop_reel(path: Path, lengths_s: tuple[float, ...] = (5.0, 6.0, 6.0)) -> list[float]:
    """Textured scenes panning slowly under heavy grain, hard cuts between them, x264 with a fixed GOP of 2 s and
    a CRF high enough that the frames between keyframes lose detail: every keyframe brings it back at once."""
    width, height, fps = 192, 108, 12
    rng = np.random.default_rng(3)
    scenes = [_reel_scene(200 + n, width, height) for n in range(len(lengths_s))]
    bounds = np.cumsum([0.0, *lengths_s])

    def pictures() -> Iterator[av.VideoFrame]:
        for i in range(round(bounds[-1] * fps)):
            number = int(np.searchsorted(bounds, i / fps, side="right") - 1)
            j = i - round(bounds[number] * fps)
            blobs, texture = scenes[number]
            x = _to_and_fro(j, blobs.shape[1] - width)
            y = _to_and_fro(j // 3, blobs.shape[0] - height)
            image = blobs[y : y + height, x : x + width] + texture[y : y + height, x : x + width]
            image = image + rng.integers(-30, 31, (height, width, 1))
            yield rgb_frame(np.clip(image, 0, 255).astype(np.uint8), i)

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, fps)
        gop = str(2 * fps)
        stream.options = {"g": gop, "keyint_min": gop, "sc_threshold": "0", "crf": "44", "preset": "veryfast"}
        encode_all(container, stream, pictures())
    return [float(b) for b in bounds[1:-1]]


@pytest.fixture(scope="module")
def fixed_gop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    return path, fixed_gop_reel(path)


def test_a_keyframe_jump_in_quality_is_not_a_cut(fixed_gop: tuple[Path, list[float]]) -> None:
    path, made = fixed_gop
    keyframes = outline(path)[1]
    assert len(keyframes) == 9  # every 2 s, none at a cut
    assert not set(made) & {round(k, 3) for k in keyframes}
    assert [c.time_s for c in detect_scenes(path)] == pytest.approx(made, abs=1e-6)


def test_windows_of_a_fixed_gop_video_start_at_its_cuts(fixed_gop: tuple[Path, list[float]]) -> None:
    path, made = fixed_gop
    info, keyframes = outline(path)
    windows = plan_windows(0.0, info.duration_s, 8.0, keyframes, detect_scenes(path))
    assert [w.start_s for w in windows] == pytest.approx([0.0, *made])


def test_a_cut_between_shots_of_the_same_colours_is_found() -> None:
    assert [c.time_s for c in detect_scenes(NIGHT)] == pytest.approx(NIGHT_CUTS, abs=1e-6)


def test_a_window_ends_at_the_strongest_cut_in_reach() -> None:
    """The case of the issue: cuts at 47.3, 101.7 and 153.1 s; a weak change every 2 s (what a fixed GOP's keyframes
    looked like); windows of at most 60 s end at the real cuts, not at the latest change in reach."""
    real = [Cut(47.3, 150.0), Cut(101.7, 100.0), Cut(153.1, 190.0)]
    weak = [Cut(float(t), 13.0) for t in range(2, 180, 2)]
    windows = plan_windows(0.0, 180.0, 60.0, [], real + weak)
    assert [w.start_s for w in windows] == [0.0, 47.3, 101.7, 153.1]
    equal = [Cut(35.0, 50.0), Cut(50.0, 50.0)]
    assert [w.end_s for w in plan_windows(0.0, 100.0, 60.0, [], equal)] == [50.0, 100.0]  # equals: the latest
    assert plan_windows(0.0, 100.0, 60.0, [], []) == plan_windows(0.0, 100.0, 60.0, [0.0, 30.0])  # none: uniform
