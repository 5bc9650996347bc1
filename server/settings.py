"""Settings of the server and of the terminal commands: every flag also reads an environment variable
LLAVA_VIDEO_MCP_<FLAG>, and the flags that choose the model, the downloads and the safety rules are the same for
`llava-video-mcp` (the MCP server) and `llava-video-mcp describe|compare` (one question from a shell)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.backends.base import DEFAULT_MODEL
from tools.backends.devices import DEVICES, DTYPES
from tools.backends.loader import API_KEY_VARIABLE, BackendConfig
from tools.sources import FetchPolicy, default_cache_dir
from tools.watch import WindowOptions

ENV_PREFIX = "LLAVA_VIDEO_MCP_"
AUTH_TOKEN_VARIABLE = ENV_PREFIX + "AUTH_TOKEN"
TRANSPORTS = ("stdio", "http")
COMMANDS = ("describe", "compare")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    model: str | None = None
    """None: DEFAULT_MODEL in process, or the first model an endpoint serves."""
    device: str = "auto"
    dtype: str = "auto"
    endpoint: str | None = None
    api_key: str | None = field(default=None, repr=False)
    """Only ever from the environment (LLAVA_VIDEO_MCP_API_KEY), never a flag: flags show in process lists."""
    request_timeout_s: float = 120.0
    request_retries: int = 2
    max_concurrent_requests: int = 8
    prefix_cache_gb: float | None = None
    """None: sized from the device (a share of free accelerator memory, or of available RAM)."""
    cache_dir: Path = field(default_factory=default_cache_dir)
    cache_max_gb: float = 5.0
    preload: bool = False
    verbose: bool = False
    transport: str = "stdio"
    host: str = "127.0.0.1"
    port: int = 8000
    max_duration_s: float = 3 * 3600
    max_download_mb: float = 2048
    download_deadline_s: float = 3600
    download_timeout_s: float = 30
    download_retries: int = 3
    max_concurrent_downloads: int = 4
    cookies: Path | None = None
    block_private_urls: bool | None = None
    """None: on for the HTTP transport, off for stdio (a local user fetching from their own network)."""
    allow_dirs: tuple[Path, ...] = ()
    progress_interval_s: float = 5.0
    window_s: float = 60.0
    max_windows: int = 120
    auth_token: str | None = field(default=None, repr=False)
    """Bearer token HTTP clients must send: LLAVA_VIDEO_MCP_AUTH_TOKEN, or the file --auth-token-file names."""
    auth_token_file: Path | None = None
    trust_network: bool = False
    """Serve HTTP on a non-loopback address without a token: only on a network where every client is trusted."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names (host or host:port) clients may use beside the bound address, e.g. behind a reverse proxy."""

    def backend_config(self) -> BackendConfig:
        return BackendConfig(
            model=self.model,
            device=self.device,
            dtype=self.dtype,
            endpoint=self.endpoint,
            api_key=self.api_key,
            request_timeout_s=self.request_timeout_s,
            request_retries=self.request_retries,
            max_concurrent_requests=self.max_concurrent_requests,
            prefix_cache_gb=self.prefix_cache_gb,
        )

    def window_options(self) -> WindowOptions:
        return WindowOptions(window_s=self.window_s, max_windows=self.max_windows)

    def fetch_policy(self) -> FetchPolicy:
        over_http = self.transport == "http"
        return FetchPolicy(
            max_duration_s=self.max_duration_s,
            max_download_bytes=int(self.max_download_mb * 2**20),
            download_deadline_s=self.download_deadline_s,
            download_timeout_s=self.download_timeout_s,
            download_retries=self.download_retries,
            cookies=self.cookies,
            block_private_urls=over_http if self.block_private_urls is None else self.block_private_urls,
            local_files=bool(self.allow_dirs) or not over_http,
            allowed_dirs=self.allow_dirs,
        )


def _env(environ: Mapping[str, str], flag: str) -> str | None:
    return environ.get(ENV_PREFIX + flag.upper().replace("-", "_"))


