"""`describe_video(..., coverage="full")`: the whole range watched window by window (the map step), the question
answered from the windows' timestamped notes (the reduce step); the method is `windows`'s.

Memory stays flat in the video's length: one window's frames are decoded, described and dropped before the next
(with a serving engine, as many windows at a time as it takes requests). Cancelling stops between tokens; a
window's notes are kept only once they are complete.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from llava_video_mcp.tools.answer.progress import model_progress, span
from llava_video_mcp.tools.answer.results import (
    Clock,
    Segment,
    VideoAnswer,
    VideoInfo,
    answer_of,
    notes_of,
    transcript_cues,
    video_info,
)
from llava_video_mcp.tools.answer.steps import (
    Stages,
    ask,
    fetched,
    index_file,
    load_model,
    safe_for,
    scene_cuts,
    timed,
)
from llava_video_mcp.tools.answer.windows import (
    NOTES_TOKENS,
    REDUCE_CHARS,
    NotesStore,
    Window,
    WindowNotes,
    groups_within,
    plan_windows,
    shown_length,
)
from llava_video_mcp.tools.backends import Generation, Prompt, VideoLanguageBackend
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import LimitError
from llava_video_mcp.tools.frames import (
    Cut,
    SamplingPlan,
    StreamInfo,
    checked_range,
    outline,
    sample_with_plan,
    stream_notes,
)
from llava_video_mcp.tools.media import LocalVideo
from llava_video_mcp.tools.plural import plural
from llava_video_mcp.tools.progress import Progress
from llava_video_mcp.tools.prompt import (
    MAX_TRANSCRIPT_CHARS,
    bounded_tracks,
    condense_prompt,
    notes_prompt,
    window_prompt,
)
from llava_video_mcp.tools.timeline import TimedText, TrackText, clock, in_range
from llava_video_mcp.tools.tracks import Tracks, TranscriptOptions


@dataclass(frozen=True)
class WindowOptions:
    window_s: float = 60.0
    """Longest window of a full-coverage call."""
    max_windows: int = 120
    """Most windows one call may watch: two hours at 60 s."""


@dataclass(frozen=True)
class Watching:
    """What every window of one call shares."""

    video: LocalVideo
    info: StreamInfo
    plan: SamplingPlan
    transcript: TranscriptOptions
    heard: list[TrackText]
    """What the tracks hold for the whole range, each window's share taken from it."""
    backend: VideoLanguageBackend
    windows: Sequence[Window]
    stages: int
    start_s: float
    end_s: float
    cuts: Sequence[Cut]
    least_frames: int
    """Notes kept by an earlier watch are reused when it asked for at least this many frames a window."""


@dataclass(frozen=True)
class _Pending:
    """A window whose notes the model is to write: its frames' times, its cues and its prompt."""

    window: Window
    key: str
    label: str
    times: list[float]
    cues: list[TimedText]
    """What is said there, for the result (`Tracks.transcript`)."""
    prompt: Prompt


