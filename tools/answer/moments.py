"""`find_moments`: when something happens in a video, as time ranges with the frames and words they rest on.

1. Words first: a cue (subtitles, or speech heard) that holds every content word of the query is a moment, exact
   to the cue, with no model call; when the words hold `max_moments` moments, they are the answer, and the model
   is never loaded nor a window watched.
2. The range is watched window by window (`watch`: the same notes as `coverage="full"`, computed once and kept), and
   the model ranks the windows' notes against the query in one text-only call.
3. The best windows are looked at again: frames placed so that every scene in the window is seen, and the model
   says in which of them it happens; the range is trimmed to those frames. A `reference` image (what the query
   pictures: "when does this appear") is shown after each such window's frames; the notes the windows are ranked by
   are text shared with `coverage="full"`, so the query's words should name the thing too.

Without a model (`--model none`), step 1 is the same, and where the words hold fewer moments, ranges spread over
the rest follow them, each with two frames, for the calling agent to judge.

Replies from the model are read as data: only numbers in range are taken from them, and a reply that names none
leaves the window whole (its description then says so). There is always at least one moment: with no words and no
window named, the window whose notes share the most words with the query.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from llava_video_mcp.tools.answer.evidence import (
    AtSide,
    Evidence,
    LabelledFrame,
    Shown,
    checked_side,
    evidence_images,
    label,
    noted,
)
from llava_video_mcp.tools.answer.progress import model_progress, span
from llava_video_mcp.tools.answer.results import (
    Clock,
    Moment,
    MomentsAnswer,
    TokenCounts,
    model_info,
    notes_of,
    video_info,
)
from llava_video_mcp.tools.answer.steps import Stages, ask, fetched, index_file, safe_for, timed
from llava_video_mcp.tools.answer.watch import FullWatch, Watching, WindowOptions, watched_info
from llava_video_mcp.tools.answer.windows import WindowNotes
from llava_video_mcp.tools.backends import Generation, InferenceProgress, Prompt
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import LimitError, SourceError
from llava_video_mcp.tools.frames import (
    Cut,
    SampledFrame,
    SamplingPlan,
    StreamInfo,
    checked_range,
    image_for_model,
    outline,
    sample_with_plan,
    scene_targets,
    stream_notes,
)
from llava_video_mcp.tools.limits import MAX_MOMENTS
from llava_video_mcp.tools.media import LocalImage, LocalMedia, LocalVideo, Needs
from llava_video_mcp.tools.plural import plural
from llava_video_mcp.tools.progress import Progress
from llava_video_mcp.tools.prompt import SeenImage, SeenVideo, look_question, question_prompt, rank_prompt
from llava_video_mcp.tools.timeline import TimedText, TrackText
from llava_video_mcp.tools.tracks import WITH_TRANSCRIPT, Basis
from llava_video_mcp.tools.untrusted import clean_question, without_controls

LOOK_FRAMES = 8
"""Frames a candidate window is looked at again with."""
NOTES_FRAMES = 8
"""Frames a window's notes are written from: the same as a default `coverage="full"` call's, so each reuses the
other's notes."""
SPREAD_RANGES = 8
"""Most candidate ranges a search without a model spreads over its range (never fewer than max_moments)."""
SPREAD_S = 10.0
"""Seconds a candidate range spans, where fewer than SPREAD_RANGES cover the range."""
SPREAD_FRAMES = 2
"""Frames each candidate of a search without a model comes with."""
_UNJUDGED = "A candidate range, not judged (no model): look at its frames to tell whether the query happens here."
RANK_TOKENS = 32
LOOK_TOKENS = 64
DESCRIPTION_CHARS = 200
_STOP_WORDS = frozenset(
    (
        "a", "an", "the", "is", "are", "was", "were", "be", "been", "of", "in", "on", "at", "to", "for", "from",
        "by", "with", "and", "or", "but", "does", "do", "did", "when", "where", "what", "who", "which", "how", "it",
        "its", "this", "that", "these", "those", "there", "he", "she", "they", "we", "you", "i", "his", "her",
        "their", "our", "your",
    )
)  # fmt: skip
_WORD = re.compile(r"\w+")
_DIGITS = re.compile(r"\d+")
_NUMBERS_FIRST = re.compile(r"^\s*(?:frames?\s*)?\d+(?:\s*(?:,|and|&|-|to)\s*\d+)*\s*[-:.,;]?\s*", re.IGNORECASE)
"""The frame numbers a reply starts with, taken off its description."""


