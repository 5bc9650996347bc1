"""The speech track: what is said in a range of a video, heard in its sound where it has no subtitles (a site's,
or a file beside it: the subtitles track reads those), as timestamped cues.

Speech is heard in blocks of about 30 s on the video's timeline, each kept beside the video once heard
(`tracks.store`: per speech model, by what its folder holds, and per language asked for; written whole or not at
all), so every later call,
range, tool and window, and a restarted server, reads it instead of hearing it again; a range of a long video hears
only the blocks it needs. A block begins at the quietest moment of the 5 s before its 30 s mark (`block_edge`), so
that an utterance is rarely cut in two. Only what Silero VAD finds to be speech is heard (speech models write text
over music, hum and room tone): the speech of consecutive blocks is packed end to end into Whisper's 30 s windows,
as faster-whisper's VAD filter does, and every cue's times are mapped back to the video's timeline exactly; a block
with no speech is kept as silent without asking the model. Cues with no letter or digit (".", "...") are dropped. A
video with no sound, or silent in the range, still answers: its note says no speech was heard. The language is told
once a video (from the first window with speech, kept with its blocks) and then given to every window, unless the
caller names one the model knows.

Cues are in time order, inside the sound, each starting before it ends, whatever a speech engine sent: what is not
is dropped. A kept block is checked as it is read back; one that is not as it was written (damaged on disk) is
removed and heard again, never served. Calls that need the same unheard blocks take turns (per video, model and
language asked for): the second waits, saying so, and then reads what the first kept; its wait stops at once when
it is cancelled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from llava_video_mcp.tools.backends import LazySpeech, SpeechBackend
from llava_video_mcp.tools.backends.speech.vad import MODEL_SHA256 as VAD_MODEL_SHA256
from llava_video_mcp.tools.backends.speech.vad import shared_vad
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError, ModelError
from llava_video_mcp.tools.frames import (
    BLOCK_S,
    EDGE_SEARCH_S,
    SAMPLE_RATE,
    AudioTrack,
    audio_track,
    block_edge,
    decode_span,
    quiet_edge,
)
from llava_video_mcp.tools.media import LocalVideo, Needs
from llava_video_mcp.tools.progress import Progress, no_progress
from llava_video_mcp.tools.prompt import read_cues
from llava_video_mcp.tools.timeline import TimedText, TrackText, clock, in_range
from llava_video_mcp.tools.tracks.base import Basis, Said, Track, TranscriptOptions
from llava_video_mcp.tools.tracks.store import BlockStore, usable
from llava_video_mcp.tools.turns_by_name import TurnsByName

log = logging.getLogger(__name__)

_FORMAT = 4
"""Part of every block's key: a change in how blocks are heard makes earlier ones stale (3: Whisper's segments after
a closing timestamp start there; 4: blocks begin in a pause, only speech is heard, cues kept on the video's
timeline)."""
RUN_BLOCKS = 8
"""Consecutive blocks decoded in one pass (4 minutes: 15 MB of samples)."""


class SpeechTrack(Track):
    """Speech heard by a speech model (`speech`; None or disabled: never heard), where the video has no subtitles."""

    name: ClassVar[str] = "speech"
    heading: ClassVar[str] = "Subtitles spoken"
    basis: ClassVar[Basis] = "speech"
    said: ClassVar[Said | None] = "speech"

    def __init__(self, speech: LazySpeech | None = None) -> None:
        self.speech = speech
        self.turns = TurnsByName()

    @property
    def hears(self) -> bool:
        return self.speech is not None and self.speech.enabled

    def needs(self, options: TranscriptOptions) -> Needs:
        return Needs(sound=self.busy(options))

    def busy(self, options: TranscriptOptions) -> bool:
        return self.hears and options.include

    def read(
        self,
        video: LocalVideo,
        start_s: float,
        end_s: float,
        options: TranscriptOptions,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> TrackText:
        """The range's speech; nothing where the video has subtitles. The time spent hearing (the speech model's
        loading too) is the text's `read_s`."""
        if not self.busy(options) or (video.subtitles is not None and read_cues(video.subtitles)):
            return self.nothing()
        if video.sound_note is not None:
            return self.nothing(video.sound_note)
        assert self.speech is not None
        try:
            track = audio_track(video.path, video.audio, video.source)
        except DecodeError as exc:
            return self.nothing(f"No speech was heard: the sound could not be read ({exc}).")
        if track is None:
            return self.nothing("No speech was heard: the video has no sound this server can decode.")
        listening = _Listening(self.speech, video, track, progress, cancel, options.speech_language, self.turns)
        started = time.perf_counter()
        cues: list[TimedText] = []
        language = note = None
        try:
            cues, language = listening.cues(start_s, end_s)
        except ModelError as exc:
            log.warning("speech was not heard: %s", exc)
            note = f"No speech was heard: {exc}"
        except DecodeError as exc:
            note = f"No speech was heard: the sound could not be read ({exc})."
        if not cues:
            note = note or "No speech was heard in this range (silence, or sound without words)."
            language = None
        return TrackText(self.name, self.heading, cues, note, language, time.perf_counter() - started)


