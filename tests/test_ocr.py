"""On-screen text: the engines' registry and choice, rapidocr with its shipped weights reading frames rendered here
and passed through a real H.264 encode, Tesseract's table, the change gate and the merge of lines over time.

The scenes are drawn with Pillow's bundled font (Aileron, a real TrueType font, in every Pillow from 10.1), so they
need nothing installed beyond pip's; the terminal's monospace text is that font set in fixed cells, as a terminal
sets any font. The renderers are shared with bench/ocr.py."""

from __future__ import annotations

import io
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from llava_video_mcp.tools.backends.ocr import (
    ChangeGate,
    FrameLines,
    OcrEngine,
    OcrLine,
    OcrOptions,
    OnScreenLine,
    RapidOcr,
    engine_choices,
    load_engine,
    merge_lines,
    read_frames,
    resolve_engine,
)
from llava_video_mcp.tools.backends.ocr.rapidocr import DETECTION, checked_weights
from llava_video_mcp.tools.backends.ocr.reading import normalised
from llava_video_mcp.tools.backends.ocr.tesseract import Tesseract, parse_tsv
from llava_video_mcp.tools.errors import ModelError

# ---- scenes: (image, the text it shows, in reading order) ---------------------------------------------------------

SLIDE = [
    "Quarterly Review 2024",
    "Revenue grew 18 percent in Europe",
    "Churn fell to 2.1 percent after onboarding changes",
    "Next steps: hire three engineers by June",
]
TERMINAL = [
    "$ git log --oneline -3",
    "a485a26 OCR engines: rapidocr behind a registry",
    "$ python -m pytest tests/test_ocr.py -q --maxfail=1",
    "collected 24 items; 24 passed in 41.07s",
    "$ grep -rn 'def merge_lines' tools/backends/ocr/reading.py | head -n 20 && echo found it",
    "$ ls -la /var/log/nginx",
]
CAPTION = ["Maria Lopez", "Harbour Master, Port of Leith"]
TABLE_HEADER = ["Name", "Status", "Owner", "Updated"]
TABLE_ROWS = [
    ["billing-api", "Healthy", "Priya", "2024-05-01"],
    ["search-index", "Degraded", "Tomasz", "2024-04-28"],
    ["auth-service", "Healthy", "Amara", "2024-05-02"],
    ["image-resizer", "Failing", "Jonas", "2024-04-30"],
    ["mail-queue", "Healthy", "Keiko", "2024-05-03"],
    ["report-worker", "Paused", "Diego", "2024-04-19"],
]


def font(size: float) -> ImageFont.FreeTypeFont:
    loaded = ImageFont.load_default(size=max(round(size), 6))
    assert isinstance(loaded, ImageFont.FreeTypeFont), "Pillow >= 10.1 bundles a TrueType default font"
    return loaded


