"""Hostile or broken engines behind --asr-endpoint and --endpoint, and engine flags that cannot work, through the real
entry points: the MCP client in memory, the terminal command and the server's start.

The speech engine here is a FAKE (`ScriptedSpeechEngine`, named as such) on 127.0.0.1: it answers every
transcription with the reply a test scripts (a web page, a reply of 100,000 segments, control characters), records
what it was sent, and can hold a request open until the test releases it, saying when its client hangs up.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.checks import check
from llava_video_mcp.server.cli import parse_settings
from llava_video_mcp.server.settings import ConfigError, Settings
from llava_video_mcp.tools.backends import Ready
from llava_video_mcp.tools.backends.speech.remote import MAX_SEGMENTS_PER_BLOCK, read_reply
from llava_video_mcp.tools.prompt.subtitles import MAX_CUE_CHARS
from tests.engines import MisbehavingEngine, Script, free_port
from tests.httpserver import serving
from tests.media import with_sound
from tests.support import Served, describe, error_text, server_command, settings_for

pytestmark = pytest.mark.anyio

SECRET = "pw-Secret-123"
WEB_PAGE = "<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body>It works.</body></html>"
SPEECH = {"text": "Hello there.", "segments": [{"id": 0, "start": 1.0, "end": 2.5, "text": " Hello there."}]}


class ScriptedSpeechEngine:
    """A FAKE `/v1/audio/transcriptions` (and `/v1/models`): every POST gets `reply` (status, content type, body);
    with `hold` set, a POST is held until `release` is set, and `closed` is set when the client hangs up first."""

    def __init__(self) -> None:
        self.reply: tuple[int, str, bytes] = (200, "application/json", json.dumps(SPEECH).encode())
        self.models: tuple[str, bytes] = ("application/json", json.dumps({"data": [{"id": "whisper"}]}).encode())
        self.models_status = 200
        self.gets = 0
        self.hold = False
        self.received = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()
        self.authorization: list[str | None] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                engine.authorization.append(self.headers.get("Authorization"))
                engine.gets += 1
                self._send(engine.models_status, *engine.models)

            def do_POST(self) -> None:
                engine.authorization.append(self.headers.get("Authorization"))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                engine.received.set()
                if engine.hold and self._hung_up_before_release():
                    engine.closed.set()
                    self.close_connection = True
                    return
                self._send(*engine.reply)

            def _hung_up_before_release(self) -> bool:
                deadline = time.monotonic() + 120
                while not engine.release.is_set() and time.monotonic() < deadline:
                    readable, _, _ = select.select([self.connection], [], [], 0.05)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        return True
                return False

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a client that hangs up mid-answer is what some tests do

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def answer(self, payload: Any, content_type: str = "application/json", status: int = 200) -> None:
        body = payload if isinstance(payload, bytes) else (payload if isinstance(payload, str) else json.dumps(payload))
        self.reply = (status, content_type, body.encode() if isinstance(body, str) else body)

    @contextmanager
    def running(self) -> Iterator[ScriptedSpeechEngine]:
        with serving(self._httpd):
            try:
                yield self
            finally:
                self.release.set()


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_sound(tmp_path_factory.mktemp("talk") / "talk.mp4", seconds=40)  # two 30 s blocks of sound


def with_password(url: str) -> str:
    return url.replace("http://", f"http://someone:{SECRET}@")


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx2", "httpcore2", "openai", "llava_video_mcp"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


# 1. A password in an engine's URL reaches no client and no log


@pytest.mark.parametrize("failure", ["http-500", "web-page", "unreachable", "no-models"])
async def test_a_speech_engine_password_is_never_shown(
    tmp_path: Path, talk: Path, every_log: pytest.LogCaptureFixture, failure: str
) -> None:
    engine = ScriptedSpeechEngine()
    with engine.running():
        url = with_password(engine.url if failure != "unreachable" else f"http://127.0.0.1:{free_port()}/v1")
        if failure == "http-500":
            engine.answer({"error": f"boom at {url}"}, status=500)
        elif failure == "web-page":
            engine.answer(WEB_PAGE, "text/html")
        elif failure == "no-models":
            engine.models = ("text/html", WEB_PAGE.encode())
        state = Served(settings_for(tmp_path, "auto", asr_endpoint=url, request_retries=0))
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            with anyio.fail_after(120):
                answer = await describe(client, state, source=str(talk))
    note = answer.videos[0].note or ""
    assert "--asr-endpoint" in note
    assert "No speech was heard" in note
    shown = note + answer.model_dump_json() + "\n".join(state.messages) + everything_logged(every_log)
    assert SECRET not in shown
    assert "someone" not in shown
    if failure != "unreachable":
        assert f"127.0.0.1:{engine.port}" in note
        assert engine.authorization
        assert all(a and a.startswith("Basic ") for a in engine.authorization)


@pytest.mark.parametrize("status", [500, 404, 400])
async def test_a_vision_engine_password_is_never_shown(
    tmp_path: Path, h264_mp4: Path, every_log: pytest.LogCaptureFixture, status: int
) -> None:
    """The engine's error, quoted in the tool error, even repeats the URL with its password: it is left out."""
    engine = MisbehavingEngine()
    url = with_password(engine.url)
    engine.script = Script(chat_status=status, chat_body={"error": {"message": f"nothing at {url}/chat"}})
    with engine.running():
        settings = Settings(ocr_engine="none", endpoint=url, cache_dir=tmp_path / "cache", request_retries=0)
        messages: list[str] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")

        async with Client(build_server(settings)) as client:
            with anyio.fail_after(120):
                result = await client.call_tool(
                    "describe_video", {"source": str(h264_mp4), "num_frames": 1}, progress_callback=progress
                )
    assert result.is_error
    assert f"The model endpoint 127.0.0.1:{engine.url.split(':')[2].split('/')[0]} (--endpoint)" in error_text(result)
    shown = error_text(result) + "\n".join(messages) + everything_logged(every_log)
    assert SECRET not in shown
    assert "someone" not in shown
    assert all(headers.get("Authorization", "").startswith("Basic ") for _, headers, _ in engine.requests)


