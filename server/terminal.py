"""One question from a shell, with the same code as the tools: `llava-video-mcp describe SOURCE -q QUESTION`,
`llava-video-mcp compare SOURCE SOURCE ... -q QUESTION` and `llava-video-mcp moments SOURCE -q QUERY`.

Each command's arguments are its tool's (`server.arguments`), made into flags here: `num_frames` is `--num-frames`
(and `--frames`), a true-or-false argument is `--x`/`--no-x`, a choice lists its values. A new tool argument is a
new flag with no line here. The terminal's own flags say how the result is given: `--json`, and `--frames-dir` (made
when missing) for the JPEGs `--return-frames` asks for. A mistyped flag is answered with the closest one.

The answer goes to stdout (or, with --json, the whole structured result), with control and escape characters
removed; a progress bar goes to stderr on a terminal, and a line saying what was done otherwise. The arguments are
checked as the tools check theirs, and named as the command names them (`--frames`, not `num_frames`), before any
model is loaded; the pipeline's own errors name them so too (`--end 500 is past the end`). Exit status: 0 answered,
1 the video or the model failed (one line on stderr saying why), 2 a wrong command line or configuration, 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import sys
import threading
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from llava_video_mcp.server.arguments import TOOLS, ToolArguments, bounds, lean_schema, problems
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.plural import plural

if TYPE_CHECKING:
    from llava_video_mcp.tools.answer import Answered

COMMANDS = {model.command: model for model in TOOLS}
ALIASES: dict[str, tuple[str, ...]] = {
    "question": ("-q",),
    "query": ("-q",),
    "num_frames": ("--frames",),
    "frames_per_video": ("--frames",),
    "start_s": ("--start",),
    "end_s": ("--end",),
    "include_transcript": ("--transcript",),
}
"""Shorter names the terminal also knows some arguments by, besides the tool's own (`--num-frames`)."""
SHORTCUTS = {"--full": ("coverage", "full"), "--scenes": ("sampling", "scenes")}
"""Flags that set an argument to one of its values: `--full` is `--coverage full`."""
POSITIONAL = ("source", "sources")
OWN = ("json", "frames_dir")
"""The terminal's own flags: how the result is given, not what is asked."""


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number; got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}")
    return value


def flags(name: str) -> list[str]:
    """The command line's names for a tool argument, the one errors use first."""
    if name in POSITIONAL:
        return [name]
    return [*ALIASES.get(name, ()), "--" + name.replace("_", "-")]


def named(name: str) -> str:
    """An argument as the terminal's errors name it: its first long flag (`--frames`), or its positional name."""
    return next(flag for flag in flags(name) if not flag.startswith("-") or flag.startswith("--"))


def add_command_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """A terminal command's arguments: the tool's own, made from its declared arguments, then the terminal's."""
    if command == "selftest":
        return
    model = COMMANDS[command]
    schema = lean_schema(model.model_json_schema(by_alias=True))["properties"]
    for name, info in model.model_fields.items():
        _add(parser, name, info, schema.get(name, {}))
    for shortcut, (name, value) in SHORTCUTS.items():
        if name in model.model_fields:
            parser.add_argument(shortcut, dest=name, action="store_const", const=value, help=f"same as {named(name)} "
                                f"{value}")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the whole structured result as JSON")
    if "return_frames" in model.model_fields:
        parser.add_argument(
            "--frames-dir", type=Path, default=Path("."), metavar="DIR",
            help="the folder --return-frames writes its JPEGs to, made when missing (default: the current folder)",
        )  # fmt: skip


