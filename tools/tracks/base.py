"""A track: what a range of a video says or shows, as timed text (`timeline.TrackText`), and the registry of the
tracks a server reads (`Tracks`)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar, Literal

from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.media import LocalVideo, Needs
from llava_video_mcp.tools.progress import Progress, no_progress
from llava_video_mcp.tools.timeline import TimedText, TrackText

Basis = Literal["subtitles", "speech", "on_screen", "frames"]
"""What a moment found by `find_moments` rests on: a track's cues (its `basis`), or the frames. The result's schema
lists these words: a track with a word of its own adds it here."""
Said = Literal["subtitles", "speech"]
"""The tracks whose cues are the result's `transcript` (what is said), and its `transcript_source`."""


@dataclass(frozen=True)
class TranscriptOptions:
    """What the caller asked of the tracks: whether to read them, and in which language."""

    include: bool = True
    language: str | None = None
    on_screen_text: bool = True
    """Whether text shown on screen is read (where an OCR engine is installed)."""
    """The caller's language: of the subtitles (English when not given), and of the speech heard (told by the
    model when not given, or not one it knows)."""

    @property
    def subtitle_language(self) -> str | None:
        """The language to fetch subtitles in, None when they are not wanted."""
        return (self.language or "en") if self.include else None

    @property
    def speech_language(self) -> str | None:
        """The language asked for, as a speech model names it (pt-BR: pt); None to let the model tell."""
        return self.language.split("-")[0].lower() if self.language else None


WITH_TRANSCRIPT = TranscriptOptions()


class Track(ABC):
    """One sense of a video as timed text. A new track is a subclass in a module of this package, registered by
    putting it in the server's `Tracks` (server/components.py); nothing in `answer/` names it."""

    name: ClassVar[str]
    """Its name: the folder its kept blocks live in, and `TrackText.name`."""
    heading: ClassVar[str]
    """The prompt's words for it, before its cues: "Subtitles spoken" reads "Subtitles spoken in that part of the
    video:"."""
    basis: ClassVar[Basis]
    """find_moments' word for a moment found in its cues."""
    said: ClassVar[Said | None] = None
    """Its cues are the result's `transcript` (and this its `transcript_source`) when it has any; None for a track
    the result does not list."""
    field: ClassVar[str | None] = None
    """The result's field that lists its cues (beside `transcript`), where it has one of its own."""
    timing: ClassVar[str] = "transcribe_s"
    """The result's timing its reading time counts to."""

    def needs(self, options: TranscriptOptions) -> Needs:
        """What the download must bring for this track (nothing unless said)."""
        return Needs()

    def busy(self, options: TranscriptOptions) -> bool:
        """Whether reading takes a model's time: the call's progress then gives it a share."""
        return False

    @abstractmethod
    def read(
        self,
        video: LocalVideo,
        start_s: float,
        end_s: float,
        options: TranscriptOptions,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> TrackText:
        """The track's cues in [start_s, end_s), in time order. Read while the video's cache entry is held. A track
        that cannot be read says why in the note; it raises only `Cancelled`."""

    def nothing(self, note: str | None = None) -> TrackText:
        """This track's text with no cues, and why when the caller should know."""
        return TrackText(self.name, self.heading, [], note)


class Tracks:
    """The tracks a server reads, in the order the prompt shows them."""

    def __init__(self, tracks: Sequence[Track] = ()) -> None:
        names = [track.name for track in tracks]
        if len(set(names)) != len(names):
            raise ValueError(f"two tracks share a name: {names}")
        self.tracks = list(tracks)

    def __iter__(self) -> Iterator[Track]:
        return iter(self.tracks)

    def named(self, name: str) -> Track:
        return next(track for track in self.tracks if track.name == name)

    def needs(self, options: TranscriptOptions) -> Needs:
        """What a download must bring for every track."""
        needs = Needs()
        for track in self.tracks:
            needs |= track.needs(options)
        return needs

    def busy(self, options: TranscriptOptions) -> bool:
        return any(track.busy(options) for track in self.tracks)

    def idle(self, options: TranscriptOptions) -> Tracks:
        """The tracks that read without a model's time (not `busy`)."""
        return Tracks([track for track in self.tracks if not track.busy(options)])

    def read_all(
        self,
        video: LocalVideo,
        start_s: float,
        end_s: float,
        options: TranscriptOptions,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> list[TrackText]:
        """Every track's text of the range, in order (none when the caller asked for none). The busy tracks read at
        the same time (speech heard while the screen is read: each engine takes a core), the first in this thread,
        each other in a thread of its own that ends before this returns; their progress is summed and reported from
        this thread alone (the one the caller's progress may be called from)."""
        if not options.include:
            return []
        busy = [track for track in self.tracks if track.busy(options)]
        shares = _Shares(progress, len(busy))
        others = busy[1:]
        with ThreadPoolExecutor(max_workers=max(len(others), 1), thread_name_prefix="track") as pool:
            reading = {
                track: pool.submit(track.read, video, start_s, end_s, options, shares.of(index + 1), cancel)
                for index, track in enumerate(others)
            }
            texts = []
            for track in self.tracks:
                if track in reading:
                    texts.append(reading[track].result())
                    continue
                share = shares.of(0) if track in busy else no_progress
                texts.append(track.read(video, start_s, end_s, options, share, cancel))
        shares.report_all()
        return texts

    def transcript(self, texts: Sequence[TrackText]) -> tuple[TrackText, Said] | None:
        """The text the result lists as `transcript`, and its source: the first said track with cues."""
        for text in texts:
            said = self.named(text.name).said
            if said is not None and text.cues:
                return text, said
        return None

    def timings(self, texts: Sequence[TrackText]) -> dict[str, float]:
        """Seconds spent reading, by the result's timing each track counts to; a track that found nothing counts
        nowhere (the result's timing is absent when nothing was heard or read)."""
        spent: dict[str, float] = {}
        for text in texts:
            if text.cues:
                timing = self.named(text.name).timing
                spent[timing] = spent.get(timing, 0.0) + text.read_s
        return spent

    def fields(self, texts: Sequence[TrackText]) -> dict[str, Sequence[TimedText]]:
        """The cues of the tracks the result lists in fields of their own, by field."""
        listed = {track.name: track.field for track in self.tracks if track.field}
        return {listed[text.name]: text.cues for text in texts if text.name in listed and text.cues}

    def basis(self, text: TrackText) -> Basis:
        return self.named(text.name).basis


class _Shares:
    """The busy tracks' progress: each track's fraction done kept, their sum reported, from the reading thread only."""

    def __init__(self, progress: Progress, count: int) -> None:
        self._progress = progress
        self._done = [0.0] * count
        self._message = ""
        self._reported = -1.0
        self._lock = threading.Lock()
        self._reader = threading.get_ident()

    def of(self, index: int) -> Progress:
        def report(done: float, of: float, message: str) -> None:
            with self._lock:
                self._done[index] = max(self._done[index], min(done / of, 1.0) if of else 0.0)
                self._message = message
            if threading.get_ident() == self._reader:
                self.report_all()

        return report

    def report_all(self) -> None:
        """The sum so far, when it moved since last reported."""
        with self._lock:
            done, message = sum(self._done), self._message
            moved = done > self._reported
            self._reported = max(done, self._reported)
        if moved and self._done:
            self._progress(done, len(self._done), message)
