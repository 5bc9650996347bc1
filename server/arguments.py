"""The tools' arguments, declared once. Each tool's arguments are a model here: the MCP tool takes its fields as
its parameters (`server.app`), and the terminal command is made from the same fields (`server.terminal`), so a new
argument reaches both with no other line. Each model also says what is wrong with its arguments taken together, and
how they become a call of the pipeline (`ask`).

This module needs pydantic only: `--help`, and a command line's errors, come before the MCP stack or torch load.
The errors are sentences that name the argument as the caller knows it (`end_s`, or `--end`), say what it takes,
and show what was sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llava_video_mcp.tools.limits import (
    MAX_FRAMES,
    MAX_MOMENTS,
    MAX_NEW_TOKENS,
    MAX_QUESTION_CHARS,
    MAX_RETURNED_SIDE,
    MAX_VIDEOS,
    MIN_RETURNED_SIDE,
    MIN_VIDEOS,
)

if TYPE_CHECKING:
    from llava_video_mcp.tools.answer import Answered, Progress, TranscriptOptions, VideoQA
    from llava_video_mcp.tools.cancel import CancelToken

Named = Callable[[str], str]
"""How the caller knows an argument: the tool's own name, or the terminal's flag."""

Source = Annotated[str, Field(description="Local path, http(s) video URL, or video page URL.")]
MediaSource = Annotated[str, Field(description="Local path, http(s) URL, or video page URL: a video or an image.")]
MaxNewTokens = Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS)]
IncludeTranscript = Annotated[bool, Field(description="What is said: subtitles, else speech.")]
ReadScreen = Annotated[bool, Field(description="Read text shown on screen (OCR).")]
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$"
Language = Annotated[
    str | None, Field(max_length=16, pattern=LANGUAGE_PATTERN, description="Of subtitles (en), and of speech.")
]
ReturnFrames = Annotated[
    Literal["none", "sheet", "frames"],
    Field(description="Also return the frames seen: one sheet, or a JPEG each (up to frame_max_side px)."),
]
FrameMaxSide = Annotated[int | None, Field(ge=MIN_RETURNED_SIDE, le=MAX_RETURNED_SIDE)]
"""The long side of each frame return_frames="frames" returns, up to the source's own (`evidence.AtSide`)."""
Scenes = Annotated[Literal["uniform", "scenes"], Field(description="scenes: a frame in every scene.")]
Start = Annotated[float | None, Field(ge=0, description="Sample from this second on.")]
End = Annotated[float | None, Field(gt=0, description="Sample up to this second.")]


class SourceRange(BaseModel):
    """A source with its own start_s/end_s."""

    model_config = ConfigDict(extra="forbid")

    source: str
    start_s: Annotated[float | None, Field(ge=0)] = None
    end_s: Annotated[float | None, Field(gt=0)] = None


class ToolArguments(BaseModel):
    """One tool's arguments: the fields, in the order the tool lists them."""

    model_config = ConfigDict(extra="forbid")

    tool: ClassVar[str]
    command: ClassVar[str]
    """The terminal command that takes these arguments."""

    def problem(self, named: Named) -> str | None:
        """What is wrong with the arguments taken together (each one is valid alone), None when nothing is."""
        start, end = getattr(self, "start_s", None), getattr(self, "end_s", None)
        return _range_problem(start, end, named("start_s"), named("end_s"))

    def videos(self) -> list[str]:
        """The sources the call reads, in order."""
        raise NotImplementedError

    def transcript(self) -> TranscriptOptions:
        from llava_video_mcp.tools.answer import TranscriptOptions

        include, language = getattr(self, "include_transcript", True), getattr(self, "language", None)
        return TranscriptOptions(include, language, on_screen_text=getattr(self, "read_screen", True))

    def ask(self, qa: VideoQA, progress: Progress, cancel: CancelToken) -> Answered:
        """The call of the pipeline these arguments make (blocking)."""
        raise NotImplementedError


class DescribeArguments(ToolArguments):
    tool: ClassVar[str] = "describe_video"
    command: ClassVar[str] = "describe"

    source: MediaSource
    question: Annotated[
        str | None, Field(max_length=MAX_QUESTION_CHARS, description="Empty: describe the video in detail.")
    ] = None
    num_frames: Annotated[int, Field(ge=1, le=MAX_FRAMES, description="Frames spread evenly over the range.")] = 8
    start_s: Start = None
    end_s: End = None
    fps: Annotated[float | None, Field(gt=0, le=60, description="At most this many frames a second.")] = None
    keyframes_only: Annotated[bool, Field(description="Faster: nearest keyframes instead of exact frames.")] = False
    include_transcript: IncludeTranscript = True
    read_screen: ReadScreen = True
    language: Language = None
    max_new_tokens: MaxNewTokens = 256
    return_frames: ReturnFrames = "none"
    frame_max_side: FrameMaxSide = None
    coverage: Annotated[
        Literal["sampled", "full"],
        Field(description="full: watch the whole range in windows, then answer from their notes (slower, cached)."),
    ] = "sampled"
    sampling: Scenes = "uniform"

    def videos(self) -> list[str]:
        return [self.source]

    def ask(self, qa: VideoQA, progress: Progress, cancel: CancelToken) -> Answered:
        return qa.describe(
            self.source, self.question, num_frames=self.num_frames, start_s=self.start_s, end_s=self.end_s,
            fps=self.fps, keyframes_only=self.keyframes_only, transcript=self.transcript(),
            max_new_tokens=self.max_new_tokens, evidence=self.return_frames, coverage=self.coverage,
            sampling=self.sampling, progress=progress, cancel=cancel, frame_max_side=self.frame_max_side,
        )  # fmt: skip


