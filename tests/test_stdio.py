"""The installed `llava-video-mcp` command as a subprocess, spoken to over stdio by the real MCP client.

Anything the server, yt-dlp or transformers printed to stdout would corrupt the protocol stream and fail this test;
the logs must arrive on stderr instead.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from llava_video_mcp.tools.answer import VideoAnswer
from tests.httpserver import LoopbackServer
from tests.support import server_command

pytestmark = pytest.mark.anyio


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


async def test_stdio_server_lists_and_calls_the_three_tools(
    tiny_model: Path, tmp_path: Path, h264_mp4: Path, http_server: LoopbackServer
) -> None:
    params = StdioServerParameters(
        command=server_command(),
        args=["--cache-dir", str(tmp_path / "cache"), "--preload"],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "HF_HUB_OFFLINE": "1",
            "LLAVA_VIDEO_MCP_MODEL": str(tiny_model),
            "LLAVA_VIDEO_MCP_DEVICE": "cpu",
        },
    )
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as stderr:
        async with Client(stdio_client(params, errlog=stderr)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == {"describe_video", "compare_videos", "find_moments"}
            assert all(tool.output_schema for tool in tools.values())

            described = await client.call_tool(
                "describe_video", {"source": http_server.url("clip.mp4"), "num_frames": 3, "max_new_tokens": 4}
            )
            assert not described.is_error, described.content
            answer = VideoAnswer.model_validate(described.structured_content)
            assert len(answer.videos[0].frames) == 3
            assert answer.model.id == str(tiny_model)
            assert answer.timings.model_load_s == 0  # --preload loaded it at start

            compared = await client.call_tool(
                "compare_videos",
                {"sources": [str(h264_mp4), http_server.url("clip.mp4")], "question": "Same?", "max_new_tokens": 2},
            )
            assert not compared.is_error, compared.content
            both = VideoAnswer.model_validate(compared.structured_content)
            assert [len(v.frames) for v in both.videos] == [6, 6]
            assert both.videos[1].from_cache

            missing = await client.call_tool("describe_video", {"source": str(tmp_path / "none.mp4")})
            assert missing.is_error

            # The MCP Inspector before 0.16 sends what is typed into a number field as a string: digits are taken,
            # in a list's objects too; anything else stays refused as it was.
            typed = await client.call_tool(
                "compare_videos",
                {
                    "sources": [str(h264_mp4), {"source": str(h264_mp4), "start_s": "1", "end_s": "2.5"}],
                    "question": "Same?", "frames_per_video": "2", "max_new_tokens": "2",
                },
            )  # fmt: skip
            assert not typed.is_error, typed.content
            ranged = VideoAnswer.model_validate(typed.structured_content).videos[1]
            assert (ranged.start_s, ranged.end_s, len(ranged.frames)) == (1, 2.5, 2)
            for wrong, says in [
                ({"num_frames": "eight"}, 'num_frames must be a whole number; got "eight"'),
                ({"num_frames": "2.5"}, 'num_frames must be a whole number; got "2.5"'),
                ({"start_s": "1e3"}, 'start_s must be a number; got "1e3"'),
                ({"start_s": "nan"}, 'start_s must be a number; got "nan"'),
                ({"num_frames": "0"}, "num_frames must be 1 to 32; got 0"),
                ({"keyframes_only": "true"}, 'keyframes_only must be true or false; got "true"'),
            ]:
                refused = await client.call_tool("describe_video", {"source": str(h264_mp4), **wrong})
                assert refused.is_error
                assert says in str(refused.content), refused.content
    log = stderr_path.read_text()
    assert "loaded " in log
    assert "No file at" in log
    # One format on stderr: no progress bar or handler of a library's own ("Loading weights", "[transformers]").
    assert "Loading weights" not in log
    odd = [line for line in log.splitlines() if line.strip() and not LOG_LINE.match(line) and not line[0].isspace()]
    assert odd == []


@pytest.fixture
def http_server_process(tiny_model: Path, tmp_path: Path, h264_mp4: Path) -> Iterator[tuple[str, Path]]:
    """`llava-video-mcp --transport http`, with one allowed folder holding a video."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "clip.mp4").write_bytes(h264_mp4.read_bytes())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path / "http-server.log").open("w")
    process = subprocess.Popen(
        [
            server_command(),
            "--transport",
            "http",
            "--port",
            str(port),
            "--allow-dir",
            str(allowed),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--model",
            str(tiny_model),
            "--device",
            "cpu",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, "the HTTP server exited early"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp", allowed
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


async def test_http_transport_is_locked_down_by_default(
    http_server_process: tuple[str, Path], http_server: LoopbackServer, h264_mp4: Path
) -> None:
    url, allowed = http_server_process
    async with Client(url) as client:
        private = await client.call_tool("describe_video", {"source": http_server.url("clip.mp4")})
        assert private.is_error
        assert "not a public address" in str(private.content)
        outside = await client.call_tool("describe_video", {"source": str(h264_mp4)})
        assert outside.is_error
        assert "outside the folders this server may read" in str(outside.content)
        missing = await client.call_tool("describe_video", {"source": str(h264_mp4.with_name("nothing-here.mp4"))})
        # A refusal outside the folders reads the same whether or not the file exists there.
        assert str(missing.content).replace("nothing-here", "clip") == str(outside.content)
        inside = await client.call_tool(
            "describe_video", {"source": str(allowed / "clip.mp4"), "num_frames": 2, "max_new_tokens": 2}
        )
        assert not inside.is_error, inside.content
        assert VideoAnswer.model_validate(inside.structured_content).videos[0].codec == "h264"
    assert sum(http_server.requests.values()) == 0