def _flag_value(text: str | None) -> bool | None:
    if text is None or not text.strip():
        return None
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SystemExit(f"llava-video-mcp: expected a yes/no value, got {text!r}")


def _parser(env: Mapping[str, str], command: str | None) -> argparse.ArgumentParser:
    """The server's parser (`command` None) or a terminal command's: the shared options, and each one's own."""
    defaults = Settings()

    def default(flag: str, fallback: object) -> str:
        return _env(env, flag) or str(fallback)

    epilog = (
        f"Every flag can also be set with an environment variable {ENV_PREFIX}<FLAG>, e.g. {ENV_PREFIX}MODEL or "
        f"{ENV_PREFIX}CACHE_DIR; a flag on the command line wins. {ENV_PREFIX}ALLOW_DIR takes several folders "
        f"separated by '{os.pathsep}'."
    )
    if command is None:
        parser = argparse.ArgumentParser(
            prog="llava-video-mcp",
            description="MCP server that answers questions about videos with llava-interleave. Also: "
            "`llava-video-mcp describe SOURCE -q QUESTION` and `llava-video-mcp compare SOURCE SOURCE ... -q "
            "QUESTION` answer one question from a shell (see their --help).",
            epilog=epilog,
        )
    else:
        parser = argparse.ArgumentParser(prog=f"llava-video-mcp {command}", description=_COMMAND_HELP[command])
        _add_command_arguments(parser, command)
    parser.add_argument("--version", action="version", version=f"llava-video-mcp {version()}")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=_env(env, "model"),
        help=f"hub id or local folder of a llava model (default: {DEFAULT_MODEL}; the first run downloads ~1.7 GB); "
        "with --endpoint, the served model's id (default: the first one the endpoint lists)",
    )
    model.add_argument(
        "--device",
        choices=DEVICES,
        default=default("device", defaults.device),
        help="where the model runs; auto picks cuda, then mps, then xpu, then cpu (default: auto)",
    )
    model.add_argument(
        "--dtype",
        choices=DTYPES,
        default=default("dtype", defaults.dtype),
        help="weights' dtype; auto is bfloat16 (float16 where unsupported) on accelerators and on CPUs with bf16 "
        "instructions, else float32; mixed: float32 weights, frames and prompt read in bfloat16 (default: auto)",
    )
    model.add_argument(
        "--prefix-cache-gb",
        type=float,
        default=float(env_value) if (env_value := _env(env, "prefix-cache-gb")) else None,
        help="memory kept for follow-up questions' reuse of the frames' attention state (default: half the free "
        "accelerator memory after loading, or a quarter of the available RAM on CPU)",
    )
    model.add_argument(
        "--preload",
        action="store_true",
        default=_flag_value(_env(env, "preload")) or False,
        help="load the model at start instead of on the first call",
    )
    remote = parser.add_argument_group(
        "serving engine",
        f"run the model on an OpenAI-compatible server (vLLM, SGLang, transformers serve); the API "
        f"key comes from the environment variable {API_KEY_VARIABLE} only",
    )
    remote.add_argument(
        "--endpoint",
        default=_env(env, "endpoint"),
        help="base URL of the server, e.g. http://gpu-box:8000/v1; when set, the model runs there",
    )
    remote.add_argument(
        "--request-timeout-s",
        type=float,
        default=float(default("request-timeout-s", defaults.request_timeout_s)),
        help="longest wait for the engine's next bytes, the first token included (default: 120)",
    )
    remote.add_argument(
        "--request-retries",
        type=int,
        default=int(default("request-retries", defaults.request_retries)),
        help="retries, with backoff, of a request that failed to connect, timed out, or got 429/5xx (default: 2)",
    )
    remote.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=int(default("max-concurrent-requests", defaults.max_concurrent_requests)),
        help="calls in flight to the engine at once, so it can batch them; more wait their turn (default: 8)",
    )
    fetching = parser.add_argument_group("downloads and cache")
    fetching.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(default("cache-dir", defaults.cache_dir)),
        help=f"where downloaded videos are kept (default: {defaults.cache_dir})",
    )
    fetching.add_argument(
        "--cache-max-gb",
        type=float,
        default=float(default("cache-max-gb", defaults.cache_max_gb)),
        help="size cap of the download cache; least recently used videos go first (default: 5)",
    )
    fetching.add_argument(
        "--max-duration-s",
        type=float,
        default=float(default("max-duration-s", defaults.max_duration_s)),
        help="longest video accepted, checked before downloading where the site says (default: 10800, 3 hours)",
    )
    fetching.add_argument(
        "--max-download-mb",
        type=float,
        default=float(default("max-download-mb", defaults.max_download_mb)),
        help="largest download accepted (default: 2048)",
    )
    fetching.add_argument(
        "--download-deadline-s",
        type=float,
        default=float(default("download-deadline-s", defaults.download_deadline_s)),
        help="longest a whole download may take, a server that drips data slowly included (default: 3600)",
    )
    fetching.add_argument(
        "--download-timeout-s",
        type=float,
        default=float(default("download-timeout-s", defaults.download_timeout_s)),
        help="network timeout of each download request (default: 30)",
    )
    fetching.add_argument(
        "--download-retries",
        type=int,
        default=int(default("download-retries", defaults.download_retries)),
        help="retries of a failed download request (default: 3)",
    )
    fetching.add_argument(
        "--cookies",
        type=Path,
        default=_env(env, "cookies"),
        help="cookies file (Netscape format) for private, age-restricted or bot-checked videos",
    )
    long = parser.add_argument_group("long videos (coverage=full)")
    long.add_argument(
        "--window-s",
        type=float,
        default=float(default("window-s", defaults.window_s)),
        help="longest window a long video is watched in (default: 60)",
    )
    long.add_argument(
        "--max-windows",
        type=int,
        default=int(default("max-windows", defaults.max_windows)),
        help="most windows one call may watch, a bound on its cost (default: 120, two hours at 60 s)",
    )
    safety = parser.add_argument_group("safety")
    safety.add_argument(
        "--block-private-urls",
        action=argparse.BooleanOptionalAction,
        default=_flag_value(_env(env, "block-private-urls")),
        help="refuse URLs (redirects included) that reach loopback, private or link-local addresses "
        "(default: on over HTTP, off on stdio)",
    )
    safety.add_argument(
        "--allow-dir",
        type=Path,
        action="append",
        dest="allow_dirs",
        default=None,
        help="folder that local paths may come from (repeatable); without it, any local file on stdio and none "
        "over HTTP",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=_flag_value(_env(env, "verbose")) or False,
        help="debug logs on stderr",
    )
    if command is not None:
        return parser
    server = parser.add_argument_group("server")
    server.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=default("transport", defaults.transport),
        help="stdio (default), or http: streamable HTTP at http://HOST:PORT/mcp",
    )
    server.add_argument("--host", default=default("host", defaults.host), help="HTTP host (default: 127.0.0.1)")
    server.add_argument(
        "--port", type=int, default=int(default("port", defaults.port)), help="HTTP port (default: 8000)"
    )
    server.add_argument(
        "--progress-interval-s",
        type=float,
        default=float(default("progress-interval-s", defaults.progress_interval_s)),
        help="longest gap between progress notifications during a call (default: 5)",
    )
    server.add_argument(
        "--auth-token-file",
        type=Path,
        default=_env(env, "auth-token-file"),
        help=f"file holding the bearer token HTTP clients must send (or set {AUTH_TOKEN_VARIABLE})",
    )
    server.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        default=None,
        help="host name clients may reach the server by, beside the bound address (repeatable), e.g. behind a "
        "reverse proxy; Host and Origin headers are checked against them",
    )
    server.add_argument(
        "--trust-network",
        action="store_true",
        default=_flag_value(_env(env, "trust-network")) or False,
        help="allow serving HTTP on a non-loopback address without a token: only on a network whose every client "
        "is trusted",
    )
    return parser


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The server's settings from its command line and environment."""
    env = os.environ if environ is None else environ
    return _settings(_parser(env, None).parse_args(argv), env)


