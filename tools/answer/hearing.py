"""What is said in a range of a video: its subtitles when it has them (a site's, or a file beside it), else the
speech heard in its sound, as the same timestamped cues.

Speech is heard in 30 s blocks on the video's timeline, each kept beside the video once heard (per speech model, by
what its folder holds, and per language asked for; written whole or not at all), so every later call, range, tool
and window, and a restarted server, reads it
instead of hearing it again; a range of a long video hears only the blocks it needs. Blocks whose level says there
is nothing to hear are kept as silent without asking the model (speech models write text over silence). A video
with no sound, or silent in the range, still answers: its note says no speech was heard. The language is told
once a video (from the first block with speech, kept with its blocks) and then given to every block, unless the
caller names one the model knows.

Cues are in time order, inside the sound, each starting before it ends, whatever a speech engine sent: what is not
is dropped. A kept block is checked as it is read back; one that is not as it was written (damaged on disk) is
removed and heard again, never served. Calls that need the same unheard blocks take turns (per video, model and
language asked for): the second waits, saying so, and then reads what the first kept; its wait stops at once when
it is cancelled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from llava_video_mcp.tools.answer.progress import Progress, no_progress
from llava_video_mcp.tools.answer.results import Clock
from llava_video_mcp.tools.answer.steps import TranscriptOptions, timed
from llava_video_mcp.tools.backends import Heard, LazySpeech, SpeechBackend
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import DecodeError, ModelError
from llava_video_mcp.tools.files import write_whole
from llava_video_mcp.tools.frames import BLOCK_S, AudioTrack, audio_track, decode_block, is_silent
from llava_video_mcp.tools.media import LocalVideo
from llava_video_mcp.tools.prompt import Cue, clock, cues_in_range, read_cues

log = logging.getLogger(__name__)

Source = Literal["subtitles", "speech"]
_FORMAT = 3
"""Part of every block's key: a change in how blocks are heard makes earlier ones stale (3: Whisper's segments after
a closing timestamp start there)."""
_MAX_KEPT_BYTES = 256 * 1024
"""A kept block larger than this is damaged: 30 s of speech is a few kilobytes of text."""


@dataclass(frozen=True)
class Transcript:
    """The cues of a range, where they came from, and what the caller should know when there are none."""

    cues: list[Cue]
    source: Source | None = None
    note: str | None = None
    language: str | None = None
    """Of the speech heard: the one asked for, or the one the model told."""


NOTHING = Transcript([])


class Hearing:
    """Transcripts of ranges, from subtitles or from speech (`speech`, None or disabled: subtitles only)."""

    def __init__(self, speech: LazySpeech | None = None) -> None:
        self.speech = speech
        self._turns = _Turns()

    @property
    def hears(self) -> bool:
        return self.speech is not None and self.speech.enabled

    def transcript(
        self,
        video: LocalVideo,
        start_s: float,
        end_s: float,
        options: TranscriptOptions,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
        clock: Clock | None = None,
    ) -> Transcript:
        """The range's cues. Read while the video's cache entry is held: an evicted entry takes them with it. The
        time spent hearing (the speech model's loading too) goes to the clock's `transcribe_s`."""
        if not options.include:
            return NOTHING
        if video.subtitles is not None:
            subtitles = read_cues(video.subtitles)
            if subtitles:
                cues = cues_in_range(subtitles, start_s, end_s)
                return Transcript(cues, "subtitles" if cues else None)
        if not self.hears:
            return NOTHING
        if video.sound_note is not None:
            return Transcript([], note=video.sound_note)
        assert self.speech is not None
        try:
            track = audio_track(video.path, video.audio, video.source)
        except DecodeError as exc:
            return Transcript([], note=f"No speech was heard: the sound could not be read ({exc}).")
        if track is None:
            return Transcript([], note="No speech was heard: the video has no sound this server can decode.")
        listening = _Listening(self.speech, video, track, progress, cancel, options.speech_language, self._turns)
        try:
            with timed(clock or Clock(), "transcribe_s"):
                cues, language = listening.cues(start_s, end_s)
        except ModelError as exc:
            log.warning("speech was not heard: %s", exc)
            return Transcript([], note=f"No speech was heard: {exc}")
        except DecodeError as exc:
            return Transcript([], note=f"No speech was heard: the sound could not be read ({exc}).")
        if not cues:
            return Transcript([], note="No speech was heard in this range (silence, or sound without words).")
        return Transcript(cues, "speech", language=language)


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
        turns: _Turns,
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
        self.store = _BlockStore(video.store / "speech" if video.store is not None else None)

    def cues(self, start_s: float, end_s: float) -> tuple[list[Cue], str | None]:
        """The cues heard in the range and their language; ModelError when the speech model could not be brought
        up or failed."""
        blocks = self.track.blocks(start_s, end_s)
        asked = self.asked
        key = self.store.key(self.speech.identity(), self.track, asked)
        self.language = self.store.language(key) or asked  # what was told wins: `asked` may be unknown to it
        heard = self._kept(blocks, key)
        missing = [number for number in blocks if number not in heard]
        if missing:
            with self.turns.taken(f"{self.store.folder}/{key}", self.cancel, lambda: self._waiting(len(blocks))):
                self.language = self.store.language(key) or asked
                heard |= self._kept(missing, key)  # what a call that held the turn before kept
                missing = [number for number in missing if number not in heard]
                if missing:
                    heard |= self._hear(missing, key, len(blocks))
        cues = [
            Cue(number * BLOCK_S + h.start_s, number * BLOCK_S + h.end_s, h.text)
            for number in blocks
            for h in heard[number]
        ]
        return cues_in_range(cues, start_s, end_s), self.language

    def _kept(self, numbers: Sequence[int], key: str) -> dict[int, list[Heard]]:
        kept = {number: self.store.get(key, number, self.track.block_length_s(number)) for number in numbers}
        return {number: heard for number, heard in kept.items() if heard is not None}

    def _waiting(self, total: int) -> None:
        self.progress(0, max(total, 1), "Waiting for another call that is hearing this video's speech")

    def _hear(self, missing: Sequence[int], key: str, total: int) -> dict[int, list[Heard]]:
        """Hear the missing blocks a batch at a time, keeping each once heard."""
        heard: dict[int, list[Heard]] = {}
        backend: SpeechBackend | None = None
        pending: list[tuple[int, np.ndarray]] = []
        done = total - len(missing)
        for number in missing:
            self._report(done, total)
            samples = decode_block(self.track, number, self.cancel)
            if is_silent(samples):
                heard[number] = []
                self.store.put(key, number, [])
                done += 1
                continue
            pending.append((number, samples))
            if backend is None:
                backend = self.speech.get()
            if len(pending) >= backend.blocks_at_once:
                done += self._flush(backend, pending, heard, key)
        if pending:
            backend = backend or self.speech.get()
            done += self._flush(backend, pending, heard, key)
        self._report(total, total)
        return heard

    def _flush(
        self, backend: SpeechBackend, pending: list[tuple[int, np.ndarray]], heard: dict[int, list[Heard]], key: str
    ) -> int:
        numbers = [number for number, _ in pending]
        given = self.language if self.language in backend.languages else None
        result = backend.transcribe([samples for _, samples in pending], given, cancel=self.cancel)
        if given is None and result.language is not None:
            self.language = result.language  # told once: every later block of this video is heard in it
            self.store.put_language(key, result.language)
        for number, said in zip(numbers, result.heard, strict=True):
            heard[number] = _in_order(said, self.track.block_length_s(number))
            self.store.put(key, number, heard[number])
        pending.clear()
        return len(numbers)

    def _report(self, done: int, total: int) -> None:
        seconds = min(done * BLOCK_S, self.track.duration_s)
        whole = min(total * BLOCK_S, self.track.duration_s)
        self.progress(done, max(total, 1), f"Transcribing {clock(seconds)} of {clock(whole)}")


class _BlockStore:
    """Heard blocks on disk, one file each, written whole or not at all; a folder that cannot be written (a damaged
    cache) only costs the reuse."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    @staticmethod
    def key(model: str, track: AudioTrack, language: str | None) -> str:
        stat = track.path.stat()
        parts = [_FORMAT, model, track.path.name, stat.st_size, stat.st_mtime_ns, track.stream_index, track.offset_s,
                 language]  # fmt: skip
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]

    def language(self, key: str) -> str | None:
        """The language told for these blocks, when one was."""
        if self.folder is None:
            return None
        try:
            told = json.loads((self.folder / key / "language.json").read_text())
        except (OSError, ValueError):
            return None
        return told if isinstance(told, str) and told.isalpha() and len(told) <= 8 else None

    def put_language(self, key: str, language: str) -> None:
        if self.folder is None:
            return
        try:
            (self.folder / key).mkdir(parents=True, exist_ok=True)
            write_whole(self.folder / key / "language.json", json.dumps(language))
        except OSError as exc:
            log.warning("could not keep the language heard at %s (%s)", self.folder, exc.strerror or exc)

    def get(self, key: str, number: int, length_s: float) -> list[Heard] | None:
        """Block `number` as it was kept (`length_s` long); None when it was not kept, or was damaged since (then
        it is removed: it is heard again)."""
        if self.folder is None:
            return None
        path = self.folder / key / f"{number:06d}.json"
        heard: list[Heard] | None = None
        try:
            size = path.stat().st_size
            if size <= _MAX_KEPT_BYTES:
                heard = _kept_heard(json.loads(path.read_text()), length_s)
            why = f"{size} bytes" if size > _MAX_KEPT_BYTES else "not what was written"
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            why = f"{type(exc).__name__}: {str(exc)[:100]}"
        if heard is None:
            log.warning("heard speech kept at %s is damaged (%s); hearing it again", path, why)
            with suppress(OSError):
                path.unlink()
        return heard

    def put(self, key: str, number: int, heard: Sequence[Heard]) -> None:
        if self.folder is None:
            return
        folder = self.folder / key
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_whole(folder / f"{number:06d}.json", json.dumps([[h.start_s, h.end_s, h.text] for h in heard]))
        except OSError as exc:
            log.warning("could not keep heard speech at %s (%s)", folder, exc.strerror or exc)


