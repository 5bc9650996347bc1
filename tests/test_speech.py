"""Speech heard where there are no subtitles: a tiny Whisper built here (real token layout, random weights) loaded
through --asr-model FOLDER, videos with sound made by PyAV, and the real MCP client in memory.

The vision model is the shipped `FakeBackend` (named as a stand-in: scripted answers, every prompt kept), since these
tests are about what reaches its prompt; the speech model, the decoding and the cache are the real ones. A random
Whisper samples at its fallback temperatures, so each test seeds torch: what it says is then the same every run.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import ctranslate2
import numpy as np
import pytest
import torch
from mcp import Client

from llava_video_mcp.server.app import build_server
from llava_video_mcp.server.checks import check
from llava_video_mcp.server.settings import ConfigError, Settings
from llava_video_mcp.tools.answer import TranscriptOptions, VideoAnswer
from llava_video_mcp.tools.backends import LazySpeech, Ready, SpeechConfig
from llava_video_mcp.tools.backends.speech import loader as speech_loader
from llava_video_mcp.tools.backends.speech import whisper
from llava_video_mcp.tools.backends.speech.remote import heard_in
from llava_video_mcp.tools.frames import BLOCK_S, audio_track, decode_block, is_silent, level_dbfs
from llava_video_mcp.tools.media import LocalVideo
from llava_video_mcp.tools.timeline import TimedText
from llava_video_mcp.tools.tracks import SpeechTrack
from tests.engines import MisbehavingEngine, Relay, Script, served_model
from tests.httpserver import LoopbackServer
from tests.media import with_sound, with_subtitles
from tests.support import VTT, Served, describe, error_text, settings_for
from tests.whisper_builder import TIMESTAMPS, build_whisper

pytestmark = pytest.mark.anyio

LABEL = "Subtitles spoken in that part of the video:"
_INCLUDE = TranscriptOptions()


@pytest.fixture(autouse=True)
def _same_words_every_run() -> None:
    torch.manual_seed(0)
    ctranslate2.set_random_seed(0)  # CTranslate2 samples at the fallback temperatures with its own generator


@pytest.fixture(scope="module")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sounds")
    with_sound(folder / "talk.mp4", seconds=40)  # two blocks of sound standing in for speech
    with_sound(folder / "hush.mp4", seconds=8, sound="silence")
    return folder


@pytest.fixture
async def served(tmp_path: Path, tiny_whisper: Path) -> AsyncIterator[tuple[Client, Served]]:
    state = Served(settings_for(tmp_path, tiny_whisper))
    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        yield client, state


# What is heard, and where it goes


async def test_speech_is_heard_when_there_are_no_subtitles(served: tuple[Client, Served], sounds: Path) -> None:
    client, state = served
    answer = await describe(client, state, source=str(sounds / "talk.mp4"), start_s=5, end_s=35)
    video = answer.videos[0]
    assert video.transcript_source == "speech"
    assert video.transcript, "the tiny model says something over noise"
    for cue in video.transcript:
        assert 5 - BLOCK_S <= cue.start_s < cue.end_s <= 40.0  # inside the video, and overlapping the range
        assert cue.end_s > 5
        assert cue.start_s < 35
    assert f"{LABEL}\n[{video.transcript[0].start_s:.1f} s] {video.transcript[0].text}" in state.prompt
    assert state.transcribed[0] == "Transcribing 00:00 of 00:40"
    assert "00:40 of 00:40" in state.transcribed[-1]  # then, while the screen is still read, "(N s so far)"

    without = await describe(client, state, source=str(sounds / "talk.mp4"), start_s=5, end_s=35,
                             include_transcript=False)  # fmt: skip
    assert without.videos[0].transcript is None
    assert without.videos[0].transcript_source is None
    assert LABEL not in state.prompt


async def test_subtitles_are_preferred_and_nothing_is_heard(
    served: tuple[Client, Served], sounds: Path, tmp_path: Path
) -> None:
    client, state = served
    lecture = with_subtitles(sounds / "talk.mp4", tmp_path, "lecture", VTT)
    answer = await describe(client, state, source=str(lecture))
    assert answer.videos[0].transcript_source == "subtitles"
    assert [c.text for c in answer.videos[0].transcript or []] == ["Hello there", "Goodbye & thanks"]
    assert state.transcribed == []
    assert not list((state.settings.cache_dir).rglob("speech"))


async def test_silence_and_no_sound_answer_with_a_note(
    served: tuple[Client, Served], sounds: Path, h264_mp4: Path
) -> None:
    client, state = served
    hush = await describe(client, state, source=str(sounds / "hush.mp4"))
    assert hush.videos[0].transcript is None
    assert "No speech was heard in this range" in (hush.videos[0].note or "")
    mute = await describe(client, state, source=str(h264_mp4))
    assert mute.videos[0].transcript is None
    assert "the video has no sound" in (mute.videos[0].note or "")


async def test_heard_speech_is_kept_for_every_later_call_and_a_restart(
    tmp_path: Path, tiny_whisper: Path, sounds: Path
) -> None:
    state = Served(settings_for(tmp_path, tiny_whisper))
    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        first = await describe(client, state, source=str(sounds / "talk.mp4"), start_s=0, end_s=20)
        assert state.transcribed  # block 0 heard
        wider = await describe(client, state, source=str(sounds / "talk.mp4"))
        assert state.transcribed
        assert "of 01:00" not in state.transcribed[0]
        assert [m for m in state.transcribed if m.startswith("Transcribing 00:30")]  # only block 1 was missing
        again = await describe(client, state, source=str(sounds / "talk.mp4"))
        assert state.transcribed == []
    restarted = Served(settings_for(tmp_path, tiny_whisper))
    async with Client(build_server(restarted.settings, Ready(restarted.vision))) as client:
        after = await describe(client, restarted, source=str(sounds / "talk.mp4"))
        assert restarted.transcribed == []
    assert after.videos[0].transcript == again.videos[0].transcript == wider.videos[0].transcript
    assert first.videos[0].transcript == [c for c in wider.videos[0].transcript or [] if c.start_s < 20]
    kept = list(state.settings.cache_dir.rglob("speech/*/0*.json"))
    assert len(kept) == 2
    assert [p.read_text() for p in state.settings.cache_dir.rglob("speech/*/language.json")] == [
        json.dumps(after.videos[0].speech_language)
    ]  # told once, kept with the blocks
    assert not list(state.settings.cache_dir.rglob("speech/*/.*"))


async def test_hearing_can_be_turned_off(tmp_path: Path, sounds: Path) -> None:
    state = Served(settings_for(tmp_path, "none"))
    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        answer = await describe(client, state, source=str(sounds / "talk.mp4"))
    assert answer.videos[0].transcript is None
    assert "speech" not in (answer.videos[0].note or "")
    assert state.transcribed == []


async def test_compare_and_full_coverage_carry_speech(
    tmp_path: Path, tiny_whisper: Path, sounds: Path, h264_mp4: Path
) -> None:
    state = Served(settings_for(tmp_path, tiny_whisper, window_s=20))
    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        result = await client.call_tool(
            "compare_videos",
            {
                "sources": [str(sounds / "talk.mp4"), str(h264_mp4)],
                "question": "Who speaks?",
                "frames_per_video": 2,
            },
        )
        assert not result.is_error, error_text(result)
        compared = VideoAnswer.model_validate(result.structured_content)
        assert compared.videos[0].transcript_source == "speech"
        assert compared.videos[0].transcript
        assert compared.videos[1].transcript is None
        assert "no sound" in (compared.videos[1].note or "")
        watched = await describe(client, state, source=str(sounds / "talk.mp4"), coverage="full")
    assert watched.videos[0].transcript_source == "speech"
    segments = watched.segments or []
    assert len(segments) == 2
    assert any(s.transcript for s in segments)
    for segment in segments:
        for cue in segment.transcript or []:
            assert cue.end_s > segment.start_s
            assert cue.start_s < segment.end_s


# Cancellation


async def test_cancelling_stops_between_blocks_and_keeps_only_whole_ones(tmp_path: Path, tiny_whisper: Path) -> None:
    long = with_sound(tmp_path / "ten-minutes.mp4", seconds=600, fps=1)
    state = Served(settings_for(tmp_path, tiny_whisper))
    heard_one = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if (message or "").startswith("Transcribing ") and not (message or "").startswith("Transcribing 00:00"):
            heard_one.set()  # a first batch of blocks is heard

    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        scope = anyio.CancelScope()

        async def long_call() -> None:
            with scope:
                await client.call_tool("describe_video", {"source": str(long), "num_frames": 2},
                                       progress_callback=on_progress)  # fmt: skip

        async with anyio.create_task_group() as group:
            group.start_soon(long_call)
            with anyio.fail_after(240):
                await heard_one.wait()
            scope.cancel()
        # The server is free: the next call is answered (the model's turn was given back between blocks).
        quick = await describe(client, state, source=str(long), include_transcript=False)
        assert quick.answer
    kept = list(state.settings.cache_dir.rglob("speech/*/0*.json"))
    assert 1 <= len(kept) < 20
    assert not list(state.settings.cache_dir.rglob("speech/*/.*"))  # nothing half written


# Configuration


def test_a_bad_asr_model_stops_the_start(tmp_path: Path, tiny_model: Path) -> None:
    for folder, says in [(tmp_path / "nowhere", "no such folder"), (tiny_model, "'llava' model, not a whisper")]:
        with pytest.raises(ConfigError, match=f"--asr-model {folder}: .*{says}"):
            check(Settings(model=str(tiny_model), asr_model=str(folder), cache_dir=tmp_path / "cache"))
    check(Settings(model=str(tiny_model), asr_model="none", cache_dir=tmp_path / "cache"))


async def test_an_unloadable_speech_model_is_a_note_not_a_failure(tmp_path: Path, sounds: Path) -> None:
    state = Served(settings_for(tmp_path, "openai/whisper-base"))  # not cached, and the hub is offline here
    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        answer = await describe(client, state, source=str(sounds / "talk.mp4"))
    note = answer.videos[0].note or ""
    assert answer.answer
    assert "No speech was heard" in note
    assert "--asr-model" in note


# A site that serves the sound apart


@pytest.fixture
def split_site(tmp_path: Path) -> Iterator[LoopbackServer]:
    """HLS with a video-only variant and the sound as a separate rendition (EXT-X-MEDIA TYPE=AUDIO)."""
    root = tmp_path / "www"
    root.mkdir()
    for segment in range(2):
        with_sound(root / f"v_{segment}.ts", seconds=15, sound="silence", start_s=15 * segment)  # its sound unused
        with_sound(root / f"a_{segment}.ts", seconds=15, video=False, start_s=15 * segment)
    playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:15\n#EXT-X-MEDIA-SEQUENCE:0\n"
    for kind in ("v", "a"):
        (root / f"{kind}.m3u8").write_text(
            playlist + "".join(f"#EXTINF:15.0,\n{kind}_{i}.ts\n" for i in range(2)) + "#EXT-X-ENDLIST\n"
        )
    (root / "master.m3u8").write_text(
        '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",LANGUAGE="en",DEFAULT=YES,URI="a.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=64x48,CODECS="avc1.64001e",AUDIO="aud"\nv.m3u8\n'
    )
    server = LoopbackServer(root)
    with server.running():
        yield server


async def test_a_separate_audio_rendition_is_fetched_and_heard(
    served: tuple[Client, Served], split_site: LoopbackServer
) -> None:
    client, state = served
    answer = await describe(client, state, source=split_site.url("master.m3u8"))
    assert split_site.count("a_0.ts") == split_site.count("v_0.ts") == 1
    assert answer.videos[0].transcript_source == "speech"
    assert answer.videos[0].transcript


# Sound as strangers make it


@pytest.mark.parametrize(
    ("name", "made"),
    [
        ("eight-channels.mkv", {"layout": "7.1", "codec": "pcm_s16le"}),
        ("8khz.mp4", {"rate": 8000}),
        ("96khz.mp4", {"rate": 96000}),
        ("late-and-short.mp4", {"sound_start_s": 4.0, "sound_seconds": 3.0}),
        ("longer-sound.mp4", {"sound_seconds": 50.0}),
    ],
)
def test_unusual_sound_is_read_on_the_video_timeline(tmp_path: Path, name: str, made: dict[str, Any]) -> None:
    path = with_sound(tmp_path / name, seconds=10, sound="noise", **made)
    track = audio_track(path, None, name)
    assert track is not None
    block = decode_block(track, 0)
    assert len(block) == round(min(BLOCK_S, track.duration_s) * 16000)
    assert block.dtype == np.float32
    heard = np.flatnonzero(np.abs(block) > 1e-4) / 16000
    start = made.get("sound_start_s", 0.0)
    length = made.get("sound_seconds", 10.0)
    assert abs(heard[0] - start) < 0.1
    assert abs(heard[-1] - min(start + length, BLOCK_S)) < 0.15  # an AAC frame is 0.128 s at 8 kHz
    assert -40 < level_dbfs(block[heard.astype(int).min() * 16000 :]) < -10
    assert track.blocks(0, 10) == range(1)  # the video's range bounds what is heard, whatever the sound's length


def test_a_broken_audio_packet_is_skipped(tmp_path: Path) -> None:
    path = with_sound(tmp_path / "broken.mkv", seconds=10, codec="pcm_s16le", layout="stereo")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = bytes(4000)  # a stretch of the sound zeroed, as a damaged download would be
    path.write_bytes(bytes(data))
    track = audio_track(path, None, "broken.mkv")
    assert track is not None
    block = decode_block(track, 0)
    assert not is_silent(block[: 4 * 16000])
    assert not is_silent(block[6 * 16000 : 10 * 16000])


def test_sound_with_no_decoder_is_no_sound(tmp_path: Path, sounds: Path) -> None:
    path = tmp_path / "undecodable.mkv"
    data = (sounds / "hush.mp4").read_bytes()
    with_sound(path, seconds=2, codec="pcm_s16le")
    raw = bytearray(path.read_bytes())
    codec_id = raw.find(b"A_PCM/INT/LIT")
    assert codec_id > 0
    assert data
    raw[codec_id : codec_id + 13] = b"A_NOTACODEC!!"  # a codec id no decoder knows, same length
    path.write_bytes(bytes(raw))
    assert audio_track(path, None, "undecodable.mkv") is None


def test_a_ten_hour_silent_track_costs_only_the_range(tmp_path: Path, tiny_whisper: Path) -> None:
    """A sound file that says it lasts ten hours beside a 10 s video: only the video's range is read, and silence
    asks no model."""
    video = with_sound(tmp_path / "video.mp4", seconds=10, sound="silence")
    sound = with_sound(tmp_path / "sound.mkv", seconds=36_000, sound="silence", video=False, codec="pcm_s16le",
                       rate=8000)  # fmt: skip
    speech = LazySpeech(SpeechConfig(model=str(tiny_whisper), device="cpu"))
    local = LocalVideo("v", video, None, from_cache=True, fetch_s=0.0, audio=sound, store=tmp_path / "store")
    heard = SpeechTrack(speech).read(local, 0.0, 10.0, _INCLUDE)
    assert heard.cues == []
    assert "No speech was heard in this range" in (heard.note or "")
    assert speech.loaded is None  # silence never loads the model
    assert [p.name for p in (tmp_path / "store").rglob("*.json")] == ["000000.json"]


# Against a serving engine


def test_speech_heard_on_a_real_transformers_serve(tmp_path: Path, sounds: Path) -> None:
    """`transformers serve` answers /v1/audio/transcriptions with text only: one cue per block heard."""
    folder = build_whisper(tmp_path / "served-whisper", max_length=24, words_only=True)
    with served_model(folder, tmp_path / "serve.log") as engine:
        speech = LazySpeech(SpeechConfig(endpoint=engine.url))
        track = audio_track(sounds / "talk.mp4", None, "talk")
        assert track is not None
        local = LocalVideo("talk", sounds / "talk.mp4", None, from_cache=True, fetch_s=0.0,
                           store=tmp_path / "store")  # fmt: skip
        try:
            heard = SpeechTrack(speech).read(local, 0.0, 40.0, _INCLUDE)
        finally:
            speech.close()  # its connections to the engine, before the engine stops
    assert heard.name == "speech"
    # one cue a block, from the first speech the VAD found in it to the last (blocks begin in a pause near 30 s)
    assert len(heard.cues) == 2
    first, second = heard.cues
    assert first.start_s < 1.0 < first.end_s <= 30.0 <= second.end_s <= 40.0
    assert 25.0 <= second.start_s < second.end_s
    assert all(c.text for c in heard.cues)


@pytest.mark.parametrize(
    ("script", "says"),
    [
        (Script(stream_lines=["x" * (20 * 2**20)]), "sent more than 16 MB"),  # one endless body
        (Script(stream_lines=[], endless_line="x" * 1024), "sent more than 16 MB"),  # a body that never ends
        (Script(chat_status=500, chat_body={"error": "boom"}), "failed with HTTP 500"),
        (Script(chat_body={"segments": "not a list", "text": 7}), "No speech was heard"),  # nonsense: nothing
    ],
    ids=["twenty-megabyte-body", "endless-body", "http-500", "malformed"],
)
async def test_a_misbehaving_speech_engine_costs_a_note_and_the_server_keeps_serving(
    tmp_path: Path, sounds: Path, script: Script, says: str
) -> None:
    """A FAKE engine (MisbehavingEngine) stands for a hostile `/v1/audio/transcriptions`: what it sends is bounded
    like a vision engine's, a failure is a note on an answer from the frames, and the next call is heard."""
    engine = MisbehavingEngine()
    with engine.running():
        state = Served(settings_for(tmp_path, "served-model", asr_endpoint=engine.url, request_retries=0))
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            engine.script = script
            with anyio.fail_after(120):
                failed = await describe(client, state, source=str(sounds / "talk.mp4"))
            assert failed.answer
            assert says in (failed.videos[0].note or "")
            engine.script = Script(chat_body={"text": "Hello there.", "segments": [
                {"id": 0, "start": 1.0, "end": 2.5, "text": " Hello there."}]})  # fmt: skip
            heard = await describe(client, state, source=str(with_sound(tmp_path / "next.mp4", seconds=10)))
    assert heard.videos[0].transcript_source == "speech", heard.videos[0].note
    assert [c.text for c in heard.videos[0].transcript or []] == ["Hello there."]


