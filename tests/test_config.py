"""The shipped host config and the command line agree."""

from __future__ import annotations

import json
from pathlib import Path

from server.settings import ENV_PREFIX, parse_settings

ROOT = Path(__file__).resolve().parent.parent


def test_mcp_json_is_a_working_host_config() -> None:
    [(name, entry)] = json.loads((ROOT / "mcp.json").read_text())["mcpServers"].items()
    assert name == "llava-video"
    assert Path(entry["command"]).name == "llava-video-mcp"
    assert all(key.startswith(ENV_PREFIX) for key in entry["env"])
    settings = parse_settings(entry["args"], entry["env"])
    assert settings.model == entry["env"]["LLAVA_VIDEO_MCP_MODEL"]


def test_flags_win_over_environment(tmp_path: Path) -> None:
    env = {"LLAVA_VIDEO_MCP_MODEL": "from-env", "LLAVA_VIDEO_MCP_PRELOAD": "true", "LLAVA_VIDEO_MCP_CACHE_DIR": "/x"}
    assert parse_settings([], env).model == "from-env"
    assert parse_settings([], env).preload
    assert parse_settings([], env).cache_dir == Path("/x")
    assert parse_settings(["--model", str(tmp_path)], env).model == str(tmp_path)
    assert not parse_settings([], {}).preload


def test_python_dash_m_server_is_the_same_command() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "server", "--help"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("usage: llava-video-mcp")
    assert "LLAVA_VIDEO_MCP_<FLAG>" in out.stdout


def test_http_transport_defaults_are_safer() -> None:
    stdio = parse_settings([], {}).fetch_policy()
    assert (stdio.block_private_urls, stdio.local_files) == (False, True)
    http = parse_settings(["--transport", "http"], {}).fetch_policy()
    assert (http.block_private_urls, http.local_files) == (True, False)
    opened = parse_settings(["--transport", "http", "--allow-dir", "/srv/videos", "--no-block-private-urls"], {})
    assert opened.fetch_policy().local_files
    assert not opened.fetch_policy().block_private_urls
    assert parse_settings(["--block-private-urls"], {}).fetch_policy().block_private_urls


def test_limits_and_folders_from_the_environment() -> None:
    import os

    env = {
        "LLAVA_VIDEO_MCP_MAX_DURATION_S": "60",
        "LLAVA_VIDEO_MCP_MAX_DOWNLOAD_MB": "1.5",
        "LLAVA_VIDEO_MCP_ALLOW_DIR": os.pathsep.join(["/a", "/b"]),
        "LLAVA_VIDEO_MCP_BLOCK_PRIVATE_URLS": "yes",
        "LLAVA_VIDEO_MCP_COOKIES": "~/cookies.txt",
    }
    settings = parse_settings([], env)
    policy = settings.fetch_policy()
    assert policy.max_duration_s == 60
    assert policy.max_download_bytes == int(1.5 * 2**20)
    assert policy.allowed_dirs == (Path("/a"), Path("/b"))
    assert policy.block_private_urls
    assert policy.cookies == Path("~/cookies.txt").expanduser()
