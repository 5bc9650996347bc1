"""Every text the model reads, as pure functions of what a call saw: the question about sampled frames (one video
or several), a window's notes request, condensing notes, and the question answered from notes.

The chat template renders every image before the text, so the text is the only place the model learns which
frames belong to which video and when each was taken. Text from strangers (titles, subtitles, notes that quote
them, the question) goes through `safe` (the backend's neutralisation of special tokens) wherever it enters.
Everything before the question is the same for every question about the same frames: backends reuse its work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llava_video_mcp.tools.prompt.subtitles import render
from llava_video_mcp.tools.timeline import TimedText, TrackText, clock

_HERE = "in that part of the video"
Safe = Callable[[str], str]
"""Makes text from strangers harmless in a prompt (see `untrusted.neutralise`)."""

DEFAULT_QUESTION = (
    "Describe this video in detail: the setting, the people, animals or objects in it, "
    "and what happens from beginning to end."
)
MAP_INSTRUCTION = (
    "Describe in detail what happens in this part of the video: the setting, the people and objects, what they do "
    "and say, any text shown, and how it changes. Give the time (MM:SS) of each event."
)
CONDENSE_INSTRUCTION = (
    "\n\nCondense these notes into one shorter paragraph that keeps every event with its time (MM:SS)."
)


@dataclass(frozen=True)
class PromptText:
    """The text after the frames; `text[:question_start]` describes them and is the same for every question."""

    text: str
    question_start: int


@dataclass(frozen=True)
class SeenVideo:
    """One video as a prompt describes it."""

    title: str | None
    duration_s: float
    times_s: Sequence[float]
    """Exact times of the frames the model sees, in order."""
    tracks: Sequence[TrackText] = ()
    """What the range says or shows, track by track (`tools.tracks`)."""
    scenes: Sequence[int] = ()
    """The scene (1 for the video's first) each frame is in, where the frames were placed by scene; else empty."""


def question_prompt(videos: Sequence[SeenVideo], question: str, safe: Safe) -> PromptText:
    """A question about sampled frames of one video or several: which frames are which, their tracks (subtitles,
    speech heard...), then the question."""
    context = _frame_guide(videos, safe) + _tracks(videos, safe) + "\n\n"
    return PromptText(context + safe(question), len(context))


def window_prompt(
    title: str | None, duration_s: float, start_s: float, end_s: float, times_s: Sequence[float],
    tracks: Sequence[TrackText], safe: Safe,
) -> PromptText:  # fmt: skip
    """A window's notes request: its frames placed in the whole video, its tracks, then MAP_INSTRUCTION."""
    titled = f' "{safe(title)}"' if title else ""
    guide = (
        f"The {len(times_s)} images are frames from {clock(start_s)} to {clock(end_s)} of a video{titled} "
        f"({clock(duration_s)} long), in time order, taken at {', '.join(_stamp(t) for t in times_s)}."
    )
    guide += "".join(f"\n\n{text.heading} {_HERE}:\n" + safe(render(text.cues)) for text in tracks if text.cues)
    guide += "\n\n"
    return PromptText(guide + MAP_INSTRUCTION, len(guide))


def condense_prompt(notes: Sequence[TimedText], safe: Safe) -> PromptText:
    """Notes on consecutive parts, to be condensed into one shorter paragraph that keeps the times."""
    context = "Notes on consecutive parts of a video, each with its time span:\n\n" + safe(_spans(notes))
    return PromptText(context + CONDENSE_INSTRUCTION, len(context))


def notes_prompt(
    title: str | None, duration_s: float, notes: Sequence[TimedText], question: str, safe: Safe
) -> PromptText:
    """The question answered from the timestamped notes on the whole range (text only)."""
    titled = f' "{title}"' if title else ""
    context = (
        f"Notes on consecutive parts of a video{safe(titled)} ({clock(duration_s)} long), each with its time span, "
        "written while watching it:\n\n" + safe(_spans(notes)) + "\n\n"
    )
    return PromptText(context + safe(question), len(context))


def rank_prompt(title: str | None, duration_s: float, notes: Sequence[TimedText], query: str, safe: Safe) -> PromptText:
    """Which of the numbered parts (windows' notes) show what the query names (text only)."""
    titled = f' "{title}"' if title else ""
    parts = "\n\n".join(f"Part {i} {span_label(n.start_s, n.end_s)}: {n.text}" for i, n in enumerate(notes, 1))
    context = (
        f"Notes on consecutive parts of a video{safe(titled)} ({clock(duration_s)} long), written while watching "
        "it:\n\n" + safe(parts) + "\n\n"
    )
    question = (
        f"Which parts show or mention this: {query}\nReply with the part numbers, best first, separated by commas, "
        "or none."
    )
    return PromptText(context + safe(question), len(context))


def look_question(query: str, frames: int) -> str:
    """What the model is asked of the frames around a candidate moment (goes through `question_prompt`)."""
    return (
        f"In which of these frames does this happen: {query}\nReply with the frame numbers (1 to {frames}), then "
        "one short line saying what happens there."
    )


def span_label(start_s: float, end_s: float) -> str:
    return f"[{clock(start_s)}-{clock(end_s)}]"


def _spans(notes: Sequence[TimedText]) -> str:
    return "\n\n".join(f"{span_label(n.start_s, n.end_s)} {n.text}" for n in notes)


def _frame_guide(videos: Sequence[SeenVideo], safe: Safe) -> str:
    def titled(video: SeenVideo) -> str:
        return f' "{safe(video.title)}"' if video.title else ""

    if len(videos) == 1:
        [video] = videos
        return (
            f"The {len(video.times_s)} images are frames of one video{titled(video)} "
            f"({video.duration_s:.1f} s long), in time order, taken at {_times(video)}."
        )
    total = sum(len(v.times_s) for v in videos)
    lines = [f"The {total} images are frames from {len(videos)} videos, in order."]
    first = 1
    for number, video in enumerate(videos, 1):
        last = first + len(video.times_s) - 1
        images = f"Image {first}" if first == last else f"Images {first}-{last}"
        lines.append(
            f"{images}: Video {number}{titled(video)} ({video.duration_s:.1f} s long), taken at {_times(video)}."
        )
        first = last + 1
    return "\n".join(lines)


def _tracks(videos: Sequence[SeenVideo], safe: Safe) -> str:
    """Each track's heading, then its cues: one video's "in that part of the video", several videos' each named."""
    if len(videos) == 1:
        return "".join(f"\n\n{t.heading} {_HERE}:\n" + safe(render(t.cues)) for t in videos[0].tracks if t.cues)
    parts = [
        f"{t.heading} in Video {n}:\n{safe(render(t.cues))}"
        for n, v in enumerate(videos, 1)
        for t in v.tracks
        if t.cues
    ]
    return "\n\n" + "\n\n".join(parts) if parts else ""


def _times(video: SeenVideo) -> str:
    """Each frame's time, with the scene it is in where the frames were placed by scene (scenes counted from the
    video's start, so frames of one scene share a number)."""
    if not video.scenes:
        return ", ".join(f"{t:.2f} s" for t in video.times_s)
    return ", ".join(f"{t:.2f} s (scene {n})" for t, n in zip(video.times_s, video.scenes, strict=True))


def _stamp(seconds: float) -> str:
    return f"{clock(seconds)}.{int(seconds * 10) % 10}"
