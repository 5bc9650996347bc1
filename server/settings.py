"""Server settings: every flag also reads an environment variable LLAVA_VIDEO_MCP_<FLAG>."""

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

ENV_PREFIX = "LLAVA_VIDEO_MCP_"
TRANSPORTS = ("stdio", "http")
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
    cookies: Path | None = None
    block_private_urls: bool | None = None
    """None: on for the HTTP transport, off for stdio (a local user fetching from their own network)."""
    allow_dirs: tuple[Path, ...] = ()
    progress_interval_s: float = 5.0

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


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    defaults = Settings()

    def default(flag: str, fallback: object) -> str:
        return _env(env, flag) or str(fallback)

    parser = argparse.ArgumentParser(
        prog="llava-video-mcp",
        description="MCP server that answers questions about videos with llava-interleave.",
        epilog=f"Every flag can also be set with an environment variable {ENV_PREFIX}<FLAG>, "
        f"e.g. {ENV_PREFIX}MODEL or {ENV_PREFIX}CACHE_DIR; a flag on the command line wins. "
        f"{ENV_PREFIX}ALLOW_DIR takes several folders separated by '{os.pathsep}'.",
    )
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
        "-v",
        "--verbose",
        action="store_true",
        default=_flag_value(_env(env, "verbose")) or False,
        help="debug logs on stderr",
    )
    args = parser.parse_args(argv)
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
        preload=args.preload,
        verbose=args.verbose,
        transport=args.transport,
        host=args.host,
        port=args.port,
        max_duration_s=args.max_duration_s,
        max_download_mb=args.max_download_mb,
        download_deadline_s=args.download_deadline_s,
        download_timeout_s=args.download_timeout_s,
        download_retries=args.download_retries,
        cookies=Path(args.cookies).expanduser() if args.cookies else None,
        block_private_urls=args.block_private_urls,
        allow_dirs=tuple(Path(d).expanduser() for d in allow_dirs),
        progress_interval_s=args.progress_interval_s,
    )