async def test_a_speech_engine_that_trickles_its_reply_is_cut_at_the_timeout(tmp_path: Path, sounds: Path) -> None:
    """A FAKE engine's 1 MB reply passed on 4 KB at a time, 50 ms apart (13 s at best): each read comes well within
    the read timeout, so only the whole reply's deadline (--request-timeout-s after its headers) stops it."""
    engine = MisbehavingEngine()
    engine.script = Script(chat_body={"text": "y" * 2**20})
    port = int(engine.url.rsplit(":", 1)[1].split("/")[0])
    with engine.running(), Relay(port, pace_s=0.05).running() as relay:
        settings = settings_for(tmp_path, "served-model", asr_endpoint=relay.url(), request_retries=0,
                                request_timeout_s=2)  # fmt: skip
        state = Served(settings)
        async with Client(build_server(state.settings, Ready(state.vision))) as client:
            with anyio.fail_after(120):
                answer = await describe(client, state, source=str(sounds / "talk.mp4"))
    assert answer.answer
    assert "a reply still arriving at the request timeout" in (answer.videos[0].note or "")


def test_an_engine_reply_is_read_as_data() -> None:
    nan, inf = float("nan"), float("inf")
    reply = {
        "text": "ignored when segments are usable",
        "segments": [
            {"start": 1.0, "end": 2.0, "text": " kept "},
            {"start": -5.0, "end": 99.0, "text": "clamped to the block"},
            {"start": nan, "end": 2.0, "text": "no"},
            {"start": 1.0, "end": inf, "text": "no"},
            {"start": "1", "end": 2.0, "text": "no"},
            {"start": True, "end": 2.0, "text": "no"},
            {"start": 1.0, "end": 2.0, "text": None},
            {"start": 3.0, "end": 1.0, "text": "ends before it starts"},
            "not a segment",
        ],
    }
    assert heard_in(reply, 30.0) == [TimedText(1.0, 2.0, "kept"), TimedText(0.0, 30.0, "clamped to the block")]
    assert heard_in({"text": " only text "}, 12.5) == [TimedText(0.0, 12.5, "only text")]
    for nonsense in ({"segments": "not a list", "text": 7}, "a bare string", None, {"segments": [[1, 2, "x"]]}):
        assert heard_in(nonsense, 30.0) == []


