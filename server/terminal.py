"""One question from a shell, with the same code as the tools: `llava-video-mcp describe SOURCE -q QUESTION` and
`llava-video-mcp compare SOURCE SOURCE ... -q QUESTION`.

The answer goes to stdout (or, with --json, the whole structured result); a progress bar for the download, the
decoding, the frames and the tokens goes to stderr. Exit status: 0 answered, 1 the video or the model failed (one
line on stderr saying why), 2 a wrong command line or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from server.checks import check
from server.settings import Settings
from tools.backends.loader import LazyBackend
from tools.cancel import Cancelled, CancelToken
from tools.errors import VideoToolError
from tools.results import VideoAnswer
from tools.sources import VideoFetcher, remove_own_staging
from tools.stages import TranscriptOptions
from tools.video_qa import VideoQA


def run(settings: Settings, args: argparse.Namespace, command: str) -> int:
    """Answer the command's question; the exit status."""
    settings = check(settings)
    fetcher = VideoFetcher(
        settings.cache_dir, settings.fetch_policy(), cache_max_bytes=int(settings.cache_max_gb * 2**30)
    )
    provider = LazyBackend(settings.backend_config())
    qa = VideoQA(fetcher, provider, windows=settings.window_options())
    cancel = CancelToken()
    bar = _ProgressBar(enabled=sys.stderr.isatty() or settings.verbose)
    transcript = TranscriptOptions(not args.no_transcript, args.language)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        cancel.cancel()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        if command == "describe":
            answer = qa.describe(
                args.source,
                args.question,
                num_frames=args.frames,
                start_s=args.start,
                end_s=args.end,
                transcript=transcript,
                max_new_tokens=args.max_new_tokens,
                coverage="full" if args.full else "sampled",
                progress=bar.update,
                cancel=cancel,
            )
        else:
            answer = qa.compare(
                args.sources,
                args.question,
                frames_per_video=args.frames,
                transcript=transcript,
                max_new_tokens=args.max_new_tokens,
                progress=bar.update,
                cancel=cancel,
            )
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
        provider.close()
    bar.close()
    _print(answer, as_json=args.json)
    return 0


def _print(answer: VideoAnswer, *, as_json: bool) -> None:
    if as_json:
        print(answer.model_dump_json(exclude_none=True, indent=2))
        return
    print(answer.answer)


class _ProgressBar:
    """A tqdm bar on stderr that follows the call's stages: the message is the bar's description."""

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
                self._bar = tqdm(
                    total=total, file=sys.stderr, leave=False, bar_format="{desc} {bar} {percentage:3.0f}%"
                )
            self._bar.set_description_str(message[:70], refresh=False)
            self._bar.n = min(progress, total)
            self._bar.refresh()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