@pytest.mark.parametrize("vision", ["unreachable", "web-page"])
def test_a_password_is_never_shown_at_start_either(tmp_path: Path, vision: str) -> None:
    """The server's start: its log line names where each engine is, and a refusal names the flag, never the
    password."""
    good, bad = MisbehavingEngine(), MisbehavingEngine()
    bad.script = Script(models_page=WEB_PAGE)
    with good.running(), bad.running():
        common = ["--asr-endpoint", with_password(f"http://127.0.0.1:{free_port()}/v1"), "--cache-dir",
                  str(tmp_path / "cache"), "--request-retries", "0"]  # fmt: skip
        started = subprocess.run([server_command(), "--endpoint", with_password(good.url), *common],
                                 capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
        wrong = f"http://127.0.0.1:{free_port()}/v1" if vision == "unreachable" else bad.url
        refused = subprocess.run([server_command(), "--endpoint", with_password(wrong), *common],
                                 capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert f"served at 127.0.0.1:{good.url.split(':')[2].split('/')[0]}" in started.stderr
    assert refused.returncode == 2
    assert "--endpoint" in refused.stderr.strip().splitlines()[-1]
    for out in (started, refused):
        assert SECRET not in out.stderr + out.stdout
        assert "someone" not in out.stderr


async def test_an_api_key_an_engine_echoes_is_never_quoted(tmp_path: Path, h264_mp4: Path) -> None:
    """A proxy before the engine answers 500 and repeats the request's Authorization header in its body."""
    key = "sk-live-0123456789abcdef"
    engine = MisbehavingEngine()
    engine.script = Script(chat_status=500, chat_body={"error": {"message": f"upstream refused Bearer {key}"}})
    with engine.running():
        settings = Settings(ocr_engine="none", endpoint=engine.url, api_key=key, cache_dir=tmp_path / "c",
                            request_retries=0)  # fmt: skip
        async with Client(build_server(settings)) as client:
            with anyio.fail_after(120):
                result = await client.call_tool("describe_video", {"source": str(h264_mp4), "num_frames": 1})
    assert result.is_error
    assert "upstream refused Bearer [hidden]" in error_text(result), error_text(result)
    assert key not in error_text(result)


@pytest.mark.parametrize("flag", ["--endpoint", "--asr-endpoint"])
def test_a_query_string_is_refused_without_being_shown(flag: str) -> None:
    """The SDK adds the engine's paths after the base URL, query and all (`/v1?key=...models`): a query cannot
    work, so it is refused, and the refusal repeats neither it nor a password."""
    with pytest.raises(ConfigError) as refused:
        parse_settings([flag, f"http://someone:{SECRET}@127.0.0.1:8000/v1?key={SECRET}"], {})
    assert str(refused.value).startswith(f"{flag} http://127.0.0.1:8000/v1: a base URL takes no query string")
    assert SECRET not in str(refused.value)
    assert "someone" not in str(refused.value)


# 4. A reply that is not a transcription is an engine error, never silence kept for good


@pytest.mark.parametrize(
    ("reply", "content_type", "says"),
    [
        (WEB_PAGE, "text/html", "a web page"),
        (WEB_PAGE, "application/json", "a web page"),
        ({"segments": "not a list", "text": 7}, "application/json", "not a transcription"),
        ("", "application/json", "empty"),
        ([SPEECH], "application/json", "not a transcription"),
    ],
    ids=["web-page", "web-page-as-json", "wrong-fields", "empty", "a-list"],
)
async def test_a_reply_that_is_not_a_transcription_is_an_engine_error_and_is_not_kept(
    tmp_path: Path, talk: Path, reply: Any, content_type: str, says: str
) -> None:
    engine = ScriptedSpeechEngine()
    with engine.running():
        engine.answer(reply, content_type)
        state = Served(settings_for(tmp_path, "auto", asr_endpoint=engine.url, request_retries=0))
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            with anyio.fail_after(120):
                failed = await describe(client, state, source=str(talk))
                note = failed.videos[0].note or ""
                assert "(--asr-endpoint) sent a reply that is not a transcription" in note, note
                assert says in note
                assert "silence" not in note
                assert failed.videos[0].transcript is None
                engine.answer(SPEECH)  # the engine fixed: the same video is heard, nothing was kept of the failure
                heard = await describe(client, state, source=str(talk))
    assert heard.videos[0].transcript_source == "speech", heard.videos[0].note
    assert [c.text for c in heard.videos[0].transcript or []] == ["Hello there.", "Hello there."]


# 5. Engine URLs that cannot work are refused at start; what an engine answers is a note


BAD_URLS = ["http://[::1/v1", "ftp://127.0.0.1/v1", "http:///v1", "http://:8000/v1", "http://127.0.0.1:99999/v1",
            "http://bad host/v1", "gpu-box:8000/v1"]  # fmt: skip


@pytest.mark.parametrize("flag", ["--endpoint", "--asr-endpoint"])
@pytest.mark.parametrize("url", BAD_URLS)
def test_an_engine_url_that_cannot_work_is_refused_naming_the_flag(flag: str, url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_settings([flag, url], {})
    assert str(refused.value).startswith(f"{flag} {url}: ")
    assert "http://HOST:PORT/v1" in str(refused.value)


@pytest.mark.parametrize("url", ["http://[::1/v1", "http:///v1"])
def test_the_terminal_refuses_a_malformed_asr_endpoint_with_one_line(tmp_path: Path, url: str) -> None:
    out = subprocess.run(
        [server_command(), "describe", str(tmp_path / "any.mp4"), "--asr-endpoint", url],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert f"--asr-endpoint {url}: " in line


async def test_an_engine_that_lists_no_models_as_json_is_a_note(tmp_path: Path, talk: Path) -> None:
    engine = ScriptedSpeechEngine()
    with engine.running():
        engine.models = ("application/json", WEB_PAGE.encode())  # a page, typed as JSON, at /v1/models
        state = Served(settings_for(tmp_path, "auto", asr_endpoint=engine.url, request_retries=0))
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            with anyio.fail_after(120):
                answer = await describe(client, state, source=str(talk))
    assert "(--asr-endpoint) answered, but not as an OpenAI-compatible engine" in (answer.videos[0].note or "")


def test_a_404_for_the_list_of_models_stops_the_start_naming_the_v1_suffix(tmp_path: Path) -> None:
    """A URL without /v1 answers 404 to /models: said at once, never asked again and again."""
    vision = MisbehavingEngine()
    vision.script = Script(models_status=404)
    with vision.running():
        refused = subprocess.run(
            [server_command(), "--endpoint", vision.url, "--asr-model", "none", "--ocr-engine", "none",
             "--cache-dir", str(tmp_path / "v"), "--request-retries", "0"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert refused.returncode == 2
    said = refused.stderr.strip().splitlines()[-1]
    assert "answered 404 while listing the served models" in said, refused.stderr
    assert "/v1 suffix" in said
    assert "Check --endpoint" in said
    assert len([path for path, _, _ in vision.requests if path.endswith("/models")]) <= 2


async def test_a_404_for_the_speech_engines_models_is_a_note_asked_once(tmp_path: Path, talk: Path) -> None:
    speech = ScriptedSpeechEngine()
    with speech.running():
        speech.models_status = 404
        state = Served(settings_for(tmp_path / "s", "auto", asr_endpoint=speech.url, request_retries=0))
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            with anyio.fail_after(120):
                answer = await describe(client, state, source=str(talk))
    assert "(--asr-endpoint) answered 404 while listing the served models" in (answer.videos[0].note or "")
    assert speech.gets <= 2


# 7. Text and memory from an engine are bounded


async def test_one_enormous_segment_is_cut_as_a_subtitle_cue_is(tmp_path: Path, talk: Path) -> None:
    engine = ScriptedSpeechEngine()
    with engine.running():
        engine.answer({"text": "", "segments": [{"start": 0.0, "end": 5.0, "text": "word " * 800_000}]})  # 4 MB
        state = Served(settings_for(tmp_path, "auto", asr_endpoint=engine.url, request_retries=0))
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            with anyio.fail_after(120):
                answer = await describe(client, state, source=str(talk))
    cues = answer.videos[0].transcript or []
    assert cues
    assert all(len(cue.text) == MAX_CUE_CHARS - 1 for cue in cues)  # "word word ... word", cut where a cue is
    assert len(state.prompt) < 4 * MAX_CUE_CHARS


def many_segments(count: int) -> dict[str, Any]:
    segments = [{"id": n, "start": n * 0.0002, "end": n * 0.0002 + 0.0001, "text": "x"} for n in range(count)]
    return {"text": "x", "segments": segments}


async def test_a_reply_of_100000_segments_keeps_a_bounded_number(tmp_path: Path, talk: Path) -> None:
    engine = ScriptedSpeechEngine()
    with engine.running():
        engine.answer(many_segments(100_000))  # 5.5 MB, under the 16 MB a reply may be
        state = Served(settings_for(tmp_path, "auto", asr_endpoint=engine.url, request_retries=0))
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            with anyio.fail_after(120):
                answer = await describe(client, state, source=str(talk))
    assert answer.videos[0].transcript_source == "speech"
    kept = [json.loads(block.read_text()) for block in (tmp_path / "cache").rglob("speech/*/0*.json")]
    assert [len(cues) for cues in kept] == [MAX_SEGMENTS_PER_BLOCK, MAX_SEGMENTS_PER_BLOCK]  # each block's, heard once


def test_a_reply_is_read_without_an_object_per_segment() -> None:
    """Counts, not timing: of 100,000 segments, only the first few hundred become objects, and reading the reply
    takes a small multiple of its own size (a dictionary per segment took several times more)."""
    reply = json.dumps(many_segments(100_000)).encode()
    tracemalloc.start()
    try:
        read = read_reply(reply)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read["text"] == "x"
    assert len(read["segments"]) == 100_000
    assert MAX_SEGMENTS_PER_BLOCK <= sum(isinstance(s, dict) for s in read["segments"]) <= 4 * MAX_SEGMENTS_PER_BLOCK
    assert peak < 3 * len(reply)
    assert read_reply(b"[" * 100_000) is None  # nested past the parser's depth: not JSON this server reads


# 8. Cancelling a call stops its transcription request


async def test_a_cancelled_call_closes_the_transcription_request_at_once(tmp_path: Path, talk: Path) -> None:
    engine = ScriptedSpeechEngine()
    engine.hold = True
    with engine.running():
        settings = settings_for(tmp_path, "whisper", asr_endpoint=engine.url, request_retries=0,
                                request_timeout_s=120)  # fmt: skip
        state = Served(settings)
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            scope = anyio.CancelScope()

            async def hearing() -> None:
                with scope:
                    await client.call_tool("describe_video", {"source": str(talk), "num_frames": 2})

            async with anyio.create_task_group() as group:
                group.start_soon(hearing)
                assert await anyio.to_thread.run_sync(engine.received.wait, 60), "the engine was never asked"
                scope.cancel()
            assert await anyio.to_thread.run_sync(engine.closed.wait, 10), "the request stayed open"
            engine.hold = False
            with anyio.fail_after(60):  # the server keeps serving, and kept nothing of the cancelled call
                heard = await describe(client, state, source=str(talk))
    assert heard.videos[0].transcript_source == "speech", heard.videos[0].note


# 11a. Control and format characters from the engine are dropped, as from a title


async def test_control_and_format_characters_from_the_engine_are_dropped(tmp_path: Path, talk: Path) -> None:
    engine = ScriptedSpeechEngine()
    with engine.running():
        engine.answer({"text": "", "segments": [
            {"start": 1.0, "end": 2.0, "text": " \x1b[31mred\x1b[0m alert\x07 "},
            {"start": 2.0, "end": 3.0, "text": "\u202eright to left\u202c"},
            {"start": 3.0, "end": 4.0, "text": "zero\u200bwidth\x00 and\ttabs\nand lines"},
            {"start": 4.0, "end": 5.0, "text": "\u200b\u2060\x1b[0m"},  # nothing left: no cue
        ]})  # fmt: skip
        state = Served(settings_for(tmp_path, "auto", asr_endpoint=engine.url, request_retries=0))
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            with anyio.fail_after(120):
                answer = await describe(client, state, source=str(talk), end_s=20)
    texts = [cue.text for cue in answer.videos[0].transcript or []]
    assert texts == ["red alert", "right to left", "zerowidth and tabs and lines"]


# 11b. A hub id that cannot be one is refused at start; a well-formed id and a folder stay allowed


@pytest.mark.parametrize("flag", ["--model", "--asr-model"])
@pytest.mark.parametrize("offline", ["1", "0"])
def test_a_malformed_hub_id_is_refused_at_start(tmp_path: Path, flag: str, offline: str) -> None:
    other = [] if flag == "--model" else ["--model", str(model_folder(tmp_path / "llava", "llava"))]  # offline too
    out = subprocess.run(
        [server_command(), "--cache-dir", str(tmp_path / "cache"), *other, flag, "not a//valid id"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": offline},
    )  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert f"{flag} not a//valid id: neither a folder nor a hub id" in line


def test_a_well_formed_hub_id_and_a_folder_stay_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # nothing is fetched: a hub id is only read at start
    check(Settings(model="llava-hf/llava-interleave-qwen-0.5b-hf", asr_model="openai/whisper-base",
                   cache_dir=tmp_path / "cache"))  # fmt: skip
    whisper = model_folder(tmp_path / "my models" / "whisper v1", "whisper")
    check(Settings(asr_model=str(whisper), cache_dir=tmp_path / "cache", model="gpt2"))


def model_folder(folder: Path, model_type: str) -> Path:
    """A folder as the start checks read it: its config.json names the kind of model."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder
