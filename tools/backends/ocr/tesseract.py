"""Tesseract, the `tesseract` program found on PATH: the peers' choice, and the baseline our bench measures beside.

It runs once a frame as a child process, from an argument list (never a shell), with the frame as PNG on its
standard input and its TSV table read from its standard output; it is stopped after `timeout_s`, and its threads
are bounded by OMP_THREAD_LIMIT. The TSV holds one row a word; the words of one line (same block, paragraph and
line number) become one line, its confidence their mean.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from typing import ClassVar

import numpy as np
from PIL import Image

from llava_video_mcp.tools.backends.ocr.base import OcrEngine, OcrLine
from llava_video_mcp.tools.errors import ModelError

PROGRAM = "tesseract"
MAX_OUTPUT_BYTES = 4 << 20
"""A frame's table is a few KB; more is not a reading."""


class Tesseract(OcrEngine):
    name: ClassVar[str] = "tesseract"
    default_min_confidence: ClassVar[float] = 0.6

    @classmethod
    def available(cls) -> bool:
        return shutil.which(PROGRAM) is not None

    @classmethod
    def missing(cls) -> str:
        return (
            "the `tesseract` program is not on PATH: install Tesseract (apt-get install tesseract-ocr, "
            "brew install tesseract)"
        )

    def read_lines(self, rgb: np.ndarray) -> list[OcrLine]:
        program = shutil.which(PROGRAM)
        if program is None:
            raise ModelError(f"The OCR engine tesseract cannot run here: {self.missing()}.")
        png = io.BytesIO()
        Image.fromarray(rgb).save(png, format="PNG", compress_level=1)
        threads = str(max(self.options.threads, 1))
        command = [program, "stdin", "stdout", "-l", self.options.languages, "tsv"]
        try:
            done = subprocess.run(  # an argument list, no shell; the program is the one on PATH
                command,
                input=png.getvalue(),
                capture_output=True,
                timeout=self.options.timeout_s,
                check=False,
                env={**os.environ, "OMP_THREAD_LIMIT": threads},
            )
        except subprocess.TimeoutExpired as exc:
            raise ModelError(
                f"tesseract took longer than {self.options.timeout_s:g} s on one frame and was stopped.", retryable=True
            ) from exc
        except OSError as exc:
            raise ModelError(f"tesseract could not be started ({exc}).") from exc
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["nothing"]
            raise ModelError(
                f"tesseract failed on a frame (exit status {done.returncode}, it said: {said[0][:300]}). Check that "
                f"the language data for '{self.options.languages}' is installed (tesseract --list-langs)."
            )
        return parse_tsv(done.stdout[:MAX_OUTPUT_BYTES].decode("utf-8", "replace"))


def parse_tsv(table: str) -> list[OcrLine]:
    """Tesseract's TSV (one row a word) as lines: the words of each line joined, confidence their mean (0-1), box
    their union. Rows that are not words (confidence -1, or malformed) are skipped."""
    words: dict[tuple[str, str, str, str], list[tuple[str, float, tuple[int, int, int, int]]]] = {}
    for row in table.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) != 12 or not cells[11].strip():
            continue
        try:
            left, top, width, height = (int(cell) for cell in cells[6:10])
            confidence = float(cells[10])
        except ValueError:
            continue
        if confidence < 0:
            continue
        key = (cells[1], cells[2], cells[3], cells[4])
        words.setdefault(key, []).append((cells[11].strip(), confidence / 100, (left, top, left + width, top + height)))
    lines = []
    for line in words.values():
        boxes = [box for _, _, box in line]
        lines.append(
            OcrLine(
                " ".join(text for text, _, _ in line),
                sum(confidence for _, confidence, _ in line) / len(line),
                (
                    min(box[0] for box in boxes),
                    min(box[1] for box in boxes),
                    max(box[2] for box in boxes),
                    max(box[3] for box in boxes),
                ),
            )
        )
    return lines