def texture(width: int, height: int, shift: int = 0, seed: int = 7, posts_to: float = 1.0) -> Image.Image:
    """Water, sky, pier posts and a boat: the textures that read as letters below the confidence floor."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (height // 8 + 2, width // 8 + 40, 3), dtype=np.uint8)
    base = Image.fromarray(noise).resize((width // 8 * 8 + 320, height + 16), Image.Resampling.BICUBIC)
    base = base.filter(ImageFilter.GaussianBlur(3)).crop((shift, 0, shift + width, height))
    sky = np.linspace([150, 190, 230], [40, 90, 120], height).astype(np.uint8)[:, None, :]
    picture = (np.asarray(base, dtype=np.float32) * 0.35 + sky * 0.65).astype(np.uint8)
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    for index in range(9):  # pier posts, a hull and its mast
        x = (index * width // 9 + 40 - shift) % width
        draw.rectangle((x, height // 2, x + width // 90, height * posts_to), fill=(60, 45, 35))
    hull_y = int(height * 0.55)
    draw.polygon(
        [
            (width * 0.55, hull_y),
            (width * 0.85, hull_y),
            (width * 0.8, hull_y + height // 12),
            (width * 0.58, hull_y + height // 12),
        ],
        fill=(230, 230, 225),
    )
    draw.line((width * 0.7, hull_y, width * 0.7, hull_y - height // 4), fill=(240, 240, 240), width=3)
    return image


def slide(width: int, height: int) -> tuple[Image.Image, list[str]]:
    scale = height / 720
    image = Image.new("RGB", (width, height), (248, 248, 244))
    draw = ImageDraw.Draw(image)
    draw.text((80 * scale, 70 * scale), SLIDE[0], font=font(54 * scale), fill=(20, 40, 90))
    for index, line in enumerate(SLIDE[1:]):
        draw.text((110 * scale, (220 + index * 90) * scale), line, font=font(34 * scale), fill=(30, 30, 30))
    return image, SLIDE


def terminal(width: int, height: int) -> tuple[Image.Image, list[str]]:
    """A dark IDE: a code gutter on the left third, a terminal below, monospace text set in fixed cells."""
    scale = height / 720
    image = Image.new("RGB", (width, height), (30, 31, 36))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 40 * scale), fill=(45, 47, 54))
    size = 13.5 * scale
    cell, face = size * 0.62, font(size)
    for row, line in enumerate(TERMINAL):
        y = (120 + row * 34) * scale
        colour = (120, 220, 140) if line.startswith("$") else (215, 215, 215)
        for column, char in enumerate(line):
            x = 16 * scale + column * cell + (cell - face.getlength(char)) / 2
            draw.text((x, y), char, font=face, fill=colour)
    return image, TERMINAL


def caption(
    width: int, height: int, shift: int = 0, bar_alpha: int = 230, posts_to: float = 0.7
) -> tuple[Image.Image, list[str]]:
    """A lower third over a panning harbour. Where dark pier posts run down into the bar (`posts_to` 1.0), the
    detector loses letters of the word beside them ("Maria" read "Ma"): bench/ocr.py measures that case."""
    scale = height / 720
    image = texture(width, height, shift, posts_to=posts_to)
    bar = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(bar).rectangle((0, 540 * scale, width * 0.62, 660 * scale), fill=(10, 20, 40, bar_alpha))
    image = Image.alpha_composite(image.convert("RGBA"), bar).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.text((60 * scale, 552 * scale), CAPTION[0], font=font(44 * scale), fill=(255, 255, 255))
    draw.text((60 * scale, 608 * scale), CAPTION[1], font=font(30 * scale), fill=(255, 210, 90))
    return image, CAPTION


def table(
    width: int, height: int, size: float = 14.0, rows: list[list[str]] | None = None
) -> tuple[Image.Image, list[str]]:
    """A web dashboard's table at `size` px (at 720p; scaled with the frame)."""
    scale = height / 720
    rows = rows if rows is not None else TABLE_ROWS
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 48 * scale), fill=(36, 41, 47))
    face, bold = font(size * scale), font(size * scale)
    columns = [200, 380, 520, 660]
    lines = []
    for index, cells in enumerate([TABLE_HEADER, *rows]):
        y = (120 + index * 30) * scale
        if index:
            draw.line((190 * scale, y - 8 * scale, 800 * scale, y - 8 * scale), fill=(225, 228, 232))
        for x, cell in zip(columns, cells, strict=True):
            draw.text((x * scale, y), cell, font=bold if not index else face, fill=(36, 41, 47))
        lines.append(" ".join(cells))
    return image, lines


def through_h264(images: list[Image.Image], fps: int = 2) -> list[np.ndarray]:
    """The images encoded as one H.264 video (libx264's defaults: CRF 23, yuv420p) and decoded back."""
    width, height = images[0].size
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def words(text: str) -> list[str]:
    return normalised(text).split()


def word_recall(truth: list[str], read: list[str]) -> float:
    """The share of the truth's words (as a multiset) found among the words read."""
    expected = Counter(w for line in truth for w in words(line))
    found = Counter(w for line in read for w in words(line))
    return sum((expected & found).values()) / max(sum(expected.values()), 1)


# ---- the registry and the choice -------------------------------------------------------------------------------


def test_choices_are_the_registry_case_insensitively() -> None:
    assert engine_choices() == ("auto", "rapidocr", "tesseract", "none")
    assert resolve_engine(" RapidOCR ") == "rapidocr"
    assert resolve_engine("NONE") is None
    assert load_engine("none") is None
    assert resolve_engine("Auto") == "rapidocr", "rapidocr is installed with the server and comes first"
    assert isinstance(load_engine("auto"), RapidOcr)
    with pytest.raises(ModelError, match=r"no OCR engine 'easyocr'.*auto, rapidocr, tesseract, none"):
        resolve_engine("easyocr")


def test_an_engine_that_cannot_run_is_a_clear_error_and_auto_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract program here
    with pytest.raises(
        ModelError, match=r"tesseract cannot run here.*apt-get install tesseract-ocr.*auto, rapidocr, none"
    ):
        resolve_engine("tesseract")
    monkeypatch.setattr(RapidOcr, "available", classmethod(lambda cls: False))  # as where rapidocr is not installed
    with pytest.raises(ModelError, match=r"rapidocr cannot run here.*pip install 'rapidocr>=3.10,<4' onnxruntime"):
        resolve_engine("rapidocr")
    assert resolve_engine("auto") is None, "nothing can read: no on-screen text, and no error"
    fake = tmp_path / "tesseract"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    assert resolve_engine("auto") == "tesseract"


