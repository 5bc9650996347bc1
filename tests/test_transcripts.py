"""Subtitles reach the model's prompt and the result, for local sidecar files and for site subtitles."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llava_video_mcp.tools.answer import TranscriptOptions, VideoQA
from llava_video_mcp.tools.backends import BackendConfig, LazyBackend, Ready
from llava_video_mcp.tools.backends.fake import FakeBackend
from llava_video_mcp.tools.frames import media_duration
from llava_video_mcp.tools.media import VideoFetcher
from tests.httpserver import LoopbackServer
from tests.media import with_subtitles
from tests.support import VTT


@pytest.fixture
def qa(tiny_model: Path, tmp_path: Path) -> tuple[VideoQA, FakeBackend]:
    """The real model, with every prompt it is given kept (the shipped stand-in, passing prompts on)."""
    recording = FakeBackend(inner=LazyBackend(BackendConfig(model=str(tiny_model))).get()[0])
    return VideoQA(VideoFetcher(tmp_path / "cache", inspect=media_duration), Ready(recording)), recording


@pytest.fixture
def lecture(tmp_path: Path, h264_mp4: Path) -> Path:
    return with_subtitles(h264_mp4, tmp_path, "lecture", VTT)


@pytest.fixture
def talk_page(tmp_path: Path, h264_mp4: Path) -> Iterator[LoopbackServer]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "clip.mp4").write_bytes(h264_mp4.read_bytes())
    (root / "clip.en.vtt").write_text(VTT)
    (root / "talk.html").write_text(
        '<html><head><title>Talk</title></head><body><video><source src="clip.mp4" type="video/mp4">'
        '<track kind="subtitles" src="clip.en.vtt" srclang="en"></video></body></html>'
    )
    server = LoopbackServer(root)
    with server.running():
        yield server


def test_sidecar_subtitles_reach_the_prompt_and_the_result(qa: tuple[VideoQA, FakeBackend], lecture: Path) -> None:
    service, backend = qa
    answer = service.describe(str(lecture), "What is said?", num_frames=2, max_new_tokens=2)
    text = backend.prompts[-1].text
    assert "Subtitles spoken in that part of the video:\n[0.5 s] Hello there\n[2.0 s] Goodbye & thanks" in text
    assert text.index("taken at") < text.index("Subtitles") < text.index("What is said?")
    transcript = answer.videos[0].transcript
    assert transcript is not None
    assert [c.text for c in transcript] == ["Hello there", "Goodbye & thanks"]


def test_only_cues_inside_the_range(qa: tuple[VideoQA, FakeBackend], lecture: Path) -> None:
    service, backend = qa
    answer = service.describe(str(lecture), "?", num_frames=2, start_s=1.8, end_s=3.0, max_new_tokens=1)
    assert "Hello there" not in backend.prompts[-1].text
    assert [c.text for c in answer.videos[0].transcript or []] == ["Goodbye & thanks"]


def test_transcript_can_be_turned_off(qa: tuple[VideoQA, FakeBackend], lecture: Path) -> None:
    service, backend = qa
    answer = service.describe(
        str(lecture), "?", num_frames=2, transcript=TranscriptOptions(include=False), max_new_tokens=1
    )
    assert "Subtitles" not in backend.prompts[-1].text
    assert answer.videos[0].transcript is None


def test_site_subtitles_reach_the_prompt(qa: tuple[VideoQA, FakeBackend], talk_page: LoopbackServer) -> None:
    service, backend = qa
    answer = service.describe(talk_page.url("talk.html"), "What is said?", num_frames=2, max_new_tokens=1)
    assert "[0.5 s] Hello there" in backend.prompts[-1].text
    assert answer.videos[0].transcript is not None


def test_compare_labels_each_videos_subtitles(qa: tuple[VideoQA, FakeBackend], lecture: Path, h264_mp4: Path) -> None:
    service, backend = qa
    service.compare([str(h264_mp4), str(lecture)], "Which one talks?", frames_per_video=1, max_new_tokens=1)
    text = backend.prompts[-1].text
    assert "Subtitles spoken in Video 2:\n[0.5 s] Hello there" in text
    assert "in Video 1" not in text


@pytest.mark.parametrize(
    "hostile",
    [
        "WEBVTT\n\n" + "1" * 1_000_000 + "\n",  # a caption line of a megabyte of digits
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n" + "<" * 1_000_000 + "\n",  # a cue of a million '<'
        "WEBVTT\n\n" + "00:00 --> " * 100_000 + "\n",  # a timing-like line that never completes
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n" + "a" * 1_000_000 + "\n",  # one enormous cue
        "WEBVTT\n\n" + "00:00:00.000 --> 00:00:01.000\nx\n\n" * 30_000,  # a megabyte of tiny cues
    ],
    ids=["digits", "angle-brackets", "open-timings", "huge-cue", "many-cues"],
)
def test_a_megabyte_of_pathological_subtitles_parses_in_linear_time(hostile: str) -> None:
    from llava_video_mcp.tools.prompt.subtitles import MAX_CUE_CHARS, parse_subtitles

    assert len(hostile) >= 900_000
    started = time.process_time()
    cues = parse_subtitles(hostile)
    # Linear: well under a second of CPU for a megabyte. The quadratic parser took hours; the bound is generous for
    # a loaded machine (CPU time, not wall time, so other work on the machine does not count).
    assert time.process_time() - started < 10
    assert all(len(cue.text) <= MAX_CUE_CHARS for cue in cues)