class _Listening:
    """One call's hearing of one video: the blocks of a range, from the store or from the model."""

    def __init__(
        self,
        speech: LazySpeech,
        video: LocalVideo,
        track: AudioTrack,
        progress: Progress,
        cancel: CancelToken | None,
        asked: str | None,
        turns: TurnsByName,
    ) -> None:
        self.speech = speech
        self.turns = turns
        self.video = video
        self.track = track
        self.progress = progress
        self.cancel = cancel
        self.asked = asked
        """The language the caller named; used only if the model knows it."""
        self.language: str | None = None
        self.store = BlockStore.beside(video, SpeechTrack.name, _bounds)
        self._edges: dict[int, float] = {}
        self._done = 0

    def cues(self, start_s: float, end_s: float) -> tuple[list[TimedText], str | None]:
        """The cues heard in the range and their language; ModelError when the speech model could not be brought
        up or failed."""
        blocks = self.track.blocks(start_s, end_s + EDGE_SEARCH_S)  # a block may begin up to EDGE_SEARCH_S early
        asked = self.asked
        key = _key(self.speech.identity(), self.track, asked)
        self.language = self.store.language(key) or asked  # what was told wins: `asked` may be unknown to it
        heard = self._kept(blocks, key)
        missing = [number for number in blocks if number not in heard]
        if missing:
            with self.turns.taken(f"{self.video.path}:{key}", self.cancel, lambda: self._waiting(len(blocks))):
                self.language = self.store.language(key) or asked
                heard |= self._kept(missing, key)  # what a call that held the turn before kept
                missing = [number for number in missing if number not in heard]
                if missing:
                    heard |= self._hear(missing, key, len(blocks))
        cues = sorted((cue for number in blocks for cue in heard[number]), key=lambda c: (c.start_s, c.end_s))
        return in_range(cues, start_s, end_s), self.language

    def _kept(self, numbers: Sequence[int], key: str) -> dict[int, list[TimedText]]:
        kept = {number: self.store.get(key, number, self.track.duration_s) for number in numbers}
        return {number: cues for number, cues in kept.items() if cues is not None}

    def _waiting(self, total: int) -> None:
        self.progress(0, max(total, 1), "Waiting for another call that is hearing this video's speech")

    def _edge(self, number: int) -> float:
        if number not in self._edges:
            self._edges[number] = block_edge(self.track, number, self.cancel)
        return self._edges[number]

    def _hear(self, missing: Sequence[int], key: str, total: int) -> dict[int, list[TimedText]]:
        """Hear the missing blocks: the speech the VAD finds in each, packed end to end into windows, a batch of
        windows at a time; each block kept once all of its speech is heard."""
        heard: dict[int, list[TimedText]] = {number: [] for number in missing}
        left: dict[int, int] = {}
        """Pieces of each block's speech not heard yet."""
        backend: SpeechBackend | None = None
        ready: list[_Window] = []
        window = _Window()
        self._done = total - len(missing)
        vad = shared_vad()
        for run in _runs(missing):
            start = self._edge(run[0])
            samples = decode_span(self.track, start, (run[-1] + 1) * BLOCK_S, self.cancel)
            for number in run[1:]:  # edges inside the run, from its one decode
                self._edges.setdefault(number, quiet_edge(samples, start, number))
            found = vad.regions(samples[: round((self._edge(run[-1] + 1) - start) * SAMPLE_RATE)])
            for number in run:
                self._report(self._done, total)
                first, last = (round((self._edge(n) - start) * SAMPLE_RATE) for n in (number, number + 1))
                regions = [(max(r.start, first), min(r.end, last)) for r in found if r.start < last and r.end > first]
                left[number] = len(regions)
                if not regions:
                    self._keep(key, number, heard)
                    continue
                backend = backend or self.speech.get()
                for begin, end in regions:
                    piece = _Piece(number, start + begin / SAMPLE_RATE, samples[begin:end])
                    if not window.fits(piece, backend.longest_s):
                        ready.append(window)
                        window = _Window()
                    window.add(piece)
                if len(ready) >= backend.blocks_at_once:
                    self._flush(backend, ready, heard, left, key)
        if window.pieces:
            ready.append(window)
        if ready:
            self._flush(backend or self.speech.get(), ready, heard, left, key)
        self._report(total, total)
        return heard

    def _flush(
        self,
        backend: SpeechBackend,
        windows: list[_Window],
        heard: dict[int, list[TimedText]],
        left: dict[int, int],
        key: str,
    ) -> None:
        given = self.language if self.language in backend.languages else None
        result = backend.transcribe([window.audio() for window in windows], given, cancel=self.cancel)
        if given is None and result.language is not None:
            self.language = result.language  # told once: every later window of this video is heard in it
            self.store.put_language(key, result.language)
        for window, said in zip(windows, result.heard, strict=True):
            length_s = window.samples / SAMPLE_RATE
            for one in _in_order(said, length_s):
                if not any(ch.isalnum() for ch in one.text):
                    continue  # ".", "...", "♪": what a speech model writes where it heard no words
                number, start = window.place(one.start_s)
                end = min(max(window.place(one.end_s, is_end=True)[1], start), self.track.duration_s)
                if start < end:
                    heard[number].append(TimedText(start, end, one.text))
            for piece in window.pieces:
                left[piece.number] -= 1
                if left[piece.number] == 0:
                    self._keep(key, piece.number, heard)
        windows.clear()

    def _keep(self, key: str, number: int, heard: dict[int, list[TimedText]]) -> None:
        heard[number].sort(key=lambda c: (c.start_s, c.end_s))
        self.store.put(key, number, heard[number])
        self._done += 1

    def _report(self, done: int, total: int) -> None:
        seconds = min(done * BLOCK_S, self.track.duration_s)
        whole = min(total * BLOCK_S, self.track.duration_s)
        self.progress(done, max(total, 1), f"Transcribing {clock(seconds)} of {clock(whole)}")