def _add(parser: argparse.ArgumentParser, name: str, info: FieldInfo, schema: dict[str, Any]) -> None:
    kinds = [option.get("type") for option in schema.get("anyOf", [schema])]
    kinds = [kind for kind in (k for group in kinds for k in (group if isinstance(group, list) else [group]))]
    said = [info.description.rstrip(".")] if info.description else []
    said = [text[0].lower() + text[1:] for text in said]
    limits = bounds(schema) if ("integer" in kinds or "number" in kinds) else None
    if "array" in kinds:
        limits = f"{schema.get('minItems', 1)} to {schema.get('maxItems', 'any number')}"
    if limits:
        said.append(limits)
    if not info.is_required() and info.default is not None:
        default = str(info.default).lower() if isinstance(info.default, bool) else str(info.default)
        said.append(f"default: {default}")
    text = "; ".join(said).replace("%", "%%") or None
    options: dict[str, Any] = {"help": text}
    if name in POSITIONAL:
        if "array" in kinds:
            options |= {"nargs": "+", "metavar": "SOURCE"}
        parser.add_argument(name, **options)
        return
    options |= {"dest": name, "default": None, "required": info.is_required()}
    if "boolean" in kinds:
        parser.add_argument(*flags(name), action=argparse.BooleanOptionalAction, **options)
        return
    choices = next((option["enum"] for option in schema.get("anyOf", [schema]) if "enum" in option), None)
    if choices is not None:
        options["choices"] = choices
    elif "integer" in kinds:
        options |= {"type": _whole, "metavar": "N"}
    elif "number" in kinds:
        options |= {"type": _number, "metavar": "SECONDS" if name.endswith("_s") else name.upper()}
    else:
        options["metavar"] = name.upper()
    parser.add_argument(*flags(name), **options)


class Refused(Exception):
    """A command line whose arguments the tool would refuse, said in the command's words."""


def asked(args: argparse.Namespace) -> ToolArguments:
    """The tool's arguments a command line gives, checked as the tool checks them; Refused when they are wrong."""
    model = COMMANDS[args.command]
    given = {name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None}
    try:
        arguments = model.model_validate(given, strict=True)
    except ValidationError as exc:
        properties = lean_schema(model.model_json_schema())["properties"]
        raise Refused(" ".join(problems(exc, given, properties, named)).rstrip(".")) from None
    problem = arguments.problem(named) or _wordless(model, given)
    if problem is not None:
        raise Refused(problem)
    folder = getattr(args, "frames_dir", None)
    asks_frames = getattr(arguments, "return_frames", "none") != "none"
    if asks_frames and folder is not None and folder.exists() and not folder.is_dir():
        raise Refused(f"--frames-dir {folder} is a file, not a folder; name a folder (it is made if missing)")
    return arguments


def _flag_and_value(flag: str, match: re.Match[str]) -> str:
    return f"{flag} {float(match[1]):g}"


def in_flags(message: str, model: type[ToolArguments]) -> str:
    """A message of the pipeline, which names the tools' arguments (`end_s=500.0`, `Choose end_s up to 3.000`), in
    the command's words: `--end 500`, `Choose --end up to 3.000`."""
    for name in sorted(model.model_fields, key=len, reverse=True):
        if name in POSITIONAL:
            continue
        flag = named(name)
        message = re.sub(rf"\b{name}=(-?\d+(?:\.\d+)?)", partial(_flag_and_value, flag), message)
        if "_" in name:  # a bare word only where it cannot be English (`question` stays a word)
            message = re.sub(rf"(?<![\w-]){name}\b", flag, message)
    return message


def _wordless(model: type[ToolArguments], given: dict[str, Any]) -> str | None:
    """A query or required question that the tool would find empty (`-q "   "`) once the command ran, said now."""
    from llava_video_mcp.tools.untrusted import clean_question

    for name, wanted in (("query", "what to find"), ("question", "what to ask")):
        field = model.model_fields.get(name)
        value = given.get(name)
        if field is None or not field.is_required() or not isinstance(value, str):
            continue
        text = clean_question(value)
        if text is None or (name == "query" and re.search(r"\w", text) is None):
            return f"{named(name)} needs words saying {wanted}; got {value!r}"
    return None