class CompareArguments(ToolArguments):
    tool: ClassVar[str] = "compare_videos"
    command: ClassVar[str] = "compare"

    sources: Annotated[
        list[str | SourceRange],
        Field(
            min_length=MIN_VIDEOS,
            max_length=MAX_VIDEOS,
            description="Videos or images, named Video 1, Image 2, ... in this order.",
        ),
    ]
    question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)]
    frames_per_video: Annotated[int, Field(ge=1, le=MAX_FRAMES // MIN_VIDEOS)] = 6
    include_transcript: IncludeTranscript = True
    read_screen: ReadScreen = True
    language: Language = None
    max_new_tokens: MaxNewTokens = 256
    return_frames: ReturnFrames = "none"
    frame_max_side: FrameMaxSide = None
    sampling: Scenes = "uniform"

    def problem(self, named: Named) -> str | None:
        count, each = len(self.sources), self.frames_per_video
        if count * each > MAX_FRAMES:
            return (
                f"{count} videos x {_set(named, 'frames_per_video', each)} is {count * each} frames; at most "
                f"{MAX_FRAMES} fit in one call. Use {_set(named, 'frames_per_video', MAX_FRAMES // count)} or fewer"
            )
        for number, source in enumerate(self.sources):
            if isinstance(source, SourceRange):
                where = f"{named('sources')}[{number}]."
                found = _range_problem(source.start_s, source.end_s, where + "start_s", where + "end_s")
                if found is not None:
                    return found
        return None

    def videos(self) -> list[str]:
        return [source if isinstance(source, str) else source.source for source in self.sources]

    def ask(self, qa: VideoQA, progress: Progress, cancel: CancelToken) -> Answered:
        from llava_video_mcp.tools.answer import Clip

        clips = [Clip(s.source, s.start_s, s.end_s) if isinstance(s, SourceRange) else s for s in self.sources]
        return qa.compare(
            clips, self.question, frames_per_video=self.frames_per_video, transcript=self.transcript(),
            max_new_tokens=self.max_new_tokens, evidence=self.return_frames, sampling=self.sampling,
            progress=progress, cancel=cancel, frame_max_side=self.frame_max_side,
        )  # fmt: skip


class MomentsArguments(ToolArguments):
    tool: ClassVar[str] = "find_moments"
    command: ClassVar[str] = "moments"

    source: Source
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="What to find.")]
    start_s: Start = None
    end_s: End = None
    max_moments: Annotated[int, Field(ge=1, le=MAX_MOMENTS)] = 3
    return_frames: ReturnFrames = "none"
    frame_max_side: FrameMaxSide = None
    reference: Annotated[
        str | None, Field(description="An image of what to find, shown with each window looked at closely.")
    ] = None

    def videos(self) -> list[str]:
        return [self.source] + ([self.reference] if self.reference is not None else [])

    def ask(self, qa: VideoQA, progress: Progress, cancel: CancelToken) -> Answered:
        return qa.moments(
            self.source, self.query, start_s=self.start_s, end_s=self.end_s, max_moments=self.max_moments,
            evidence=self.return_frames, reference=self.reference, progress=progress, cancel=cancel,
            frame_max_side=self.frame_max_side,
        )  # fmt: skip


TOOLS: tuple[type[ToolArguments], ...] = (DescribeArguments, CompareArguments, MomentsArguments)


def _set(named: Named, name: str, value: object) -> str:
    """An argument given a value, as the caller writes it: `frames_per_video=8`, or `--frames 8`."""
    flag = named(name)
    return f"{flag} {value}" if flag.startswith("-") else f"{flag}={value}"


def _range_problem(start: float | None, end: float | None, start_name: str, end_name: str) -> str | None:
    if start is not None and end is not None and end <= start:
        return f"{end_name} ({end:g}) must be greater than {start_name} ({start:g})"
    return None


# The errors of one argument, in words.

_PATTERNS = {LANGUAGE_PATTERN: "a language code such as en, de or pt-BR"}
"""What a text that must match a pattern is, in words."""
_KINDS = {
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
}


def problems(exc: ValidationError, sent: dict[str, Any], properties: dict[str, Any], named: Named = str) -> list[str]:
    """The sentences for a validation error of the arguments `sent`, each once; `properties` is the lean schema's."""
    errors = [error for error in exc.errors(include_url=False) if _on_the_branch_sent(error, sent)]
    return list(dict.fromkeys(_sentence(error, properties, named) for error in errors))


