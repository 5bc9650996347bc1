"""The shipped host config and the command line agree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llava_video_mcp.server.cli import parse_settings
from llava_video_mcp.server.settings import ENV_PREFIX, ConfigError, declared, flags_table

ROOT = Path(__file__).resolve().parent.parent


def test_mcp_json_is_a_working_host_config() -> None:
    [(name, entry)] = json.loads((ROOT / "mcp.json").read_text())["mcpServers"].items()
    assert name == "llava-video"
    assert Path(entry["command"]).name == "llava-video-mcp"
    assert all(key.startswith(ENV_PREFIX) for key in entry["env"])
    settings = parse_settings(entry["args"], entry["env"])
    assert settings.model == entry["env"]["LLAVA_VIDEO_MCP_MODEL"]


def test_mcp_json_starts_the_server_from_any_folder(tmp_path: Path) -> None:
    """The command is found on PATH (the installed entry point), not relative to this repository."""
    [entry] = json.loads((ROOT / "mcp.json").read_text())["mcpServers"].values()
    installed = Path(sys.executable).parent  # where the install put the entry point, as PATH would hold it
    path = f"{installed}{os.pathsep}{os.environ.get('PATH', '')}"
    started = subprocess.run(
        [shutil.which(entry["command"], path=path) or entry["command"], *entry["args"], "--version"],
        cwd=tmp_path, env={**os.environ, "PATH": path, **entry["env"]}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("llava-video-mcp ")


def test_flags_win_over_environment(tmp_path: Path) -> None:
    env = {"LLAVA_VIDEO_MCP_MODEL": "from-env", "LLAVA_VIDEO_MCP_PRELOAD": "true", "LLAVA_VIDEO_MCP_CACHE_DIR": "/x"}
    assert parse_settings([], env).model == "from-env"
    assert parse_settings([], env).preload
    assert parse_settings([], env).cache_dir == Path("/x")
    assert parse_settings(["--model", str(tmp_path)], env).model == str(tmp_path)
    assert not parse_settings([], {}).preload


def test_python_dash_m_llava_video_mcp_is_the_same_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llava_video_mcp", "--help"], capture_output=True, text=True, check=True
    )
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


# Every setting is checked at start, from a flag or from the environment, and named in one line.


def bad_values() -> list[tuple[str, str, str]]:
    """(setting, a value out of its range or choices, what the refusal says), for every setting that has a range,
    choices or a type beyond text."""
    from annotated_types import Ge, Gt, Le

    cases = []
    for item in declared():
        for bound in item.info.metadata:
            if isinstance(bound, Ge):
                cases.append((item.name, f"{float(bound.ge) - 1:g}", "or more"))
            elif isinstance(bound, Gt):
                cases.append((item.name, f"{float(bound.gt):g}", "must be more than"))
            elif isinstance(bound, Le):
                cases.append((item.name, f"{float(bound.le) * 10 + 1:g}", "at most"))
        if item.choices():
            cases.append((item.name, "bogus", "must be one of"))
        elif item.kind == "bool":
            cases.append((item.name, "maybe", "must be true or false"))
        elif "int" in str(item.info.annotation):
            cases.append((item.name, "abc", "must be a whole number"))
        elif "float" in str(item.info.annotation):
            cases.append((item.name, "inf", "must be a finite number"))
    return cases


BAD = bad_values()


@pytest.mark.parametrize(("name", "value", "says"), BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_every_setting_is_checked_from_the_environment(name: str, value: str, says: str) -> None:
    [item] = [d for d in declared() if d.name == name]
    assert item.variable is not None
    with pytest.raises(ConfigError) as refused:
        parse_settings([], {item.variable: value})
    assert str(refused.value).startswith(f"{item.variable}={value}: ")
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [case for case in BAD if case[2] != "must be true or false"],
    ids=[f"{n}={v}" for n, v, s in BAD if s != "must be true or false"],
)
def test_every_setting_is_checked_from_its_flag(name: str, value: str, says: str) -> None:
    [item] = [d for d in declared() if d.name == name]
    assert item.option is not None
    with pytest.raises(ConfigError) as refused:
        parse_settings([item.option, value], {})
    assert str(refused.value).startswith(f"{item.option} {value}: ")
    assert says in str(refused.value)


def test_the_settings_with_a_range_are_all_covered() -> None:
    checked = {name for name, _, _ in BAD}
    assert {"window_s", "max_windows", "port", "cache_max_gb", "max_download_mb", "request_retries"} <= checked
    assert {"transport", "device", "dtype", "preload", "verbose", "trust_network"} <= checked


@pytest.mark.parametrize("flag", ["--endpoint", "--asr-endpoint"])
def test_an_endpoint_needs_a_scheme(flag: str) -> None:
    with pytest.raises(ConfigError, match=rf"{flag} gpu-box:8000/v1: needs a scheme"):
        parse_settings([flag, "gpu-box:8000/v1"], {})


@pytest.mark.parametrize(
    ("variable", "says"),
    [
        ("LLAVA_VIDEO_MCP_MODLE", "did you mean LLAVA_VIDEO_MCP_MODEL?"),
        ("LLAVA_VIDEO_MCP_CACHE_DIRS", "did you mean LLAVA_VIDEO_MCP_CACHE_DIR?"),
        ("llava_video_mcp_asr_modle", "did you mean LLAVA_VIDEO_MCP_ASR_MODEL?"),
        ("LLAVA_VIDEO_MCP_QQQ", "one for each flag in --help"),
    ],
)
def test_a_mistyped_variable_is_refused_with_the_closest_name(variable: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_settings([], {variable: "x"})
    assert str(refused.value) == f"{variable}: this server has no such setting; {says}" or says in str(refused.value)
    assert str(refused.value).startswith(f"{variable}: this server has no such setting; ")


def test_choices_are_read_in_any_case() -> None:
    assert parse_settings([], {"LLAVA_VIDEO_MCP_TRANSPORT": "HTTP"}).transport == "http"


@pytest.mark.parametrize("command", [[], ["describe", "clip.mp4"]], ids=["server", "terminal"])
def test_the_speech_words_are_read_in_any_case(command: list[str]) -> None:
    """`auto` and `none` are read once, as the speech configuration takes them: `--asr-model Auto` picks the model
    for the device (it was looked up on the hub as 'Auto'), `NONE` hears nothing; a hub id keeps its case."""
    from llava_video_mcp.tools.backends.speech.loader import CPU_DEFAULT, LazySpeech, resolved_model

    def speech(*flags: str, environ: dict[str, str] | None = None) -> Any:
        return parse_settings([*command, *flags, "--device", "cpu"], environ or {}).speech_config()

    auto = speech("--asr-model", "Auto")
    assert (auto.model, auto.enabled, auto.named) == ("auto", True, None)
    assert resolved_model(auto) == CPU_DEFAULT
    assert LazySpeech(auto).identity().startswith(f"{CPU_DEFAULT} ")
    assert not speech("--asr-model", "NONE").enabled
    assert not speech("--asr-model", " none ").enabled
    assert not speech(environ={"LLAVA_VIDEO_MCP_ASR_MODEL": "None"}).enabled
    assert speech(environ={"LLAVA_VIDEO_MCP_ASR_MODEL": "AUTO"}).model == "auto"
    assert speech("--asr-model", "Org/Whisper-Small").named == "Org/Whisper-Small"
    assert speech("--asr-engine", "CTranslate2").engine == "ctranslate2"


def test_secrets_are_never_shown_in_a_refusal() -> None:
    settings = parse_settings([], {"LLAVA_VIDEO_MCP_API_KEY": "sk-secret", "LLAVA_VIDEO_MCP_AUTH_TOKEN": "t" * 20})
    assert "sk-secret" not in repr(settings)


def test_help_and_version_work_whatever_the_environment_holds() -> None:
    garbage = {item.variable: "%garbage%" for item in declared() if item.variable}
    for flag in ("--help", "--version"):
        out = subprocess.run(
            [sys.executable, "-m", "llava_video_mcp", flag],
            capture_output=True,
            text=True,
            env=os.environ | garbage,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr
    served = subprocess.run(
        [sys.executable, "-m", "llava_video_mcp"], capture_output=True, text=True, env=os.environ | garbage, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert served.returncode == 2
    [line] = served.stderr.strip().splitlines()
    assert line.startswith("llava-video-mcp: LLAVA_VIDEO_MCP_")


def test_the_docs_flag_table_is_the_declared_one() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    start = page.index("<!-- generated: flags -->") + len("<!-- generated: flags -->\n")
    end = page.index("<!-- /generated -->", start)
    assert page[start:end].strip() == flags_table()


def test_every_guarantee_in_the_docs_names_tests_that_exist() -> None:
    import re

    page = (ROOT / "docs" / "tools.md").read_text()
    section = page[page.index("## What the server guarantees on bad input") :]
    rows = [line for line in section.splitlines() if line.startswith("| **")]
    assert len(rows) >= 15
    for row in rows:
        tests = row.rsplit("|", 2)[-2]
        named = re.findall(r"`(test_\w+)::(\w+|\*)(?:\[([^\]]+)\])?`|`\[([^\]]+)\]`", tests)
        assert named, row
        module = ""
        for file, function, case, later_case in named:
            module = file or module
            source = (ROOT / "tests" / f"{module}.py").read_text()
            if function and function != "*":
                assert f"def {function}(" in source, (module, function)
            for shown in (case, later_case):
                if shown:
                    assert f'"{shown}"' in source, (module, shown)
