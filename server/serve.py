"""Running the MCP server: configuration checked, a startup line that says what is served and how, the transport
(stdio, or streamable HTTP with a bearer token and Host/Origin checks), and a clean stop on SIGINT or SIGTERM.

Stopping: the calls in flight are cancelled (their downloads cut, their staging folders removed), and the process
ends within about two seconds. It does not wait for a blocked read of stdin or for HTTP clients to hang up.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any

from llava_video_mcp.server.checks import ConfigError, check, is_loopback
from llava_video_mcp.server.http_guard import (
    BACKLOG,
    Admission,
    connection_cap,
    guard_logs,
    guarded_protocol,
    listeners,
)
from llava_video_mcp.server.settings import Settings, version
from llava_video_mcp.server.worker import ACTIVE_CALLS
from llava_video_mcp.tools.backends import DEFAULT_MODEL, LazyBackend
from llava_video_mcp.tools.backends.devices import pick_device
from llava_video_mcp.tools.backends.speech.loader import resolved_engine, resolved_model
from llava_video_mcp.tools.errors import VideoToolError
from llava_video_mcp.tools.media import remove_own_staging

log = logging.getLogger("llava_video_mcp")

_STOP_WAIT_S = 1.5


def serve(settings: Settings) -> None:
    """Check, announce, and run the server until it is stopped. Raises ConfigError for a configuration that cannot
    work."""
    over_http = settings.transport == "http"
    _stop_on_signals()
    settings = check(settings, serving_http=over_http)
    provider = LazyBackend(settings.backend_config())
    if (settings.endpoint or settings.preload) and not settings.looking_only:
        try:
            provider.get(_logged_download())
        except VideoToolError as exc:
            raise ConfigError(str(exc)) from None
    log.info("%s", startup_line(settings, provider))
    from llava_video_mcp.server.app import build_server

    app = build_server(settings, provider)
    if not over_http:
        if sys.stdin.isatty():
            log.info(
                "waiting for an MCP client on stdin and stdout. To try the tools: npx @modelcontextprotocol/inspector "
                "%s (or ask a question from the shell: llava-video-mcp describe VIDEO -q QUESTION)",
                shlex.join([sys.argv[0], *sys.argv[1:]]),
            )
        app.run("stdio")
        # The client has gone (stdin closed): end as a signal would, without the interpreter's teardown, which waits
        # on every library's threads (a torch or tokenizer thread pool can keep a finished server alive).
        _stopping.set()
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        _finish()
        return
    _serve_http(app, settings)


def startup_line(settings: Settings, provider: LazyBackend) -> str:
    """Version, model (or endpoint), device and dtype as far as known, cache, transport and safety policy."""
    backend = provider.loaded
    if backend is not None:
        where = f"on {backend.device}" + (f" ({backend.dtype})" if backend.dtype else "")
        if backend.endpoint:
            where = f"served at {backend.endpoint}"
        model = f"{backend.model_id} {where}"
    elif settings.looking_only:
        model = "none (--model none: the tools return the frames as images for the agent to look at)"
    elif settings.endpoint:
        model = f"{settings.model or 'the first model'} served at {_host(settings.endpoint)}"
    else:
        device = settings.device if settings.device != "auto" else f"{pick_device('auto')} (the best found)"
        dtype = "" if settings.dtype == "auto" else f", {settings.dtype}"
        model = f"{settings.model or DEFAULT_MODEL} on {device}{dtype}, loaded on the first call"
    policy = settings.fetch_policy()
    if not policy.local_files:
        files = "none"
    elif policy.allowed_dirs:
        files = "only in " + ", ".join(str(d) for d in policy.allowed_dirs)
    else:
        files = "any"
    if settings.transport == "http":
        auth = "bearer token required" if settings.auth_token else "no token (trusted network)"
        transport = f"http://{_host_for_url(settings.host)}:{settings.port}/mcp, {auth}"
    else:
        transport = "stdio"
    speech = settings.speech_config()
    if not speech.enabled:
        hearing = "off"
    elif speech.endpoint:
        hearing = f"served at {_host(speech.endpoint)}"
    else:
        hearing = f"{resolved_model(speech)} on {resolved_engine(speech)}"
    return (
        f"llava-video-mcp {version()} | model {model} | speech {hearing} | cache {settings.cache_dir} | {transport} "
        f"| local files: {files} | private URLs: {'refused' if policy.block_private_urls else 'allowed'}"
    )


def _host(endpoint: str) -> str:
    """host:port of an engine's URL: a log line never shows its credentials."""
    from llava_video_mcp.tools.backends.remote import endpoint_host  # the engine's client, only where one is used

    return endpoint_host(endpoint)