def test_weights_that_differ_from_the_pinned_ones_are_refused(tmp_path: Path) -> None:
    (tmp_path / DETECTION).write_bytes(b"not the detector")
    with pytest.raises(
        ModelError, match=rf"{DETECTION} have sha256 [0-9a-f]{{64}}, not the 090f04ab.*--force-reinstall"
    ):
        checked_weights(tmp_path)
    (tmp_path / DETECTION).unlink()
    with pytest.raises(ModelError, match=rf"weights {DETECTION} are not in"):
        checked_weights(tmp_path)


# ---- what an engine returns ------------------------------------------------------------------------------------


class Scripted(OcrEngine):
    """Returns the lines it is given for every frame, and counts the frames it read."""

    name = "scripted"
    default_min_confidence = 0.8

    def __init__(self, lines: list[OcrLine]) -> None:
        super().__init__()
        self.lines = lines
        self.reads = 0

    @classmethod
    def available(cls) -> bool:
        return True

    @classmethod
    def missing(cls) -> str:
        return "nothing"

    def read_lines(self, rgb: np.ndarray) -> list[OcrLine]:
        self.reads += 1
        return self.lines


def test_lines_are_cleaned_floored_and_in_reading_order() -> None:
    engine = Scripted(
        [
            OcrLine("second\x1b[31m line\u200b", 0.95, (10, 200, 300, 230)),
            OcrLine("a boat's hull", 0.55, (400, 300, 600, 340)),
            OcrLine("  first\n\tline  ", 1.7, (10, 20, 300, 50)),
            OcrLine("\x00\x07", 0.99, (10, 400, 20, 420)),
            OcrLine("Healthy", 0.9, (380, 198, 450, 226)),
            OcrLine("Priya", 0.9, (520, 203, 580, 231)),
        ]
    )
    assert engine.read(Image.new("RGB", (64, 48))) == [
        OcrLine("first line", 1.0, (10, 20, 300, 50)),
        OcrLine("second line", 0.95, (10, 200, 300, 230)),
        OcrLine("Healthy", 0.9, (380, 198, 450, 226)),
        OcrLine("Priya", 0.9, (520, 203, 580, 231)),
    ]
    with pytest.raises(TypeError, match="height x width x 3 uint8"):
        engine.read(np.zeros((48, 64), dtype=np.float32))


def test_tesseract_table_becomes_lines_and_junk_rows_are_skipped() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "1\t1\t0\t0\t0\t0\t0\t0\t1280\t720\t-1\t",
        "5\t1\t1\t1\t1\t1\t100\t50\t80\t20\t96.5\tQuarterly",
        "5\t1\t1\t1\t1\t2\t190\t52\t70\t20\t91.5\tReview",
        "5\t1\t2\t1\t1\t1\t100\t300\t40\t18\t40\tx\x1b]0;title\x07y",
        "5\t1\t2\t1\t1\t2\tnot\ta\tnumber\t!\t90\tbroken",
        "garbage without tabs",
    ]
    assert parse_tsv("\n".join([header, *rows])) == [
        OcrLine("Quarterly Review", 0.94, (100, 50, 260, 72)),
        OcrLine("x\x1b]0;title\x07y", 0.4, (100, 300, 140, 318)),
    ]
    engine = Tesseract()
    assert engine.min_confidence == 0.6


@pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="Tesseract is not installed (apt-get install tesseract-ocr)"
)
def test_tesseract_reads_a_slide() -> None:
    image, truth = slide(1280, 720)
    engine = load_engine("tesseract")
    assert engine is not None
    assert word_recall(truth, [line.text for line in engine.read(image)]) >= 0.9


# ---- rapidocr on real frames -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rapid() -> Iterator[OcrEngine]:
    engine = load_engine("rapidocr", OcrOptions(threads=2))
    assert engine is not None
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def decoded() -> dict[str, tuple[np.ndarray, list[str]]]:
    """Each scene at 720p, held for two frames of one H.264 video; the second (a predicted frame) is read."""
    scenes = {
        "slide": slide(1280, 720),
        "terminal": terminal(1280, 720),
        "caption": caption(1280, 720),
        "table": table(1280, 720),
        "texture": (texture(1280, 720, shift=90, seed=11), []),
    }
    frames = through_h264([image for image, _ in scenes.values() for _ in range(2)])
    return {name: (frames[2 * index + 1], truth) for index, (name, (_, truth)) in enumerate(scenes.items())}


@pytest.mark.parametrize(("scene", "floor"), [("slide", 0.95), ("terminal", 0.95), ("caption", 0.95), ("table", 0.90)])
def test_rapidocr_reads_rendered_scenes_after_h264(
    rapid: OcrEngine, decoded: dict[str, tuple[np.ndarray, list[str]]], scene: str, floor: float
) -> None:
    frame, truth = decoded[scene]
    lines = rapid.read(frame)
    recall = word_recall(truth, [line.text for line in lines])
    assert recall >= floor, (recall, [line.text for line in lines])
    assert all(0.8 <= line.confidence <= 1.0 for line in lines)
    assert all(0 <= line.box[0] < line.box[2] <= 1280 and 0 <= line.box[1] < line.box[3] <= 720 for line in lines)