class FullWatch:
    def __init__(
        self,
        stages: Stages,
        options: WindowOptions,
        progress: Progress,
        cancel: CancelToken | None,
    ) -> None:
        self.stages = stages
        self.options = options
        self.progress = progress
        self.cancel = cancel

    def answer(
        self, source: str, question: str, plan: SamplingPlan, transcript: TranscriptOptions, max_new_tokens: int
    ) -> VideoAnswer:
        clock_ = Clock()
        with fetched(self.stages, [source], transcript, [span(self.progress, 0, 1, 1)], clock_, self.cancel) as [video]:
            watching, notes = self.watch(video, plan, transcript, clock_)
        stages, windows = watching.stages, watching.windows
        self.progress(stages - 1, stages, f"Answering from the notes of {plural(len(windows), 'window')}")
        generation = self._reduce(watching, notes, question, max_new_tokens, clock_)
        self.progress(stages, stages, "Done")
        note = (
            f'coverage="full": {plural(len(windows), "window")} of at most {self.options.window_s:g} s, up to '
            f"{plural(plan.num_frames, 'frame')} each; the frames seen and each window's notes are in segments."
        )
        seen = watched_info(watching, self.stages.tracks, note)
        return answer_of(generation, question, [seen], watching.backend, clock_, segments_of(notes), int(clock_.reused))

    def watch(
        self,
        video: LocalVideo,
        plan: SamplingPlan,
        transcript: TranscriptOptions,
        clock_: Clock,
        extra_stages: int = 1,
        least_frames: int | None = None,
        heard: list[TrackText] | None = None,
    ) -> tuple[Watching, list[WindowNotes]]:
        """The range's windows and their notes (the map step), each from the store or the model; the stages after
        them (`extra_stages`: the answer, or a search's) are the caller's. Kept notes are reused when their watch
        asked for at least `least_frames` frames a window (the plan's count unless given): a watch with more frames
        saw at least as much. `heard`: the tracks' text of the plan's range, when the caller has read it already."""
        info, keyframes = outline(video.path, index_file(video))
        start, end = checked_range(plan.start_s, plan.end_s, info.duration_s, info.stated_duration_s)
        refused = self.refusal(start, end, keyframes)
        if refused is not None:
            raise refused
        with self.stages.fetcher.cache.locked(_turn(video), self.cancel):
            cuts = scene_cuts(video, info.duration_s, span(self.progress, 0, 1, 100), self.cancel)
            windows = plan_windows(start, end, self.options.window_s, keyframes, cuts)
            if len(windows) > self.options.max_windows:
                # The scene changes seen split more windows than the keyframes' guess did: the guess fits.
                windows = plan_windows(start, end, self.options.window_s, keyframes)
            stages = len(windows) + 1 + extra_stages
            if heard is None:
                hearing = span(self.progress, 0, 1, stages)
                heard = self.stages.tracks.read_all(video, start, end, transcript, hearing, self.cancel)
                clock_.spent(self.stages.tracks.timings(heard))
            backend = load_model(self.stages.model, span(self.progress, 1, 1, stages), clock_)
            self.progress(1, stages, f"Running {backend.model_id} on {plural(len(windows), 'window')}")
            least = plan.num_frames if least_frames is None else least_frames
            watching = Watching(video, info, plan, transcript, heard, backend, windows, stages, start, end, cuts, least)
            return watching, self._map(watching, clock_)

    def refusal(self, start: float, end: float, keyframes: Sequence[float]) -> LimitError | None:
        """The refusal of a range that makes more windows than one call may watch (`max_windows`), None when it
        fits; known before anything is decoded, from the windows the keyframes place (an encoder's scene-change
        keyframes stand for the scene changes until these are seen, and `watch` keeps to that count)."""
        limit, window_s = self.options.max_windows, self.options.window_s
        length = end - start
        fewest = math.ceil(length / window_s - 1e-9)
        # Far past the limit, the plan is not made (it would take long): the range is refused whatever it holds.
        far = fewest > 2 * limit
        count = fewest if far else len(plan_windows(start, end, window_s, keyframes))
        if count <= limit:
            return None
        fits = limit * window_s
        makes = f"at least {count}" if far else str(count)
        return LimitError(
            f"This range lasts {clock(length)} and makes {makes} windows of at most {window_s:g} s, over this "
            f"server's limit of {limit} (--max-windows). Watch at most {clock(fits)} at a time with start_s/end_s "
            f"(e.g. start_s={start:g}, end_s={start + fits:g}), or start the server with --window-s "
            f"{math.ceil(length / limit)} or --max-windows {count}."
        )

    def _map(self, watching: Watching, clock_: Clock) -> list[WindowNotes]:
        """Each window's notes: from the store, or from the model; windows run as many at a time as the backend
        takes calls (one in process), or in batches where it batches (CUDA), and only complete notes are stored."""
        video, backend, windows = watching.video, watching.backend, watching.windows
        store = NotesStore(video.store / "notes" if video.store is not None else None)
        if backend.batch_size > 1 and len(windows) > 1:
            return self._map_batched(watching, store, clock_)
        if backend.max_concurrency == 1 or len(windows) == 1:
            return [self._window(watching, window, store, clock_) for window in windows]
        with ThreadPoolExecutor(max_workers=min(backend.max_concurrency, len(windows))) as pool:
            return list(pool.map(lambda window: self._window(watching, window, store, clock_), windows))

    def _map_batched(self, watching: Watching, store: NotesStore, clock_: Clock) -> list[WindowNotes]:
        """The windows a batch at a time: kept notes are taken as they are, the others read together."""
        backend, windows, size = watching.backend, watching.windows, watching.backend.batch_size
        notes: list[WindowNotes] = []
        for start in range(0, len(windows), size):
            group = windows[start : start + size]
            found = [self._prepared(watching, window, store, clock_) for window in group]
            pending = [item for item in found if isinstance(item, _Pending)]
            if pending:
                first, last = pending[0].window.number, pending[-1].window.number
                label = f"Windows {first}-{last} of {len(windows)}" if first != last else pending[0].label
                relay = model_progress(self.progress, first, watching.stages, label)
                with timed(clock_, "model_s"):
                    answers = backend.answer_batch([p.prompt for p in pending], NOTES_TOKENS, relay, self.cancel)
                clock_.add("queue_s", max(answer.queue_s for answer in answers))
                done = {id(p): self._noted(watching, p, a.text, store) for p, a in zip(pending, answers, strict=True)}
            notes += [done[id(item)] if isinstance(item, _Pending) else item for item in found]
        return notes

    def _window(self, watching: Watching, window: Window, store: NotesStore, clock_: Clock) -> WindowNotes:
        found = self._prepared(watching, window, store, clock_)
        if not isinstance(found, _Pending):
            return found
        relay = model_progress(self.progress, window.number, watching.stages, found.label)
        generation = ask(watching.backend, found.prompt, NOTES_TOKENS, relay, clock_, self.cancel)
        return self._noted(watching, found, generation.text, store)

    def _prepared(self, watching: Watching, window: Window, store: NotesStore, clock_: Clock) -> WindowNotes | _Pending:
        """A window's kept notes, or its frames and prompt for the model."""
        plan, backend = watching.plan, watching.backend
        tracks = bounded_tracks(
            [replace(t, cues=in_range(t.cues, window.start_s, window.end_s)) for t in watching.heard],
            MAX_TRANSCRIPT_CHARS,
        )
        said = self.stages.tracks.transcript(tracks)
        cues = list(said[0].cues) if said is not None else []
        key = NotesStore.key(
            backend.model_id, window.start_s, window.end_s, plan.keyframes_only, self.stages.frame_side,
            _shown(tracks), NOTES_TOKENS,
        )  # fmt: skip
        label = f"Window {window.number} of {len(watching.windows)} ({clock(window.start_s)}-{clock(window.end_s)})"
        kept = store.get(key)
        if kept is not None and kept.asked_frames >= watching.least_frames:
            clock_.add("reused", 1)
            self.progress(window.number, watching.stages, f"{label}: notes from an earlier call")
            return kept
        self.progress(window.number, watching.stages, f"{label}: sampling {plural(plan.num_frames, 'frame')}")
        window_plan = SamplingPlan(plan.num_frames, window.start_s, window.end_s, plan.fps, plan.keyframes_only)
        with timed(clock_, "decode_s"):
            sample = sample_with_plan(
                watching.video.path, window_plan, cancel=self.cancel, index_file=index_file(watching.video)
            )
        times = [f.timestamp_s for f in sample.frames]
        text = window_prompt(
            watching.video.title, watching.info.duration_s, window.start_s, window.end_s, times, tracks,
            safe_for(backend),
        )  # fmt: skip
        prompt = Prompt([f.image for f in sample.frames], text.text, text.question_start)
        return _Pending(window, key, label, times, cues, prompt)

    def _noted(self, watching: Watching, pending: _Pending, text: str, store: NotesStore) -> WindowNotes:
        window = pending.window
        notes = WindowNotes(window.start_s, window.end_s, pending.times, pending.cues, text, watching.plan.num_frames)
        store.put(pending.key, notes)
        return notes

    def _reduce(
        self, watching: Watching, notes: Sequence[WindowNotes], question: str, max_new_tokens: int, clock_: Clock
    ) -> Generation:
        """The answer from the notes; notes longer than one prompt takes are condensed group by group first."""
        backend, safe, stages = watching.backend, safe_for(watching.backend), watching.stages
        relay = model_progress(self.progress, stages - 1, stages)
        spans = [TimedText(n.start_s, n.end_s, n.notes) for n in notes]
        while shown_length(spans) > REDUCE_CHARS and len(spans) > 1:
            groups = groups_within(spans, REDUCE_CHARS)
            condensed = []
            for number, group in enumerate(groups, 1):
                self.progress(stages - 1, stages, f"Condensing the notes: group {number} of {len(groups)}")
                text = condense_prompt(group, safe)
                condense = Prompt([], text.text, text.question_start)
                generation = ask(backend, condense, NOTES_TOKENS, relay, clock_, self.cancel)
                condensed.append(TimedText(group[0].start_s, group[-1].end_s, generation.text))
            spans = condensed
        text = notes_prompt(watching.video.title, watching.info.duration_s, spans, question, safe)
        return ask(backend, Prompt([], text.text, text.question_start), max_new_tokens, relay, clock_, self.cancel)