def command_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a command's arguments (argparse read each one), in the command's words, None if nothing."""
    if args.command == "selftest":
        return None
    try:
        asked(args)
    except Refused as exc:
        return str(exc)
    return None


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Answer the command's question; the exit status."""
    from llava_video_mcp.server.checks import check
    from llava_video_mcp.server.components import build
    from llava_video_mcp.tools.cancel import Cancelled, CancelToken
    from llava_video_mcp.tools.errors import VideoToolError
    from llava_video_mcp.tools.media import remove_own_staging

    settings = check(settings)
    if getattr(args, "frames_dir", None) is not None and getattr(args, "return_frames", None) not in (None, "none"):
        try:
            args.frames_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"llava-video-mcp: --frames-dir {args.frames_dir} could not be made: {exc.strerror}", file=sys.stderr)
            return 2
    components = build(settings)
    cancel = CancelToken()
    bar = _ProgressBar(enabled=sys.stderr.isatty() or settings.verbose)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        cancel.cancel()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        answer = asked(args).ask(components.qa, bar.update, cancel)
    except VideoToolError as exc:
        bar.close()
        print(f"llava-video-mcp: {in_flags(str(exc), COMMANDS[args.command])}", file=sys.stderr)
        return 1
    except Cancelled:
        bar.close()
        remove_own_staging()
        print("llava-video-mcp: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
        components.close()
    bar.close()
    _show(answer, args)
    if answer.images:
        try:
            saved = save_images(answer.images, args.frames_dir, args.command)
        except OSError as exc:
            print(f"llava-video-mcp: the frames could not be written to {args.frames_dir}: {exc.strerror}",
                  file=sys.stderr)  # fmt: skip
            return 1
        names = f"{saved[0]}" if len(saved) == 1 else f"{saved[0]} to {saved[-1].name}"
        print(f"llava-video-mcp: {plural(len(saved), 'image')} written: {names}", file=sys.stderr)
    return 0


def save_images(images: list[bytes], folder: Path, command: str) -> list[Path]:
    """Write the evidence JPEGs as `<command>-<run>-<n>.jpg`, in a run number no file in `folder` has yet: nothing
    already there is overwritten, not even by a second command writing at the same moment."""
    for run in range(1, 10_000):
        paths = [folder / f"{command}-{run}-{number:02d}.jpg" for number in range(1, len(images) + 1)]
        try:
            with paths[0].open("xb") as first:
                first.write(images[0])
        except FileExistsError:
            continue
        for path, image in zip(paths[1:], images[1:], strict=True):
            with path.open("xb") as file:
                file.write(image)
        return paths
    raise FileExistsError(f"no free name for {command}-N-01.jpg in {folder}")


def _show(answer: Answered, args: argparse.Namespace) -> None:
    """The answer on stdout (one moment a line for `moments`), what was done on stderr."""
    from llava_video_mcp.tools.answer import MomentsAnswer, VideoAnswer
    from llava_video_mcp.tools.prompt import clock

    if args.json:
        from llava_video_mcp.server.contract import to_the_millisecond

        print(json.dumps(to_the_millisecond(answer.model_dump(mode="json", exclude_none=True)), indent=2))
    if isinstance(answer, MomentsAnswer):
        if not args.json:
            for moment in answer.moments:
                said = "+".join(moment.basis)
                print(printable(f"{clock(moment.start_s)}-{clock(moment.end_s)}  {moment.description}  [{said}]"))
        frames = sum(len(m.frames) for m in answer.moments)
        count = len(answer.moments)
        print(f"llava-video-mcp: found {plural(count, 'moment')} in {answer.timings.total_s:.1f} s "
              f"({plural(frames, 'frame')} behind them)", file=sys.stderr)  # fmt: skip
        return
    assert isinstance(answer, VideoAnswer)
    if not args.json:
        print(printable(answer.answer if answer.answer is not None else answer.note or ""))
    frames = sum(len(video.frames or ()) for video in answer.videos) + sum(len(s.frames) for s in answer.segments or [])
    cut = ", cut by --max-new-tokens" if answer.stopped_by_token_limit else ""
    print(
        f"llava-video-mcp: answered in {answer.timings.total_s:.1f} s ({plural(frames, 'frame')} seen, "
        f"{plural(answer.tokens.generated, 'token')}{cut})",
        file=sys.stderr,
    )


def printable(answer: str) -> str:
    """The model's answer as a terminal may show it: no escape sequences or control characters (a model repeats
    what it read, and a video's captions come from strangers)."""
    from llava_video_mcp.tools.untrusted import without_controls

    return without_controls(answer)


class _ProgressBar:
    """A tqdm bar on stderr that follows the call's work: the message is the bar's description."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled
        self._bar: Any = None
        self._lock = threading.Lock()

    def update(self, progress: float, total: float, message: str) -> None:
        if not self._enabled:
            return
        from tqdm import tqdm

        with self._lock:
            if self._bar is None:
                self._bar = tqdm(total=100, file=sys.stderr, leave=False, bar_format="{desc} {bar} {percentage:3.0f}%")
            self._bar.set_description_str(message[:70], refresh=False)
            self._bar.n = round(100 * min(progress / total, 1.0), 1) if total else 0
            self._bar.refresh()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
