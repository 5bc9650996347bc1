"""Running it, as a new user would: the installed command's startup line, configuration refused at start with one
line, --version and a fast --help, a clean stop on SIGINT and SIGTERM, HTTP with a bearer token and Host checks, the
terminal commands, one log format, and a model download that is reported (or refused at once when offline)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from llava_video_mcp.tools.answer import VideoAnswer
from tests.engines import free_port
from tests.fakehub import REPO, FakeHub
from tests.httpserver import LoopbackServer
from tests.support import (
    HEADERS,
    INITIALIZE,
    describe_raw,
    run,
    server_command,
    wait_for_line,
    wait_for_partial_download,
)

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
TOKEN = "test-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


def test_version_and_a_fast_help() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert re.fullmatch(r"llava-video-mcp \d+\.\d+\.\d+\n", out.stdout)
    helped = run("--help")
    assert "--auth-token-file" in helped.stdout
    assert re.search(r"commands .*\n.*\n\s+describe\s+answer a question", helped.stdout), helped.stdout
    assert re.search(r"\n\s+compare\s+answer one question across 2 to 4 videos", helped.stdout)
    # What keeps --help fast (about 0.2 s here) is what it does not import; speed itself is no test's to time.
    probe = "import sys\nfrom server.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    probe += "print(sorted(m for m in ('torch', 'transformers', 'mcp', 'av', 'yt_dlp') if m in sys.modules))"
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert imported.stdout.strip().splitlines()[-1] == "[]"


def unavailable_device() -> str:
    import torch

    for device, available in (("cuda", torch.cuda.is_available()), ("mps", torch.backends.mps.is_available())):
        if not available:
            return device
    pytest.skip("every accelerator is available here")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield int(sock.getsockname()[1])


def test_configuration_errors_stop_the_server_with_one_line(tmp_path: Path, tiny_model: Path, busy_port: int) -> None:
    base = ["--model", str(tiny_model), "--cache-dir", str(tmp_path / "cache")]
    cases = [
        (["--model", str(tmp_path / "nowhere")], f"--model {tmp_path / 'nowhere'}: no such folder."),
        (["--model", str(tmp_path)], f"--model {tmp_path}: the folder holds no model (no readable config.json)."),
        ([*base, "--device", device := unavailable_device()], f"--device {device}: not available on this machine."),
        ([*base, "--cookies", str(tmp_path / "none.txt")], f"--cookies {tmp_path / 'none.txt'}: cannot read that"),
        ([*base, "--allow-dir", str(tmp_path / "missing")], f"--allow-dir {tmp_path / 'missing'}: no such folder."),
        ([*base, "--transport", "http", "--port", str(busy_port)], f"--port {busy_port}: cannot listen on 127.0.0.1"),
        (
            [*base, "--transport", "http", "--host", "0.0.0.0", "--port", str(free_port())],
            "--host 0.0.0.0: serving HTTP beyond this machine needs a token (LLAVA_VIDEO_MCP_AUTH_TOKEN",
        ),
        (
            ["--model", "org/not-cached", "--cache-dir", str(tmp_path / "cache")],
            "--model org/not-cached: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set.",
        ),
    ]
    for args, expected in cases:
        out = run(*args)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr  # one line, no traceback
        assert lines[0].startswith("llava-video-mcp: ")
        assert expected in lines[0]


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [server_command(), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"HF_HUB_OFFLINE": "1"} | (env or {}),
    )


def interrupt(process: subprocess.Popen[str]) -> None:
    """Ctrl-C, and the server is gone within 2.5 s."""
    stopped = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)
    assert time.monotonic() - stopped < 2.5


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_a_stdio_server_says_what_it_serves_and_stops_cleanly(tmp_path: Path, tiny_model: Path, sent: int) -> None:
    process = start(["--model", str(tiny_model), "--cache-dir", str(tmp_path / "cache"), "--allow-dir", str(tmp_path)])
    try:
        [line] = [line for line in wait_for_line(process, "llava-video-mcp ") if "| model" in line]
        assert LOG_LINE.match(line)
        for part in (
            f"model {tiny_model}",
            f"cache {tmp_path / 'cache'}",
            "| stdio |",
            f"only in {tmp_path}",
            "private URLs: allowed",
            "on cpu (the best found), loaded on the first call",
            "| speech openai/whisper-base on ctranslate2 |",
        ):
            assert part in line, line
        stopped = time.monotonic()
        process.send_signal(sent)
        process.wait(timeout=10)
        assert time.monotonic() - stopped < 2.5
    finally:
        process.kill()
        rest = process.stderr.read() if process.stderr else ""
        process.communicate()
    assert process.returncode == 0
    assert "Traceback" not in rest
    assert "stopped in" in rest


def test_sigint_mid_download_removes_its_staging(tmp_path: Path, tiny_model: Path, h264_mp4: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "clip.mp4").write_bytes(h264_mp4.read_bytes())
    site = LoopbackServer(root)
    site.drip["/slow.mp4"] = 0.002
    cache = tmp_path / "cache"
    with site.running():
        process = start(["--model", str(tiny_model), "--cache-dir", str(cache)])
        try:
            wait_for_line(process, "| model")
            assert process.stdin is not None
            process.stdin.write(describe_raw(site.url("slow.mp4")))
            process.stdin.flush()
            wait_for_partial_download(cache, timeout_s=30)
            interrupt(process)
        finally:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert not list((cache / "videos").glob(".partial-*"))


@pytest.fixture
def http_server(tmp_path: Path, tiny_model: Path, h264_mp4: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "clip.mp4").write_bytes(h264_mp4.read_bytes())
    port = free_port()
    process = start(
        [
            "--transport",
            "http",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--allow-dir",
            str(allowed),
            "--model",
            str(tiny_model),
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        env={"LLAVA_VIDEO_MCP_AUTH_TOKEN": TOKEN},
    )
    try:
        lines = wait_for_line(process, "Uvicorn running")
        assert any("bearer token required" in line for line in lines)
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        finally:
            process.kill()
            process.communicate()


@pytest.mark.anyio
async def test_http_needs_the_token_and_a_known_host(http_server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = http_server
    async with httpx2.AsyncClient(timeout=10, trust_env=False) as plain:
        refused = await plain.post(url, json=INITIALIZE, headers=HEADERS)
        assert refused.status_code == 401
        assert "Bearer" in refused.headers.get("www-authenticate", "")
        wrong = await plain.post(url, json=INITIALIZE, headers=HEADERS | {"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        foreign = await plain.post(
            url, json=INITIALIZE, headers=HEADERS | {"Authorization": f"Bearer {TOKEN}", "Host": "evil.example:80"}
        )
        assert foreign.status_code == 421
    authorised = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, trust_env=False)
    async with authorised, Client(streamable_http_client(url, http_client=authorised)) as client:
        tools = await client.list_tools()
        assert {tool.name for tool in tools.tools} == {"describe_video", "compare_videos", "find_moments"}


@pytest.mark.anyio
async def test_an_http_call_cancelled_by_the_client_stops_its_work(
    http_server: tuple[str, subprocess.Popen[str]], h264_mp4: Path, tmp_path: Path
) -> None:
    url, process = http_server
    source = str(tmp_path / "allowed" / "clip.mp4")
    authorised = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60, trust_env=False)
    async with authorised, Client(streamable_http_client(url, http_client=authorised)) as client:
        working = anyio.Event()
        finished: list[object] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            working.set()  # the first word from the server: it is reading 32 frames, seconds of work ahead

        async def long_call(scope: anyio.CancelScope) -> None:
            with scope:
                arguments = {"source": source, "num_frames": 32, "max_new_tokens": 4096}
                finished.append(await client.call_tool("describe_video", arguments, progress_callback=on_progress))
                working.set()

        scope = anyio.CancelScope()
        async with anyio.create_task_group() as group:
            group.start_soon(long_call, scope)
            with anyio.fail_after(120):
                await working.wait()
            scope.cancel()
        assert not finished, finished
        quick = await client.call_tool("describe_video", {"source": source, "num_frames": 1, "max_new_tokens": 1})
        assert not quick.is_error
    lines = await anyio.to_thread.run_sync(wait_for_line, process, "after the cancellation")
    assert any("describe_video cancelled by the client" in line for line in lines)
    assert "describe_video stopped" in lines[-1]


def test_an_http_server_stops_cleanly(tmp_path: Path, tiny_model: Path) -> None:
    process = start(
        ["--transport", "http", "--port", str(free_port()), "--model", str(tiny_model), "--cache-dir",
         str(tmp_path / "cache")]
    )  # fmt: skip
    try:
        wait_for_line(process, "Uvicorn running")
        interrupt(process)
    finally:
        process.kill()
        rest = process.communicate()[1]
    assert process.returncode == 0
    assert "Traceback" not in rest
    assert "stopped in" in rest


def test_the_terminal_command_answers_with_the_tools_code(tmp_path: Path, tiny_model: Path, h264_mp4: Path) -> None:
    common = ["--model", str(tiny_model), "--device", "cpu", "--dtype", "float32", "--cache-dir", str(tmp_path / "c")]
    plain = run("describe", str(h264_mp4), "-q", "What moves?", "--frames", "3", "--max-new-tokens", "6", *common)
    assert plain.returncode == 0, plain.stderr
    as_json = run(
        "describe", str(h264_mp4), "-q", "What moves?", "--frames", "3", "--max-new-tokens", "6", "--json", *common
    )
    answer = VideoAnswer.model_validate_json(as_json.stdout)
    assert plain.stdout == answer.answer + "\n"
    times = re.findall(r'"\w+_s": (-?[\d.e-]+)', as_json.stdout)
    assert times
    assert all(float(time) == round(float(time), 3) for time in times), times  # to the millisecond
    assert len(answer.videos[0].frames) == 3
    compared = run(
        "compare",
        str(h264_mp4),
        str(h264_mp4),
        "-q",
        "Same?",
        "--frames",
        "2",
        "--max-new-tokens",
        "2",
        "--json",
        *common,
    )
    assert len(VideoAnswer.model_validate_json(compared.stdout).videos) == 2
    bad = run("describe", str(tmp_path / "none.mp4"), *common)
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        f"llava-video-mcp: No file at {tmp_path / 'none.mp4'}. Pass the "
        "absolute path of an existing video file, or an http(s) URL."
    ]
    # Server flags may come before the command; a line says what was done when stderr is no terminal. Every tool
    # argument is a flag (--fps caps 3 frames at 2), and the JPEGs go to --frames-dir, never over a file there.
    seen = tmp_path / "seen"
    seen.mkdir()
    (seen / "describe-1-01.jpg").write_bytes(b"mine")
    before = run(
        *common, "describe", str(h264_mp4), "--frames", "3", "--max-new-tokens", "2", "--fps", "0.7",
        "--return-frames", "frames", "--frames-dir", str(seen), "--no-transcript",
    )  # fmt: skip
    assert before.returncode == 0, before.stderr
    done, written = before.stderr.splitlines()
    assert re.fullmatch(r"llava-video-mcp: answered in [\d.]+ s \(2 frames seen, \d+ tokens.*\)", done)
    assert written == f"llava-video-mcp: 2 images written: {seen / 'describe-2-01.jpg'} to describe-2-02.jpg"
    assert (seen / "describe-1-01.jpg").read_bytes() == b"mine"
    assert all((seen / f"describe-2-0{n}.jpg").read_bytes()[:3] == b"\xff\xd8\xff" for n in (1, 2))
    # The pipeline's own errors name the flags, not the tools' arguments; --frames-dir is made when missing.
    past = run("describe", str(h264_mp4), "--end", "500", *common)
    assert past.returncode == 1
    assert past.stderr.startswith("llava-video-mcp: --end 500 is past the end of the video"), past.stderr
    assert "end_s" not in past.stderr
    made = tmp_path / "new" / "frames"
    found = run(
        "moments", str(h264_mp4), "-q", "the bar", "--max-moments", "1", "--asr-model", "none", "--return-frames",
        "frames", "--frames-dir", str(made), *common,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert (made / "moments-1-01.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    found = run("moments", str(h264_mp4), "-q", "the bar", "--max-moments", "1", "--asr-model", "none", *common)
    assert found.returncode == 0, found.stderr
    assert re.fullmatch(r"\d\d:\d\d-\d\d:\d\d  .+  \[frames\]\n", found.stdout), found.stdout
    assert re.fullmatch(r"llava-video-mcp: found 1 moment in [\d.]+ s \(\d+ frames? behind them\)\n", found.stderr)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["describe", "clip.mp4", "--max-new-tokens", "0"], "describe: --max-new-tokens must be 1 to 4096; got 0."),
        (["describe", "clip.mp4", "--frames", "40"], "--frames must be 1 to 32; got 40."),
        (["describe", "clip.mp4", "--frames", "x"], "argument --frames/--num-frames: must be a whole number; got 'x'"),
        (["describe", "clip.mp4", "--start", "-1"], "--start must be at least 0; got -1."),
        (["describe", "clip.mp4", "--start", "5", "--end", "2"], "--end (2) must be greater than --start (5)"),
        (["describe", "clip.mp4", "--end", "nan"], "argument --end/--end-s: must be a number; got 'nan'"),
        (["describe", "clip.mp4", "--fps", "61"], "--fps must be more than 0 and at most 60; got 61."),
        (["describe", "clip.mp4", "--language", "english!"], "--language must be a language code such as en"),
        (["describe", "clip.mp4", "--coverage", "all"], "argument --coverage: invalid choice: 'all'"),
        (["describe", "clip.mp4", "--return-frames", "sheet", "--frames-dir", "/dev/null"], "/dev/null is a file, not"),
        (["describe", "clip.mp4", "--frmes", "3"], "unrecognized argument --frmes; did you mean --frames?"),
        (["moments", "clip.mp4", "-q", "x", "--max-momnets", "2"], "did you mean --max-moments?"),
        (["--cache-dri", "/tmp", "describe", "clip.mp4"], "did you mean --cache-dir?"),
        (["compare", "a.mp4", "-q", "Same?"], "sources must hold 2 to 4 items; got 1."),
        (["compare", "a.mp4", "b.mp4", "c.mp4", "-q", "x", "--frames", "16"], "Use --frames 10 or fewer"),
        (["describe"], "the following arguments are required: source"),
        (["--window-s", "0", "describe", "clip.mp4"], "--window-s 0: must be 1 or more."),
        (["moments", "clip.mp4"], "the following arguments are required: -q/--query"),
        (["moments", "clip.mp4", "-q", "x", "--max-moments", "11"], "--max-moments must be 1 to 10; got 11."),
        (["moments", "clip.mp4", "-q", "x", "--start", "5", "--end", "2"], "--end (2) must be greater than --start"),
    ],
)
def test_terminal_usage_errors_exit_2_before_any_model_loads(args: list[str], says: str) -> None:
    out = run(*args, "--model", "/nonexistent/model/folder")  # a model that would fail to load, were it loaded
    assert out.returncode == 2, out.stderr
    assert says in out.stderr
    assert "Traceback" not in out.stderr
    assert "no such folder" not in out.stderr  # refused before the model (or its folder) was looked at


def test_the_terminal_flags_are_the_tools_arguments_declared_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import Field

    from llava_video_mcp.server import terminal
    from llava_video_mcp.server.app import tool_function
    from llava_video_mcp.server.arguments import CompareArguments, DescribeArguments, MomentsArguments
    from llava_video_mcp.server.cli import parse
    from llava_video_mcp.server.contract import StrictTool
    from llava_video_mcp.tools.answer import VideoAnswer

    every = parse([
        "describe", "clip.mp4", "-q", "What?", "--num-frames", "4", "--start-s", "1", "--end", "9", "--fps", "2",
        "--keyframes-only", "--no-transcript", "--language", "de", "--max-new-tokens", "9", "--return-frames",
        "sheet", "--full", "--sampling", "scenes",
    ])  # fmt: skip
    assert terminal.asked(every) == DescribeArguments(
        source="clip.mp4", question="What?", num_frames=4, start_s=1, end_s=9, fps=2, keyframes_only=True,
        include_transcript=False, language="de", max_new_tokens=9, return_frames="sheet", coverage="full",
        sampling="scenes",
    )  # fmt: skip
    # Nothing given is the tool's own default.
    assert terminal.asked(parse(["describe", "clip.mp4"])) == DescribeArguments(source="clip.mp4")
    assert terminal.asked(parse(["compare", "a.mp4", "b.mp4", "-q", "Same?", "--frames", "3"])) == CompareArguments(
        sources=["a.mp4", "b.mp4"], question="Same?", frames_per_video=3
    )
    assert terminal.asked(parse(["moments", "a.mp4", "-q", "goal", "--return-frames", "frames"])) == (
        MomentsArguments(source="a.mp4", query="goal", return_frames="frames")
    )

    # A new tool argument is a flag, checked with its limits, and a tool parameter, with no other line.
    class Wider(DescribeArguments):
        slow_motion: Annotated[float, Field(ge=1, le=8, description="Play it slower.")] = 1.0

    monkeypatch.setitem(terminal.COMMANDS, "describe", Wider)
    assert terminal.asked(parse(["describe", "clip.mp4", "--slow-motion", "4"])) == Wider(
        source="clip.mp4", slow_motion=4
    )
    refused = terminal.command_problem(parse(["describe", "clip.mp4", "--slow-motion", "9"]))
    assert refused == "--slow-motion must be 1 to 8; got 9"
    tool = StrictTool.define(tool_function(Wider, VideoAnswer), title="t", description="d", annotations=None)
    assert tool.name == "describe_video"
    assert tool.parameters["properties"]["slow_motion"] == {
        "type": "number", "minimum": 1, "maximum": 8, "description": "Play it slower.", "default": 1.0
    }  # fmt: skip


def test_the_answer_is_printed_without_escape_sequences(tmp_path: Path) -> None:
    from llava_video_mcp.server.terminal import printable

    assert printable("fine\x1b[2J\x1b]0;pwned\x07 answer\x00") == "fine answer"


def test_one_log_format_and_each_error_logged_once(tmp_path: Path, tiny_model: Path) -> None:
    process = start(["--model", str(tiny_model), "--cache-dir", str(tmp_path / "cache"), "--preload"])
    try:
        wait_for_line(process, "| model")
        assert process.stdin is not None
        for message in (
            INITIALIZE,
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "describe_video", "arguments": {"source": "/no/such/file.mp4"}},
            },
        ):
            process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()
        assert process.stdout is not None
        process.stdout.readline()
        process.stdout.readline()  # the error's response: its log line was written before it
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    finally:
        process.kill()
        rest = process.communicate()[1]
    log = rest.splitlines()
    assert all(LOG_LINE.match(line) for line in log if line.strip()), rest
    assert sum("No file at /no/such/file.mp4" in line for line in log) == 1


@pytest.mark.anyio
async def test_the_first_model_download_is_reported(tmp_path: Path, tiny_model: Path, h264_mp4: Path) -> None:
    with FakeHub(tiny_model).running() as hub:
        env = os.environ | {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
        params = StdioServerParameters(
            command=server_command(), args=["--model", REPO, "--cache-dir", str(tmp_path / "cache")], env=env
        )
        messages: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")

        with (tmp_path / "log").open("w") as errors:
            async with Client(stdio_client(params, errlog=errors)) as client:
                result = await client.call_tool(
                    "describe_video",
                    {"source": str(h264_mp4), "num_frames": 2, "max_new_tokens": 2},
                    progress_callback=on_progress,
                )
                assert not result.is_error, result.content
                again = await client.call_tool(
                    "describe_video", {"source": str(h264_mp4), "num_frames": 2, "max_new_tokens": 2}
                )
                assert not again.is_error
    downloads = [m for m in messages if m.startswith("Downloading the model: ")]
    assert downloads, messages
    size = sum(len(data) for data in hub.files.values()) / 1000
    assert downloads[-1] == f"Downloading the model: {size:.0f} KB of {size:.0f} KB"
    assert VideoAnswer.model_validate(result.structured_content).model.id == REPO


@pytest.mark.anyio
async def test_no_network_fails_at_once_and_is_remembered(
    tmp_path: Path, h264_mp4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llava_video_mcp.server.app import build_server
    from llava_video_mcp.server.settings import Settings

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens: like no network
    app = build_server(Settings(model="org/unreachable", cache_dir=tmp_path / "cache"))
    async with Client(app) as client:
        timings = []
        texts = []
        for _ in range(2):
            started = time.monotonic()
            result = await client.call_tool("describe_video", {"source": str(h264_mp4), "num_frames": 1})
            timings.append(time.monotonic() - started)
            assert result.is_error
            assert (result.meta or {}).get("retryable") is True
            texts.append(result.content[0].text)  # type: ignore[union-attr]
    assert "Cannot reach 127.0.0.1" in texts[0]
    assert "hf download org/unreachable" in texts[0]
    assert "failed" in texts[1]
    assert "tries again" in texts[1]
    assert max(timings) < 8


def test_the_selftest_runs_the_three_tools_without_a_download(tmp_path: Path) -> None:
    """`llava-video-mcp selftest`, as the quick start says, on a machine with no model in any cache."""
    env = {**os.environ, "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    ran = subprocess.run(
        [server_command(), "selftest", "--device", "cpu"], capture_output=True, text=True, env=env, timeout=280,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    assert "random tiny models" in lines[0]  # honest about what answers
    assert "the answers below are noise" in lines[1]
    for tool in ("describe_video", "compare_videos", "find_moments"):
        [line] = [line for line in lines if line.strip().startswith(f"{tool}: ")]
        assert re.match(rf"\s+{tool}: [\d.]+ s; ", line), line
    # The tiny Whisper listened to the video with sound. What random weights say is noise: nearly always a cue, but
    # once in a full run under load no words (its no-speech test sits at the edge); both are a hearing that ran.
    assert re.search(r"\d+ cues? heard \(speech in \w+\)|the speech model listened and heard no words", ran.stdout)
    assert "1 moment, 1.0-3.0 s" in ran.stdout  # found from the subtitles' words, no model call
    assert lines[-1].startswith("All three tools ran.")
    assert not list(tmp_path.glob("hf/**/*.safetensors"))  # nothing downloaded, nothing left behind


STUB_BACKEND = """
import zipfile