class _Turns:
    """Hearings of the same blocks, one at a time: the download cache's turn-taking (`VideoCache.locked`), with a
    word to the call that has to wait."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held: set[str] = set()

    @contextmanager
    def taken(self, name: str, cancel: CancelToken | None, on_wait: Callable[[], None]) -> Iterator[None]:
        """Hold `name` for the block; `on_wait` is called once when another call holds it. Waiting stops at once
        when the call is cancelled (the cancellation wakes the wait)."""
        token = cancel if cancel is not None else CancelToken()
        with self._changed:
            busy = name in self._held
        if busy:
            on_wait()
        with token.on_cancel(self._wake), self._changed:
            while name in self._held:
                token.check()
                self._changed.wait()
            token.check()
            self._held.add(name)
        try:
            yield
        finally:
            with self._changed:
                self._held.discard(name)
                self._changed.notify_all()

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()


def _usable(heard: Heard, length_s: float) -> bool:
    """Whether a cue has finite times within the block, starts before it ends, and says something."""
    times_ok = all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in (heard.start_s, heard.end_s))
    return (
        times_ok
        and math.isfinite(heard.start_s)
        and math.isfinite(heard.end_s)
        and 0.0 <= heard.start_s < heard.end_s <= length_s
        and isinstance(heard.text, str)
        and bool(heard.text)
    )


def _in_order(said: Sequence[Heard], length_s: float) -> list[Heard]:
    """What an engine heard in a block of `length_s` seconds, as cues to keep: the usable ones, in time order."""
    return sorted((h for h in said if _usable(h, length_s)), key=lambda h: (h.start_s, h.end_s))


def _kept_heard(data: object, length_s: float) -> list[Heard] | None:
    """A kept block's cues, or None when they are not what `put` writes (usable cues, in time order)."""
    if not isinstance(data, list):
        return None
    heard: list[Heard] = []
    for item in data:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        cue = Heard(*item)
        if not _usable(cue, length_s) or (heard and cue.start_s < heard[-1].start_s):
            return None
        heard.append(Heard(float(cue.start_s), float(cue.end_s), cue.text))
    return heard
