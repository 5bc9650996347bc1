"""The remote backend against a real OpenAI-compatible engine (`transformers serve` on the tiny model), through the
real MCP client; failures a real engine cannot produce on demand come from a fake engine named as such."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer import VideoAnswer
from tests.engines import MisbehavingEngine, Relay, Script, ServedModel, chunk, free_port, served_model
from tests.llava_builder import build_llava
from tests.support import call, error_text, server_command

pytestmark = pytest.mark.anyio


def remote_settings(endpoint: str, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(ocr_engine="none", endpoint=endpoint, cache_dir=tmp_path / "cache", **overrides)


@pytest.fixture
async def remote(engine: ServedModel, tmp_path: Path) -> AsyncIterator[Client]:
    async with Client(build_server(remote_settings(engine.url, tmp_path))) as client:
        yield client


@pytest.fixture
async def local(tiny_model: Path, tmp_path: Path) -> AsyncIterator[Client]:
    settings = Settings(
        ocr_engine="none", model=str(tiny_model), device="cpu", dtype="float32", cache_dir=tmp_path / "local-cache"
    )
    async with Client(build_server(settings)) as client:
        yield client


async def test_describe_equals_the_in_process_backend(
    remote: Client, local: Client, h264_mp4: Path, engine: ServedModel
) -> None:
    arguments = {"source": str(h264_mp4), "question": "What is moving?", "num_frames": 6, "max_new_tokens": 24}
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    result = await remote.call_tool("describe_video", arguments, progress_callback=on_progress)
    assert not result.is_error, error_text(result)
    far = VideoAnswer.model_validate(result.structured_content)
    near = await call(local, "describe_video", **arguments)

    assert far.answer == near.answer
    assert far.answer  # the tiny model's answer depends on what it sees, and is not empty
    assert far.tokens.generated == near.tokens.generated == 24
    assert far.tokens.prompt == near.tokens.prompt
    assert far.stopped_by_token_limit
    assert near.stopped_by_token_limit
    assert [f.timestamp_s for f in far.videos[0].frames] == [f.timestamp_s for f in near.videos[0].frames]
    assert (far.model.device, far.model.endpoint, far.model.dtype) == ("remote", f"127.0.0.1:{engine.port}", None)
    assert far.model.id == str(engine.folder)  # the first (only) model the endpoint lists
    generating = [m for m in messages if m.startswith("Generating: ")]
    assert generating, messages
    assert generating[-1].startswith("Generating: ")
    assert "of at most 24 tokens" in generating[-1]


async def test_compare_equals_the_in_process_backend(
    remote: Client, local: Client, h264_mp4: Path, vp9_webm: Path
) -> None:
    arguments = {
        "sources": [str(h264_mp4), str(vp9_webm)],
        "question": "Which is longer?",
        "frames_per_video": 3,
        "max_new_tokens": 12,
    }
    far = await call(remote, "compare_videos", **arguments)
    near = await call(local, "compare_videos", **arguments)
    assert far.answer == near.answer
    assert far.tokens.prompt == near.tokens.prompt


async def test_an_answer_that_ends_by_itself_is_not_cut(tmp_path: Path, h264_mp4: Path) -> None:
    # A tiny model that may say <|im_end|> (the shared one never does). Searching a few questions for one whose
    # answer ends before the limit keeps the test independent of the random weights; both backends must agree on
    # where it ends.
    ending = build_llava(tmp_path / "ending-llava", endless=False)
    near_settings = Settings(
        ocr_engine="none", model=str(ending), device="cpu", dtype="float32", cache_dir=tmp_path / "local-cache"
    )
    with served_model(ending, tmp_path / "serve.log") as engine:
        async with (
            Client(build_server(remote_settings(engine.url, tmp_path))) as remote,
            Client(build_server(near_settings)) as local,
        ):
            for n in range(60):
                arguments = {"source": str(h264_mp4), "question": f"Question {n}?", "num_frames": 2,
                             "max_new_tokens": 12}  # fmt: skip
                far = await call(remote, "describe_video", **arguments)
                near = await call(local, "describe_video", **arguments)
                assert (far.answer, far.stopped_by_token_limit) == (near.answer, near.stopped_by_token_limit)
                if not far.stopped_by_token_limit:
                    assert far.tokens.generated == near.tokens.generated < 12
                    return
    pytest.fail("no answer of the tiny model ended before 12 tokens")


async def test_four_calls_at_once_are_in_flight_together(engine: ServedModel, tmp_path: Path, h264_mp4: Path) -> None:
    counter = Relay(engine.port, delay_s=1.0)
    with counter.running():
        async with Client(build_server(remote_settings(counter.url(), tmp_path))) as client:
            answers: list[VideoAnswer] = []

            async def one(n: int) -> None:
                answers.append(
                    await call(client, "describe_video", source=str(h264_mp4), question=f"Q{n}?", max_new_tokens=30)
                )

            async with anyio.create_task_group() as group:
                for n in range(4):
                    group.start_soon(one, n)
    assert len(answers) == 4
    assert all(a.timings.queue_s < 0.5 for a in answers)
    # The SDK's pool opens another connection only while the others carry a request: 4 open at once means the
    # engine saw 4 requests at once, and the server did not make them take turns (on a loaded machine a request
    # the SDK retries may open one more).
    assert counter.most_open >= 4


async def test_calls_beyond_the_limit_wait_and_say_so(fake: MisbehavingEngine, tmp_path: Path, h264_mp4: Path) -> None:
    # The queue is the server's own: a slow engine (the fake, answering after 1.5 s) makes the first call last.
    fake.script = Script(stall_s=1.5, stream_lines=[chunk("slow"), chunk(None, "stop"), "data: [DONE]"])
    settings = remote_settings(fake.url, tmp_path, max_concurrent_requests=1)
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(build_server(settings)) as client:
        results: list[VideoAnswer] = []
        first_holds_the_turn = anyio.Event()

        async def first() -> None:
            async def sent(progress: float, total: float | None, message: str | None) -> None:
                if (message or "").startswith("Sending"):  # it holds the engine's only turn
                    first_holds_the_turn.set()

            result = await client.call_tool("describe_video", {"source": str(h264_mp4)}, progress_callback=sent)
            results.append(VideoAnswer.model_validate(result.structured_content))

        async def second() -> None:
            with anyio.fail_after(60):
                await first_holds_the_turn.wait()
            result = await client.call_tool(
                "describe_video", {"source": str(h264_mp4), "num_frames": 2}, progress_callback=on_progress
            )
            results.append(VideoAnswer.model_validate(result.structured_content))

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            group.start_soon(second)
    assert "Waiting for the model: 1 call ahead" in messages
    queued = next(r for r in results if len(r.videos[0].frames) == 2)
    assert queued.timings.queue_s > 0
    assert len([r for r in fake.requests if r[0].endswith("/chat/completions")]) == 2


async def test_engine_stopped_mid_call_then_back(tiny_model: Path, tmp_path: Path, h264_mp4: Path) -> None:
    # The relay paces the stream, so the engine is stopped while its answer is still arriving however fast it runs.
    with (
        served_model(tiny_model, tmp_path / "serve.log") as own,
        Relay(own.port, pace_s=0.05).running() as relay,
    ):
        async with Client(build_server(remote_settings(relay.url(), tmp_path, request_retries=0))) as client:

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                if (message or "").startswith("Generating: ") and own.process is not None:
                    own.stop()
                    relay.cut()

            result = await client.call_tool(
                "describe_video", {"source": str(h264_mp4), "max_new_tokens": 3000}, progress_callback=on_progress
            )
            assert result.is_error
            assert "dropped the connection" in error_text(result)
            assert "--endpoint" in error_text(result)

            own.start()
            answer = await call(client, "describe_video", source=str(h264_mp4), num_frames=2, max_new_tokens=3)
            assert answer.tokens.generated == 3


def run_server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [server_command(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=os.environ | (env or {}),
    )


def test_a_wrong_url_stops_the_server_at_start(tmp_path: Path) -> None:
    out = run_server("--endpoint", f"http://127.0.0.1:{free_port()}/v1", "--request-retries", "0")
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()[-1:]
    assert "could not be reached" in line
    assert "--endpoint" in line


def test_a_model_the_engine_does_not_serve_stops_the_server_at_start(engine: ServedModel) -> None:
    out = run_server("--endpoint", engine.url, "--model", "llava-hf/llava-interleave-qwen-7b-hf")
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert "does not serve 'llava-hf/llava-interleave-qwen-7b-hf' (--model)" in last
    assert str(engine.folder) in last  # the served ones are listed


def test_remote_mode_starts_fast_without_torch(engine: ServedModel, tmp_path: Path) -> None:
    probe = f"""
