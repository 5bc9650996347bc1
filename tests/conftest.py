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


FAST: dict[str, set[str]] = {
    "test_server.py": {"test_the_tools_are_listed_with_schemas", "test_time_range"},
    "test_sources.py": {"test_local_file_is_read_in_place", "test_url_is_downloaded_once_then_served_from_cache"},
    "test_acquisition.py": {"test_subtitle_parsing_and_bounds", "test_private_address_is_refused_before_any_request"},
    "test_frames.py": {"test_range_sampling_stays_inside_range", "test_text_file_is_not_a_video"},
    "test_tracks.py": {"test_a_new_track_reaches_the_prompt", "test_find_moments_searches_a_new_track"},
    "test_speech.py": {"test_an_engine_reply_is_read_as_data", "test_a_broken_audio_packet_is_skipped"},
    "test_config.py": {"test_the_speech_words_are_read_in_any_case", "test_flags_win_over_environment"},
    "test_ocr.py": {
        "test_lines_are_cleaned_floored_and_in_reading_order",
        "test_read_frames_reads_only_what_changed_and_repeats_the_last_reading",
    },
    "test_images.py": {
        "test_an_image_is_told_by_its_content_and_prepared_as_frames_are",
        "test_a_hostile_image_is_a_clear_error",
    },
    "test_docs.py": {"test_the_result_example_is_a_result", "test_the_host_configs_are_host_configs"},
    "test_contributing.py": {"test_every_path_named_exists", "test_the_speech_engine_row_lists_the_speech_modules"},
    "test_layout.py": {"test_no_test_module_imports_another"},
    "test_families.py": {"test_each_family_declares_what_a_frame_costs_before_loading"},
}
"""The `fast` subset (`pytest -m fast`, under a minute on a laptop): a few tests of each area (server, tools, tracks,
speech, on-screen text, images, docs), named here in one place rather than marked in each module. A name listed for
a module that no longer has it fails tests/test_layout.py, so the subset follows renames."""


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if getattr(item, "originalname", item.name) in FAST.get(item.path.name, set()):
            item.add_marker(pytest.mark.fast)
