"""Remote backend benchmark: the same 8-frame call in process and through an OpenAI-compatible engine.

Builds the full-size llava-interleave-qwen-0.5b architecture with random weights (bench/model.py's builder; bf16,
cached in bench/.models), then in one run:

- in process: `TransformersBackend` on that folder (the server's own runtime, `--dtype auto`): one call, then 4
  calls at once (they take turns: one model, one call at a time).
- remote: `transformers serve` on the same folder on this machine, reached through `RemoteBackend` (the server's
  own remote path: PNG data URLs, streaming): one call, then 4 at once (all in flight together).
- request bytes: PNG (what is sent) against JPEG at quality 90 (what was rejected: it changes answers), for 8 and
  32 frames of a 720p video (frames decoded at 683x384, as the sampler makes them). The frames are synthetic but
  photo-like: a smooth random field with fine noise, which compresses about as camera frames do, unlike flat
  test patterns.

Every call has its own frames (no prefix reuse on either side) and generates exactly --new-tokens tokens (random
weights over a 152,000-token vocabulary practically never produce the end token). Overhead of the remote path =
remote single-call latency - in-process single-call latency; the part spent in this process (PNG encoding, the
request) is shown apart. Writes bench/results/remote-<device>.json with the machine it ran on.

    .venv/bin/pip install -e ".[bench,test]" && .venv/bin/python bench/remote.py [--device cuda]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.model import build_model, machine  # noqa: E402

MODELS = ROOT / "bench" / ".models"
RESULTS = ROOT / "bench" / "results"
QUESTION = "What happens in this video?"


def model_folder() -> Path:
    """The full-size random model saved like a checkpoint (bf16), built once."""
    folder = MODELS / "random-llava-interleave-0.5b"
    if (folder / "config.json").exists():
        return folder
    model, processor, _ = build_model("bf16", "cpu")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def photo_like_frames(count: int, seed: int, width: int = 683, height: int = 384) -> list[Any]:
    """Frames that compress like camera frames: a smooth random field (upsampled) plus fine noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (height // 24, width // 24, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
        noisy = smooth + rng.normal(0, 6, smooth.shape).astype(np.int16)
        frames.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    return frames


def encoded_sizes(count: int) -> dict[str, Any]:
    from llava_video_mcp.tools.backends.remote import png_data_url

    frames = photo_like_frames(count, seed=100)
    started = time.perf_counter()
    urls = [png_data_url(frame) for frame in frames]
    png_s = time.perf_counter() - started
    jpeg = 0
    for frame in frames:
        buffer = io.BytesIO()
        frame.save(buffer, format="JPEG", quality=90)
        jpeg += len(buffer.getvalue())
    png = sum(len(base64.b64decode(url.split(",", 1)[1])) for url in urls)
    body = json.dumps({"messages": [{"role": "user", "content": [{"image_url": {"url": u}} for u in urls]}]})
    return {
        "frames": count,
        "png_bytes": png,
        "jpeg_q90_bytes": jpeg,
        "png_over_jpeg": round(png / jpeg, 2),
        "request_bytes_png": len(body),
        "png_encode_s_per_frame": round(png_s / count, 4),
    }


def one_call(backend: Any, frames: list[Any], new_tokens: int) -> dict[str, Any]:
    from llava_video_mcp.tools.backends import Prompt

    guide = f"The {len(frames)} images are frames of one video, in time order.\n\n"
    first_token: list[float] = []
    started = time.perf_counter()

    def on_progress(fraction: float, message: str) -> None:
        if message.startswith("Generating: ") and not first_token:
            first_token.append(time.perf_counter() - started)

    generation = backend.answer(Prompt(frames, guide + QUESTION, len(guide)), new_tokens, on_progress)
    total = time.perf_counter() - started
    return {
        "total_s": round(total, 3),
        "ttft_s": round(first_token[0], 3) if first_token else None,
        "queue_s": round(generation.queue_s, 3),
        "generated": generation.generated_tokens,
        "prompt_tokens": generation.prompt_tokens,
    }


def at_once(backend: Any, frame_sets: list[list[Any]], new_tokens: int) -> dict[str, Any]:
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()

    def run(frames: list[Any]) -> None:
        result = one_call(backend, frames, new_tokens)
        with lock:
            calls.append(result)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(frames,)) for frames in frame_sets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "calls": len(frame_sets),
        "wall_s": round(wall, 3),
        "sum_of_latencies_s": round(sum(c["total_s"] for c in calls), 3),
        "mean_latency_s": round(sum(c["total_s"] for c in calls) / len(calls), 3),
        "calls_per_minute": round(60 * len(calls) / wall, 2),
        "generated_tokens_per_s": round(sum(c["generated"] for c in calls) / wall, 2),
        "each": calls,
    }


