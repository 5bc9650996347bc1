"""One question from a shell, with the same code as the tools: `llava-video-mcp describe SOURCE -q QUESTION`,
`llava-video-mcp compare SOURCE SOURCE ... -q QUESTION` and `llava-video-mcp moments SOURCE -q QUERY`.

The answer goes to stdout (or, with --json, the whole structured result), with control and escape characters
removed; a progress bar goes to stderr on a terminal, and a line saying what was done otherwise. The command's
arguments are checked as the tools check theirs, and named as the command names them (`--frames`, not
`num_frames`), before any model is loaded. Exit status: 0 answered, 1 the video or the model failed (one line on
stderr saying why), 2 a wrong command line or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.plural import plural

if TYPE_CHECKING:
    from llava_video_mcp.tools.answer import Answered, Progress, Sampling, VideoQA
    from llava_video_mcp.tools.cancel import CancelToken

MAX_FRAMES = 32
MAX_NEW_TOKENS = 4096
MIN_VIDEOS, MAX_VIDEOS = 2, 4
MAX_MOMENTS = 10
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$")


def _number(kind: Callable[[str], float], low: float, high: float | None, *, above: bool = False) -> Any:
    """An argparse type: a number of `kind` within [low, high] (above `low` with `above`)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {'a whole number' if kind is int else 'a number'}; got {text!r}"
            ) from None
        too_low = value <= low if above else value < low
        if too_low or (high is not None and value > high):
            lower = f"more than {low:g}" if above else f"{low:g} or more"
            bound = f"{low:g} to {high:g}" if high is not None else lower
            raise argparse.ArgumentTypeError(f"must be {bound}; got {text}")
        return value

    return parse


def _language(text: str) -> str:
    if len(text) > 16 or not _LANGUAGE.match(text):
        raise argparse.ArgumentTypeError(f"must be a language code such as en, de or pt-BR; got {text!r}")
    return text


def add_command_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """A terminal command's own arguments, with the tools' limits."""
    if command == "selftest":
        return
    if command == "moments":
        parser.add_argument("source", help="local file path, http(s) URL of a video, or a video page URL")
        parser.add_argument("-q", "--query", required=True, help="what to find, e.g. 'the goal'")
        parser.add_argument("--start", type=_number(float, 0, None), help="search from this second on")
        parser.add_argument("--end", type=_number(float, 0, None, above=True), help="search up to this second")
        parser.add_argument(
            "--max-moments", type=_number(int, 1, MAX_MOMENTS), default=3,
            help=f"moments to return at most, 1 to {MAX_MOMENTS} (default: 3)",
        )  # fmt: skip
        parser.add_argument("--json", action="store_true", help="print the whole structured result as JSON")
        return
    if command == "describe":
        parser.add_argument("source", help="local file path, http(s) URL of a video, or a video page URL")
        parser.add_argument("-q", "--question", help="what to answer (default: describe the video in detail)")
        parser.add_argument(
            "--frames", type=_number(int, 1, MAX_FRAMES), default=8, help=f"frames to sample, 1 to {MAX_FRAMES} "
            "(default: 8; with --full, per window)"
        )  # fmt: skip
        parser.add_argument("--start", type=_number(float, 0, None), help="sample from this second on")
        parser.add_argument("--end", type=_number(float, 0, None, above=True), help="sample up to this second")
        parser.add_argument(
            "--full", action="store_true", help="watch the whole range window by window (coverage=full), --frames each"
        )
    else:
        parser.add_argument(
            "sources", nargs="+", metavar="SOURCE", help=f"{MIN_VIDEOS} to {MAX_VIDEOS} sources, compared as Video 1, "
            "Video 2, ..."
        )  # fmt: skip
        parser.add_argument("-q", "--question", required=True, help="the question to answer across the videos")
        per_video = MAX_FRAMES // MIN_VIDEOS
        parser.add_argument(
            "--frames", type=_number(int, 1, per_video), default=6,
            help=f"frames to sample from each video, 1 to {per_video}, {MAX_FRAMES} in all (default: 6)",
        )  # fmt: skip
    parser.add_argument("--scenes", action="store_true", help="a frame in every scene (sampling=scenes)")
    parser.add_argument(
        "--max-new-tokens", type=_number(int, 1, MAX_NEW_TOKENS), default=256,
        help=f"longest answer, in tokens, 1 to {MAX_NEW_TOKENS} (default: 256)",
    )  # fmt: skip
    parser.add_argument("--language", type=_language, default=None,
                        help="of the subtitles (default: en) and of speech (default: told by the model)")  # fmt: skip
    parser.add_argument("--no-transcript", action="store_true", help="give the model neither subtitles nor speech")
    parser.add_argument("--json", action="store_true", help="print the whole structured result as JSON")