NAME = "llava_video_mcp-0.0.1"
FILES = {
    "stub.py": "def main() -> None:\\n    print('stub')\\n",
    f"{NAME}.dist-info/METADATA": "Metadata-Version: 2.1\\nName: llava-video-mcp\\nVersion: 0.0.1\\n" + REQUIRES,
    f"{NAME}.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: stub\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    f"{NAME}.dist-info/entry_points.txt": "[console_scripts]\\nllava-video-mcp = stub:main\\n",
}


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-py3-none-any.whl"
    with zipfile.ZipFile(f"{wheel_directory}/{name}", "w") as wheel:
        for path, text in FILES.items():
            wheel.writestr(path, text)
        listed = [*FILES, f"{NAME}.dist-info/RECORD"]
        wheel.writestr(f"{NAME}.dist-info/RECORD", "".join(f"{path},,\\n" for path in listed))
    return name


build_editable = build_wheel
"""


def stub_clone(folder: Path, dependencies: list[str]) -> Path:
    """A clean clone as far as scripts/install.sh sees one: the real script, and a project of the same name whose
    build backend is ten lines in the clone (no setuptools, no index: pip runs offline, in seconds). The real install
    downloads 1.5 GB; what this holds is the script's own behaviour: its lines, its log, its config."""
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "install.sh").write_bytes((ROOT / "scripts" / "install.sh").read_bytes())
    requires = "".join(f"Requires-Dist: {name}\n" for name in dependencies)
    (folder / "backend.py").write_text(f"REQUIRES = {requires!r}\n" + STUB_BACKEND)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n'
        '[project]\nname = "llava-video-mcp"\nversion = "0.0.1"\n'
    )
    return folder


