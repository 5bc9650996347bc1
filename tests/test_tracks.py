"""A new sense is one `Track`: a throwaway track defined here, registered the way server/components.py registers
subtitles and speech, reaches the prompt and find_moments with no other edit; and the tracks share one budget."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import pytest

from llava_video_mcp.tools.answer import TranscriptOptions, VideoQA
from llava_video_mcp.tools.backends import Ready
from llava_video_mcp.tools.backends.fake import FakeBackend
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.frames import media_duration
from llava_video_mcp.tools.media import LocalVideo, VideoFetcher
from llava_video_mcp.tools.progress import Progress, no_progress
from llava_video_mcp.tools.prompt import bounded_tracks
from llava_video_mcp.tools.timeline import TimedText, TrackText, in_range
from llava_video_mcp.tools.tracks import Basis, Needs, SubtitlesTrack, Track, Tracks

SIGNS = [TimedText(0.5, 1.0, "EXIT ONLY"), TimedText(2.0, 2.5, "Platform 9")]


class SignsTrack(Track):
    """Text on signs, as an on-screen text track would read it (here, from a list)."""

    name: ClassVar[str] = "signs"
    heading: ClassVar[str] = "Signs shown"
    basis: ClassVar[Basis] = "subtitles"  # a word of the result's schema (`tracks.Basis`); a real track adds its own

    def __init__(self) -> None:
        self.asked: list[Needs] = []

    def needs(self, options: TranscriptOptions) -> Needs:
        self.asked.append(Needs())
        return Needs()

    def read(
        self,
        video: LocalVideo,
        start_s: float,
        end_s: float,
        options: TranscriptOptions,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> TrackText:
        return TrackText(self.name, self.heading, in_range(SIGNS, start_s, end_s))


def with_signs(tmp_path: Path, answers: list[str] | None = None) -> tuple[VideoQA, FakeBackend, SignsTrack]:
    backend = FakeBackend(answers or [])
    signs = SignsTrack()
    fetcher = VideoFetcher(tmp_path / "cache", inspect=media_duration)
    return VideoQA(fetcher, Ready(backend), tracks=Tracks([SubtitlesTrack(), signs])), backend, signs


def test_a_new_track_reaches_the_prompt(tmp_path: Path, h264_mp4: Path) -> None:
    qa, backend, signs = with_signs(tmp_path)
    answer = qa.describe(str(h264_mp4), "Where is the exit?", num_frames=2, max_new_tokens=2)
    text = backend.prompts[-1].text
    assert "Signs shown in that part of the video:\n[0.5 s] EXIT ONLY\n[2.0 s] Platform 9" in text
    assert text.index("taken at") < text.index("Signs shown") < text.index("Where is the exit?")
    assert signs.asked  # its needs were asked before the fetch
    assert answer.videos[0].transcript is None  # not a said track: the result's transcript stays what is said


def test_find_moments_searches_a_new_track(tmp_path: Path, h264_mp4: Path) -> None:
    qa, backend, _ = with_signs(tmp_path)
    found = qa.moments(str(h264_mp4), "platform 9", max_moments=1)
    [moment] = found.moments
    assert (moment.start_s, moment.end_s, moment.basis) == (2.0, 2.5, ["subtitles"])
    assert "Platform 9" in moment.description
    assert found.model is None
    assert backend.prompts == []


def test_a_new_track_is_read_in_a_full_watch(tmp_path: Path, h264_mp4: Path) -> None:
    qa, backend, _ = with_signs(tmp_path, ["notes", "the answer"])
    qa.describe(str(h264_mp4), "Where is the exit?", num_frames=2, coverage="full", max_new_tokens=2)
    assert "Signs shown in that part of the video:\n[0.5 s] EXIT ONLY" in backend.prompts[0].text


def test_the_tracks_share_one_text_budget() -> None:
    long = [TimedText(float(i), i + 0.5, "word " * 20) for i in range(100)]
    texts = [TrackText("a", "A", long), TrackText("b", "B", []), TrackText("c", "C", long)]
    shared = bounded_tracks(texts, 2000)
    assert [len(t.cues) for t in shared][1] == 0
    assert all(sum(len(c.text) + 12 for c in t.cues) <= 1000 for t in shared)
    assert bounded_tracks(texts[:1], 2000)[0].cues != shared[0].cues  # alone, a track has the whole budget


def test_track_names_are_unique() -> None:
    with pytest.raises(ValueError, match="subtitles"):
        Tracks([SubtitlesTrack(), SubtitlesTrack()])


class Meeting(Track):
    """A busy track that waits (bounded) until the other one has started: read one after the other, neither would
    finish in time."""

    heading: ClassVar[str] = "Met"
    basis: ClassVar[Basis] = "subtitles"

    def __init__(self, name: str, mine: threading.Event, theirs: threading.Event) -> None:
        self.name = name  # type: ignore[misc]
        self.mine, self.theirs = mine, theirs
        self.threads: list[str] = []

    def busy(self, options: TranscriptOptions) -> bool:
        return True

    def read(
        self,
        video: LocalVideo,
        start_s: float,
        end_s: float,
        options: TranscriptOptions,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> TrackText:
        self.threads.append(threading.current_thread().name)
        self.mine.set()
        met = self.theirs.wait(timeout=30)
        progress(1, 1, f"{self.name} done")
        return TrackText(self.name, self.heading, [TimedText(0.0, 1.0, f"met: {met}")])


def test_busy_tracks_read_at_the_same_time_and_report_progress_from_the_callers_thread(h264_mp4: Path) -> None:
    first, second = threading.Event(), threading.Event()
    a, b = Meeting("a", first, second), Meeting("b", second, first)
    reported: list[tuple[float, str]] = []

    def progress(done: float, of: float, message: str) -> None:
        assert threading.current_thread() is threading.main_thread() or not threading.current_thread().name.startswith(
            "track"
        )
        reported.append((done / of, message))

    video = LocalVideo("clip", h264_mp4, None, from_cache=True, fetch_s=0.0)
    texts = Tracks([a, b]).read_all(video, 0.0, 1.0, TranscriptOptions(), progress)
    assert [t.cues[0].text for t in texts] == ["met: True", "met: True"]  # in the tracks' order
    assert a.threads != b.threads  # each in a thread of its own
    assert [done for done, _ in reported] == sorted({done for done, _ in reported})  # only ever increasing
    assert reported[-1][0] == 1.0
