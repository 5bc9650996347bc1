"""Server settings: every flag also reads an environment variable LLAVA_VIDEO_MCP_<FLAG>."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.backend import DEFAULT_MODEL, DEVICES, DTYPES
from tools.sources import default_cache_dir

ENV_PREFIX = "LLAVA_VIDEO_MCP_"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: Path = field(default_factory=default_cache_dir)
    preload: bool = False
    verbose: bool = False


def _env(environ: Mapping[str, str], flag: str) -> str | None:
    return environ.get(ENV_PREFIX + flag.upper().replace("-", "_"))


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    defaults = Settings()

    def default(flag: str, fallback: str) -> str:
        return _env(env, flag) or fallback

    def default_flag(flag: str) -> bool:
        return (_env(env, flag) or "").strip().lower() in _TRUE

    parser = argparse.ArgumentParser(
        prog="llava-video-mcp",
        description="MCP server (stdio) that answers questions about videos with llava-interleave.",
        epilog=f"Every flag can also be set with an environment variable {ENV_PREFIX}<FLAG>, "
        f"e.g. {ENV_PREFIX}MODEL or {ENV_PREFIX}CACHE_DIR; a flag on the command line wins.",
    )
    parser.add_argument(
        "--model",
        default=default("model", defaults.model),
        help=f"hub id or local folder of a llava model (default: {DEFAULT_MODEL}; the first run downloads ~1.7 GB)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default=default("device", defaults.device),
        help="where the model runs; auto picks cuda, then mps, then xpu, then cpu (default: auto)",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default=default("dtype", defaults.dtype),
        help="weights' dtype; auto is bfloat16 (float16 where unsupported) on accelerators, float32 on cpu",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(default("cache-dir", str(defaults.cache_dir))),
        help=f"where downloaded videos are kept (default: {defaults.cache_dir})",
    )
    parser.add_argument(
        "--preload",
        action="store_true",
        default=default_flag("preload"),
        help="load the model at start instead of on the first call",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default_flag("verbose"), help="debug logs on stderr"
    )
    args = parser.parse_args(argv)
    return Settings(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        cache_dir=args.cache_dir.expanduser(),
        preload=args.preload,
        verbose=args.verbose,
    )