def test_rapidocr_reads_nothing_in_text_free_texture(
    rapid: OcrEngine, decoded: dict[str, tuple[np.ndarray, list[str]]]
) -> None:
    frame, _ = decoded["texture"]
    assert rapid.read(Image.fromarray(frame)) == []


# ---- which frames are read ---------------------------------------------------------------------------------------


def test_gate_skips_unchanged_frames_and_sees_one_word_change_in_a_small_table() -> None:
    changed_rows = [row[:] for row in TABLE_ROWS]
    changed_rows[3][1] = "Healthy"  # one cell of a 14 px table: Failing -> Healthy
    first, _ = table(1280, 720)
    second, _ = table(1280, 720, rows=changed_rows)
    frames = through_h264([first, first, first, second, second])
    gate = ChangeGate()
    assert [gate.changed(frame) for frame in frames] == [True, False, False, True, False]


def test_gate_compares_with_the_last_frame_read_so_a_slow_fade_is_read_once_it_has_moved() -> None:
    gate = ChangeGate()
    levels = [100, 104, 108, 112, 116, 120]  # each step under the threshold, the sum over it
    seen = [gate.changed(Image.new("RGB", (320, 180), (level, level, level))) for level in levels]
    assert seen == [True, False, False, False, True, False]


def test_read_frames_reads_only_what_changed_and_repeats_the_last_reading() -> None:
    engine = Scripted([OcrLine("Exit 12", 0.9, (0, 0, 50, 20))])
    still = Image.new("RGB", (320, 180), (40, 40, 40))
    moved = Image.new("RGB", (320, 180), (200, 200, 200))
    result = list(read_frames(engine, [(0.0, still), (1.0, still), (2.0, moved)], ChangeGate()))
    assert engine.reads == 2
    assert [(frame.time_s, frame.read, [line.text for line in frame.lines]) for frame in result] == [
        (0.0, True, ["Exit 12"]),
        (1.0, False, ["Exit 12"]),
        (2.0, True, ["Exit 12"]),
    ]


# ---- lines merged over time ----------------------------------------------------------------------------------------


def shown(time_s: float, *texts: str, confidence: float = 0.9) -> FrameLines:
    return FrameLines(
        time_s, tuple(OcrLine(text, confidence, (10, 40 * i, 500, 40 * i + 30)) for i, text in enumerate(texts))
    )


def test_a_line_shown_for_seconds_is_one_entry_despite_ocr_jitter() -> None:
    times = [12.0 + 0.5 * step for step in range(16)]  # 12.0 ... 19.5
    readings = ["Revenue grew 18%, in Europe", "Revenue grew 18% in Europe", "Revenue grew 18% in Eur0pe"]
    frames = [
        shown(t, readings[1] if i % 5 else readings[i % 3], confidence=0.8 + 0.01 * (i % 3))
        for i, t in enumerate(times)
    ]
    frames.insert(0, shown(11.5))
    frames.append(shown(20.0))
    [entry] = merge_lines(frames)
    assert (entry.start_s, entry.end_s, entry.text) == (12.0, 19.5, "Revenue grew 18% in Europe")
    assert entry.confidence == pytest.approx(sum(0.8 + 0.01 * (i % 3) for i in range(16)) / 16, abs=1e-3)


def test_a_line_missed_once_stays_one_entry_and_one_gone_for_longer_returns_as_another() -> None:
    frames = [
        shown(0.0, "Harbour Master", "Maria Lopez"),
        shown(1.0, "Maria Lopez"),  # the title missed once: below the floor in one frame
        shown(2.0, "Harbour Master", "Maria Lopez"),
        shown(3.0),
        shown(4.0),
        shown(5.0, "Harbour Master"),
    ]
    assert merge_lines(reversed(frames)) == [
        OnScreenLine(0.0, 2.0, "Harbour Master", 0.9),
        OnScreenLine(0.0, 2.0, "Maria Lopez", 0.9),
        OnScreenLine(5.0, 5.0, "Harbour Master", 0.9),
    ]


def test_lines_are_ordered_by_time_then_top_to_bottom_and_distinct_lines_do_not_merge() -> None:
    frames = [
        shown(0.0, "Name Status", "billing-api Healthy"),
        shown(1.0, "Name Status", "billing-api Healthy", "auth-service Healthy", "---"),
    ]
    assert [(entry.start_s, entry.text) for entry in merge_lines(frames)] == [
        (0.0, "Name Status"),
        (0.0, "billing-api Healthy"),
        (1.0, "auth-service Healthy"),
    ]
    assert merge_lines([]) == []