@dataclass(frozen=True)
class _Unwatched:
    """A search before any window is watched: the video, its range, what its tracks hold, the query and how many
    moments it asks for."""

    video: LocalVideo
    info: StreamInfo
    start: float
    end: float
    heard: list[TrackText]
    query: str
    most: int
    clock: Clock

    def worded(self, said: list[_Candidate]) -> list[_Candidate]:
        """The first `most` moments the words hold, kept within the range (a cue may reach past it)."""
        chosen = said[: self.most]
        for candidate in chosen:
            candidate.start_s, candidate.end_s = max(candidate.start_s, self.start), min(candidate.end_s, self.end)
        return chosen


@dataclass
class _Candidate:
    start_s: float
    end_s: float
    basis: list[Basis]
    description: str = ""
    window: int | None = None
    """The window it came from (0-based), to be looked at again."""
    frames: list[SampledFrame] = field(default_factory=list)


def words(text: str) -> list[str]:
    """The content words of a text, lower case."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS]


def said(cues: Sequence[TimedText], query: str, basis: Basis) -> list[_Candidate]:
    """The cues holding every content word of the query, neighbours within 2 s merged, in time order."""
    wanted = set(words(query))
    if not wanted:
        return []
    found: list[_Candidate] = []
    for cue in cues:
        if not wanted <= set(words(cue.text)):
            continue
        if found and cue.start_s - found[-1].end_s <= 2.0:
            found[-1].end_s = max(found[-1].end_s, cue.end_s)
            found[-1].description += " " + cue.text
        else:
            found.append(_Candidate(cue.start_s, cue.end_s, [basis], cue.text))
    for candidate in found:
        candidate.description = f'Said: "{_short(candidate.description)}"'
    return found


def numbers_in(reply: str, highest: int) -> list[int]:
    """The numbers 1..highest a reply names, in its order, each once (the reply is data: nothing else is used).

    A run of digits longer than `highest` has is out of range before it is read: Python refuses to read more than
    4,300 digits as a number, and a reply may hold any number of them."""
    longest = len(str(highest))
    seen: list[int] = []
    for token in _DIGITS.findall(reply):
        digits = token.lstrip("0")
        if not digits or len(digits) > longest:
            continue
        number = int(digits)
        if number <= highest and number not in seen:
            seen.append(number)
    return seen


def _short(text: str) -> str:
    line = " ".join(without_controls(text).split())
    return line if len(line) <= DESCRIPTION_CHARS else line[: DESCRIPTION_CHARS - 1] + "…"


class MomentSearch:
    """One `find_moments` call."""

    def __init__(
        self,
        stages: Stages,
        windows: WindowOptions,
        progress: Progress,
        cancel: CancelToken | None,
    ) -> None:
        self.stages = stages
        self.tracks = stages.tracks
        self.watch = FullWatch(stages, windows, progress, cancel)
        self.progress = progress
        self.cancel = cancel
        self._prompt_tokens = 0
        self._generated = 0
        self._reference: tuple[SeenImage, Image.Image] | None = None

    def find(
        self,
        source: str,
        query: str,
        start_s: float | None,
        end_s: float | None,
        max_moments: int,
        evidence: Evidence,
        reference: str | None = None,
        frame_max_side: int | None = None,
    ) -> MomentsAnswer:
        """The moments of `query`; with `reference`, a still image of what it is about, shown with each window
        looked at closely; `frame_max_side`, the long side of the frames returned (see `evidence.AtSide`)."""
        asked = clean_question(query)
        if asked is None or not _WORD.search(asked):
            raise LimitError("find_moments needs a query: what to find, e.g. 'the goal' or 'when the dog barks'.")
        if not 1 <= max_moments <= MAX_MOMENTS:
            raise LimitError(f"max_moments must be 1 to {MAX_MOMENTS}; got {max_moments}.")
        checked_side(frame_max_side, evidence, self.stages.looking_only)
        shows: Evidence = "frames" if self.stages.looking_only else evidence
        clock = Clock()
        plan = SamplingPlan(NOTES_FRAMES, start_s, end_s, min_side=self.stages.frame_side)
        if reference is not None:
            with self.stages.fetcher.fetched_media(reference, needs=Needs(), cancel=self.cancel) as media:
                self._reference = self._read_reference(media)
        with fetched(self.stages, [source], WITH_TRANSCRIPT, [span(self.progress, 0, 1, 1)], clock, self.cancel) as [
            video
        ]:
            info, keyframes = outline(video.path, index_file(video))
            start, end = checked_range(plan.start_s, plan.end_s, info.duration_s, info.stated_duration_s)
            # A range too long to watch may still be answered by its subtitles (the tracks read without a model),
            # read without decoding anything; it is refused before its speech is heard or its scenes are looked for.
            too_long = self.watch.refusal(start, end, keyframes)
            reading = self.tracks if too_long is None else self.tracks.idle(WITH_TRANSCRIPT)
            heard = reading.read_all(video, start, end, WITH_TRANSCRIPT, span(self.progress, 0, 1, 2), self.cancel)
            clock.spent(self.tracks.timings(heard))
            unwatched = _Unwatched(video, info, start, end, heard, asked, max_moments, clock)
            worded = self._said_enough(unwatched)
            if worded is not None:
                answered, chosen = worded
                return _with_evidence(answered, self._evidence(video, info, chosen, shows, frame_max_side))
            if too_long is not None:
                found = len(self._said(heard, asked))
                if found:
                    raise LimitError(
                        f"{too_long} The subtitles hold {plural(found, 'moment')} of the query: "
                        f"max_moments={found} finds {'it' if found == 1 else 'them'} without watching."
                    )
                raise too_long
            if self.stages.looking_only:
                answered, chosen = self._frames_only(unwatched)
                return _with_evidence(answered, self._evidence(video, info, chosen, shows, frame_max_side))
            # Notes of any earlier watch of these windows serve a search, whatever its frame count; what is said
            # in the range was heard above.
            watching, notes = self.watch.watch(
                video, plan, WITH_TRANSCRIPT, clock, extra_stages=1 + max_moments, least_frames=1, heard=heard
            )
            candidates = self._candidates(watching, notes, asked, max_moments, clock)
            for number, candidate in enumerate(candidates, 1):
                self._look(watching, candidate, asked, number, clock)
            with timed(clock, "decode_s"):
                shown = self._evidence(video, info, candidates, shows, frame_max_side)
        self.progress(watching.stages, watching.stages, "Done")
        seen = watched_info(
            watching, self.tracks, f"find_moments: {plural(len(watching.windows), 'window')} watched for the query."
        )
        answer = MomentsAnswer(
            query=asked,
            moments=_moments(candidates),
            videos=[seen],
            model=model_info(watching.backend),
            timings=clock.timings(),
            tokens=TokenCounts(prompt=self._prompt_tokens or None, generated=self._generated),
            segments_from_cache=int(clock.reused),
        )
        return _with_evidence(answer, shown)

    def _read_reference(self, media: LocalMedia) -> tuple[SeenImage, Image.Image]:
        """The reference as the model takes it: a still image (an animated one's first frame); a video is refused."""
        if not isinstance(media, LocalImage):
            raise SourceError(
                f"The reference {media.source} is a video. Pass a still image (PNG, JPEG, WebP or GIF) as reference, "
                "and the video as source."
            )
        return SeenImage(media.title), image_for_model(media, self.stages.frame_side)

    def _said_enough(self, search: _Unwatched) -> tuple[MomentsAnswer, list[_Candidate]] | None:
        """The answer from the words alone when they hold `most` moments: no model loaded, no window watched (the
        frames behind each moment are decoded, nothing more); else None."""
        chosen = search.worded(self._said(search.heard, search.query))
        if len(chosen) < search.most:
            return None
        note = (
            f"find_moments: the words said hold {plural(len(chosen), 'moment')} (max_moments={search.most}), so no "
            "frame was watched and no model ran; ask for more moments to have the frames watched too."
        )
        framing = f"Found {plural(len(chosen), 'moment')} in the words said; taking their frames"
        return self._unjudged(search, chosen, 2, framing, note), chosen

    def _frames_only(self, search: _Unwatched) -> tuple[MomentsAnswer, list[_Candidate]]:
        """Without a model (`--model none`), when the words hold fewer than `most` moments: those moments, then
        ranges spread evenly over the rest, each with its frames, for the calling agent to judge."""
        worded = search.worded(self._said(search.heard, search.query))
        start, end = search.start, search.end
        count = min(SPREAD_RANGES, max(search.most, math.ceil((end - start) / SPREAD_S - 1e-9)))
        step = (end - start) / count
        spread = [
            _Candidate(start + i * step, start + (i + 1) * step, ["frames"], _UNJUDGED)
            for i in range(count)
            if not any(c.start_s < start + (i + 1) * step and c.end_s > start + i * step for c in worded)
        ]
        chosen = worded + spread
        said_part = (
            f"the words said hold {plural(len(worded), 'moment')} of the query (listed first); " if worded else ""
        )
        note = (
            f"find_moments: no model runs on this server (--model none), so {said_part}the other moments are "
            f"{plural(len(spread), 'candidate range')} spread over the range, not judged: their frames are attached "
            "as images labelled M<n> (the moment's number) and their time, for you to judge. Ask again with "
            "start_s/end_s around a candidate to see more of it (describe_video returns up to 32 frames)."
        )
        framing = f"Taking the frames of {plural(len(chosen), 'candidate range')}"
        return self._unjudged(search, chosen, SPREAD_FRAMES, framing, note), chosen

    def _unjudged(
        self, search: _Unwatched, chosen: list[_Candidate], frames_each: int, framing: str, note: str
    ) -> MomentsAnswer:
        """The answer no model judged: `chosen` as they are, `frames_each` frames decoded for each (`framing` says
        so in the progress), `note` saying why."""
        video, info, heard, clock = search.video, search.info, search.heard, search.clock
        self.progress(1, 2, framing)
        for candidate in chosen:
            candidate.frames = self._frames(video, (), candidate, frames_each, clock)
        self.progress(2, 2, "Done")
        seen = video_info(
            video, info, start_s=search.start, end_s=search.end, frames_requested=0, frames=[],
            frames_from_cache=False, note=" ".join(n for n in (note, stream_notes(info), *notes_of(heard)) if n),
            said=self.tracks.transcript(heard),
            fields=self.tracks.fields(heard),
        )  # fmt: skip
        return MomentsAnswer(
            query=search.query,
            moments=_moments(chosen),
            videos=[seen],
            model=None,
            timings=clock.timings(),
            tokens=TokenCounts(prompt=None, generated=0),
        )

    def _candidates(
        self, watching: Watching, notes: Sequence[WindowNotes], query: str, most: int, clock: Clock
    ) -> list[_Candidate]:
        """Words said first, then the windows the model names, then (with neither) the closest window by words."""
        chosen = self._said(watching.heard, query)[:most]
        for candidate in chosen:  # a cue may reach past the range asked for
            candidate.start_s = max(candidate.start_s, watching.start_s)
            candidate.end_s = min(candidate.end_s, watching.end_s)
        ranked = self._rank(watching, notes, query, clock)
        for window in ranked:
            note = notes[window]
            overlapping = [c for c in chosen if c.start_s < note.end_s and c.end_s > note.start_s]
            for candidate in overlapping:
                if "frames" not in candidate.basis:
                    candidate.basis.append("frames")
            if not overlapping and len(chosen) < most:
                chosen.append(_Candidate(note.start_s, note.end_s, ["frames"], window=window))
        if not chosen:
            wanted = set(words(query))
            closest = max(range(len(notes)), key=lambda i: (len(wanted & set(words(notes[i].notes))), -i))
            chosen.append(_Candidate(notes[closest].start_s, notes[closest].end_s, ["frames"], window=closest))
        return chosen

    def _rank(self, watching: Watching, notes: Sequence[WindowNotes], query: str, clock: Clock) -> list[int]:
        """The windows the model names for the query, best first (0-based)."""
        stage = len(watching.windows)
        self.progress(stage, watching.stages, f"Ranking {plural(len(notes), 'window')} against the query")
        spans = [TimedText(n.start_s, n.end_s, n.notes) for n in notes]
        text = rank_prompt(watching.video.title, watching.info.duration_s, spans, query, safe_for(watching.backend))
        relay = model_progress(self.progress, stage, watching.stages, "Ranking")
        reply = self._ask(watching, Prompt([], text.text, text.question_start), RANK_TOKENS, relay, clock)
        return [n - 1 for n in numbers_in(reply.text, len(notes))]

    def _look(self, watching: Watching, candidate: _Candidate, query: str, number: int, clock: Clock) -> None:
        """The candidate's frames, scene by scene; for a window, the model says which show it, and the range is
        trimmed to them."""
        stage = len(watching.windows) + number
        label_ = f"Looking closer at moment {number} ({candidate.start_s:.1f}-{candidate.end_s:.1f} s)"
        self.progress(stage, watching.stages, label_)
        count = LOOK_FRAMES if candidate.window is not None else 2
        shown = self._frames(watching.video, watching.cuts, candidate, count, clock)
        candidate.frames = shown
        if candidate.window is None:
            return
        seen = SeenVideo(watching.video.title, watching.info.duration_s, [f.timestamp_s for f in shown])
        named, pictured = self._reference if self._reference is not None else (None, None)
        question = look_question(query, len(shown), reference=named is not None)
        text = question_prompt([seen], question, safe_for(watching.backend), reference=named)
        relay = model_progress(self.progress, stage, watching.stages, f"Moment {number}")
        images = [f.image for f in shown] + ([pictured] if pictured is not None else [])
        prompt = Prompt(images, text.text, text.question_start)
        reply = self._ask(watching, prompt, LOOK_TOKENS, relay, clock).text
        first_line, _, rest = reply.strip().partition("\n")
        picked = numbers_in(first_line, len(shown))
        described = _short(rest if picked and rest.strip() else _NUMBERS_FIRST.sub("", reply))
        if picked:
            frames = [shown[i - 1] for i in sorted(picked)]
            step = (candidate.end_s - candidate.start_s) / max(len(shown), 1) / 2
            candidate.start_s = max(candidate.start_s, frames[0].timestamp_s - step)
            candidate.end_s = min(candidate.end_s, frames[-1].timestamp_s + step)
            candidate.frames = frames
        candidate.description = described or (
            "The window's notes match the query; the model named no frame in it." if not picked else "Seen here."
        )

    def _frames(
        self, video: LocalVideo, cuts: Sequence[Cut], candidate: _Candidate, count: int, clock: Clock
    ) -> list[SampledFrame]:
        """`count` frames of the candidate's range, one in each of its scenes where `cuts` are known."""
        times = scene_targets(cuts, candidate.start_s, candidate.end_s, count)
        plan = SamplingPlan(
            count, candidate.start_s, candidate.end_s, min_side=self.stages.frame_side, times_s=tuple(times)
        )
        with timed(clock, "decode_s"):
            return sample_with_plan(video.path, plan, cancel=self.cancel, index_file=index_file(video)).frames

    def _evidence(
        self,
        video: LocalVideo,
        info: StreamInfo,
        candidates: Sequence[_Candidate],
        evidence: Evidence,
        side: int | None,
    ) -> Shown:
        """The frames behind the moments, labelled `M<n>` and their time: as the model saw them, or at `side`
        (decoded again from the call's file where it asks more)."""
        if evidence == "none":
            return Shown([])
        if side is not None:
            sized = AtSide(side, self.cancel)
            for number, candidate in enumerate(candidates, 1):
                labels = [f"M{number} {label(round(frame.timestamp_s, 3))}" for frame in candidate.frames]
                sized.add_video(video.path, index_file(video), (info.width, info.height), candidate.frames, labels)
            return sized.shown()
        frames = [
            LabelledFrame(frame.image, f"M{number} {label(round(frame.timestamp_s, 3))}")
            for number, candidate in enumerate(candidates, 1)
            for frame in candidate.frames
        ]
        return Shown(evidence_images(frames, evidence))

    def _said(self, texts: Sequence[TrackText], query: str) -> list[_Candidate]:
        """The moments every track's cues hold (each with its track's basis), in time order."""
        found = [hit for text in texts for hit in said(text.cues, query, self.tracks.basis(text))]
        return sorted(found, key=lambda hit: hit.start_s)

    def _ask(
        self, watching: Watching, prompt: Prompt, max_new_tokens: int, relay: InferenceProgress, clock: Clock
    ) -> Generation:
        generation = ask(watching.backend, prompt, max_new_tokens, relay, clock, self.cancel)
        self._prompt_tokens += generation.prompt_tokens or 0
        self._generated += generation.generated_tokens
        return generation


def _moments(candidates: Sequence[_Candidate]) -> list[Moment]:
    return [
        Moment(
            start_s=round(c.start_s, 3),
            end_s=round(c.end_s, 3),
            frames=[round(f.timestamp_s, 3) for f in c.frames],
            description=c.description,
            basis=c.basis,
        )
        for c in candidates
    ]


def _with_evidence(answer: MomentsAnswer, shown: Shown) -> MomentsAnswer:
    noted(answer.videos, shown.note)
    return answer.with_images(shown.images)
