"""`describe_video(..., coverage="full")`: the whole range watched window by window, the question answered from the
windows' timestamped notes (the method is `tools.coverage`'s).

Memory stays flat in the video's length: one window's frames are decoded, described and dropped before the next
(with a serving engine, as many windows at a time as it takes requests). Cancelling stops between tokens; a
window's notes are kept only once they are complete.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from llava_video_mcp.tools.answer.results import Segment, Timings, TokenCounts, TranscriptCue, VideoAnswer, VideoInfo
from llava_video_mcp.tools.answer.steps import (
    DEFAULT_QUESTION,
    FRAME_SIDE,
    Progress,
    TranscriptOptions,
    download_progress,
    index_file,
    load_model,
    model_info,
    model_progress,
    span,
    subtitle_cues,
)
from llava_video_mcp.tools.answer.windows import (
    MAP_INSTRUCTION,
    NOTES_TOKENS,
    REDUCE_CHARS,
    NotesStore,
    Window,
    WindowNotes,
    clock,
    groups_within,
    plan_windows,
)
from llava_video_mcp.tools.backends.base import Generation, ModelProvider, Prompt, VideoLanguageBackend
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import LimitError
from llava_video_mcp.tools.frames import SamplingPlan, checked_range, outline, sample_with_plan
from llava_video_mcp.tools.media.sources import LocalVideo, VideoFetcher
from llava_video_mcp.tools.prompt.subtitles import MAX_TRANSCRIPT_CHARS, Cue, bounded, cues_in_range, render
from llava_video_mcp.tools.untrusted import clean_question, neutralise


@dataclass(frozen=True)
class WindowOptions:
    window_s: float = 60.0
    """Longest window of a full-coverage call."""
    max_windows: int = 120
    """Most windows one call may watch: two hours at 60 s."""


@dataclass
class _Tally:
    decode_s: float = 0.0
    queue_s: float = 0.0
    from_cache: int = 0


class FullWatch:
    def __init__(
        self,
        fetcher: VideoFetcher,
        model: ModelProvider,
        options: WindowOptions,
        progress: Progress,
        cancel: CancelToken | None,
    ) -> None:
        self.fetcher = fetcher
        self.model = model
        self.options = options
        self.progress = progress
        self.cancel = cancel

    def answer(
        self, source: str, question: str | None, plan: SamplingPlan, transcript: TranscriptOptions, max_new_tokens: int
    ) -> VideoAnswer:
        started = time.perf_counter()
        asked = clean_question(question) or DEFAULT_QUESTION
        language = transcript.language if transcript.include else None
        self.progress(0, 1, f"Fetching {source}")
        hook = download_progress(self.progress, 0, 1, 1)
        with self.fetcher.fetched(source, subtitle_language=language, on_progress=hook, cancel=self.cancel) as video:
            info, keyframes = outline(video.path, index_file(video))
            start, end = checked_range(plan.start_s, plan.end_s, info.duration_s, info.stated_duration_s)
            windows = plan_windows(start, end, self.options.window_s, keyframes)
            self._check_count(windows, start, end)
            cues = subtitle_cues(video) if transcript.include else []
            stages = len(windows) + 2
            backend, load_s = load_model(self.model, span(self.progress, 1, 1, stages))
            self.progress(1, stages, f"Running {backend.model_id} on {len(windows)} windows")
            inference_started = time.perf_counter()
            tally = _Tally()
            notes = self._map(video, info.duration_s, windows, plan, cues, language, backend, tally, stages)
        self.progress(stages - 1, stages, f"Answering from the notes of {len(windows)} windows")
        generation = self._reduce(video, info.duration_s, notes, asked, max_new_tokens, backend, stages, tally)
        self.progress(stages, stages, "Done")
        inference_s = time.perf_counter() - inference_started - tally.decode_s - tally.queue_s
        return VideoAnswer(
            answer=generation.text,
            question=asked,
            videos=[
                VideoInfo(
                    source=video.source,
                    title=video.title,
                    duration_s=round(info.duration_s, 3),
                    fps=round(info.fps, 3) if info.fps else None,
                    width=info.width,
                    height=info.height,
                    codec=info.codec,
                    frame_count=info.frame_count,
                    from_cache=video.from_cache,
                    start_s=round(start, 3),
                    end_s=round(end, 3),
                    frames_requested=plan.num_frames,
                    frames=[],
                    frames_from_cache=False,
                    note=f'coverage="full": {len(windows)} windows of at most {self.options.window_s:g} s, up to '
                    f"{plan.num_frames} frames each; the frames seen and each window's notes are in segments.",
                )
            ],
            model=model_info(backend),
            timings=Timings(
                fetch_s=round(video.fetch_s, 3),
                decode_s=round(tally.decode_s, 3),
                model_load_s=round(load_s, 3),
                queue_s=round(tally.queue_s, 3),
                inference_s=round(max(inference_s, 0.0), 3),
                total_s=round(time.perf_counter() - started, 3),
            ),
            tokens=TokenCounts(
                prompt=generation.prompt_tokens,
                generated=generation.generated_tokens,
                reused=generation.reused_tokens,
            ),
            stopped_by_token_limit=generation.hit_token_limit,
            segments=[
                Segment(
                    start_s=round(n.start_s, 3),
                    end_s=round(n.end_s, 3),
                    frames=[round(t, 3) for t in n.frames],
                    transcript=[TranscriptCue(start_s=c.start_s, end_s=c.end_s, text=c.text) for c in n.cues] or None,
                    notes=n.notes,
                )
                for n in notes
            ],
            segments_from_cache=tally.from_cache,
        )

    def _check_count(self, windows: Sequence[Window], start: float, end: float) -> None:
        limit = self.options.max_windows
        if len(windows) <= limit:
            return
        span = end - start
        fits = limit * self.options.window_s
        raise LimitError(
            f"This range lasts {clock(span)} and makes {len(windows)} windows of at most {self.options.window_s:g} s, "
            f"over this server's limit of {limit} (--max-windows). Watch at most {clock(fits)} at a time with "
            f"start_s/end_s (e.g. start_s={start:g}, end_s={start + fits:g}), or start the server with --window-s "
            f"{math.ceil(span / limit)} or --max-windows {len(windows)}."
        )

    def _map(
        self,
        video: LocalVideo,
        duration_s: float,
        windows: Sequence[Window],
        plan: SamplingPlan,
        cues: Sequence[Cue],
        language: str | None,
        backend: VideoLanguageBackend,
        tally: _Tally,
        stages: int,
    ) -> list[WindowNotes]:
        """Each window's notes: from the store, or from the model; windows run as many at a time as the backend
        takes calls (one in process), and only complete notes are stored."""
        store = NotesStore(video.store / "notes" if video.store is not None else None)

        def describe(window: Window) -> WindowNotes:
            key = NotesStore.key(
                backend.model_id, window.start_s, window.end_s, plan.num_frames, plan.keyframes_only, FRAME_SIDE,
                language, NOTES_TOKENS,
            )  # fmt: skip
            step = window.number
            label = f"Window {window.number} of {len(windows)} ({clock(window.start_s)}-{clock(window.end_s)})"
            kept = store.get(key)
            if kept is not None:
                tally.from_cache += 1
                self.progress(step, stages, f"{label}: notes from an earlier call")
                return kept
            self.progress(step, stages, f"{label}: sampling {plan.num_frames} frames")
            decode_started = time.perf_counter()
            window_plan = SamplingPlan(plan.num_frames, window.start_s, window.end_s, plan.fps, plan.keyframes_only)
            sample = sample_with_plan(video.path, window_plan, cancel=self.cancel, index_file=index_file(video))
            tally.decode_s += time.perf_counter() - decode_started
            window_cues = bounded(cues_in_range(cues, window.start_s, window.end_s), MAX_TRANSCRIPT_CHARS)
            prompt = _map_prompt(
                video, duration_s, window, [f.timestamp_s for f in sample.frames], window_cues, backend
            )
            relay = _labelled(model_progress(self.progress, step, stages), label)
            generation = backend.answer(
                Prompt([f.image for f in sample.frames], prompt.text, prompt.question_start),
                NOTES_TOKENS,
                relay,
                self.cancel,
            )
            tally.queue_s += generation.queue_s
            notes = WindowNotes(
                window.start_s, window.end_s, [f.timestamp_s for f in sample.frames], window_cues, generation.text
            )
            store.put(key, notes)
            return notes

        if backend.max_concurrency == 1 or len(windows) == 1:
            return [describe(window) for window in windows]
        with ThreadPoolExecutor(max_workers=min(backend.max_concurrency, len(windows))) as pool:
            return list(pool.map(describe, windows))

    def _reduce(
        self,
        video: LocalVideo,
        duration_s: float,
        notes: Sequence[WindowNotes],
        question: str,
        max_new_tokens: int,
        backend: VideoLanguageBackend,
        stages: int,
        tally: _Tally,
    ) -> Generation:
        """The answer from the notes; notes longer than one prompt takes are condensed group by group first."""

        def safe(text: str) -> str:
            return neutralise(text, backend.special_tokens)

        relay = model_progress(self.progress, stages - 1, stages)
        texts = [f"[{clock(n.start_s)}-{clock(n.end_s)}] {n.notes}" for n in notes]
        while sum(len(t) for t in texts) > REDUCE_CHARS and len(texts) > 1:
            condensed = []
            groups = groups_within(texts, REDUCE_CHARS)
            for number, group in enumerate(groups, 1):
                self.progress(stages - 1, stages, f"Condensing the notes: group {number} of {len(groups)}")
                context = "Notes on consecutive parts of a video, each with its time span:\n\n" + safe(
                    "\n\n".join(group)
                )
                instruction = (
                    "\n\nCondense these notes into one shorter paragraph that keeps every event with its time (MM:SS)."
                )
                generation = backend.answer(
                    Prompt([], context + instruction, len(context)), NOTES_TOKENS, relay, self.cancel
                )
                tally.queue_s += generation.queue_s
                span = group[0].split("]", 1)[0].split("-", 1)[0] + "-" + group[-1].split("]", 1)[0].split("-", 1)[1]
                condensed.append(f"{span}] {generation.text}")
            texts = condensed
        title = f' "{video.title}"' if video.title else ""
        context = (
            f"Notes on consecutive parts of a video{safe(title)} ({clock(duration_s)} long), each with its time span, "
            "written while watching it:\n\n" + safe("\n\n".join(texts)) + "\n\n"
        )
        generation = backend.answer(
            Prompt([], context + safe(question), len(context)), max_new_tokens, relay, self.cancel
        )
        tally.queue_s += generation.queue_s
        return generation


@dataclass(frozen=True)
class _MapPrompt:
    text: str
    question_start: int


def _map_prompt(
    video: LocalVideo,
    duration_s: float,
    window: Window,
    times: Sequence[float],
    cues: Sequence[Cue],
    backend: VideoLanguageBackend,
) -> _MapPrompt:
    def safe(text: str) -> str:
        return neutralise(text, backend.special_tokens)

    title = f' "{safe(video.title)}"' if video.title else ""
    guide = (
        f"The {len(times)} images are frames from {clock(window.start_s)} to {clock(window.end_s)} of a video{title} "
        f"({clock(duration_s)} long), in time order, taken at {', '.join(_stamp(t) for t in times)}."
    )
    if cues:
        guide += "\n\nSubtitles spoken in that part of the video:\n" + safe(render(cues))
    guide += "\n\n"
    return _MapPrompt(guide + MAP_INSTRUCTION, len(guide))


def _stamp(seconds: float) -> str:
    return f"{clock(seconds)}.{int(seconds * 10) % 10}"


def _labelled(report: Callable[[float, str], None], label: str) -> Callable[[float, str], None]:
    """The model's progress inside a window, prefixed with which window it is."""

    def relay(fraction: float, message: str) -> None:
        report(fraction, f"{label}: {message}")

    return relay
