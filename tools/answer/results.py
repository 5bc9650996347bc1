"""The structured results the tools return, the answer and the evidence behind it, and the builders every kind
of answer shares."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Self

from pydantic import BaseModel, Field, PrivateAttr

from llava_video_mcp.tools.backends import Generation, VideoLanguageBackend
from llava_video_mcp.tools.frames import StreamInfo
from llava_video_mcp.tools.media import LocalImage, LocalVideo
from llava_video_mcp.tools.timeline import TimedText, TrackText
from llava_video_mcp.tools.tracks import Basis, Said


class FrameInfo(BaseModel):
    """One frame the model saw."""

    index: int = Field(description="Position of this frame in the model's input, from 0.")
    timestamp_s: float = Field(description="Exact presentation time of the frame, seconds from the video's start.")
    scene: int | None = Field(
        default=None, description='With sampling="scenes" and no model: the scene it shows (1 for the first).'
    )


class TranscriptCue(BaseModel):
    start_s: float
    end_s: float
    text: str


class ScreenLine(BaseModel):
    start_s: float
    end_s: float
    text: str
    confidence: float | None = None


class VideoInfo(BaseModel):
    """What was read from one source, and which frames of it the model saw; for a still image, what it is."""

    kind: Literal["image"] | None = Field(
        default=None, description="image: a still image, seen as one image with no time; absent for a video."
    )
    source: str = Field(description="The source as given by the caller.")
    title: str | None = Field(default=None, description="Title reported by the site, or the file name.")
    duration_s: float | None = Field(default=None, description="Duration of the video stream in seconds.")
    fps: float | None = Field(default=None, description="Average frame rate, when the container states one.")
    width: int
    height: int
    codec: str | None = Field(default=None, description="Video codec name, e.g. h264, vp9.")
    frame_count: int | None = Field(default=None, description="Frames in the video stream, counted from its packets.")
    from_cache: bool = Field(description="True when the file was already in the download cache (or is a local file).")
    start_s: float | None = Field(default=None, description="Start of the sampled time range, seconds.")
    end_s: float | None = Field(default=None, description="End of the sampled time range, seconds.")
    frames_requested: int | None = Field(default=None, description="Frames asked for from this video.")
    frames: list[FrameInfo] | None = Field(
        default=None,
        description="Frames the model saw, in order; fewer than requested when the range holds fewer distinct frames.",
    )
    frames_from_cache: bool | None = Field(
        default=None, description="True when these frames were decoded by an earlier call."
    )
    note: str | None = Field(default=None, description="Why fewer frames than requested were used, when so.")
    transcript: list[TranscriptCue] | None = Field(
        default=None, description="What is said in the range, as the model got it: subtitles, or speech heard."
    )
    transcript_source: Said | None = None
    speech_language: str | None = Field(
        default=None, description="Language of the speech heard (Whisper's code): the one asked for, else told once."
    )
    on_screen_text: list[ScreenLine] | None = Field(
        default=None,
        description="Text shown on screen in the range, read by OCR: each line once, from the frame that first "
        "showed it to the last, with how sure the reading is (0-1; check digits that matter).",
    )


class ModelInfo(BaseModel):
    id: str = Field(description="Hub id or local folder the model was loaded from, or the served model's id.")
    device: str = Field(description="Where the model ran: cuda, mps, xpu, cpu, or remote (a serving engine).")
    endpoint: str | None = Field(default=None, description="host:port of the serving engine, when remote.")
    dtype: str | None = Field(
        default=None, description="Weights' dtype, e.g. float32, bfloat16; unknown (null) for a remote engine."
    )
    prefill_dtype: str | None = Field(
        default=None,
        description="Precision of encoding frames and reading the prompt (bfloat16 on CPU by default, where faster).",
    )


class Timings(BaseModel):
    fetch_s: float = Field(description="Resolving and downloading the sources (0 for cached or local files).")
    decode_s: float = Field(description="Decoding and scaling the sampled frames.")
    model_load_s: float = Field(description="Loading the model, when this call was the one that loaded it; else 0.")
    queue_s: float = Field(default=0.0, description="Waiting for a turn at the model behind other calls.")
    inference_s: float = Field(description="Image encoding, prefill and generation.")
    transcribe_s: float | None = Field(
        default=None, description="Hearing speech (the speech model's loading too); absent when nothing was heard."
    )
    read_s: float | None = Field(
        default=None, description="Reading on-screen text (the OCR engine's loading too); absent when none was read."
    )
    total_s: float


class TokenCounts(BaseModel):
    prompt: int | None = Field(
        default=None,
        description="Tokens in the model's input, image tokens included; absent when a remote engine does not say.",
    )
    generated: int = Field(description="New tokens the model generated.")
    reused: int = Field(
        default=0,
        description="Prompt tokens (frames and their description) reused from an earlier question about the same "
        "frames, so only the question itself was read anew.",
    )


class Segment(BaseModel):
    """One window of a full-coverage call: what the model saw there and the notes it wrote."""

    start_s: float
    end_s: float
    frames: list[float] = Field(description="Exact times of the frames seen in this window, seconds.")
    transcript: list[TranscriptCue] | None = None
    notes: str = Field(description="The model's timestamped description of this window.")


class Answered(BaseModel):
    """What every tool returns: a structured result, and JPEGs of the frames behind it when asked for."""

    _images: list[bytes] = PrivateAttr(default_factory=list)

    @property
    def images(self) -> list[bytes]:
        """JPEGs of the frames the model saw, when asked for (`evidence`): sent as images, not in the JSON."""
        return self._images

    def with_images(self, images: list[bytes]) -> Self:
        self._images = images
        return self


class VideoAnswer(Answered):
    """The answer to a question about one or more videos, with the evidence it rests on."""

    answer: str | None = Field(
        default=None, description="The model's answer; absent when the server runs without a model (see note)."
    )
    question: str = Field(description="The question the model was asked (the default caption request if none).")
    videos: list[VideoInfo] = Field(description="One entry per source, in input order.")
    model: ModelInfo | None = Field(default=None, description="What ran the call; absent when no model ran.")
    note: str | None = Field(
        default=None, description="Without a model: that the frames are attached for the calling agent to look at."
    )
    timings: Timings
    tokens: TokenCounts
    stopped_by_token_limit: bool = Field(
        description="True when generation hit max_new_tokens, so the answer may be cut short."
    )
    segments: list[Segment] | None = Field(
        default=None,
        description='With coverage="full": the consecutive windows watched, in order: a table of contents.',
    )
    segments_from_cache: int | None = Field(
        default=None, description="How many windows' notes came from an earlier call (no model time spent on them)."
    )


class Moment(BaseModel):
    """Where something happens: a time range, the frames seen there, and what the finding rests on."""

    start_s: float
    end_s: float
    frames: list[float] = Field(description="Exact times of the frames behind it, seconds.")
    description: str
    basis: list[Basis] = Field(description="What it rests on: words said (subtitles or speech), frames, or both.")


class MomentsAnswer(Answered):
    """When something happens in a video: the moments found, best first, with the evidence they rest on."""

    query: str
    moments: list[Moment]
    videos: list[VideoInfo]
    model: ModelInfo | None = Field(default=None, description="What ran the call; absent when the words said answered.")
    timings: Timings
    tokens: TokenCounts
    segments_from_cache: int | None = None


# Built once, for every kind of answer: a sampled question, a full watch.


def video_info(
    video: LocalVideo,
    info: StreamInfo,
    *,
    start_s: float,
    end_s: float,
    frames_requested: int,
    frames: list[FrameInfo],
    frames_from_cache: bool,
    note: str | None,
    said: tuple[TrackText, Said] | None = None,
    fields: Mapping[str, Sequence[TimedText]] | None = None,
) -> VideoInfo:
    """What was read from one source, and what of it the model saw (and what is said there: the text of the track
    `Tracks.transcript` picks, and its source)."""
    text, source = said if said is not None else (None, None)
    return VideoInfo(
        source=video.source,
        title=video.title,
        duration_s=round(info.duration_s, 3),
        fps=round(info.fps, 3) if info.fps else None,
        width=info.width,
        height=info.height,
        codec=info.codec,
        frame_count=info.frame_count,
        from_cache=video.from_cache,
        start_s=round(start_s, 3),
        end_s=round(end_s, 3),
        frames_requested=frames_requested,
        frames=frames,
        frames_from_cache=frames_from_cache,
        note=note,
        transcript=transcript_cues(text.cues) if text is not None else None,
        transcript_source=source,
        speech_language=text.language if text is not None else None,
        on_screen_text=screen_lines((fields or {}).get("on_screen_text", ())),
    )


def image_info(image: LocalImage, note: str | None = None) -> VideoInfo:
    """A still image among the sources: its kind and size as displayed, nothing about time."""
    return VideoInfo(
        kind="image",
        source=image.source,
        title=image.title,
        width=image.width,
        height=image.height,
        from_cache=image.from_cache,
        note=note,
    )


def notes_of(texts: Sequence[TrackText]) -> list[str]:
    """What the tracks' texts say the caller should know, in order."""
    return [text.note for text in texts if text.note]


