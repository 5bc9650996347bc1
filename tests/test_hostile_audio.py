"""Speech heard from sound and stores as strangers and accidents make them: many channels, samples that are not
numbers, decodings whose timestamps run backwards, kept blocks damaged on disk, two calls at once on one video.

Every case goes through the real entry point (the in-memory MCP client, the tiny Whisper the tests build, the real
CTranslate2 engine); where a random model cannot be steered into the failure, the engine's decoding is scripted and
Whisper's own policy (`WhisperSpeech`) turns it into cues.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import av
import ctranslate2
import numpy as np
import pytest
import torch
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.tools.answer import TranscriptOptions, VideoAnswer
from llava_video_mcp.tools.backends import LazySpeech, Ready, SpeechConfig
from llava_video_mcp.tools.backends.speech import whisper
from llava_video_mcp.tools.cancel import Cancelled, CancelToken
from llava_video_mcp.tools.media import LocalVideo
from llava_video_mcp.tools.timeline import TimedText
from llava_video_mcp.tools.tracks import SpeechTrack
from tests.engines import MisbehavingEngine, Script
from tests.media import encode_all, moving_frame, rgb_frame, spoken, with_sound
from tests.support import Served, describe, error_text, settings_for

pytestmark = pytest.mark.anyio

WAITING = "Waiting for another call that is hearing this video's speech"


@pytest.fixture(autouse=True)
def _same_words_every_run() -> None:
    torch.manual_seed(0)
    ctranslate2.set_random_seed(0)  # CTranslate2 samples at the fallback temperatures with its own generator


@pytest.fixture
async def served(tmp_path: Path, tiny_whisper: Path) -> Any:
    state = Served(settings_for(tmp_path, tiny_whisper))
    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        yield client, state


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_sound(tmp_path_factory.mktemp("talk") / "talk.mp4", seconds=40)  # two blocks: 30 s and 10 s


def assert_cues_sound(cues: list[TimedText], duration_s: float) -> None:
    """In time order, inside the video, each starting before it ends, with finite times and text."""
    for cue in cues:
        assert math.isfinite(cue.start_s)
        assert math.isfinite(cue.end_s)
        assert 0.0 <= cue.start_s < cue.end_s <= duration_s, cue
        assert isinstance(cue.text, str)
        assert cue.text
    assert [c.start_s for c in cues] == sorted(c.start_s for c in cues)


def with_raw_sound(
    path: Path, samples: np.ndarray, *, rate: int = 16000, codec: str = "pcm_s16le", seconds: float = 10.0
) -> Path:
    """A small video whose sound is `samples` (channels x samples, floats in [-1, 1]; NaN and infinity kept as they
    are for a float codec), packed, in `codec`."""
    channels = samples.shape[0]
    layout = "mono" if channels == 1 else f"{channels} channels"
    with av.open(str(path), mode="w") as container:
        picture = container.add_stream("libx264", rate=2)
        picture.width, picture.height = 64, 48
        picture.pix_fmt = "yuv420p"
        picture.options = {"preset": "ultrafast", "g": "4"}
        audio = container.add_stream(codec, rate=rate, layout=layout)
        encode_all(container, picture, (rgb_frame(moving_frame(i, 64, 48), i, Fraction(1, 2)) for i in range(20)))

        def frames() -> Iterator[av.AudioFrame]:
            for start in range(0, min(samples.shape[1], round(seconds * rate)), 1024):
                chunk = samples[:, start : start + 1024]
                if codec == "pcm_f32le":
                    packed = chunk.T.reshape(1, -1).astype(np.float32)
                    frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
                else:
                    packed = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
                    frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
                frame.sample_rate = rate
                frame.pts = start
                yield frame

        encode_all(container, audio, frames())
    return path


def noise(seconds: float, rate: int = 16000) -> np.ndarray:
    """`seconds` of the committed speech at `rate` (what a voice detector passes on to the model)."""
    voice = spoken(rate)
    return voice[np.arange(round(seconds * rate)) % len(voice)].astype(np.float32)


# R: cues in time order


def _scripted_decoding(monkeypatch: pytest.MonkeyPatch, folder: Path, script: list[str]) -> None:
    """The CTranslate2 engine's decoding replaced by `script` (tokens as text) for every block: Whisper's policy
    then reads it as it would a real decoding."""
    words = whisper.Words(str(folder))
    tokens = [words.token_id(token) for token in script]
    assert None not in tokens

    def decode(self: Any, encoded: Any, rows: Any, *args: Any, **kwargs: Any) -> list[whisper.Decoded]:
        return [whisper.Decoded([int(t) for t in tokens if t is not None], 0.0, 0.0) for _ in rows]

    monkeypatch.setattr(whisper.CTranslate2Engine, "decode", decode)


async def test_a_segment_left_open_after_a_short_one_stays_in_time_order(
    served: tuple[Client, Served], talk: Path, tiny_whisper: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The regression: `(0.0, 30.0)` after `(29.96, 29.98)`. A short segment, then words with no closing timestamp:
    they start where the short one ended, and run to the window's end (never back to its start)."""
    _scripted_decoding(monkeypatch, tiny_whisper, ["<|9.96|>", "Ġaaaa", "<|9.98|>", "Ġbaaa"])
    client, state = served
    answer = await describe(client, state, source=str(talk))
    cues = answer.videos[0].transcript or []
    assert_cues_sound(cues, 40.0)
    assert cues
    assert {c.text for c in cues} <= {"aaaa", "baaa"}
    assert "aaaa" in {c.text for c in cues}
    ends = [c.end_s for c in cues if c.text == "aaaa"]
    for open_ in (c for c in cues if c.text == "baaa"):  # heard on from where "aaaa" closed, up to the window's end
        assert any(open_.start_s == pytest.approx(end, abs=0.02) for end in ends)
        assert open_.end_s > open_.start_s


