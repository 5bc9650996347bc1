"""The docs as a reader meets them: the site builds with `mkdocs build --strict`, every code block is a file in
docs/snippets that runs here (against the real server, over stdio and HTTP, from the terminal, through the pipeline
as a library, against `transformers serve`), the generated tables are what the settings and bench/results make,
and the README is short and shows the same snippets."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llava_video_mcp.tools.answer import VideoAnswer
from tests.engines import ServedModel, free_port
from tests.support import wait_for_line

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\n", re.M | re.S)
TOKEN = "docs-token-0123456789abcdef"

RUN_HERE = {
    "client_stdio.py": "test_the_stdio_client_answers",
    "client_http.py": "test_the_http_server_and_client_snippets",
    "http_server.sh": "test_the_http_server_and_client_snippets",
    "terminal.sh": "test_the_terminal_snippet",
    "notebook.py": "test_the_notebook_snippet",
    "endpoint.sh": "test_the_engine_snippet_against_transformers_serve",
    "result.json": "test_the_result_example_is_a_result",
    "claude_desktop_config.json": "test_the_host_configs_are_host_configs",
    "claude_desktop_short.json": "test_the_host_configs_are_host_configs",
}
"""Each snippet and the test that runs it."""
CHECKED_ONLY = {
    "vllm_serve.sh": "vLLM needs a GPU and does not run here: read as shell (sh -n), its flags the page explains",
    "claude_code.sh": "needs the `claude` command: read as shell, the flags the README shows",
    "run_server.sh": "the install it runs is test_running's (offline, on a stand-in clone); the server is every test's",
    "run_tests.sh": "this very test run; its pytest command is .ci/run's",
}
"""Snippets that cannot run here, and what is checked instead."""


def env(tmp_path: Path, model: Path) -> dict[str, str]:
    """A user's environment with the server installed on PATH, the tiny model and no speech model."""
    return os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "LLAVA_VIDEO_MCP_MODEL": str(model),
        "LLAVA_VIDEO_MCP_DEVICE": "cpu",
        "LLAVA_VIDEO_MCP_ASR_MODEL": "none",
    }


