"""The structured results the tools return: the answer and the evidence behind it."""

from __future__ import annotations

from pydantic import BaseModel, Field, PrivateAttr


class FrameInfo(BaseModel):
    """One frame the model saw."""

    index: int = Field(description="Position of this frame in the model's input, from 0.")
    timestamp_s: float = Field(description="Exact presentation time of the frame, seconds from the video's start.")


class TranscriptCue(BaseModel):
    start_s: float
    end_s: float
    text: str


class VideoInfo(BaseModel):
    """What was read from one source, and which frames of it the model saw."""

    source: str = Field(description="The source as given by the caller.")
    title: str | None = Field(default=None, description="Title reported by the site, or the file name.")
    duration_s: float = Field(description="Duration of the video stream in seconds.")
    fps: float | None = Field(default=None, description="Average frame rate, when the container states one.")
    width: int
    height: int
    codec: str = Field(description="Video codec name, e.g. h264, vp9.")
    frame_count: int = Field(description="Frames in the video stream, counted from its packets.")
    from_cache: bool = Field(description="True when the file was already in the download cache (or is a local file).")
    start_s: float = Field(description="Start of the sampled time range, seconds.")
    end_s: float = Field(description="End of the sampled time range, seconds.")
    frames_requested: int = Field(description="Frames asked for from this video.")
    frames: list[FrameInfo] = Field(
        description="Frames the model saw, in order; fewer than requested when the range holds fewer distinct frames."
    )
    frames_from_cache: bool = Field(description="True when these frames were decoded by an earlier call.")
    note: str | None = Field(default=None, description="Why fewer frames than requested were used, when so.")
    transcript: list[TranscriptCue] | None = Field(
        default=None,
        description="Subtitle cues inside the sampled range that the model was given, when the video has subtitles.",
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


class VideoAnswer(BaseModel):
    """The answer to a question about one or more videos, with the evidence it rests on."""

    answer: str
    question: str = Field(description="The question the model was asked (the default caption request if none).")
    videos: list[VideoInfo] = Field(description="One entry per source, in input order.")
    model: ModelInfo
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
    _images: list[bytes] = PrivateAttr(default_factory=list)

    @property
    def images(self) -> list[bytes]:
        """JPEGs of the frames the model saw, when asked for (`evidence`): sent as images, not in the JSON."""
        return self._images

    def with_images(self, images: list[bytes]) -> VideoAnswer:
        self._images = images
        return self
