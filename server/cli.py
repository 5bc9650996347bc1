"""Command line entry point: `llava-video-mcp` and `python -m server`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from server.app import build_server
from server.settings import parse_settings
from tools.backends.loader import LazyBackend
from tools.errors import VideoToolError


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    # stdout carries the MCP protocol on stdio: every log line goes to stderr.
    logging.basicConfig(
        level=logging.DEBUG if settings.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if not settings.verbose:
        for noisy in ("httpx", "httpcore", "urllib3", "filelock", "PIL", "transformers"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    provider = LazyBackend(settings.backend_config())
    if settings.endpoint:
        # A remote engine is checked before serving: a wrong URL, key or model name stops the server here.
        try:
            provider.get()
        except VideoToolError as exc:
            print(f"llava-video-mcp: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    app = build_server(settings, provider)
    if settings.transport == "http":
        app.run("streamable-http", host=settings.host, port=settings.port)
    else:
        app.run("stdio")