def command_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a command's arguments as a whole (argparse checked each one), in the command's words."""
    if args.command == "selftest":
        return None
    if args.command in ("describe", "moments"):
        if args.start is not None and args.end is not None and args.end <= args.start:
            return f"--end ({args.end:g}) must be greater than --start ({args.start:g})"
        return None
    count = len(args.sources)
    if not MIN_VIDEOS <= count <= MAX_VIDEOS:
        return f"compare takes {MIN_VIDEOS} to {MAX_VIDEOS} sources; got {count}"
    if count * args.frames > MAX_FRAMES:
        return (
            f"{count} videos x --frames {args.frames} is {count * args.frames} frames; at most {MAX_FRAMES} fit. "
            f"Use --frames {MAX_FRAMES // count} or fewer"
        )
    return None


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Answer the command's question; the exit status."""
    from llava_video_mcp.server.checks import check
    from llava_video_mcp.server.components import build
    from llava_video_mcp.tools.cancel import Cancelled, CancelToken
    from llava_video_mcp.tools.errors import VideoToolError
    from llava_video_mcp.tools.media import remove_own_staging

    settings = check(settings)
    components = build(settings)
    cancel = CancelToken()
    bar = _ProgressBar(enabled=sys.stderr.isatty() or settings.verbose)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        cancel.cancel()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        answer = _answered(components.qa, args, bar.update, cancel)
    except VideoToolError as exc:
        bar.close()
        print(f"llava-video-mcp: {exc}", file=sys.stderr)
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
    return 0


def _answered(qa: VideoQA, args: argparse.Namespace, progress: Progress, cancel: CancelToken) -> Answered:
    from llava_video_mcp.tools.answer import TranscriptOptions

    if args.command == "moments":
        return qa.moments(
            args.source, args.query, start_s=args.start, end_s=args.end, max_moments=args.max_moments,
            progress=progress, cancel=cancel,
        )  # fmt: skip
    transcript = TranscriptOptions(not args.no_transcript, args.language)
    sampling: Sampling = "scenes" if args.scenes else "uniform"
    if args.command == "describe":
        return qa.describe(
            args.source, args.question, num_frames=args.frames, start_s=args.start, end_s=args.end,
            transcript=transcript, max_new_tokens=args.max_new_tokens, coverage="full" if args.full else "sampled",
            sampling=sampling, progress=progress, cancel=cancel,
        )  # fmt: skip
    return qa.compare(
        args.sources, args.question, frames_per_video=args.frames, transcript=transcript,
        max_new_tokens=args.max_new_tokens, sampling=sampling, progress=progress, cancel=cancel,
    )  # fmt: skip


def _show(answer: Answered, args: argparse.Namespace) -> None:
    """The answer on stdout (one moment a line for `moments`), what was done on stderr."""
    from llava_video_mcp.tools.answer import MomentsAnswer, VideoAnswer
    from llava_video_mcp.tools.prompt import clock

    if args.json:
        print(answer.model_dump_json(exclude_none=True, indent=2))
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
        print(printable(answer.answer))
    frames = sum(len(video.frames) for video in answer.videos) + sum(len(s.frames) for s in answer.segments or [])
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