def serve(folder: Path, device: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16", "--device", device]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ | {"HF_HUB_OFFLINE": "1"})


def main() -> None:
    import gc
    import socket

    import torch

    from llava_video_mcp.tools.backends.devices import pick_device
    from llava_video_mcp.tools.backends.remote import RemoteBackend
    from llava_video_mcp.tools.backends.transformers import TransformersBackend

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--calls", type=int, default=4, help="calls at once")
    args = parser.parse_args()
    device = pick_device(args.device)

    sizes = [encoded_sizes(8), encoded_sizes(32)]
    for row in sizes:
        print(
            f"{row['frames']} frames: PNG {row['png_bytes'] / 1e6:.2f} MB, "
            f"JPEG q90 {row['jpeg_q90_bytes'] / 1e6:.2f} MB ({row['png_over_jpeg']}x), "
            f"request {row['request_bytes_png'] / 1e6:.2f} MB, "
            f"PNG encoding {row['png_encode_s_per_frame'] * 1000:.0f} ms/frame",
            flush=True,
        )
    folder = model_folder()
    frame_sets = [photo_like_frames(args.frames, seed=i) for i in range(args.calls + 1)]
    results: dict[str, Any] = {}

    local = TransformersBackend.load(str(folder), device, "auto")
    results["in_process"] = {
        "dtype": local.dtype,
        "single": one_call(local, frame_sets[0], args.new_tokens),
        "at_once": at_once(local, frame_sets[1:], args.new_tokens),
    }
    print(f"in process: {json.dumps(results['in_process'], indent=None)}", flush=True)
    del local
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = MODELS / "serve.log"
    engine = serve(folder, device, port, log)
    try:
        remote = RemoteBackend(f"http://127.0.0.1:{port}/v1", max_concurrency=args.calls, timeout_s=600)
        deadline = time.monotonic() + 600
        while True:
            try:
                remote.connect()
                break
            except Exception:
                if engine.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"transformers serve did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(1)
        # Every call has its own frames, so the engine's prefix cache helps none of them; the single call goes
        # first, cold, as the in-process one did.
        results["remote"] = {
            "engine": "transformers serve, bfloat16",
            "single": one_call(remote, frame_sets[0], args.new_tokens),
            "at_once": at_once(remote, frame_sets[1:], args.new_tokens),
        }
    finally:
        engine.terminate()
        engine.wait(timeout=60)
    print(f"remote: {json.dumps(results['remote'], indent=None)}", flush=True)

    near, far = results["in_process"], results["remote"]
    encode_s = sizes[0]["png_encode_s_per_frame"] * args.frames if args.frames == 8 else None
    summary = {
        "remote_over_in_process_single": round(far["single"]["total_s"] / near["single"]["total_s"], 2),
        "overhead_single_s": round(far["single"]["total_s"] - near["single"]["total_s"], 3),
        "client_encoding_s": round(encode_s, 3) if encode_s is not None else None,
        "at_once_speedup_remote_over_in_process": round(near["at_once"]["wall_s"] / far["at_once"]["wall_s"], 2),
        "remote_at_once_wall_over_sum_of_latencies": round(
            far["at_once"]["wall_s"] / far["at_once"]["sum_of_latencies_s"], 2
        ),
    }
    for key, value in summary.items():
        print(f"{key}: {value}")
    result = {
        "machine": machine(device),
        "date": time.strftime("%Y-%m-%d"),
        "frames": args.frames,
        "new_tokens": args.new_tokens,
        "request_sizes": sizes,
        "results": results,
        "summary": summary,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"remote-{device}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"remote_benchmark": result}))


if __name__ == "__main__":
    main()
