"""On-screen text benchmark: ours (rapidocr's PP-OCRv6 small, and the reading that skips unchanged frames) beside
Tesseract (the `tesseract` program, every frame read, as peers do), on the same frames, in the same run.

Five kinds of scene, drawn with Pillow's bundled font (tests/test_ocr.py's renderers), each a clip of --frames
frames at a frame a second, all at 1080p, 720p and 480p through one real H.264 encode each (libx264's defaults):

    slide     a title and three bullets on white
    ide       a dark IDE's terminal: monospace commands, one of 89 characters
    lower3rd  a caption on a translucent bar over a panning harbour whose posts run into the bar (changes every frame)
    sign      a road sign seen in perspective over the harbour
    table     a web table, 14 px at 720p (21 px at 1080p, 9 px at 480p: the same page recorded at each size)

For each engine and frame: word recall (the truth's words found, as a multiset) and CER (edit distance of the
normalised text, lines top to bottom, over the truth's length), and the seconds spent on the clip. Ours reads a
frame only when it changed since the last one read (tools/backends/ocr/reading.py) and shows the last reading
otherwise; its figures are over every frame, reread or not. Seconds per minute of video assume a frame a second.
Both engines use one thread. Each engine runs in a child process of its own, for a clean peak RSS (Tesseract's is
its program's, the largest of its runs).

Prints a table and writes bench/results/ocr-cpu.json with the date and machine.

    apt-get install -y tesseract-ocr && .venv/bin/python bench/ocr.py [--frames 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.model import machine, own_peak_rss_mb  # noqa: E402
from tests.test_ocr import caption, font, slide, table, terminal, texture, through_h264  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIZES = {"1080p": (1920, 1080), "720p": (1280, 720), "480p": (854, 480)}
SIGN = ["Harbour Road", "City Centre 5 km", "Ferry Terminal"]


def _perspective(size: tuple[int, int], corners: list[tuple[float, float]]) -> list[float]:
    """PIL's coefficients mapping the output quadrilateral `corners` back onto a `size` rectangle."""
    width, height = size
    source = [(0, 0), (width, 0), (width, height), (0, height)]
    rows = []
    for (x, y), (u, v) in zip(corners, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    solved = np.linalg.solve(np.array(rows, dtype=float), np.array([c for point in source for c in point], float))
    return [float(value) for value in solved]


def sign(width: int, height: int) -> tuple[Image.Image, list[str]]:
    scale = height / 720
    board = Image.new("RGB", (int(520 * scale), int(260 * scale)), (0, 110, 60))
    draw = ImageDraw.Draw(board)
    draw.rectangle(
        (6 * scale, 6 * scale, 514 * scale, 254 * scale), outline=(255, 255, 255), width=max(2, int(4 * scale))
    )
    for index, line in enumerate(SIGN):
        draw.text((30 * scale, (28 + index * 76) * scale), line, font=font(46 * scale), fill=(255, 255, 255))
    corners = [(700, 120), (1150, 190), (1140, 440), (690, 420)]
    corners = [(x * scale, y * scale) for x, y in corners]
    warped = board.transform((width, height), Image.Transform.PERSPECTIVE, _perspective(board.size, corners))
    mask = Image.new("L", board.size, 255).transform(
        (width, height), Image.Transform.PERSPECTIVE, _perspective(board.size, corners)
    )
    image = texture(width, height, seed=3)
    image.paste(warped, (0, 0), mask)
    return image, SIGN


def clips(width: int, height: int, frames: int) -> dict[str, list[tuple[Image.Image, list[str]]]]:
    pan = max(1, width // 40)
    return {
        "slide": [slide(width, height)] * frames,
        "ide": [terminal(width, height)] * frames,
        "lower3rd": [caption(width, height, shift=i * pan, bar_alpha=200, posts_to=1.0) for i in range(frames)],
        "sign": [sign(width, height)] * frames,
        "table": [table(width, height)] * frames,
    }


def _normalised(text: str) -> str:
    from llava_video_mcp.tools.backends.ocr.reading import normalised

    return normalised(text)


def cer(truth: str, read: str) -> float:
    """Levenshtein distance of the normalised texts over the truth's length."""
    a, b = _normalised(truth), _normalised(read)
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other)))
        previous = current
    return previous[-1] / max(len(a), 1)