def snippet(name: str, *args: str, environ: dict[str, str], cwd: Path, timeout: float = 180) -> (
    subprocess.CompletedProcess[str]
):  # fmt: skip
    path = SNIPPETS / name
    command = [sys.executable, str(path)] if path.suffix == ".py" else ["sh", str(path)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, env=environ, cwd=cwd,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_the_site_builds_strict(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    page = (tmp_path / "site" / "vllm" / "index.html").read_text()
    assert "--limit-mm-per-prompt" in page  # the snippet itself, not the include line
    assert "--8&lt;--" not in page


def test_every_code_block_is_a_snippet_that_is_run_or_checked() -> None:
    included: set[str] = set()
    for page in sorted(DOCS.glob("*.md")):
        for _, body in FENCE.findall(page.read_text()):
            match = re.fullmatch(r'--8<-- "([\w.]+)"\n', body)
            assert match, f"{page.name}: a code block that is not a snippet file:\n{body}"
            included.add(match[1])
    files = {path.name for path in SNIPPETS.iterdir() if path.is_file()}
    assert included == files, "every snippet file is shown, and every shown one exists"
    assert set(RUN_HERE) | set(CHECKED_ONLY) == files
    source = Path(__file__).read_text()
    assert all(f"def {test}(" in source for test in RUN_HERE.values())
    for name in CHECKED_ONLY:
        assert subprocess.run(["sh", "-n", str(SNIPPETS / name)], capture_output=True).returncode == 0, name


def test_the_generated_tables_are_the_settings_and_the_figures() -> None:
    sys.path.insert(0, str(DOCS))
    try:
        import generate
    finally:
        sys.path.remove(str(DOCS))
    assert generate.stale() == []
    for name in generate.GENERATED:
        assert any(f"<!-- generated: {name} -->" in page.read_text() for page in generate.pages()), name
    # The figures are the json's: the first answer on the CPU is the default model's auto plan there.
    cpu = json.loads((ROOT / "bench" / "results" / "model-cpu.json").read_text())
    auto = next(r for r in cpu["results"] if r["config"] == "auto")
    assert f"| {auto['first']['total_s']:.0f} s |" in (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_shows_the_docs_snippets() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 8 * 1024
    bodies = {
        "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#")).strip()
        for path in SNIPPETS.iterdir()
    }
    blocks = FENCE.findall(readme)
    assert len(blocks) == 4
    for _, body in blocks:
        assert body.strip() in bodies, f"a README block that is no snippet of the docs:\n{body}"
    # The quick start's test command is the one CI runs, and its server command the installed script.
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/install.sh test && .venv/bin/python -m pytest" in readme
    assert ci.strip().splitlines()[-1] == ".venv/bin/python -m pytest"
    assert 'llava-video-mcp = "llava_video_mcp.server.cli:main"' in (ROOT / "pyproject.toml").read_text()
    for link in re.findall(r"\]\((docs/[\w./-]+)\)", readme):
        assert (ROOT / link).is_file(), link
    assert "claude mcp add --scope user" in readme


def test_the_stdio_client_answers(tmp_path: Path, tiny_model: Path, h264_mp4: Path) -> None:
    ran = snippet(
        "client_stdio.py", str(h264_mp4), "--model", str(tiny_model), "--asr-model", "none", "--device", "cpu",
        "--cache-dir", str(tmp_path / "cache"), environ=env(tmp_path, tiny_model), cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == "tools: describe_video, compare_videos, find_moments"
    assert lines[1].startswith("answer: ")
    assert re.fullmatch(r"frames at: \[[\d., ]+\]", lines[-1])
    missing = snippet("client_stdio.py", str(tmp_path / "none.mp4"), environ=env(tmp_path, tiny_model), cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1].startswith("describe_video refused: No file at")
    assert "Traceback" not in missing.stderr


@pytest.fixture
def http_snippet_server(tmp_path: Path, tiny_model: Path, h264_mp4: Path) -> Iterator[tuple[str, Path]]:
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(h264_mp4.read_bytes())
    port = free_port()
    environ = env(tmp_path, tiny_model) | {
        "PORT": str(port),
        "VIDEOS": str(videos),
        "LLAVA_VIDEO_MCP_AUTH_TOKEN": TOKEN,
    }
    process = subprocess.Popen(
        ["sh", str(SNIPPETS / "http_server.sh")], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, env=environ, cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for_line(process, "Uvicorn running")
        yield f"http://127.0.0.1:{port}/mcp", videos
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        finally:
            process.kill()
            process.communicate()


def test_the_http_server_and_client_snippets(
    http_snippet_server: tuple[str, Path], tmp_path: Path, tiny_model: Path
) -> None:
    url, videos = http_snippet_server
    environ = env(tmp_path, tiny_model)
    answered = snippet("client_http.py", url, str(videos / "clip.mp4"), environ=environ | {
        "LLAVA_VIDEO_MCP_AUTH_TOKEN": TOKEN}, cwd=tmp_path)  # fmt: skip
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.startswith("answer: ")
    # No token, or a wrong one: one line that says what to do, not the library's traceback.
    for token, says in [
        (None, "Set LLAVA_VIDEO_MCP_AUTH_TOKEN to the token the server was started with."),
        ("not-the-token", f"{url} refused the token (401): use the one the server was started with."),
    ]:
        given = {k: v for k, v in environ.items() if k != "LLAVA_VIDEO_MCP_AUTH_TOKEN"}
        refused = snippet("client_http.py", url, "x.mp4", environ=given | ({"LLAVA_VIDEO_MCP_AUTH_TOKEN": token}
                          if token else {}), cwd=tmp_path)  # fmt: skip
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [says]


def test_the_terminal_snippet(tmp_path: Path, tiny_model: Path, h264_mp4: Path) -> None:
    environ = env(tmp_path, tiny_model) | {"LLAVA_VIDEO_MCP_CACHE_DIR": str(tmp_path / "cache")}
    ran = snippet("terminal.sh", str(h264_mp4), environ=environ | {"LLAVA_VIDEO_MCP_VERBOSE": ""}, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert len(re.findall(r"^llava-video-mcp: (answered|found) ", ran.stderr, re.M)) == 4, ran.stderr
    assert sorted(path.name for path in (tmp_path / "seen").iterdir()) == ["describe-1-01.jpg", "describe-1-02.jpg"]


def test_the_notebook_snippet(tmp_path: Path, tiny_model: Path, h264_mp4: Path) -> None:
    ran = snippet("notebook.py", str(h264_mp4), str(tiny_model), environ=env(tmp_path, tiny_model), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert re.fullmatch(r"\[[\d., ]+\]", ran.stdout.splitlines()[-1])


def test_the_engine_snippet_against_transformers_serve(tmp_path: Path, tiny_model: Path, engine: ServedModel) -> None:
    environ = env(tmp_path, tiny_model) | {"ENDPOINT": engine.url, "VLLM_API_KEY": "a-key"}
    del environ["LLAVA_VIDEO_MCP_MODEL"]  # the engine's first model
    ran = snippet("endpoint.sh", environ=environ, cwd=tmp_path, timeout=120)
    assert ran.returncode == 0, ran.stderr
    started = next(line for line in ran.stderr.splitlines() if "serving" in line.lower() or "model" in line.lower())
    assert f"127.0.0.1:{engine.port}" in ran.stderr, started
    assert "a-key" not in ran.stderr


def test_the_result_example_is_a_result() -> None:
    example = json.loads((SNIPPETS / "result.json").read_text())
    assert VideoAnswer.model_validate(example).model_dump(mode="json", exclude_none=True) == example


def test_the_host_configs_are_host_configs() -> None:
    for name in ("claude_desktop_config.json", "claude_desktop_short.json"):
        server = json.loads((SNIPPETS / name).read_text())["mcpServers"]["llava-video"]
        assert server["command"].startswith("/")
        assert server["command"].endswith("/.venv/bin/llava-video-mcp")
    shipped = json.loads((ROOT / "mcp.json").read_text())["mcpServers"]["llava-video"]
    assert shipped["command"] == "llava-video-mcp"  # for a PATH that holds it; .venv/mcp.json is the absolute one
    assert "--scope user llava-video --" in (SNIPPETS / "claude_code.sh").read_text()