def screen_lines(lines: Sequence[TimedText]) -> list[ScreenLine] | None:
    return [ScreenLine(start_s=c.start_s, end_s=c.end_s, text=c.text, confidence=c.confidence) for c in lines] or None


def transcript_cues(cues: Sequence[TimedText]) -> list[TranscriptCue] | None:
    return [TranscriptCue(start_s=c.start_s, end_s=c.end_s, text=c.text) for c in cues] or None


def model_info(backend: VideoLanguageBackend) -> ModelInfo:
    """The result's `model` block: what ran the call, and where."""
    return ModelInfo(
        id=backend.model_id,
        device=backend.device,
        endpoint=backend.endpoint,
        dtype=backend.dtype,
        prefill_dtype=backend.prefill_dtype,
    )


@dataclass
class Clock:
    """Where a call's time went, added up as it goes (from the threads of windows running together too)."""

    started: float = field(default_factory=time.perf_counter)
    fetch_s: float = 0.0
    decode_s: float = 0.0
    load_s: float = 0.0
    queue_s: float = 0.0
    model_s: float = 0.0
    """Time with the model, waiting in its queue included (queue_s is taken out of it)."""
    transcribe_s: float = 0.0
    read_s: float = 0.0
    reused: float = 0.0
    """Windows whose notes came from an earlier call."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: float) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def spent(self, timings: dict[str, float]) -> None:
        """The tracks' reading times (`Tracks.timings`), each to its timing."""
        for name, seconds in timings.items():
            self.add(name, seconds)

    def timings(self) -> Timings:
        return Timings(
            fetch_s=round(self.fetch_s, 3),
            decode_s=round(self.decode_s, 3),
            model_load_s=round(self.load_s, 3),
            queue_s=round(self.queue_s, 3),
            inference_s=round(max(self.model_s - self.queue_s, 0.0), 3),
            transcribe_s=round(self.transcribe_s, 3) or None,
            read_s=round(self.read_s, 3) or None,
            total_s=round(time.perf_counter() - self.started, 3),
        )


def answer_of(
    generation: Generation,
    question: str,
    videos: list[VideoInfo],
    backend: VideoLanguageBackend,
    clock: Clock,
    segments: list[Segment] | None = None,
    segments_from_cache: int | None = None,
) -> VideoAnswer:
    """The answer with the evidence it rests on, whatever way it was reached."""
    return VideoAnswer(
        answer=generation.text,
        question=question,
        videos=videos,
        model=model_info(backend),
        timings=clock.timings(),
        tokens=TokenCounts(
            prompt=generation.prompt_tokens,
            generated=generation.generated_tokens,
            reused=generation.reused_tokens,
        ),
        stopped_by_token_limit=generation.hit_token_limit,
        segments=segments,
        segments_from_cache=segments_from_cache,
    )