def recall(truth: list[str], read: list[str]) -> float:
    from tests.test_ocr import word_recall

    return word_recall(truth, read)


def run_engine(name: str, frames: int, queue: Any) -> None:
    """In a child: every resolution's clips read by one engine; the figures put on `queue`."""
    from llava_video_mcp.tools.backends.ocr import ChangeGate, OcrOptions, load_engine, merge_lines, read_frames

    engine = load_engine(name, OcrOptions(threads=1))
    assert engine is not None
    engine.read(Image.new("RGB", (64, 64), (255, 255, 255)))  # brought up before the clock starts
    rows = []
    for resolution, (width, height) in SIZES.items():
        scenes = clips(width, height, frames)
        decoded = through_h264([image for clip in scenes.values() for image, _ in clip], fps=1)
        for index, (scene, clip) in enumerate(scenes.items()):
            pictures = decoded[index * frames : (index + 1) * frames]
            timed = [(float(i), picture) for i, picture in enumerate(pictures)]
            started = time.perf_counter()
            gate = ChangeGate() if name == "rapidocr" else None
            readings = list(read_frames(engine, timed, gate))
            seconds = time.perf_counter() - started
            recalls, cers = [], []
            for reading, (_, truth) in zip(readings, clip, strict=True):
                texts = [line.text for line in reading.lines]
                recalls.append(recall(truth, texts))
                cers.append(cer(" ".join(truth), " ".join(texts)))
            rows.append(
                {
                    "resolution": resolution,
                    "scene": scene,
                    "frames": len(readings),
                    "frames_read": sum(reading.read for reading in readings),
                    "word_recall": round(float(np.mean(recalls)), 3),
                    "cer": round(float(np.mean(cers)), 3),
                    "s_per_frame": round(seconds / len(readings), 3),
                    "s_per_video_minute": round(60 * seconds / len(readings), 1),
                    "timed_lines": len(merge_lines(readings)),
                    "lines_sample": [line.text for line in readings[-1].lines][:6],
                }
            )
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    queue.put({"engine": name, "rows": rows, "peak_rss_mb": own_peak_rss_mb(), "program_peak_rss_mb": round(children)})


