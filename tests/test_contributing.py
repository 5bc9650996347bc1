"""docs/contributing.md stays true: every file it names exists, every track module is registered where it says
tracks are registered, and the speech engines it lists are the ones the code has."""

from __future__ import annotations

import re
from pathlib import Path

from llava_video_mcp.server.components import build
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.tracks import Track

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
    """The speech-engine row: the package's loader and exports, and each module defining an engine by name."""
    row = section("A speech engine")
    assert {
        "tools/backends/speech/base.py",
        "tools/backends/speech/loader.py",
        "tools/backends/speech/__init__.py",
    } <= (set(_PATH.findall(row)))
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