import sys, time
started = time.perf_counter()
from llava_video_mcp.server.cli import parse_settings
from llava_video_mcp.server.app import build_server
from llava_video_mcp.tools.backends import LazyBackend
settings = parse_settings(["--endpoint", {engine.url!r}, "--cache-dir", {str(tmp_path)!r}])
provider = LazyBackend(settings.backend_config())
provider.get()
build_server(settings, provider)
print(round(time.perf_counter() - started, 3), "torch" in sys.modules, "transformers" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    _seconds, torch_loaded, transformers_loaded = out.stdout.split()
    # What makes it fast is what it does not import; how fast is bench/remote.py's to measure, not a test's.
    assert (torch_loaded, transformers_loaded) == ("False", "False")


# Failures of a misbehaving engine (a fake: a real one cannot be made to fail these ways on demand)


@pytest.fixture
def fake() -> Iterator[MisbehavingEngine]:
    with MisbehavingEngine().running() as running:
        yield running


ERROR_STATUS = {
    401: {"error": {"message": "Invalid API key", "type": "invalid_request_error"}},
    403: {"error": {"message": "Forbidden"}},
    429: {"error": {"message": "Too many requests"}},
    503: {"error": {"message": "Service unavailable"}},
}


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (Script(chat_status=401, chat_body=ERROR_STATUS[401]), "Set the environment variable LLAVA_VIDEO_MCP_API_KEY"),
        (Script(chat_status=403, chat_body=ERROR_STATUS[403]), "LLAVA_VIDEO_MCP_API_KEY"),
        (Script(chat_status=429, chat_body=ERROR_STATUS[429]), "overloaded (HTTP 429) even after retries"),
        (
            Script(chat_status=404, chat_body={"error": {"message": "model not found"}}, models=["another-model"]),
            "may no longer be served (it serves: another-model)",
        ),
        (Script(chat_status=503, chat_body=ERROR_STATUS[503]), "failed with HTTP 503"),
        (
            Script(
                chat_status=400,
                chat_body={
                    "error": {
                        "message": "This model's maximum context length is 32768 tokens. However, you requested "
                        "40000 tokens. Please reduce the length of the messages.",
                        "type": "BadRequestError",
                    }
                },
            ),
            "Ask for fewer frames",
        ),
        (Script(chat_status=400, chat_body={"error": {"message": "temperature must be >= 0"}}), "rejected the request"),
        (Script(stream_lines=["data: {not json", "data: [DONE]"]), "malformed response"),
        (Script(stream_lines=["data: [DONE]"]), "empty or malformed response"),
        (Script(stream_lines=[]), "empty or malformed response"),
        (Script(stall_s=3.0, stream_lines=[chunk("late", "stop")]), "did not answer within 1 s"),
    ],
)
async def test_engine_failures_are_clear_tool_errors(
    fake: MisbehavingEngine, tmp_path: Path, h264_mp4: Path, script: Script, expected: str
) -> None:
    settings = remote_settings(fake.url, tmp_path, request_retries=1, request_timeout_s=1.0)
    async with Client(build_server(settings)) as client:
        fake.script = script
        result = await client.call_tool("describe_video", {"source": str(h264_mp4), "num_frames": 2})
        assert result.is_error
        assert expected in error_text(result)
        fake.script = Script(stream_lines=[chunk("fine"), chunk(None, "stop"), "data: [DONE]"])
        answer = await call(client, "describe_video", source=str(h264_mp4), num_frames=2)
        assert answer.answer == "fine"
        assert answer.tokens.prompt is None  # this engine reports no usage


