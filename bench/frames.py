"""Frame sampling benchmark: the tutorial's sampler, a sequential PyAV decode, the GOP floor, and ours.

Generates its own videos (cached in bench/.media), then for 8 and 32 frames measures, in the same run:

- seed:       the tutorial's method: OpenCV decodes every frame, converts each to PIL, keeps every k-th
- sequential: PyAV decoding from the start up to the last chosen frame (`strategy="sequential"`)
- floor:      decoding just the groups of pictures that hold the chosen frames (every frame in them up to the last
              chosen one), no conversion, no index
- ours:       `tools.frames.sample_frames`, cold (opening, indexing, seeking, decoding, scaling). It skips the
              non-reference frames in a group that it does not want, so it can beat the floor.

Prints a table and a final JSON line; writes bench/results/frames.json with the machine it ran on.

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/frames.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The sampler's own index and choice of frames (internal modules), for the floor it is measured against.
from bench.model import own_peak_rss_mb  # noqa: E402
from llava_video_mcp.tools.frames import _index, _plan, sample_frames  # noqa: E402

MEDIA = ROOT / "bench" / ".media"
RESULTS = ROOT / "bench" / "results" / "frames.json"


@dataclass(frozen=True)
class VideoSpec:
    name: str
    codec: str
    width: int
    height: int
    seconds: float
    fps: int
    gop: int
    bit_rate: int
    vfr: bool = False

    @property
    def path(self) -> Path:
        suffix = {"libvpx-vp9": ".webm", "libsvtav1": ".mkv"}.get(self.codec, ".mp4")
        return MEDIA / f"{self.name}{suffix}"


VIDEOS = [
    VideoSpec("h264_1080p_60s", "libx264", 1920, 1080, 60, 30, 240, 6_000_000),
    VideoSpec("h264_720p_60s", "libx264", 1280, 720, 60, 30, 240, 3_000_000),
    VideoSpec("h264_480p_60s", "libx264", 854, 480, 60, 30, 240, 1_500_000),
    VideoSpec("h264_480p_10min", "libx264", 854, 480, 600, 30, 240, 1_500_000),
    VideoSpec("h264_720p_vfr_60s", "libx264", 1280, 720, 60, 30, 240, 3_000_000, vfr=True),
    VideoSpec("vp9_720p_30s", "libvpx-vp9", 1280, 720, 30, 30, 240, 2_000_000),
    VideoSpec("av1_480p_30s", "libsvtav1", 854, 480, 30, 30, 240, 1_000_000),
]


def make_video(spec: VideoSpec) -> None:
    """Moving textured content at a realistic bit rate, so decoding costs what real footage costs."""
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    partial = spec.path.with_suffix(".partial" + spec.path.suffix)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (spec.height // 8 + 2, spec.width // 8 + 2, 3), dtype=np.uint8)
    texture = np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))
    count = round(spec.seconds * spec.fps)
    time_base = Fraction(1, 1000) if spec.vfr else Fraction(1, spec.fps)
    with av.open(str(partial), mode="w", format="mp4" if spec.path.suffix == ".mp4" else None) as container:
        stream = container.add_stream(spec.codec, rate=spec.fps)
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = spec.bit_rate
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = spec.gop
        options = {"g": str(spec.gop), "keyint_min": str(spec.gop)}
        if spec.codec == "libx264":
            options |= {"preset": "veryfast", "bf": "3", "sc_threshold": "0"}
        elif spec.codec == "libvpx-vp9":
            options |= {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
        elif spec.codec == "libsvtav1":
            options |= {"preset": "12"}
        stream.options = options
        t = 0.0
        for i in range(count):
            dy, dx = (i * 3) % 8, (i * 5) % 8
            image = np.ascontiguousarray(texture[dy : dy + spec.height, dx : dx + spec.width])
            x = (i * 17) % max(spec.width - 64, 1)
            image[spec.height // 3 : spec.height // 3 + 64, x : x + 64] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
            t += (1 / spec.fps) * (0.5 if (i // 15) % 2 else 1.5) if spec.vfr else 1 / spec.fps
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(spec.path)


def seed_method(path: Path, num_frames: int) -> int:
    """The tutorial's sampler, as written there (decode and convert every frame, keep every k-th)."""
    import cv2
    from PIL import Image

    video = cv2.VideoCapture(str(path))
    total_frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    interval = max(total_frames // num_frames, 1)
    kept = []
    for i in range(total_frames):
        ret, frame = video.read()
        if not ret:
            continue
        pil_img = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if i % interval == 0:
            kept.append(pil_img)
    video.release()
    return len(kept[:num_frames])


def floor_method(path: Path, plan: list[tuple[int, set[int]]]) -> int:
    """Decode only the GOPs holding the chosen frames (plan: keyframe pts and wanted pts), with no conversion."""
    decoded = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for key_pts, wanted in plan:
            remaining = set(wanted)
            last = max(remaining)
            container.seek(key_pts, stream=stream)
            for frame in container.decode(stream):
                decoded += 1
                remaining.discard(frame.pts)
                if not remaining or (frame.pts is not None and frame.pts >= last):
                    break
    return decoded


def gop_plan(path: Path, num_frames: int) -> list[tuple[int, set[int]]]:
    """The groups the sampler would decode, computed with its own index and choice of frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        index = _index.read_index(container, stream)
        assert index is not None
        info = _index.stream_info(stream, index)
        time_base = Fraction(stream.time_base)
    first = min(index.pts)
    targets = [first + round(t / time_base) for t in _plan.uniform_targets(0.0, info.duration_s, num_frames)]
    chosen = _plan.nearest_pts(index.sorted_pts(), targets)
    groups = _index.gop_groups(index, chosen)
    return [(index.pts[position], groups[position]) for position in sorted(groups)]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def timed_pair(a: Callable[[], Any], b: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median times of a and b run alternately, so drifts in machine load hit both alike."""
    times_a, times_b, result = [], [], None
    for _ in range(repeats):
        started = time.perf_counter()
        a()
        times_a.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = b()
        times_b.append(time.perf_counter() - started)
    return statistics.median(times_a), statistics.median(times_b), result


def _peak_rss_child(path: str, num_frames: int, queue: Any) -> None:
    sample_frames(Path(path), num_frames)
    queue.put(own_peak_rss_mb())


def peak_rss_mb(path: Path, num_frames: int) -> float:
    """Peak RSS of a fresh process that imports the sampler and samples once (MB)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_peak_rss_child, args=(str(path), num_frames, queue))
    process.start()
    value = float(queue.get(timeout=600))
    process.join()
    return value


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyav": av.__version__,
        "ffmpeg": av.library_versions.get("libavcodec"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per fast method (median taken)")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--videos", nargs="+", default=[v.name for v in VIDEOS])
    parser.add_argument("--prepare", action="store_true", help="only generate the videos")
    args = parser.parse_args()

    specs = [v for v in VIDEOS if v.name in args.videos]
    for spec in specs:
        if not spec.path.exists():
            started = time.perf_counter()
            make_video(spec)
            print(f"made {spec.path.name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.prepare:
        return

    rows = []
    header = f"{'video':<20}{'n':>4}{'seed s':>9}{'seq s':>8}{'floor s':>9}{'ours s':>8}{'seed/ours':>10}"
    header += f"{'ours/floor':>11}{'decoded':>9}{'rss MB':>8}"
    print(header)
    for spec in specs:
        for n in args.frames:
            plan = gop_plan(spec.path, n)
            seed_s, seed_kept = timed(lambda p=spec.path, n=n: seed_method(p, n), 1)
            seq_s, _ = timed(lambda p=spec.path, n=n: sample_frames(p, n, strategy="sequential"), 1)
            floor_s, ours_s, sampled = timed_pair(
                lambda p=spec.path, plan=plan: floor_method(p, plan),
                lambda p=spec.path, n=n: sample_frames(p, n),
                args.repeats,
            )
            rss = peak_rss_mb(spec.path, n)
            # OpenCV's own FFmpeg may lack a decoder (AV1 here): the seed then returns nothing, and has no time.
            seed_ok = seed_kept > 0
            row = {
                "video": spec.name,
                "frames": n,
                "seed_s": round(seed_s, 3) if seed_ok else None,
                "sequential_s": round(seq_s, 3),
                "floor_s": round(floor_s, 3),
                "ours_s": round(ours_s, 3),
                "seed_over_ours": round(seed_s / ours_s, 2) if seed_ok else None,
                "ours_over_floor": round(ours_s / floor_s, 3),
                "frames_decoded": sampled.frames_decoded,
                "peak_rss_mb": round(rss, 1),
            }
            rows.append(row)
            seed_text = f"{seed_s:>9.2f}" if seed_ok else f"{'fails':>9}"
            ratio_text = f"{row['seed_over_ours']:>10.1f}" if seed_ok else f"{'-':>10}"
            print(
                f"{spec.name:<20}{n:>4}{seed_text}{seq_s:>8.2f}{floor_s:>9.3f}{ours_s:>8.3f}"
                f"{ratio_text}{row['ours_over_floor']:>11.2f}{sampled.frames_decoded:>9}{rss:>8.0f}",
                flush=True,
            )
    write_results(rows, args.repeats)
    print(json.dumps({"frames_benchmark": rows}))


def write_results(rows: list[dict[str, Any]], repeats: int) -> None:
    """Record the rows with the machine; rows of videos not measured in this run are kept from the last one."""
    measured = {row["video"] for row in rows}
    kept: list[dict[str, Any]] = []
    if RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        if previous.get("machine") == json.loads(json.dumps(machine())):
            kept = [row for row in previous["results"] if row["video"] not in measured]
    order = [v.name for v in VIDEOS]
    merged = sorted(kept + rows, key=lambda row: (order.index(row["video"]), row["frames"]))
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "repeats": repeats, "results": merged}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