def install(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    offline = {"PIP_NO_INDEX": "1", "TORCH_INDEX": "pypi", "PIP_FIND_LINKS": "", "PIP_INDEX_URL": ""}
    return subprocess.run(
        ["sh", str(clone / "scripts" / "install.sh"), *args],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        env=os.environ | offline,
        cwd=clone.parent,
    )


def test_the_install_says_a_few_lines_and_what_to_run_next(tmp_path: Path) -> None:
    clone = stub_clone(tmp_path / "clone", [])
    done = install(clone, "test")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert done.stdout == ""
    assert len(lines) <= 8, done.stderr  # pip's own output is in the log, not here
    assert all(line.startswith(("install: ", "Next: ")) for line in lines), done.stderr
    command = clone / ".venv" / "bin" / "llava-video-mcp"
    assert lines[-1].startswith(f"Next: {command} selftest")
    assert "Successfully installed llava-video-mcp" in (clone / ".venv" / "install.log").read_text()
    # The config it writes works when copied: an absolute command, run from another folder with a bare PATH.
    config = json.loads((clone / ".venv" / "mcp.json").read_text())
    server = config["mcpServers"]["llava-video"]
    assert server["command"] == str(command)
    ran = subprocess.run(
        [server["command"], *server["args"]], capture_output=True, text=True, timeout=60, cwd="/", env={"PATH": "/x"}
    )
    assert ran.stdout == "stub\n"
    assert f"claude mcp add --scope user llava-video -- {command}" in done.stderr
    shown = install(clone, "-v")
    assert shown.returncode == 0, shown.stderr
    assert "Successfully installed llava-video-mcp" in shown.stderr  # -v: pip's own output


def test_a_failed_install_shows_pips_error(tmp_path: Path) -> None:
    clone = stub_clone(tmp_path / "clone", ["no-such-package-for-llava-video-mcp"])
    failed = install(clone)
    assert failed.returncode != 0
    assert "install: this step failed" in failed.stderr
    assert "no-such-package-for-llava-video-mcp" in failed.stderr  # pip's own words, from the log
    assert "Next:" not in failed.stderr
