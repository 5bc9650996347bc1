"""Command line entry point: `llava-video-mcp` (and `python -m llava_video_mcp`).

With no command it runs the MCP server, as host configs expect; `describe` and `compare` answer one question from
a shell. The heavy parts (the MCP stack, torch) are imported only when they are used, so `--help` and
`--version` answer at once, and a wrong flag, variable or argument exits 2 with one line before any model loads.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from llava_video_mcp.server.settings import ConfigError, Settings, parse, settings_from

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: bool) -> None:
    """One format for everything the process logs (the server, uvicorn, transformers, yt-dlp), on stderr: on stdio,
    stdout carries the MCP protocol and nothing else."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, stream=sys.stderr, force=True
    )
    if not verbose:
        for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "filelock", "PIL", "openai", "mcp"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        for chatty in ("transformers", "huggingface_hub", "uvicorn.access"):
            logging.getLogger(chatty).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)  # a wrong command line: argparse's usage, exit 2
    if args.command is not None:
        from llava_video_mcp.server.terminal import command_problem

        problem = command_problem(args)
        if problem is not None:
            print(f"llava-video-mcp {args.command}: {problem}.", file=sys.stderr)
            raise SystemExit(2)
    try:
        settings = settings_from(args, os.environ)
    except ConfigError as exc:
        print(f"llava-video-mcp: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.verbose)
    if args.command is not None:
        if not settings.verbose:
            logging.getLogger().setLevel(logging.WARNING)  # the progress bar says what happens
        raise SystemExit(_exit_status(lambda: _command(settings, args)))
    raise SystemExit(_exit_status(lambda: _serve(settings)))


def _serve(settings: Settings) -> int:
    from llava_video_mcp.server.serve import serve

    serve(settings)
    return 0


def _command(settings: Settings, args: argparse.Namespace) -> int:
    from llava_video_mcp.server.terminal import run

    return run(settings, args)


def _exit_status(work: Callable[[], int]) -> int:
    """Run, turning a configuration error into one line and exit status 2, and Ctrl-C into a quiet exit."""
    try:
        return work()
    except ConfigError as exc:
        print(f"llava-video-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