def run_track(seconds_a_scene: int, queue: Any) -> None:
    """In a child: the whole on-screen text track (frames one a second at the video's size, read where changed,
    lines merged) over a 720p H.264 video of the five scenes, and what reading adds to a first describe_video of 8
    frames (the model a stand-in), and to a second."""
    import tempfile
    from fractions import Fraction

    import av

    from llava_video_mcp.tools.answer import TranscriptOptions, VideoQA
    from llava_video_mcp.tools.backends import Ready
    from llava_video_mcp.tools.backends.fake import FakeBackend
    from llava_video_mcp.tools.backends.ocr import OcrOptions, load_engine
    from llava_video_mcp.tools.frames import media_duration
    from llava_video_mcp.tools.media import VideoFetcher
    from llava_video_mcp.tools.tracks import SubtitlesTrack, Tracks
    from llava_video_mcp.tools.tracks.on_screen import OnScreenTrack

    width, height = SIZES["720p"]
    scenes = clips(width, height, seconds_a_scene)
    folder = Path(tempfile.mkdtemp(prefix="ocr-bench-"))
    video = folder / "scenes.mp4"
    with av.open(str(video), mode="w") as container:
        stream = container.add_stream("libx264", rate=2)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        index = 0
        for clip in scenes.values():
            for image, _ in clip:
                for _ in range(2):  # two frames a second
                    frame = av.VideoFrame.from_image(image.convert("RGB"))
                    frame.pts, frame.time_base = index, Fraction(1, 2)
                    index += 1
                    for packet in stream.encode(frame):
                        container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    length = float(len(scenes) * seconds_a_scene)
    results: dict[str, Any] = {}
    for reading in (False, True):
        engine = load_engine("rapidocr", OcrOptions(threads=1))
        tracks = Tracks([SubtitlesTrack(), OnScreenTrack(engine)])
        qa = VideoQA(VideoFetcher(folder / f"cache-{reading}", inspect=media_duration), Ready(FakeBackend()),
                     tracks=tracks)  # fmt: skip
        options = TranscriptOptions(on_screen_text=reading)
        started = time.perf_counter()
        first = qa.describe(str(video), "What is shown?", num_frames=8, transcript=options)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        qa.describe(str(video), "What is shown?", num_frames=8, transcript=options)
        results["reading" if reading else "not_reading"] = {
            "first_call_s": round(first_s, 2), "second_call_s": round(time.perf_counter() - started, 2)
        }  # fmt: skip
        if reading:
            lines = first.videos[0].on_screen_text or []
            per_scene = {}
            for number, (scene, clip) in enumerate(scenes.items()):
                start, end = number * seconds_a_scene, (number + 1) * seconds_a_scene
                shown = [line.text for line in lines if start <= line.start_s < end]
                per_scene[scene] = round(recall(clip[0][1], shown), 3)
            results["word_recall_by_scene"] = per_scene
            results["timed_lines"] = len(lines)
            results["read_s"] = first.timings.read_s
            results["s_per_video_minute"] = round(60 * (first.timings.read_s or 0.0) / length, 1)
    results["added_to_first_call_s"] = round(
        results["reading"]["first_call_s"] - results["not_reading"]["first_call_s"], 2
    )
    results["video"] = f"720p H.264, {len(scenes)} scenes of {seconds_a_scene} s"
    results["peak_rss_mb"] = own_peak_rss_mb()
    queue.put(results)


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "word_recall": round(float(np.mean([row["word_recall"] for row in rows])), 3),
        "cer": round(float(np.mean([row["cer"] for row in rows])), 3),
        "s_per_frame": round(float(np.mean([row["s_per_frame"] for row in rows])), 3),
        "s_per_video_minute": round(float(np.mean([row["s_per_video_minute"] for row in rows])), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3, help="frames a scene (a frame a second)")
    args = parser.parse_args()
    engines = ["rapidocr"]
    notes = []
    if shutil.which("tesseract") is None:
        notes.append("Tesseract is NOT installed here (apt-get install tesseract-ocr): only ours was measured.")
        print(notes[-1], file=sys.stderr)
    else:
        engines.append("tesseract")
    context = multiprocessing.get_context("spawn")
    results = {}
    for name in engines:
        queue = context.Queue()
        child = context.Process(target=run_engine, args=(name, args.frames, queue))
        child.start()
        results[name] = queue.get(timeout=3600)
        child.join(timeout=60)
    queue = context.Queue()
    child = context.Process(target=run_track, args=(8, queue))
    child.start()
    track = queue.get(timeout=3600)
    child.join(timeout=60)
    print(f"the whole track: {track}")
    print(f"{'engine':10} {'res':6} {'scene':9} {'read':>5} {'recall':>7} {'CER':>6} {'s/frame':>8} {'s/min':>7}")
    for name, result in results.items():
        for row in result["rows"]:
            print(
                f"{name:10} {row['resolution']:6} {row['scene']:9} {row['frames_read']:>2}/{row['frames']:<2} "
                f"{row['word_recall']:7.3f} {row['cer']:6.3f} {row['s_per_frame']:8.3f} "
                f"{row['s_per_video_minute']:7.1f}"
            )
        result["summary"] = summary(result["rows"])
        result["summary_by_resolution"] = {
            resolution: summary([row for row in result["rows"] if row["resolution"] == resolution])
            for resolution in SIZES
        }
        print(
            f"{name}: {result['summary']}, peak RSS {result['peak_rss_mb']} MB "
            f"(program {result['program_peak_rss_mb']} MB)"
        )
    from importlib.metadata import version

    tesseract_version = None
    if "tesseract" in results:
        import subprocess

        said = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, check=False)
        tesseract_version = (said.stdout or said.stderr).splitlines()[0]
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine("cpu"),
        "rapidocr": version("rapidocr"),
        "tesseract": tesseract_version,
        "frames_per_scene": args.frames,
        "threads": 1,
        "notes": [
            *notes,
            "ours: rapidocr PP-OCRv6 small, cls off, confidence floor 0.8, frames read only when changed; "
            "tesseract: every frame, default page segmentation, floor 0.6; s_per_video_minute at a frame a second",
            "peak_rss_mb is the engine's bench child, which also holds the clips' decoded frames (the tesseract "
            "child's, which runs no model in process, is that baseline); program_peak_rss_mb is RUSAGE_CHILDREN, "
            "which Linux carries across fork and exec, so it is at most the child's own peak, not Tesseract's",
        ],
        "engines": results,
        "track": track,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ocr-cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({name: result["summary"] for name, result in results.items()}))


if __name__ == "__main__":
    main()