# Whisper's real token layout, on both engines


@pytest.mark.parametrize(
    ("layout", "ids"),
    [
        ("multilingual", {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|en|>": 50259, "<|0.00|>": 50364}),
        ("v3", {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|yue|>": 50358, "<|0.00|>": 50365}),
    ],
)
@pytest.mark.parametrize("engine", ["ctranslate2", "transformers"])
def test_the_real_token_layouts_are_heard_on_both_engines(
    tmp_path: Path, layout: str, ids: dict[str, int], engine: str
) -> None:
    folder = build_whisper(tmp_path / layout, max_length=24, layout=layout)
    config = json.loads((folder / "config.json").read_text())
    assert config["vocab_size"] == (51866 if layout == "v3" else 51865)
    assert config["num_mel_bins"] == (128 if layout == "v3" else 80)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    added = {entry["content"]: entry["id"] for entry in tokenizer["added_tokens"]}
    assert {token: added[token] for token in ids} == ids
    assert added[TIMESTAMPS[-1]] == config["vocab_size"] - 1  # <|30.00|> is the last id
    speech = whisper.load_whisper(str(folder), str(folder), engine, "cpu", tmp_path / "converted")
    assert speech.compute == ("int8" if engine == "ctranslate2" else "float32")
    assert len(speech.languages) == (100 if layout == "v3" else 99)
    rng = np.random.default_rng(0)
    blocks = [(rng.standard_normal(16000 * 30) * 0.1).astype(np.float32), np.zeros(16000 * 7, dtype=np.float32)]
    told = speech.transcribe(blocks, None)
    assert told.language in speech.languages  # told once, from the first block
    assert len(told.heard) == 2
    for block, said in zip(blocks, told.heard, strict=True):
        assert all(0 <= h.start_s < h.end_s <= len(block) / 16000 for h in said)
    assert speech.transcribe(blocks[:1], "de").language == "de"  # a language the model knows is given, not told


def test_each_block_is_encoded_once_and_the_language_told_once(
    tmp_path: Path, tiny_whisper: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A random model fails Whisper's checks at every temperature, the worst case: six decodings a block, still one
    encoding; the language is told from the first block of the video and given to every later one."""
    calls = {"encode": 0, "language": 0, "decode": 0}

    def counted(name: str) -> Any:
        original = getattr(whisper.CTranslate2Engine, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls[name] += len(args[0]) if name == "encode" else 1  # blocks encoded; calls for the rest
            return original(self, *args, **kwargs)

        return wrapper

    for name in calls:
        monkeypatch.setattr(whisper.CTranslate2Engine, name, counted(name))
    video = with_sound(tmp_path / "talk.mp4", seconds=75, fps=1)
    speech = LazySpeech(SpeechConfig(model=str(tiny_whisper), device="cpu", store=tmp_path / "models"))
    local = LocalVideo("talk", video, None, from_cache=True, fetch_s=0.0, store=tmp_path / "store")
    first = SpeechTrack(speech).read(local, 0.0, 20.0, _INCLUDE)  # the first block alone
    assert calls["encode"] == 1
    assert calls["language"] == 1
    assert calls["decode"] == len(whisper.TEMPERATURES)  # every fallback temperature, on the one encoding
    assert first.language is not None
    rest = SpeechTrack(speech).read(local, 0.0, 75.0, _INCLUDE)
    # the two blocks not heard yet, in one batch; each heard on once more at most, past an early end
    assert 3 <= calls["encode"] <= 5
    assert calls["language"] == 1  # the video's language is kept with its blocks
    assert rest.language == first.language
    before = calls["encode"]
    forced = SpeechTrack(speech).read(local, 0.0, 20.0, TranscriptOptions(language="de"))
    assert forced.language == "de"
    assert calls["language"] == 1
    assert calls["encode"] == before + 1  # heard again, in German


async def test_the_result_says_the_language_and_the_time_spent_hearing(
    served: tuple[Client, Served], sounds: Path
) -> None:
    client, state = served
    first = await describe(client, state, source=str(sounds / "talk.mp4"))
    video = first.videos[0]
    assert video.transcript_source == "speech"
    assert video.speech_language is not None
    assert first.timings.transcribe_s is not None
    assert first.timings.transcribe_s > 0
    parts = first.timings.fetch_s + first.timings.decode_s + first.timings.inference_s + first.timings.transcribe_s
    assert parts <= first.timings.total_s + 1e-3
    asked = await describe(client, state, source=str(sounds / "talk.mp4"), language="fr")
    assert asked.videos[0].speech_language == "fr"
    assert (asked.timings.transcribe_s or 0) > 0


def _cut_short(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _other_size(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["d_model"] = 32
    (folder / "config.json").write_text(json.dumps(config))


def _other_mel_bins(folder: Path) -> None:
    preprocessor = folder / "processor_config.json"
    data = json.loads(preprocessor.read_text())
    data["feature_extractor"]["feature_size"] = 128
    preprocessor.write_text(json.dumps(data))


def _no_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "added_tokens.json",
                 "special_tokens_map.json"):  # fmt: skip
        (folder / name).unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_cut_short, "Could not load the speech model"),
        (_other_size, "weights that do not match its config.json"),
        (_other_mel_bins, "the model reads 80 mel bins, preprocessor_config.json makes 128"),
        (_no_tokenizer, "has no usable tokenizer"),
    ],
    ids=["cut-short-weights", "config-of-another-size", "other-mel-bins", "no-tokenizer"],
)
@pytest.mark.parametrize("engine", ["ctranslate2", "transformers"])
async def test_a_broken_whisper_folder_is_a_note_until_it_is_fixed(
    tmp_path: Path, sounds: Path, monkeypatch: pytest.MonkeyPatch, damage: Any, says: str, engine: str
) -> None:
    folder = build_whisper(tmp_path / "whisper", max_length=24)
    damage(folder)
    loads: list[str] = []
    real_load = whisper.load_whisper
    monkeypatch.setattr(speech_loader, "load_whisper", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    state = Served(settings_for(tmp_path, folder, asr_engine=engine))
    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        broken = await describe(client, state, source=str(sounds / "talk.mp4"))
        assert broken.answer
        assert broken.videos[0].transcript is None
        note = broken.videos[0].note or ""
        assert says in note, note
        assert "No speech was heard in this range" not in note  # never reported as silence
        again = await describe(client, state, source=str(sounds / "talk.mp4"))
        assert again.videos[0].note == broken.videos[0].note
        assert len(loads) == 1  # not tried again while the folder is the same
        build_whisper(folder, max_length=24, seed=1)  # fixed in place: every file written anew
        fixed = await describe(client, state, source=str(sounds / "talk.mp4"))
    assert fixed.videos[0].transcript_source == "speech", fixed.videos[0].note
    assert len(loads) == 2


async def test_kept_speech_follows_what_the_folder_holds(tmp_path: Path, sounds: Path) -> None:
    folder = build_whisper(tmp_path / "whisper", max_length=24)
    state = Served(settings_for(tmp_path, folder))
    async with Client(build_server(state.settings, Ready(state.vision))) as client:
        await describe(client, state, source=str(sounds / "talk.mp4"))
        assert state.transcribed
        await describe(client, state, source=str(sounds / "talk.mp4"))
        assert state.transcribed == []  # kept
    build_whisper(folder, max_length=24, seed=3)  # another model in the same folder
    restarted = Served(settings_for(tmp_path, folder))
    async with Client(build_server(restarted.settings, Ready(restarted.vision))) as client:
        await describe(client, restarted, source=str(sounds / "talk.mp4"))
    assert restarted.transcribed  # heard again: what was kept came from the other model
    converted = list((tmp_path / "cache" / "speech-models").glob("*-ct2-*"))
    assert len(converted) == 2  # one CTranslate2 conversion per model, kept in the cache
