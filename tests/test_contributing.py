"""docs/contributing.md stays true: every file it names exists, every track module is registered where it says
tracks are registered, the speech engines it lists are the ones the code has, and a speech engine is a backend and a
registry row (a throwaway one, registered here, hears a video with no other edit)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from llava_video_mcp.server.cli import parse_settings, server_parser
from llava_video_mcp.server.components import build
from llava_video_mcp.server.settings import ConfigError, Settings
from llava_video_mcp.tools.answer import TranscriptOptions
from llava_video_mcp.tools.backends import LazySpeech
from llava_video_mcp.tools.backends.speech import SAMPLE_RATE, SpeechBackend, Transcription
from llava_video_mcp.tools.backends.speech.loader import ENGINES, SpeechEngine
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.media import LocalVideo
from llava_video_mcp.tools.progress import BlockProgress
from llava_video_mcp.tools.timeline import TimedText
from llava_video_mcp.tools.tracks import SpeechTrack, Track
from tests.media import with_sound

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "contributing.md").read_text()
_PATH = re.compile(r"`((?:tools|server|tests|llava_video_mcp|docs)/[^`<>\s]*)`")


def section(title: str) -> str:
    start = PAGE.index(f"## {title}")
    end = PAGE.find("\n## ", start + 1)
    return PAGE[start : end if end != -1 else len(PAGE)]


def test_every_path_named_exists() -> None:
    named = _PATH.findall(PAGE)
    assert len(named) > 15
    missing = [path for path in named if not (ROOT / path).exists()]
    assert missing == []


def test_a_track_needs_only_read() -> None:
    assert Track.__abstractmethods__ == frozenset({"read"})


def test_every_track_module_is_registered_in_the_server(tmp_path: Path) -> None:
    """The track row: each module of tools/tracks/ defining a track is in the server's Tracks."""
    assert "server/components.py" in section("A track")
    components = build(Settings(cache_dir=tmp_path, asr_model="none"))
    try:
        registered = {type(track).__module__.rsplit(".", 1)[-1] for track in components.qa.tracks}
    finally:
        components.close()
    modules = {path.stem for path in (ROOT / "tools" / "tracks").glob("*.py") if "(Track)" in path.read_text()}
    assert modules
    assert modules == registered


def test_the_speech_engine_row_lists_the_speech_modules() -> None:
    """The speech-engine row: the package's protocol and registry, and each module defining an engine by name."""
    row = section("A speech engine")
    assert {"tools/backends/speech/base.py", "tools/backends/speech/loader.py"} <= set(_PATH.findall(row))
    folder = ROOT / "tools" / "backends" / "speech"
    engines = {path.name for path in folder.glob("*.py") if "(SpeechBackend)" in path.read_text()}
    assert engines == {"whisper.py", "remote.py"}
    assert all(f"`{name}`" in row for name in engines)


def test_the_family_row_names_the_registry() -> None:
    from llava_video_mcp.tools.backends.families import FAMILIES

    row = section("A model family")
    assert "FAMILIES" in row
    for family in FAMILIES:
        assert (ROOT / "tools" / "backends" / "families" / f"{family.__module__.rsplit('.', 1)[-1]}.py").is_file()


class _Scripted(SpeechBackend):
    """A throwaway engine, named as such: every block says the same words."""

    model_id = "scripted"
    device = "cpu"

    def transcribe(
        self,
        blocks: Sequence[np.ndarray],
        language: str | None,
        on_block: BlockProgress | None = None,
        cancel: CancelToken | None = None,
    ) -> Transcription:
        heard = []
        for done, block in enumerate(blocks, 1):
            heard.append([TimedText(0.0, len(block) / SAMPLE_RATE, "words from a throwaway engine")])
            if on_block is not None:
                on_block(done)
        return Transcription(heard, language)


def test_a_speech_engine_is_a_backend_and_a_registry_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The speech-engine row: a throwaway engine registered in `ENGINES` is taken by --asr-engine in any case,
    listed in --help and in its refusals, and hears a real video, with no other edit."""
    assert "ENGINES" in section("A speech engine")
    row = SpeechEngine("throwaway", "a test's", lambda config, on_download: _Scripted(), lambda config: "throwaway")
    monkeypatch.setitem(ENGINES, row.name, row)
    assert "{auto,ctranslate2,transformers,throwaway}" in " ".join(server_parser().format_help().split())
    with pytest.raises(ConfigError, match=r"--asr-engine nothing: must be one of .*'throwaway'"):
        parse_settings(["--asr-engine", "nothing"], {})
    config = parse_settings(["--asr-engine", "Throwaway", "--device", "cpu"], {}).speech_config()
    speech = LazySpeech(config)
    assert speech.enabled
    video = with_sound(tmp_path / "talk.mp4", seconds=10)
    local = LocalVideo("talk", video, None, from_cache=True, fetch_s=0.0, store=tmp_path / "store")
    heard = SpeechTrack(speech).read(local, 0.0, 10.0, TranscriptOptions())
    assert {cue.text for cue in heard.cues} == {"words from a throwaway engine"}
    assert isinstance(speech.loaded, _Scripted)