def _on_the_branch_sent(error: Any, arguments: dict[str, Any]) -> bool:
    """Whether a union error belongs to the kind of value that was sent. A source may be a string or an object;
    for an object, "must be a string" says nothing useful, and for a string the object's errors neither."""
    value: Any = arguments
    for part in error["loc"]:
        inside_dict = isinstance(value, dict) and part in value
        if inside_dict or (isinstance(value, list) and isinstance(part, int) and part < len(value)):
            value = value[part]
        elif isinstance(part, str) and part not in ("str", "int", "float", "bool"):
            return isinstance(value, dict)  # the tag of an object branch
        elif isinstance(part, str):
            return not isinstance(value, dict)  # the tag of a plain branch
    return True


def _sentence(error: Any, properties: dict[str, Any], named: Named) -> str:
    location = [str(part) for part in error["loc"] if not (isinstance(part, str) and part[:1].isupper())]
    location = [part for part in location if part not in ("str", "int", "float", "bool")]
    name = location[0] if location else "arguments"
    where = named(name) + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in location[1:])
    schema = properties.get(name, {})
    kind = error["type"]
    got = _shown(error.get("input"))
    if kind == "missing":
        return f"{where} is required."
    if kind == "extra_forbidden":
        return f"{where} is not an argument here."
    if kind in _KINDS:
        return f"{where} must be {_KINDS[kind]}; got {got}."
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{where} must be {_range(schema)}; got {got}."
    if kind in ("too_short", "too_long"):
        return f"{where} must hold {_count(schema)}; got {len(error.get('input') or [])}."
    if kind in ("string_too_short", "string_too_long"):
        return f"{where} must be {_length(schema)}; got {len(str(error.get('input') or ''))} characters."
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern")
        return f"{where} must be {_PATTERNS.get(pattern, f'text matching {pattern}')}; got {got}."
    if kind in ("literal_error", "enum"):
        return f"{where} must be one of {error.get('ctx', {}).get('expected', 'the listed values')}; got {got}."
    return f"{where}: {error['msg']}; got {got}."


def bounds(schema: dict[str, Any]) -> str | None:
    """A number's range as a sentence says it ("1 to 32"), None when it has none."""
    options = [s for s in schema.get("anyOf", [schema]) if "type" in s and s["type"] != "null"]
    bounds = options[0] if options else schema
    low = bounds.get("minimum", bounds.get("exclusiveMinimum"))
    high = bounds.get("maximum", bounds.get("exclusiveMaximum"))
    if low is not None and high is not None:
        return f"{low:g} to {high:g}" if "minimum" in bounds else f"more than {low:g} and at most {high:g}"
    if low is not None:
        return f"at least {low:g}" if "minimum" in bounds else f"more than {low:g}"
    if high is not None:
        return f"at most {high:g}"
    return None


def _range(schema: dict[str, Any]) -> str:
    return bounds(schema) or "in range"


def _count(schema: dict[str, Any]) -> str:
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low is not None and high is not None:
        return f"{low} to {high} items"
    return f"at least {low} items" if low is not None else f"at most {high} items"


def _length(schema: dict[str, Any]) -> str:
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") == "string"]
    bounds = options[0] if options else schema
    low, high = bounds.get("minLength"), bounds.get("maxLength")
    if low is not None and high is not None:
        return f"{low} to {high} characters long"
    return f"at least {low} characters long" if low is not None else f"at most {high} characters long"


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # -1, as it was typed, not -1.0
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def lean_schema(schema: dict[str, Any], *, for_output: bool = False) -> dict[str, Any]:
    """The schema as an agent needs it: no generated titles ("Num Frames"), `X | None` as a type list, definitions
    inlined, no `default: null` (an optional argument's absence says it).

    An output schema (`for_output`) keeps only the shape: no descriptions or defaults, and below the top level no
    `required` lists or `type: object` beside `properties`. The tool's description and the result itself say what
    the fields mean; every tool's list costs the agent tokens in every conversation.
    """
    definitions = schema.get("$defs", {})

    def lean(node: Any, nested: bool) -> Any:
        if isinstance(node, list):
            return [lean(item, nested) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            return lean({**target, **{k: v for k, v in node.items() if k != "$ref"}}, nested)
        result: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("title", "$defs") or (key == "default" and value is None):
                continue
            if for_output and key in ("description", "default", "required"):
                continue
            if for_output and nested and key == "type" and value == "object" and "properties" in node:
                continue
            if key == "properties":
                result[key] = {name: lean(field, True) for name, field in value.items()}
            else:
                result[key] = lean(value, nested)
        options = result.get("anyOf")
        if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            other = next(option for option in options if option != {"type": "null"})
            if isinstance(other.get("type"), str):
                del result["anyOf"]
                result.update(other)
                result["type"] = [other["type"], "null"]
        return result

    return lean(schema, False)  # type: ignore[no-any-return]