def parse_command(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[Settings, argparse.Namespace]:
    """A terminal command's settings and arguments; `argv[0]` is the command (describe or compare)."""
    env = os.environ if environ is None else environ
    args = _parser(env, argv[0]).parse_args(argv[1:])
    return _settings(args, env), args


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    allow_env = _env(env, "allow-dir")
    allow_dirs = args.allow_dirs or [Path(p) for p in (allow_env or "").split(os.pathsep) if p]
    return Settings(
        model=args.model or None,
        device=args.device,
        dtype=args.dtype,
        endpoint=args.endpoint or None,
        api_key=env.get(API_KEY_VARIABLE) or None,
        request_timeout_s=args.request_timeout_s,
        request_retries=args.request_retries,
        max_concurrent_requests=args.max_concurrent_requests,
        prefix_cache_gb=args.prefix_cache_gb,
        cache_dir=args.cache_dir.expanduser(),
        cache_max_gb=args.cache_max_gb,
        preload=getattr(args, "preload", False),
        verbose=args.verbose,
        transport=getattr(args, "transport", "stdio"),
        host=getattr(args, "host", "127.0.0.1"),
        port=getattr(args, "port", 8000),
        max_duration_s=args.max_duration_s,
        max_download_mb=args.max_download_mb,
        download_deadline_s=args.download_deadline_s,
        download_timeout_s=args.download_timeout_s,
        download_retries=args.download_retries,
        cookies=Path(args.cookies).expanduser() if args.cookies else None,
        block_private_urls=args.block_private_urls,
        allow_dirs=tuple(Path(d).expanduser() for d in allow_dirs),
        progress_interval_s=getattr(args, "progress_interval_s", 5.0),
        window_s=args.window_s,
        max_windows=args.max_windows,
        auth_token=env.get(AUTH_TOKEN_VARIABLE) or None,
        auth_token_file=Path(args.auth_token_file).expanduser() if getattr(args, "auth_token_file", None) else None,
        trust_network=getattr(args, "trust_network", False),
        allowed_hosts=tuple(getattr(args, "allowed_hosts", None) or ()),
    )


_COMMAND_HELP = {
    "describe": "Answer a question about one video (or describe it) from a shell: the answer on stdout, progress on "
    "stderr. The same code, limits and errors as the describe_video tool; exit status 1 when the video or the "
    "model fails, 2 for a wrong command line.",
    "compare": "Answer one question across 2 to 4 videos from a shell, like the compare_videos tool.",
}


def _add_command_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "describe":
        parser.add_argument("source", help="local file path, http(s) URL of a video, or a video page URL")
        parser.add_argument("-q", "--question", help="what to answer (default: describe the video in detail)")
        parser.add_argument("--frames", type=int, default=8, help="frames to sample, 1 to 32 (default: 8)")
        parser.add_argument("--start", type=float, help="sample from this second on")
        parser.add_argument("--end", type=float, help="sample up to this second")
        parser.add_argument(
            "--full", action="store_true", help="watch the whole range window by window (coverage=full), --frames each"
        )
    else:
        parser.add_argument("sources", nargs="+", help="2 to 4 sources, compared as Video 1, Video 2, ...")
        parser.add_argument("-q", "--question", required=True, help="the question to answer across the videos")
        parser.add_argument("--frames", type=int, default=6, help="frames to sample from each video (default: 6)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest answer, in tokens (default: 256)")
    parser.add_argument("--language", default="en", help="language of the subtitles to use (default: en)")
    parser.add_argument("--no-transcript", action="store_true", help="do not give the model the subtitles")
    parser.add_argument("--json", action="store_true", help="print the whole structured result as JSON")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("llava-video-mcp")
    except PackageNotFoundError:
        return "0.0.0"