async def test_an_engine_that_ignores_max_tokens_is_cut_at_the_limit(
    fake: MisbehavingEngine, tmp_path: Path, h264_mp4: Path
) -> None:
    async with Client(build_server(remote_settings(fake.url, tmp_path))) as client:
        fake.script = Script(stream_lines=[], endless_line=chunk("x"))  # 2 million tokens unless cut
        with anyio.fail_after(60):
            answer = await call(client, "describe_video", source=str(h264_mp4), num_frames=1, max_new_tokens=8)
    assert answer.answer == "x" * 8
    assert answer.stopped_by_token_limit


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (Script(stream_lines=[], endless_line=chunk()), "kept its answer going without end"),  # empty chunks
        (Script(stream_lines=["data: " + "x" * (20 * 2**20)]), "sent more than 16 MB"),  # one endless line
    ],
    ids=["endless-empty-chunks", "twenty-megabyte-line"],
)
async def test_what_an_engine_sends_is_bounded(
    fake: MisbehavingEngine, tmp_path: Path, h264_mp4: Path, script: Script, expected: str
) -> None:
    settings = remote_settings(fake.url, tmp_path, request_retries=0)
    async with Client(build_server(settings)) as client:
        fake.script = script
        with anyio.fail_after(60):
            result = await client.call_tool("describe_video", {"source": str(h264_mp4), "num_frames": 1})
        assert result.is_error
        assert expected in error_text(result)
        fake.script = Script(stream_lines=[chunk("fine"), chunk(None, "stop"), "data: [DONE]"])
        assert (await call(client, "describe_video", source=str(h264_mp4), num_frames=1)).answer == "fine"


