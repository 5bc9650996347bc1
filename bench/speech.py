"""Speech benchmark: what hearing a video costs, on the full-size architecture of the default speech model.

No hub is reachable here, so the model is Whisper's full-size architecture with random weights, built by the tests'
builder (whisper-base on CPU, whisper-large-v3-turbo on CUDA, saved once under bench/.models). Random weights never
choose to stop, so each block's tokens are capped at --tokens (128 by default: a 30 s block of fast speech, about
75 words, is about 100 tokens) and only the first temperature runs (a real model passes Whisper's checks at
temperature 0 on most blocks; a block that fails all six costs up to 6x). Both are stated in the output.

On a 10-minute track of noise (heard as speech would be: no block is skipped as silent), in one run:

1. decode: the track decoded and resampled to 16 kHz mono block by block (`tools.frames.decode_block`), the
   baseline the model's time is measured against;
2. transcribe: every block through `WhisperBackend` (batches of 8 on CUDA, one at a time on CPU), in a child
   process for a clean peak RSS; the real-time factor is (decode + transcribe) / audio length, and
   `seconds_per_audio_hour` what an hour of sound costs;
3. first call: `describe_video` on the 10-minute video without hearing (`--asr-model none`) and with it (the
   speech model loaded by the call, as a first call does), the vision model a stand-in, so the difference is
   what hearing adds to a first call; a second call reads the kept transcript.

Prints a table and a final JSON line; writes bench/results/speech-<device>.json with the machine it ran on.

    .venv/bin/pip install -e ".[bench,test]" && .venv/bin/python bench/speech.py [--device cuda] [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.model import machine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODELS = ROOT / "bench" / ".models"
MEDIA = ROOT / "bench" / ".media"


def ensure_model(device: str, tokens: int) -> Path:
    from tests.whisper_builder import BASE, LARGE_V3_TURBO, build_whisper

    name, sizes = ("whisper-large-v3-turbo", LARGE_V3_TURBO) if device == "cuda" else ("whisper-base", BASE)
    folder = MODELS / f"{name}-random-{tokens}"
    if not (folder / "model.safetensors").exists():
        print(f"building {folder.name} (once) ...", flush=True)
        build_whisper(folder, sizes, init_std=0.02, max_length=tokens)
    return folder


def ensure_video(minutes: int) -> Path:
    from tests.media import with_sound

    path = MEDIA / f"speech-{minutes}min.mp4"
    if not path.exists():
        MEDIA.mkdir(parents=True, exist_ok=True)
        print(f"encoding {path.name} (once) ...", flush=True)
        with_sound(path, seconds=minutes * 60, fps=1)
    return path


def _first_temperature_only() -> None:
    from llava_video_mcp.tools.backends import speech

    speech.THRESHOLDS["temperature"] = (0.0,)


def _transcribe_child(model: str, device: str, video: str, queue: Any) -> None:
    from llava_video_mcp.tools.backends.speech import WhisperBackend
    from llava_video_mcp.tools.frames import audio_track, decode_block

    _first_temperature_only()
    track = audio_track(Path(video), None, "bench")
    assert track is not None
    numbers = track.blocks(0.0, track.duration_s)
    started = time.perf_counter()
    blocks = [decode_block(track, n) for n in numbers]
    decode_s = time.perf_counter() - started
    loading = time.perf_counter()
    backend = WhisperBackend.load(model, device)
    load_s = time.perf_counter() - loading
    started = time.perf_counter()
    heard = backend.transcribe(blocks, None)
    transcribe_s = time.perf_counter() - started
    queue.put(
        {
            "audio_s": round(track.duration_s, 1),
            "blocks": len(blocks),
            "decode_s": round(decode_s, 2),
            "load_s": round(load_s, 2),
            "transcribe_s": round(transcribe_s, 2),
            "segments": sum(len(h) for h in heard),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )


def transcribe(model: Path, device: str, video: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_transcribe_child, args=(str(model), device, str(video), queue))
    process.start()
    result: dict[str, Any] = queue.get(timeout=7200)
    process.join()
    heard_s = result["decode_s"] + result["transcribe_s"]
    result["real_time_factor"] = round(heard_s / result["audio_s"], 3)
    result["seconds_per_audio_hour"] = round(heard_s * 3600 / result["audio_s"], 1)
    result["model_over_decode"] = round(result["transcribe_s"] / max(result["decode_s"], 1e-9), 1)
    return result


def first_call(model: Path, device: str, video: Path) -> dict[str, Any]:
    """describe_video's first call on the video, without and with hearing (the vision model a stand-in)."""
    from llava_video_mcp.tools.answer import Hearing, VideoQA
    from llava_video_mcp.tools.backends import LazySpeech, Ready, SpeechConfig
    from llava_video_mcp.tools.backends.fake import FakeBackend
    from llava_video_mcp.tools.frames import media_duration
    from llava_video_mcp.tools.media import VideoFetcher

    _first_temperature_only()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache:
        fetcher = VideoFetcher(Path(cache), inspect=media_duration)
        hearing = Hearing(LazySpeech(SpeechConfig(model=str(model), device=device)))
        for name, hears in [("without_hearing_s", Hearing()), ("with_hearing_s", hearing), ("second_call_s", hearing)]:
            qa = VideoQA(fetcher, Ready(FakeBackend()), hearing=hears)
            started = time.perf_counter()
            qa.describe(str(video), "What is said?", num_frames=8)
            result[name] = round(time.perf_counter() - started, 2)
    result["added_by_hearing_s"] = round(result["with_hearing_s"] - result["without_hearing_s"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=128, help="tokens a block may say at most (random weights)")
    args = parser.parse_args()
    from llava_video_mcp.tools.backends.devices import pick_device

    device = pick_device(args.device)
    model = ensure_model(device, args.tokens)
    video = ensure_video(args.minutes)
    heard = transcribe(model, device, video)
    call = first_call(model, device, video)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(device),
        "model": model.name.rsplit("-random", 1)[0] + " (full-size architecture, random weights)",
        "method": f"at most {args.tokens} tokens a block, first temperature only; {args.minutes} min of noise",
        "transcribe": heard,
        "first_call": call,
    }
    print(f"{'audio':>10} {'decode':>8} {'model':>8} {'RTF':>6} {'s/audio h':>10} {'peak RSS':>9}")
    print(
        f"{heard['audio_s']:>9.0f}s {heard['decode_s']:>7.1f}s {heard['transcribe_s']:>7.1f}s "
        f"{heard['real_time_factor']:>6.3f} {heard['seconds_per_audio_hour']:>10.0f} {heard['peak_rss_mb']:>7d}MB"
    )
    print(
        f"first describe: {call['without_hearing_s']} s without hearing, {call['with_hearing_s']} s with "
        f"(+{call['added_by_hearing_s']} s); a second call {call['second_call_s']} s (the transcript is kept)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"speech-{device}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
