"""Scene detection benchmark: what finding the cuts of a video costs, against the naive method, in the same run.

Generates its videos (cached in bench/.media: H.264 at 30 fps, a fixed GOP of 8 s, textured moving content at
realistic bit rates, one minute each at 480p, 720p and 1080p, and the 60-minute 480p video of bench/long.py), then
for each, in a child process of its own (for a clean peak RSS):

- naive: every frame decoded with PyAV and converted to a full-size RGB array (what a frame-difference pass
  written the obvious way does);
- ours: `tools.frames.detect_scenes`, every frame decoded and compared as a 64x36 grey thumbnail made by the
  decoder's scaler.

Prints seconds per minute of video, the speed-up over the naive pass, times real time, and the peak RSS of each;
writes bench/results/scenes.json with the machine it ran on.

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/scenes.py [--skip-long]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.frames import VideoSpec, make_video  # noqa: E402
from bench.long import LONG  # noqa: E402
from bench.model import machine  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scenes.json"
MINUTE = [
    VideoSpec("h264_480p_1min_gop8", "libx264", 854, 480, 60, 30, 240, 1_500_000),
    VideoSpec("h264_720p_1min_gop8", "libx264", 1280, 720, 60, 30, 240, 3_000_000),
    VideoSpec("h264_1080p_1min_gop8", "libx264", 1920, 1080, 60, 30, 240, 6_000_000),
]


def ensure(spec: VideoSpec) -> Path:
    if not spec.path.exists():
        print(f"encoding {spec.path.name} (once) ...", flush=True)
        make_video(spec)
    return spec.path


def _naive(path: str) -> int:
    import av

    frames = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            frames += 1
    return frames


def _ours(path: str) -> int:
    from llava_video_mcp.tools.frames import detect_scenes

    return len(detect_scenes(Path(path)))


def _child(method: str, path: str, queue: Any) -> None:
    started = time.perf_counter()
    count = _naive(path) if method == "naive" else _ours(path)
    seconds = time.perf_counter() - started
    queue.put({"s": round(seconds, 2), "count": count,
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})  # fmt: skip


def measured(method: str, path: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(method, str(path), queue))
    process.start()
    result: dict[str, Any] = queue.get(timeout=7200)
    process.join()
    return result


def compare(spec: VideoSpec) -> dict[str, Any]:
    path = ensure(spec)
    naive, ours = measured("naive", path), measured("ours", path)
    minutes = spec.seconds / 60
    return {
        "video": spec.name,
        "minutes": minutes,
        "naive_s_per_min": round(naive["s"] / minutes, 2),
        "ours_s_per_min": round(ours["s"] / minutes, 2),
        "speedup": round(naive["s"] / max(ours["s"], 1e-9), 2),
        "ours_x_real_time": round(spec.seconds / max(ours["s"], 1e-9), 1),
        "naive_peak_rss_mb": naive["peak_rss_mb"],
        "ours_peak_rss_mb": ours["peak_rss_mb"],
        "cuts": ours["count"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-long", action="store_true", help="only the one-minute videos")
    args = parser.parse_args()
    specs = [*MINUTE, *([] if args.skip_long else [LONG])]
    rows = [compare(spec) for spec in specs]
    header = ("video", "naive s/min", "ours s/min", "speed-up", "x real time", "RSS naive/ours")
    print(f"{header[0]:<24} {header[1]:>12} {header[2]:>11} {header[3]:>9} {header[4]:>12} {header[5]:>16}")
    for row in rows:
        print(
            f"{row['video']:<24} {row['naive_s_per_min']:>12} {row['ours_s_per_min']:>11} {row['speedup']:>8}x "
            f"{row['ours_x_real_time']:>11}x {row['naive_peak_rss_mb']:>8}/{row['ours_peak_rss_mb']} MB"
        )
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine("cpu"), "results": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