def _runs(numbers: Sequence[int]) -> Iterator[list[int]]:
    """Consecutive block numbers, at most RUN_BLOCKS at a time: decoded in one pass."""
    run: list[int] = []
    for number in numbers:
        if run and (number != run[-1] + 1 or len(run) == RUN_BLOCKS):
            yield run
            run = []
        run.append(number)
    if run:
        yield run


@dataclass(frozen=True)
class _Piece:
    """A stretch of speech the VAD found in block `number`, starting `start_s` into the video."""

    number: int
    start_s: float
    audio: np.ndarray


class _Window:
    """Pieces of speech put end to end, as long as the backend hears at once, and where its times came from."""

    def __init__(self) -> None:
        self.pieces: list[_Piece] = []
        self.samples = 0

    def fits(self, piece: _Piece, longest_s: float) -> bool:
        return not self.pieces or self.samples + len(piece.audio) <= round(longest_s * SAMPLE_RATE)

    def add(self, piece: _Piece) -> None:
        self.pieces.append(piece)
        self.samples += len(piece.audio)

    def audio(self) -> np.ndarray:
        return np.concatenate([piece.audio for piece in self.pieces])

    def place(self, seconds: float, is_end: bool = False) -> tuple[int, float]:
        """The block a time in the window came from, and that time on the video's timeline; an end exactly at a
        piece's end stays in that piece."""
        sample = round(seconds * SAMPLE_RATE)
        offset = 0
        for piece in self.pieces:
            size = len(piece.audio)
            if sample < offset + size or (is_end and sample == offset + size) or piece is self.pieces[-1]:
                return piece.number, piece.start_s + min(max(sample - offset, 0), size) / SAMPLE_RATE
            offset += size
        raise ValueError("an empty window")


def _in_order(said: Sequence[TimedText], length_s: float) -> list[TimedText]:
    """What an engine heard in a window of `length_s` seconds: the usable cues, in time order."""
    usable_ = (h for h in said if usable(h.start_s, h.end_s, h.text, 0.0, length_s, length_s))
    return sorted(usable_, key=lambda h: (h.start_s, h.end_s))


def _bounds(number: int) -> tuple[float, float]:
    """Where block `number`'s cues may start: it begins up to EDGE_SEARCH_S before its 30 s mark."""
    return max(number * BLOCK_S - EDGE_SEARCH_S, 0.0), (number + 1) * BLOCK_S


def _key(model: str, track: AudioTrack, language: str | None) -> str:
    """What a block heard depends on: how blocks are heard, the VAD, the model, the sound's file, the language."""
    stat = track.path.stat()
    return BlockStore.key(_FORMAT, VAD_MODEL_SHA256, model, track.path.name, stat.st_size, stat.st_mtime_ns,
                          track.stream_index, track.offset_s, language)  # fmt: skip
