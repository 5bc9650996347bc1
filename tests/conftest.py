from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Nothing in the tests may reach the Hugging Face hub: loading a hub id must fail at once, offline.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from tests.engines import ServedModel, served_model
from tests.httpserver import LoopbackServer
from tests.llava_builder import build_llava
from tests.media import encode_video
from tests.whisper_builder import build_whisper


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llava-interleave-shaped model saved to disk, loaded by path like any local model."""
    return build_llava(tmp_path_factory.mktemp("models") / "tiny-llava-interleave")


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Whisper with the real special and timestamp tokens, saved to disk and loaded by --asr-model FOLDER."""
    return build_whisper(tmp_path_factory.mktemp("models") / "tiny-whisper", max_length=24)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def h264_mp4(media_dir: Path) -> Path:
    return encode_video(media_dir / "clip.mp4", codec="libx264", seconds=3.0, fps=10)


@pytest.fixture(scope="session")
def vp9_webm(media_dir: Path) -> Path:
    return encode_video(media_dir / "clip.webm", codec="libvpx-vp9", seconds=2.0, fps=12, width=80, height=48)


@pytest.fixture
def http_server(tmp_path: Path, h264_mp4: Path, vp9_webm: Path) -> Iterator[LoopbackServer]:
    """Serves copies of the test videos, a page with no video, and a truncated response on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "clip.mp4").write_bytes(h264_mp4.read_bytes())
    (root / "clip.webm").write_bytes(vp9_webm.read_bytes())
    (root / "cut.mp4").write_bytes(h264_mp4.read_bytes())
    (root / "page.html").write_text("<html><head><title>No video</title></head><body>Nothing here.</body></html>")
    server = LoopbackServer(root)
    server.truncate.add("/cut.mp4")
    with server.running():
        yield server


@pytest.fixture(scope="session")
def engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    """`transformers serve` on the tiny model, for the remote backend's tests: started once, stopped at the end."""
    with served_model(tiny_model, tmp_path_factory.mktemp("engine") / "serve.log") as running:
        yield running