def _turn(video: LocalVideo) -> str:
    """The name calls watching the same video take turns under: the second finds the first's scene changes and
    notes kept, instead of finding and writing them again beside it."""
    return f"watch:{video.store if video.store is not None else video.path}"


def watched_info(watching: Watching, tracks: Tracks, note: str) -> VideoInfo:
    """The result's `videos` entry of a watched range: no frames of its own (they are the segments')."""
    return video_info(
        watching.video, watching.info, start_s=watching.start_s, end_s=watching.end_s,
        frames_requested=watching.plan.num_frames, frames=[], frames_from_cache=False,
        note=" ".join(n for n in (note, stream_notes(watching.info), *notes_of(watching.heard)) if n),
        said=tracks.transcript(watching.heard),
        fields=tracks.fields(watching.heard),
    )  # fmt: skip


def _shown(tracks: Sequence[TrackText]) -> list[object]:
    """The tracks' cues as a window's notes depend on them: one track's as (start, end, text), several also named."""
    speaking = [t for t in tracks if t.cues]
    if len(speaking) <= 1:
        return [(c.start_s, c.end_s, c.text) for t in speaking for c in t.cues]
    return [(t.name, [(c.start_s, c.end_s, c.text) for c in t.cues]) for t in speaking]


def segments_of(notes: Sequence[WindowNotes]) -> list[Segment]:
    return [
        Segment(
            start_s=round(n.start_s, 3),
            end_s=round(n.end_s, 3),
            frames=[round(t, 3) for t in n.frames],
            transcript=transcript_cues(n.cues),
            notes=n.notes,
        )
        for n in notes
    ]
