"""Command line entry point: `llava-video-mcp` (and `python -m llava_video_mcp`).

With no command it runs the MCP server, as host configs expect; `describe` and `compare` answer one question from
a shell. The heavy parts (the MCP stack, torch) are imported only when they are used, so `--help` and
`--version` answer at once, and a wrong flag, variable or argument exits 2 with one line before any model loads.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llava_video_mcp.server.settings import (
    ENV_PREFIX,
    ConfigError,
    Settings,
    add_settings_arguments,
    settings_from,
    version,
)
from llava_video_mcp.server.terminal import add_command_arguments
from llava_video_mcp.tools.backends import API_KEY_VARIABLE
from llava_video_mcp.tools.backends.families import FAMILIES

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Parser(argparse.ArgumentParser):
    def long_flags(self) -> list[str]:
        return [name for name in self._option_string_actions if name.startswith("--")]


def server_parser() -> argparse.ArgumentParser:
    """The command line: the MCP server by default, or a terminal command (`describe`, `compare`, `moments`) with
    its own arguments. The shared settings' flags may stand before or after the command."""
    return _parsers()[0]


def _parsers() -> tuple[_Parser, dict[str, _Parser]]:
    """The server's parser, and each command's."""
    parser = _Parser(
        prog="llava-video-mcp",
        description=f"MCP server that answers questions about videos with a vision-language model in process: "
        f"{families_text()}; or any model on a serving engine (--endpoint, --frame-cost). With a command, answers "
        "one question from a shell instead.",
        epilog=f"Every flag can also be set with an environment variable {ENV_PREFIX}<FLAG>, e.g. {ENV_PREFIX}MODEL "
        f"or {ENV_PREFIX}CACHE_DIR; a flag on the command line wins. {ENV_PREFIX}ALLOW_DIR takes several folders "
        f"separated by '{os.pathsep}'. The API key of --endpoint comes from {API_KEY_VARIABLE} only.",
    )
    parser.add_argument("--version", action="version", version=f"llava-video-mcp {version()}")
    add_settings_arguments(parser, server=True)
    commands = parser.add_subparsers(dest="command", title="commands (one question from a shell)", metavar="COMMAND")
    subs: dict[str, _Parser] = {}
    for command, summary in COMMAND_HELP.items():
        sub = subs[command] = commands.add_parser(command, help=summary, description=summary)
        add_command_arguments(sub, command)
        add_settings_arguments(sub, server=False)
    return parser, subs


def families_text() -> str:
    """The families that run in process, the default first, with what a frame costs each (their declarations)."""
    named = [f"{family.name} ({family.nominal_cost.words()})" for family in FAMILIES]
    return f"{named[0]}, the default, or {', '.join(named[1:])}"


COMMAND_HELP = {
    "describe": "answer a question about one video (or describe it): the answer on stdout, progress on stderr",
    "compare": "answer one question across 2 to 4 videos, like the compare_videos tool",
    "moments": "find when something happens in one video, like the find_moments tool: one moment a line",
    "selftest": "run the three tools on tiny random models and videos made here: no model download (about a minute)",
}


def parse(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    """The command line as given (exits 2 with argparse's usage line for a wrong one, and for a flag it does not
    know, the closest one it does: `--frmes`, did you mean `--frames`?)."""
    parser, commands = _parsers()
    given = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in given if word in commands), None)
    where = commands[command] if command else parser
    known = sorted(set(parser.long_flags()) | set(where.long_flags()))
    # Before argparse reads them: a mistyped flag's value would otherwise be taken for the command.
    for word in given[: given.index("--")] if "--" in given else given:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag != "--" and not any(name.startswith(flag) for name in known):
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            where.error(f"unrecognized argument {flag}{hint}")
    args, extras = parser.parse_known_args(given)
    if extras:
        where.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The server's settings from its command line and environment; ConfigError for a bad value."""
    return settings_from(parse(argv), os.environ if environ is None else environ)


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
    logging.captureWarnings(True)  # a library's warnings.warn reads like every other line
    transformers_logging: Any = importlib.import_module("transformers.utils.logging")

    # transformers writes through a handler and progress bars of its own ("Loading weights"): through ours instead.
    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
    transformers_logging.disable_progress_bar()


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
    if args.command == "selftest":
        from llava_video_mcp.server import selftest

        return selftest.run(settings)
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
