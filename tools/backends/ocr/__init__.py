"""Reading on-screen text: the engines that read one frame, and the reading of a video's frames into timed lines.

    base.py       OcrEngine: one RGB frame in, its lines out (text, confidence 0-1, box), cleaned as untrusted text
    rapidocr.py   rapidocr (`rapidocr`): PP-OCRv6 small on ONNX Runtime, the weights its wheel ships, pinned
    tesseract.py  Tesseract (`tesseract`): the program on PATH, one child process a frame
    loader.py     the registry (one row an engine) and the choice: `auto`, an engine's name, `none`
    reading.py    which frames changed since the last frame read, and lines merged across frames into timed lines

A new engine is a module here and a row in `loader.ENGINES`. Importing this package imports neither rapidocr nor
ONNX Runtime: an engine brings its model up on its first read.
"""

from __future__ import annotations

from llava_video_mcp.tools.backends.ocr.base import Frame, OcrEngine, OcrLine, OcrOptions
from llava_video_mcp.tools.backends.ocr.loader import ENGINES, OcrChoice, engine_choices, load_engine, resolve_engine
from llava_video_mcp.tools.backends.ocr.rapidocr import RapidOcr
from llava_video_mcp.tools.backends.ocr.reading import ChangeGate, FrameLines, OnScreenLine, merge_lines, read_frames
from llava_video_mcp.tools.backends.ocr.tesseract import Tesseract

__all__ = [
    "ENGINES",
    "ChangeGate",
    "Frame",
    "FrameLines",
    "OcrChoice",
    "OcrEngine",
    "OcrLine",
    "OcrOptions",
    "OnScreenLine",
    "RapidOcr",
    "Tesseract",
    "engine_choices",
    "load_engine",
    "merge_lines",
    "read_frames",
    "resolve_engine",
]