def _logged_download() -> Any:
    """Reports a model download at start (--preload) in the log, every 10% or so."""
    shown = [-1]

    def report(done: int, total: int | None) -> None:
        step = int(10 * done / total) if total else done // (100 * 2**20)
        if step != shown[0]:
            shown[0] = step
            of = f" of {total / 1e6:.0f} MB" if total else ""
            log.info("downloading the model: %.0f MB%s", done / 1e6, of)

    return report


def _stop_on_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)


_stopping = threading.Event()


def _stop(signum: int, frame: FrameType | None) -> None:
    """Stop from a signal: cancel the calls in flight, let them clean up, and end the process."""
    if _stopping.is_set():
        os._exit(1)
    _stopping.set()
    log.info("stopping (%s): %d call(s) in flight are cancelled", signal.Signals(signum).name, len(ACTIVE_CALLS))
    threading.Thread(target=_finish, daemon=True).start()


def _finish() -> None:
    started = time.monotonic()
    ACTIVE_CALLS.cancel_all()
    ACTIVE_CALLS.wait_idle(_STOP_WAIT_S)
    remove_own_staging()
    log.info("stopped in %.1f s", time.monotonic() - started)
    logging.shutdown()
    os._exit(0)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _serve_http(app: Any, settings: Settings) -> None:
    import anyio
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    hosts, origins = allowed_hosts_and_origins(settings)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )
    starlette_app = app.streamable_http_app(transport_security=security, host=settings.host)
    guard_logs(settings.auth_token)
    cap = connection_cap(settings.max_connections)
    if cap < settings.max_connections:
        log.warning("at most %d HTTP connections (the process's file limit leaves no room for more)", cap)

    admission = Admission(cap + BACKLOG)
    sockets = listeners(settings.host, settings.port, admission)
    address = f"http://{_host_for_url(settings.host)}:{settings.port}"

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            _stop(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            log.info("Uvicorn running on %s (MCP at %s/mcp; at most %d connections)", address, address, cap)

    # log_config=None: uvicorn's loggers go through the root logger, in the process's one format.
    config = uvicorn.Config(
        starlette_app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level="info",
        http=guarded_protocol(cap, admission),
        backlog=BACKLOG,
        timeout_keep_alive=5,
    )
    anyio.run(functools.partial(Server(config).serve, sockets=sockets))


def allowed_hosts_and_origins(settings: Settings) -> tuple[list[str], list[str]]:
    """The Host and Origin values the HTTP transport accepts: the names of the bound address (all of this machine's
    for a wildcard bind), and those given with --allowed-host (a reverse proxy's public name)."""
    if is_loopback(settings.host):
        names = ["127.0.0.1", "localhost", "[::1]"]
    elif settings.host in ("0.0.0.0", "::", ""):
        names = _machine_names()
    else:
        names = [_host_for_url(settings.host)]
    names += list(settings.allowed_hosts)
    hosts: list[str] = []
    origins: list[str] = []
    for name in dict.fromkeys(names):
        with_port = not name.endswith("]") and name.rsplit(":", 1)[-1].isdigit()
        hosts += [name] if with_port else [name, f"{name}:*"]
        for scheme in ("http", "https"):
            origins += [f"{scheme}://{name}"] if with_port else [f"{scheme}://{name}", f"{scheme}://{name}:*"]
    return hosts, origins


def _machine_names() -> list[str]:
    import socket

    names = ["127.0.0.1", "localhost", "[::1]", socket.gethostname(), socket.getfqdn()]
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        addresses = set()
    return names + [_host_for_url(str(address)) for address in sorted(addresses)]