def test_a_web_page_as_the_endpoint_is_named_in_one_line(fake: MisbehavingEngine) -> None:
    fake.script = Script(models_page="<!DOCTYPE html><html><head><title>Router</title></head><body>Login</body></html>")
    out = run_server("--endpoint", fake.url, "--request-retries", "0")
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert "web page" in line
    assert "<" not in line
    assert "--endpoint" in line


async def test_request_is_standard_and_the_key_stays_secret(
    fake: MisbehavingEngine, tmp_path: Path, h264_mp4: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-test-7f3a9c-do-not-print"
    usage = {
        "prompt_tokens": 40,
        "completion_tokens": 2,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 32},
    }
    fake.script = Script(stream_lines=[chunk("Two "), chunk("words", "length"), chunk(usage=usage), "data: [DONE]"])
    caplog.set_level(logging.DEBUG)
    settings = remote_settings(fake.url, tmp_path, api_key=secret)
    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "describe_video", {"source": str(h264_mp4), "num_frames": 3, "question": "Q?", "max_new_tokens": 2}
        )
        answer = VideoAnswer.model_validate(result.structured_content)
        fake.script = Script(chat_status=401, chat_body=ERROR_STATUS[401])
        refused = await client.call_tool("describe_video", {"source": str(h264_mp4), "num_frames": 1})
    assert (answer.answer, answer.stopped_by_token_limit) == ("Two words", True)
    assert (answer.tokens.prompt, answer.tokens.generated, answer.tokens.reused) == (40, 2, 32)
    assert answer.model.id == "served-model"

    _path, headers, body = next(r for r in fake.requests if r[0].endswith("/chat/completions"))
    assert headers["authorization"] == f"Bearer {secret}"
    request = json.loads(body)
    assert set(request) == {"model", "messages", "temperature", "max_tokens", "stream", "stream_options"}
    assert (request["temperature"], request["max_tokens"], request["stream"]) == (0, 2, True)
    [message] = request["messages"]
    parts = message["content"]
    assert [p["type"] for p in parts] == ["image_url"] * 3 + ["text"]
    assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts[:3])
    assert parts[3]["text"].endswith("\n\nQ?")
    assert parts[3]["text"].startswith("The 3 images are frames")

    for text in (caplog.text, result.model_dump_json(), refused.model_dump_json()):
        assert secret not in text
    assert "LLAVA_VIDEO_MCP_API_KEY" in error_text(refused)


def test_the_api_key_is_not_a_flag() -> None:
    out = run_server("--help")
    assert "--api-key" not in out.stdout
    assert "LLAVA_VIDEO_MCP_API_KEY" in out.stdout
    assert run_server("--api-key", "x").returncode == 2
