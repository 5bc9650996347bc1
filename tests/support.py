"""What several test modules share: the helpers a test module would otherwise import from another test module
(no test module imports another; tests/test_layout.py holds this)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer import MomentsAnswer, VideoAnswer
from llava_video_mcp.tools.backends import Generation, InferenceProgress, Prompt, Ready
from llava_video_mcp.tools.backends.fake import FakeBackend
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.frames import to_model_image, uniform_targets
from tests.media import nearest_reference, reference_frames

VTT = """WEBVTT

00:00:00.500 --> 00:00:01.500
Hello <b>there</b>

00:00:02.000 --> 00:00:02.900 align:start
Goodbye &amp; thanks
"""


async def call(client: Client, tool: str, **arguments: Any) -> VideoAnswer:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, error_text(result)
    return VideoAnswer.model_validate(result.structured_content)


async def with_images(client: Client, tool: str, **arguments: Any) -> tuple[dict[str, Any], list[Image.Image]]:
    """A call that succeeds: its structured result, and the images it returned."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, error_text(result)
    assert result.structured_content is not None
    return result.structured_content, images_of(result)


def images_of(result: CallToolResult) -> list[Image.Image]:
    """The images a call returned (JPEGs, every one)."""
    blocks = [block for block in result.content if isinstance(block, ImageContent)]
    assert all(block.mime_type == "image/jpeg" for block in blocks)
    return [Image.open(io.BytesIO(base64.b64decode(block.data))) for block in blocks]


def error_text(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


GUIDE = "The 6 images are frames of one video, in time order.\n\n"


def frames_of(path: Path, count: int, start: float = 0.0, end: float = 3.0) -> list:  # type: ignore[type-arg]
    reference = reference_frames(path)
    return [to_model_image(nearest_reference(reference, t)[1], 384) for t in uniform_targets(start, end, count)]


def server_command() -> str:
    command = shutil.which("llava-video-mcp", path=str(Path(sys.executable).parent))
    assert command, "the llava-video-mcp console script is not installed in this environment"
    return command


def describe_raw(source: str) -> str:
    """What a client writes to a server on stdio to have `source` described, in raw JSON-RPC (initialize,
    initialized, the call): for tests that stop the server while it works, with no client waiting."""
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "describe_video", "arguments": {"source": source}},
        },
    ]
    return "".join(json.dumps(m) + "\n" for m in messages)


def wait_for_partial_download(cache: Path, timeout_s: float = 60) -> None:
    """Until a download has written a partial file into the cache's staging."""
    deadline = time.monotonic() + timeout_s
    while not list((cache / "videos").glob(".partial-*/*.part")):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [server_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=os.environ | {"HF_HUB_OFFLINE": "1"} | (env or {}),
    )


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout_s: float = 60) -> list[str]:
    lines: list[str] = []
    assert process.stderr is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"no {needle!r} in: {''.join(lines)}")


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def settings_for(tmp_path: Path, whisper: Path | str, **changes: Any) -> Settings:
    values: dict[str, Any] = {"model": "stand-in", "device": "cpu", "cache_dir": tmp_path / "cache",
                              "asr_model": str(whisper), "progress_interval_s": 0.2, "ocr_engine": "none",
                              **changes}  # fmt: skip
    return Settings(**values)


class Served:
    """One server over a settings, the vision stand-in's prompts kept, and every progress message of its calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.vision = FakeBackend()
        self.messages: list[str] = []

    @property
    def prompt(self) -> str:
        return self.vision.prompts[-1].text

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.messages.append(message or "")

    @property
    def transcribed(self) -> list[str]:
        return [m for m in self.messages if m.startswith("Transcribing")]


async def describe(client: Client, state: Served, **arguments: Any) -> VideoAnswer:
    state.messages.clear()
    result = await client.call_tool("describe_video", {"num_frames": 2, **arguments}, progress_callback=state.progress)
    assert not result.is_error, error_text(result)
    return VideoAnswer.model_validate(result.structured_content)


LENGTHS = [2.0, 10.0, 3.0, 20.0, 1.0, 24.0]


SUBTITLES = """WEBVTT

00:00:05.000 --> 00:00:07.000
Welcome to the garden.

00:00:20.000 --> 00:00:22.500
The red kite lands on the fence.

00:00:50.000 --> 00:00:52.000
Goodbye.
"""


class Scripted(FakeBackend):
    """A stand-in for the model (named as one): notes for windows, `ranking` when asked to rank, `look` when asked
    which frames show the query."""

    def __init__(self, ranking: str = "3, 1", look: str = "2, 3\nThe kite spreads its wings.") -> None:
        super().__init__()
        self.ranking = ranking
        self.look = look

    def generate(
        self,
        prompt: Prompt,
        max_new_tokens: int,
        on_progress: InferenceProgress = lambda fraction, message: None,
        cancel: CancelToken | None = None,
    ) -> Generation:
        self.prompts.append(prompt)
        if "Which parts show or mention" in prompt.text:
            text = self.ranking
        elif "In which of these frames" in prompt.text:
            text = self.look
        else:
            text = "00:01 a garden; a bird flies over."
        return Generation(text=text, generated_tokens=len(text.split()), hit_token_limit=False, prompt_tokens=100)

    def asked(self, kind: str) -> int:
        return sum(kind in p.text for p in self.prompts)


def served(tmp_path: Path, model: Any) -> Client:
    settings = Settings(
        ocr_engine="none", model="stand-in", cache_dir=tmp_path / "cache", asr_model="none", window_s=10
    )
    return Client(build_server(settings, model))


async def moments(client: Client, **arguments: Any) -> MomentsAnswer:
    result = await client.call_tool("find_moments", arguments)
    assert not result.is_error, error_text(result)
    return MomentsAnswer.model_validate(result.structured_content)


class NeverLoaded(Ready):
    """A provider that fails the test if the model is asked for."""

    def get(self, on_download: Any = None) -> tuple[Any, float]:
        raise AssertionError("the model was loaded")