async def test_timestamps_that_run_backwards_never_put_cues_out_of_order(
    served: tuple[Client, Served], talk: Path, tiny_whisper: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted_decoding(monkeypatch, tiny_whisper,
                       ["<|5.00|>", "Ġaaaa", "<|6.00|>", "<|2.00|>", "Ġbaaa", "<|3.00|>", "Ġcaaa"])  # fmt: skip
    client, state = served
    cues = (await describe(client, state, source=str(talk))).videos[0].transcript or []
    assert_cues_sound(cues, 40.0)
    assert cues[0].text == "aaaa"
    assert "baaa" not in {c.text for c in cues}  # it sat between a time and an earlier one


async def test_an_engine_sending_segments_out_of_order_gives_cues_in_order(tmp_path: Path) -> None:
    engine = MisbehavingEngine()
    engine.script = Script(chat_body={"text": "x", "segments": [
        {"start": 5.0, "end": 6.0, "text": "second"}, {"start": 1.0, "end": 2.0, "text": "first"}]})  # fmt: skip
    video = with_sound(tmp_path / "ten.mp4", seconds=10)
    with engine.running():
        state = Served(settings_for(tmp_path, "served-model", asr_endpoint=engine.url, request_retries=0))
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            answer = await describe(client, state, source=str(video))
    assert [(c.start_s, c.text) for c in answer.videos[0].transcript or []] == [(1.0, "first"), (5.0, "second")]


# 6: many channels


@pytest.mark.parametrize("channels", [9, 32, 64])
async def test_sound_of_many_channels_is_mixed_down_and_heard(
    served: tuple[Client, Served], tmp_path: Path, channels: int
) -> None:
    mono = noise(10.0)
    video = with_raw_sound(tmp_path / f"{channels}.mkv", np.tile(mono, (channels, 1)))
    client, state = served
    answer = await describe(client, state, source=str(video))
    assert answer.videos[0].transcript_source == "speech", answer.videos[0].note
    assert_cues_sound(answer.videos[0].transcript or [], 10.0)


async def test_sound_of_more_channels_than_can_be_mixed_is_a_note(
    served: tuple[Client, Served], tmp_path: Path
) -> None:
    video = with_raw_sound(tmp_path / "65.mkv", np.tile(noise(3.0), (65, 1)), seconds=3.0)
    client, state = served
    answer = await describe(client, state, source=str(video))
    assert answer.answer
    assert answer.videos[0].transcript is None
    assert "The sound has 65 channels; at most 64" in (answer.videos[0].note or "")


# 11a: samples that are not numbers


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("rate", [16000, 44100])
async def test_a_sample_that_is_not_a_number_neither_silences_the_block_nor_reaches_the_model(
    served: tuple[Client, Served], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: float, rate: int
) -> None:
    samples = noise(10.0, rate)
    samples[rate * 3] = bad
    video = with_raw_sound(tmp_path / "float.mkv", samples[np.newaxis], rate=rate, codec="pcm_f32le")
    given: list[bool] = []
    real = whisper.WhisperSpeech.transcribe

    def transcribe(self: Any, blocks: Any, *args: Any, **kwargs: Any) -> Any:
        given.extend(bool(np.isfinite(block).all()) for block in blocks)
        return real(self, blocks, *args, **kwargs)

    monkeypatch.setattr(whisper.WhisperSpeech, "transcribe", transcribe)
    client, state = served
    answer = await describe(client, state, source=str(video))
    assert answer.videos[0].transcript_source == "speech", answer.videos[0].note
    assert given == [True]


def test_whisper_hears_a_block_with_nan_as_one_with_silence_there(
    tmp_path: Path, tiny_whisper: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever hands Whisper a block, a NaN in it reaches neither the features nor the encoder."""
    finite: list[bool] = []
    real = whisper.CTranslate2Engine.encode

    def encode(engine: Any, features: np.ndarray) -> Any:
        finite.append(bool(np.isfinite(features).all()))
        return real(engine, features)

    monkeypatch.setattr(whisper.CTranslate2Engine, "encode", encode)
    speech = whisper.load_whisper(str(tiny_whisper), str(tiny_whisper), "ctranslate2", "cpu", tmp_path / "models")
    block = noise(30.0)
    block[1000] = math.nan
    told = speech.transcribe([block], "en")
    assert len(told.heard) == 1
    assert finite  # encoded (once, or again where it heard on past an early end)
    assert all(finite)
    assert math.isnan(block[1000])  # the caller's block is not changed


# 11b: kept blocks damaged on disk


@pytest.mark.parametrize(
    "damaged",
    [
        '[[Infinity, 2.0, "DAMAGED"]]',
        '[[-1.0, 2.0, "DAMAGED"]]',
        '[[1e300, 1e300, "DAMAGED"]]',
        '[[1.0, 1e300, "DAMAGED"]]',
        '[[NaN, 2.0, "DAMAGED"]]',
        '[[5.0, 2.0, "DAMAGED"]]',
        "[[1.0, 2.0, 7]]",
        '[[1.0, 2.0, ["DAMAGED"]]]',
        '[[true, 2.0, "DAMAGED"]]',
        '[[1.0, 2.0, ""]]',
        '[[3.0, 4.0, "DAMAGED"], [1.0, 2.0, "DAMAGED"]]',
        "[[1.0, 2.0]]",
        '{"start": 1.0}',
        '"DAMAGED"',
        "[" * 100_000,
        '[[1.0, 2.0, "' + "DAMAGED" * 50_000 + '"]]',
        "\xff\xfe not json",
    ],
    ids=[
        "infinity",
        "negative",
        "1e300",
        "ends-past-the-block",
        "nan",
        "ends-before-it-starts",
        "text-a-number",
        "text-a-list",
        "time-a-bool",
        "no-text",
        "out-of-order",
        "two-fields",
        "an-object",
        "a-string",
        "nested-deep",
        "too-large",
        "not-utf8",
    ],
)
async def test_a_damaged_kept_block_is_heard_again_and_never_served(
    served: tuple[Client, Served], talk: Path, damaged: str
) -> None:
    client, state = served
    await describe(client, state, source=str(talk))
    (block,) = state.settings.cache_dir.rglob("speech/*/000000.json")
    block.write_bytes(damaged.encode("latin-1") if damaged.startswith("\xff") else damaged.encode())
    again = await describe(client, state, source=str(talk))
    assert state.transcribed  # block 0 heard again
    cues = again.videos[0].transcript or []
    assert all("DAMAGED" not in c.text for c in cues)
    assert_cues_sound(cues, 40.0)
    kept = json.loads(block.read_text(), parse_constant=lambda name: pytest.fail(f"{name} kept"))
    assert all(0 <= start < end <= 30 and isinstance(text, str) and text for start, end, text in kept)
    await describe(client, state, source=str(talk))
    assert state.transcribed == []  # what was heard again is kept


# 11c: two calls at once on one video


class _GatedEncoder:
    """The CTranslate2 encoder, counting the blocks it encodes, held at its first batch until `go_on` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.blocks = 0
        self.started = threading.Event()
        self.go_on = threading.Event()
        real = whisper.CTranslate2Engine.encode

        def encode(engine: Any, features: np.ndarray) -> Any:
            self.blocks += len(features)
            self.started.set()
            assert self.go_on.wait(120), "the test never let the encoder go on"
            return real(engine, features)

        monkeypatch.setattr(whisper.CTranslate2Engine, "encode", encode)


async def test_two_calls_at_once_on_one_video_hear_its_speech_once(
    served: tuple[Client, Served], talk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = _GatedEncoder(monkeypatch)
    client, state = served
    waiting = anyio.Event()
    second_messages: list[str] = []

    async def second_progress(progress: float, total: float | None, message: str | None) -> None:
        second_messages.append(message or "")
        if message == WAITING:
            waiting.set()

    answers: dict[str, VideoAnswer] = {}

    async def call(name: str, progress: Any) -> None:
        result = await client.call_tool("describe_video", {"source": str(talk), "num_frames": 2},
                                        progress_callback=progress)  # fmt: skip
        assert not result.is_error, error_text(result)
        answers[name] = VideoAnswer.model_validate(result.structured_content)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(call, "first", state.progress)
            with anyio.fail_after(120):
                await anyio.to_thread.run_sync(encoder.started.wait, 120)  # the first call is hearing
                group.start_soon(call, "second", second_progress)
                await waiting.wait()  # the second waits its turn
            encoder.go_on.set()
    finally:
        encoder.go_on.set()
    assert encoder.blocks == 2  # each of the video's two blocks encoded once, by the first call
    assert answers["second"].videos[0].transcript == answers["first"].videos[0].transcript
    assert answers["first"].videos[0].transcript
    assert not [m for m in second_messages if m.startswith("Transcribing 00:00 of")]


def test_a_call_waiting_for_its_turn_to_hear_stops_at_once_when_cancelled(
    tmp_path: Path, tiny_whisper: Path, talk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = _GatedEncoder(monkeypatch)
    speech = LazySpeech(SpeechConfig(model=str(tiny_whisper), device="cpu", store=tmp_path / "models"))
    hearing = SpeechTrack(speech)
    local = LocalVideo("talk", talk, None, from_cache=True, fetch_s=0.0, store=tmp_path / "store")
    waits = threading.Event()
    outcome: dict[str, BaseException | None] = {}

    def hear(name: str, cancel: CancelToken | None = None) -> None:
        def progress(done: float, total: float, message: str) -> None:
            if message == WAITING:
                waits.set()

        try:
            hearing.read(local, 0.0, 40.0, TranscriptOptions(), progress, cancel)
            outcome[name] = None
        except BaseException as exc:
            outcome[name] = exc

    first = threading.Thread(target=hear, args=("first",))
    cancel = CancelToken()
    second = threading.Thread(target=hear, args=("second", cancel))
    first.start()
    try:
        assert encoder.started.wait(120)
        second.start()
        assert waits.wait(60)
        cancel.cancel()
        second.join(30)
        assert not second.is_alive()  # it stopped while the first still holds the turn
        assert isinstance(outcome["second"], Cancelled)
        assert first.is_alive()
    finally:
        encoder.go_on.set()
        first.join(120)
        second.join(30)
    assert outcome["first"] is None
    assert encoder.blocks == 2
