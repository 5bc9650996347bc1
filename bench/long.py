"""Long-video benchmark: planning that does not grow with the video, and watching a long video in full.

Generates its videos (cached in bench/.media: 480p H.264 at 30 fps, 10 and 60 minutes, GOP of 8 s, B-frames), then
in one run:

1. 8 exact frames of the 60-minute video (108,000 frames), median of 3, each sampler on the same targets:
   - ours: `tools.frames.sample_frames`, planning from the container's own index and the few GOPs around each
     target (what the server runs);
   - ours, full demux: the same sampler forced to demux every packet first (what it did before);
   - torchcodec, exact mode and approximate mode (`get_frames_played_at`), when torchcodec is installed. PyPI's
     torchcodec wheel needs a CUDA build of torch; with the CPU build, build it from source (`pip install
     pybind11`, FFmpeg's -dev packages, then in a torchcodec checkout `I_CONFIRM_THIS_IS_NOT_A_LICENSE_VIOLATION=1
     pip install . --no-build-isolation`). It decodes to full-size tensors; ours to 384 px images, as the model
     needs.
2. `coverage="full"` without the model, 60 minutes against 10: windows planned and every window's frames decoded
   (8 frames a window), each in its own process for a clean peak RSS. Memory must stay flat in the length.
3. The model's time on the full-size random llava-interleave-0.5b (bench/model.py's builder): the map step (8 frames,
   192 tokens of notes) timed on --windows-timed windows, extrapolated to all windows of the 60-minute video
   (windows x the mean, the method stated in the output); then the reduce step of a question timed for real on notes
   of that length, which is all a second question costs (the notes are kept).

Prints a table and a final JSON line; writes bench/results/long-<device>.json with the machine it ran on.

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/long.py [--device cuda] [--skip-decode]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.frames import VideoSpec, make_video  # noqa: E402
from bench.model import build_model, machine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LONG = VideoSpec("h264_480p_60min", "libx264", 854, 480, 3600, 30, 240, 1_500_000)
SHORT = VideoSpec("h264_480p_10min", "libx264", 854, 480, 600, 30, 240, 1_500_000)


def ensure(spec: VideoSpec) -> Path:
    if not spec.path.exists():
        print(f"encoding {spec.path.name} (once; minutes) ...", flush=True)
        make_video(spec)
    return spec.path


def timed(fn: Any, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def exact_frames(path: Path, count: int = 8) -> dict[str, Any]:
    from llava_video_mcp.tools.frames import _index, _plan, sample_frames

    sampled = sample_frames(path, count)
    targets = _plan.uniform_targets(0.0, sampled.info.duration_s, count)
    result: dict[str, Any] = {"frames": count, "video_frames": sampled.info.frame_count}
    result["ours_s"] = round(timed(lambda: sample_frames(path, count)), 3)
    container_index = _index.ContainerIndex.read
    try:
        _index.ContainerIndex.read = classmethod(lambda cls, *args: None)  # type: ignore[assignment]
        result["ours_full_demux_s"] = round(timed(lambda: sample_frames(path, count)), 3)
    finally:
        _index.ContainerIndex.read = container_index  # type: ignore[method-assign]
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as exc:  # not installed, or its FFmpeg libraries are missing
        result["torchcodec"] = f"not available: {str(exc).splitlines()[0][:120]}"
        return result
    for mode in ("exact", "approximate"):
        result[f"torchcodec_{mode}_s"] = round(
            timed(lambda mode=mode: VideoDecoder(str(path), seek_mode=mode).get_frames_played_at(seconds=targets)), 3
        )
    result["ours_over_torchcodec_exact"] = round(result["ours_s"] / result["torchcodec_exact_s"], 2)
    return result


def _decode_all_windows(path: str, window_s: float, per_window: int, queue: Any) -> None:
    from llava_video_mcp.tools.answer.windows import plan_windows
    from llava_video_mcp.tools.frames import SamplingPlan, outline, sample_with_plan

    started = time.perf_counter()
    info, keyframes = outline(Path(path))
    windows = plan_windows(0.0, info.duration_s, window_s, keyframes)
    planned = time.perf_counter() - started
    frames = 0
    for window in windows:
        frames += len(sample_with_plan(Path(path), SamplingPlan(per_window, window.start_s, window.end_s)).frames)
    status = Path("/proc/self/status").read_text()
    queue.put(
        {
            "windows": len(windows),
            "frames": frames,
            "plan_s": round(planned, 3),
            "decode_s": round(time.perf_counter() - started, 3),
            "peak_rss_mb": round(int(status.split("VmHWM:")[1].split()[0]) / 1024),
        }
    )


def decode_windows(path: Path, window_s: float = 60.0, per_window: int = 8) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_decode_all_windows, args=(str(path), window_s, per_window, queue))
    process.start()
    result: dict[str, Any] = queue.get(timeout=3600)
    process.join()
    return result


def model_time(device: str, windows_timed: int, windows_total: int) -> dict[str, Any]:
    """Map windows timed on the full-size random model, extrapolated; the reduce step of a question, timed."""
    import numpy as np
    from PIL import Image

    from llava_video_mcp.tools.answer.windows import NOTES_TOKENS, REDUCE_CHARS, groups_within
    from llava_video_mcp.tools.backends import Prompt
    from llava_video_mcp.tools.backends.transformers import TransformersBackend
    from llava_video_mcp.tools.prompt import MAP_INSTRUCTION, TimedText, clock, condense_prompt, notes_prompt

    model, processor, prefill = build_model("auto", device)
    backend = TransformersBackend(model, processor, "random-llava-interleave-0.5b", device, prefill_dtype=prefill)
    rng = np.random.default_rng(0)
    maps = []
    for number in range(windows_timed):
        images = [Image.fromarray(rng.integers(0, 256, (384, 683, 3), dtype=np.uint8)) for _ in range(8)]
        guide = f"The 8 images are frames from {clock(number * 60)} to {clock(number * 60 + 60)} of a video.\n\n"
        started = time.perf_counter()
        backend.generate(Prompt(images, guide + MAP_INSTRUCTION, len(guide)), NOTES_TOKENS)
        maps.append(time.perf_counter() - started)
    per_window = statistics.mean(maps)
    # A second question reads only the notes: as many as the video has windows, of the length the map writes.
    note = "At 00:12 a person walks to the desk and opens a laptop; the screen shows a chart. " * 9
    notes = [TimedText(i * 60, i * 60 + 60, note) for i in range(windows_total)]
    started = time.perf_counter()
    condensed = []
    groups = groups_within(notes, REDUCE_CHARS)
    for group in groups:
        text = condense_prompt(group, str)
        generation = backend.generate(Prompt([], text.text, text.question_start), NOTES_TOKENS)
        condensed.append(TimedText(group[0].start_s, group[-1].end_s, generation.text))
    text = notes_prompt(None, windows_total * 60, condensed, "When is the chart shown?", str)
    backend.generate(Prompt([], text.text, text.question_start), 64)
    reduce_s = time.perf_counter() - started
    return {
        "map_s_per_window": round(per_window, 2),
        "map_windows_timed": windows_timed,
        "map_all_windows_s_extrapolated": round(per_window * windows_total, 1),
        "method": f"mean of {windows_timed} timed map windows x {windows_total} windows",
        "reduce_s": round(reduce_s, 1),
        "reduce_groups": len(groups),
        "first_question_s_estimate": round(per_window * windows_total + reduce_s, 1),
        "second_question_s": round(reduce_s, 1),
    }


def main() -> None:
    from llava_video_mcp.tools.backends.devices import pick_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--windows-timed", type=int, default=2)
    parser.add_argument("--skip-decode", action="store_true", help="only the model's part (e.g. on a GPU machine)")
    parser.add_argument("--skip-model", action="store_true", help="only the frames' part; earlier model figures stay")
    args = parser.parse_args()
    device = pick_device(args.device)
    path = RESULTS / f"long-{device}.json"
    result: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    result |= {"machine": machine(device), "date": time.strftime("%Y-%m-%d")}
    if not args.skip_decode:
        long_video, short_video = ensure(LONG), ensure(SHORT)
        result["exact_8_frames_60min"] = exact_frames(long_video)
        print(f"8 exact frames of 60 min: {json.dumps(result['exact_8_frames_60min'])}", flush=True)
        result["full_coverage_decode"] = {"60min": decode_windows(long_video), "10min": decode_windows(short_video)}
        flat = result["full_coverage_decode"]
        flat["rss_60min_over_10min"] = round(flat["60min"]["peak_rss_mb"] / flat["10min"]["peak_rss_mb"], 2)
        print(f"coverage=full, frames only: {json.dumps(flat)}", flush=True)
    if not args.skip_model:
        result["model"] = model_time(device, args.windows_timed, windows_total=60)
        print(f"model: {json.dumps(result['model'])}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"long_benchmark": result}))


if __name__ == "__main__":
    main()
