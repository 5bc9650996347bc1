"""Every text the model reads, as pure functions of what a call saw: the question about sampled frames (one video
or several, still images among them), a window's notes request, condensing notes, and the question answered from
notes.

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
DEFAULT_IMAGE_QUESTION = (
    "Describe this image in detail: the setting, the people, animals or objects in it, any text shown, and what is "
    "happening."
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


@dataclass(frozen=True)
class SeenImage:
    """A still image among the sources, as a prompt describes it: one image at its place in the order, no time."""

    title: str | None


Seen = SeenVideo | SeenImage
"""A source as a prompt describes it: `Video N` with its frames and times, or `Image N`, named by its place among
the sources as the agent gave them."""


def question_prompt(
    sources: Sequence[Seen], question: str, safe: Safe, reference: SeenImage | None = None
) -> PromptText:
    """A question about sampled frames of one video or several (still images among them, each one image): which
    images are which, their tracks (subtitles, speech heard...), then the question. A `reference` image comes after
    the sources' images, named as the picture the question refers to."""
    context = _frame_guide(sources, safe) + _reference(sources, reference, safe) + _tracks(sources, safe) + "\n\n"
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


def look_question(query: str, frames: int, reference: bool = False) -> str:
    """What the model is asked of the frames around a candidate moment (goes through `question_prompt`); with a
    `reference` image, the query is about what it pictures."""
    pictured = " (the reference image shows it)" if reference else ""
    return (
        f"In which of these frames does this happen{pictured}: {query}\nReply with the frame numbers (1 to {frames}), "
        "then one short line saying what happens there."
    )


def span_label(start_s: float, end_s: float) -> str:
    return f"[{clock(start_s)}-{clock(end_s)}]"


def _spans(notes: Sequence[TimedText]) -> str:
    return "\n\n".join(f"{span_label(n.start_s, n.end_s)} {n.text}" for n in notes)


def _frame_guide(sources: Sequence[Seen], safe: Safe) -> str:
    def titled(source: Seen) -> str:
        return f' "{safe(source.title)}"' if source.title else ""

    if len(sources) == 1:
        [only] = sources
        if isinstance(only, SeenImage):
            return f"The image is a still image{titled(only)}."
        return (
            f"The {len(only.times_s)} images are frames of one video{titled(only)} "
            f"({only.duration_s:.1f} s long), in time order, taken at {_times(only)}."
        )
    total = sum(_count(s) for s in sources)
    stills = sum(isinstance(s, SeenImage) for s in sources)
    if not stills:
        lines = [f"The {total} images are frames from {len(sources)} videos, in order."]
    else:
        videos = len(sources) - stills
        frames = f"frames from {videos} video{'s' if videos > 1 else ''} and " if videos else ""
        lines = [f"The {total} images are {frames}{stills} still image{'s' if stills > 1 else ''}, in order."]
    first = 1
    for number, source in enumerate(sources, 1):
        last = first + _count(source) - 1
        images = f"Image {first}" if first == last else f"Images {first}-{last}"
        if isinstance(source, SeenImage):
            lines.append(f"{images}: Image {number}{titled(source)}, a still image.")
        else:
            lines.append(
                f"{images}: Video {number}{titled(source)} ({source.duration_s:.1f} s long), taken at {_times(source)}."
            )
        first = last + 1
    return "\n".join(lines)


def _count(source: Seen) -> int:
    return 1 if isinstance(source, SeenImage) else len(source.times_s)


def _reference(sources: Sequence[Seen], reference: SeenImage | None, safe: Safe) -> str:
    """The reference image's line: it is the last image, after every source's."""
    if reference is None:
        return ""
    titled = f' "{safe(reference.title)}"' if reference.title else ""
    return f"\nImage {sum(_count(s) for s in sources) + 1}: the reference image{titled}, a still image."


def _tracks(sources: Sequence[Seen], safe: Safe) -> str:
    """Each track's heading, then its cues: one video's "in that part of the video", several videos' each named (a
    still image has none)."""
    videos = [(n, s) for n, s in enumerate(sources, 1) if isinstance(s, SeenVideo)]
    if len(sources) == 1:
        return "".join(
            f"\n\n{t.heading} {_HERE}:\n" + safe(render(t.cues)) for _, v in videos for t in v.tracks if t.cues
        )
    parts = [f"{t.heading} in Video {n}:\n{safe(render(t.cues))}" for n, v in videos for t in v.tracks if t.cues]
    return "\n\n" + "\n\n".join(parts) if parts else ""


def _times(video: SeenVideo) -> str:
    """Each frame's time, with the scene it is in where the frames were placed by scene (scenes counted from the
    video's start, so frames of one scene share a number)."""
    if not video.scenes:
        return ", ".join(f"{t:.2f} s" for t in video.times_s)
    return ", ".join(f"{t:.2f} s (scene {n})" for t, n in zip(video.times_s, video.scenes, strict=True))


def _stamp(seconds: float) -> str:
    return f"{clock(seconds)}.{int(seconds * 10) % 10}"
