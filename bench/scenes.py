"""Scene detection benchmark: our pass against PySceneDetect (ContentDetector and AdaptiveDetector, defaults), on
the same files, in the same run.

Generates its videos (cached in bench/.media) with the tests' `scene_reel`: H.264 at 30 fps, a fixed GOP of 8 s and
the encoder's scene detection off (no keyframe at any cut), realistic bit rates, 9 textured scenes with film grain
that changes every frame (still, slow pan, a bright object crossing, fast pan, camera shake), 8 hard cuts, then a
fade through black into a tenth scene with a 3-frame white flash in it; 60 s at 480p, 720p and 1080p, and 30 s at
4K. The truth is the 8 cut times; neither the fade nor the flash is a cut.

Beside them, footage of real photographs (scikit-image's data module: NASA's astronaut and rocket, the cat, the
coffee, the Middlebury motorcycle; `pip install scikit-image` for the bench only), filmed as a camera would: a slow
zoom or pan with a hand-held drift, film grain, H.264 at CRF 23, 24 fps, 640x360. Six shots of 4 s, five hard cuts:
two between shots of about the same colours and brightness (the astronaut and the cat; a dark wide shot of the
motorcycle and a dark close-up of it, where only the structure changes). Encoded twice: with x264's defaults (a
keyframe at each cut) and with a fixed GOP of 2 s (`film_gop`: no keyframe at any cut, and a jump in quality at
every keyframe, which is not a cut).

Each detector runs on each file in a child process of its own (a clean peak RSS):
- ours: `tools.frames.detect_scenes` (PyAV decode, area-averaged 64x36 colour thumbnails made by the decoder's
  scaler);
- content, adaptive: PySceneDetect's `detect(path, ContentDetector())` / `AdaptiveDetector()`, its defaults (OpenCV
  decoding, its automatic downscaling).

Reported per file and detector: seconds per minute of video, peak RSS, cuts found (within one frame; ours are
also checked exact to the frame) and false cuts. Prints a table and writes bench/results/scenes.json with the
machine it ran on.

    .venv/bin/pip install -e ".[bench]" scikit-image && .venv/bin/python bench/scenes.py [--sizes 480p,film]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.model import machine, own_peak_rss_mb  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scenes.json"
MEDIA = ROOT / "bench" / ".media"
FPS = 30
DETECTORS = ("ours", "content", "adaptive")


@dataclass(frozen=True)
class Reel:
    name: str
    width: int
    height: int
    seconds: int
    bit_rate: int
    fps: int = FPS

    @property
    def path(self) -> Path:
        return MEDIA / f"reel_{self.name}_{self.seconds}s.mp4"

    @property
    def truth_path(self) -> Path:
        return self.path.with_suffix(".cuts.json")


REELS = {
    "480p": Reel("480p", 854, 480, 60, 1_500_000),
    "720p": Reel("720p", 1280, 720, 60, 3_000_000),
    "1080p": Reel("1080p", 1920, 1080, 60, 6_000_000),
    "4k": Reel("4k", 3840, 2160, 30, 20_000_000),
}


FILM_SHOTS = (
    ("astronaut.png", (0.0, 0.1, 1.0, 0.66), (0.15, 0.15, 0.85, 0.55), 1.0),
    ("chelsea.png", (0.0, 0.0, 0.8, 0.8), (0.2, 0.1, 1.0, 0.9), 1.0),
    ("coffee.png", (0.1, 0.1, 0.9, 0.7), (0.0, 0.0, 1.0, 0.75), 1.0),
    ("rocket.jpg", (0.0, 0.2, 0.6, 0.7), (0.4, 0.2, 1.0, 0.7), 1.0),
    ("motorcycle_left.png", (0.0, 0.0, 1.0, 0.75), (0.05, 0.05, 0.95, 0.7), 0.15),
    ("motorcycle_left.png", (0.45, 0.35, 0.85, 0.65), (0.4, 0.3, 0.8, 0.6), 0.15),
)
"""Each shot: the photo, the part of it seen first and last (left, top, right, bottom as fractions), its grade
(0.15: a night scene)."""


def film_reel(path: Path, *, width: int, height: int, fps: int = 24, shot_s: float = 4.0, crf: int = 23,
              gop: int | None = None, shots: tuple[tuple[str, tuple[float, ...], tuple[float, ...], float], ...]
              = FILM_SHOTS) -> list[float]:  # fmt: skip
    """Real photographs filmed as a camera would (see the module's docstring); returns the cut times."""
    from fractions import Fraction

    import av
    import numpy as np
    import skimage
    from PIL import Image

    from tests.media import encode_all, rgb_frame

    photos = Path(skimage.__file__).parent / "data"
    rng = np.random.default_rng(5)
    count = round(shot_s * fps)

    def pictures() -> Any:
        for number, (name, first, last, grade) in enumerate(shots):
            photo = Image.open(photos / name).convert("RGB")
            drift = np.cumsum(rng.normal(0, 0.0015, (count, 2)), axis=0)  # a hand-held camera
            for j in range(count):
                u = j / (count - 1)
                u = u * u * (3 - 2 * u)  # the camera eases in and out
                box = [a + (b - a) * u for a, b in zip(first, last, strict=True)]
                w = min((box[2] - box[0]) * photo.width, photo.width, photo.height * width / height)
                h = w * height / width
                cx = (box[0] + box[2]) / 2 * photo.width + drift[j, 0] * photo.width
                cy = (box[1] + box[3]) / 2 * photo.height + drift[j, 1] * photo.height
                x = min(max(cx - w / 2, 0), photo.width - w)
                y = min(max(cy - h / 2, 0), photo.height - h)
                seen = photo.resize((width, height), Image.Resampling.BICUBIC, box=(x, y, x + w, y + h))
                grain = rng.normal(0, 4.0, (height, width, 1))
                image = (np.asarray(seen, np.float32) + grain) * grade
                yield rgb_frame(np.clip(image, 0, 255).astype(np.uint8), number * count + j)

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, fps)
        options = {"crf": str(crf), "preset": "veryfast"}
        if gop:
            options |= {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        stream.options = options
        encode_all(container, stream, pictures())
    return [n * count / fps for n in range(1, len(shots))]


FILMS = {
    "film": Reel("film", 640, 360, 24, 0, fps=24),
    "film_gop": Reel("film_gop", 640, 360, 24, 0, fps=24),
}


def ensure(reel: Reel) -> list[float]:
    from tests.media import scene_reel

    if reel.name in FILMS and (not reel.path.exists() or not reel.truth_path.exists()):
        MEDIA.mkdir(parents=True, exist_ok=True)
        partial = reel.path.with_suffix(".partial.mp4")
        cuts = film_reel(
            partial,
            width=reel.width,
            height=reel.height,
            fps=reel.fps,
            gop=2 * reel.fps if reel.name == "film_gop" else None,
        )
        partial.rename(reel.path)
        reel.truth_path.write_text(json.dumps(cuts))
    elif not reel.path.exists() or not reel.truth_path.exists():
        MEDIA.mkdir(parents=True, exist_ok=True)
        print(f"encoding {reel.path.name} (once) ...", flush=True)
        partial = reel.path.with_suffix(".partial.mp4")
        cuts = scene_reel(partial, width=reel.width, height=reel.height, fps=FPS, scene_s=reel.seconds / 10,
                          fade_s=0.5, flash_frames=3, bit_rate=reel.bit_rate)  # fmt: skip
        partial.rename(reel.path)
        reel.truth_path.write_text(json.dumps(cuts))
    return [float(t) for t in json.loads(reel.truth_path.read_text())]


def _cuts(detector: str, path: str) -> list[float]:
    if detector == "ours":
        from llava_video_mcp.tools.frames import detect_scenes

        return [cut.time_s for cut in detect_scenes(Path(path))]
    from scenedetect import AdaptiveDetector, ContentDetector, detect

    scenes = detect(path, ContentDetector() if detector == "content" else AdaptiveDetector())
    return [float(start.seconds) for start, _ in scenes[1:]]


def _child(detector: str, path: str, queue: Any) -> None:
    started = time.perf_counter()
    cuts = _cuts(detector, path)
    seconds = time.perf_counter() - started
    queue.put({"s": seconds, "cuts": cuts, "peak_rss_mb": own_peak_rss_mb()})


def measured(detector: str, path: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(detector, str(path), queue))
    process.start()
    result: dict[str, Any] = queue.get(timeout=3600)
    process.join()
    return result


def scored(found: list[float], truth: list[float], fps: int) -> dict[str, Any]:
    """Cuts found within one frame of a true cut (each true cut matched once), exact ones, and the false ones."""
    unmatched = list(truth)
    hits = exact = 0
    for time_s in found:
        near = min(unmatched, key=lambda t: abs(t - time_s), default=None)
        if near is not None and abs(near - time_s) <= 1.0 / fps + 1e-6:
            unmatched.remove(near)
            hits += 1
            exact += abs(near - time_s) < 1e-6
    return {"found": hits, "exact": exact, "false": len(found) - hits, "of": len(truth)}


def compare(reel: Reel) -> dict[str, Any]:
    truth = ensure(reel)
    row: dict[str, Any] = {"video": reel.path.name, "size": f"{reel.width}x{reel.height}", "seconds": reel.seconds}
    for detector in DETECTORS:
        result = measured(detector, reel.path)
        row[detector] = {
            "s_per_min": round(result["s"] * 60 / reel.seconds, 2),
            "x_real_time": round(reel.seconds / max(result["s"], 1e-9), 1),
            "peak_rss_mb": result["peak_rss_mb"],
            **scored(result["cuts"], truth, reel.fps),
            "cuts_s": [round(t, 3) for t in result["cuts"]],
        }
    every = [d for d in DETECTORS[1:] if row[d]["found"] == len(truth)]
    fastest = min(every, key=lambda d: row[d]["s_per_min"], default=None)
    row["speedup_vs_fastest_peer_finding_every_cut"] = (
        round(row[fastest]["s_per_min"] / max(row["ours"]["s_per_min"], 1e-9), 2) if fastest else None
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    every = REELS | FILMS
    parser.add_argument("--sizes", default=",".join(every), help=f"which videos, of {', '.join(every)}")
    args = parser.parse_args()
    rows = [compare(every[name]) for name in args.sizes.split(",")]
    print(
        f"{'video':<22} {'detector':<9} {'s/min':>7} {'x real':>7} {'RSS MB':>7} {'cuts':>6} {'exact':>6} {'false':>6}"
    )
    for row in rows:
        for detector in DETECTORS:
            r = row[detector]
            print(f"{row['video']:<22} {detector:<9} {r['s_per_min']:>7} {r['x_real_time']:>7} {r['peak_rss_mb']:>7} "
                  f"{r['found']:>3}/{r['of']} {r['exact']:>6} {r['false']:>6}")  # fmt: skip
        print(
            f"{'':<22} ours vs the fastest peer finding every cut: {row['speedup_vs_fastest_peer_finding_every_cut']}x"
        )
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine("cpu"), "results": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
