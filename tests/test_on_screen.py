"""Text read on screen as a track: the rows of a frame, and (with the real PP-OCRv6 weights rapidocr ships) what the
track reads from H.264 video through the MCP client."""

from __future__ import annotations

from llava_video_mcp.tools.backends.ocr import OcrLine
from llava_video_mcp.tools.backends.ocr.reading import rows


def cell(text: str, left: int, top: int, width: int = 60, height: int = 14, confidence: float = 0.9) -> OcrLine:
    return OcrLine(text, confidence, (left, top, left + width, top + height))


def test_a_tables_cells_become_one_line_a_row_and_a_line_read_in_pieces_is_one_line() -> None:
    read = [
        cell("Status", 300, 10), cell("Name", 20, 11), cell("Owner", 600, 9),
        cell("Healthy", 300, 40, confidence=0.7), cell("billing-api", 20, 41), cell("Priya", 600, 40),
        cell("Revenue grew", 20, 80, width=120), cell("18 percent", 150, 81, width=90),
    ]  # fmt: skip
    assert [(line.text, line.confidence) for line in rows(read)] == [
        ("Name | Status | Owner", 0.9),
        ("billing-api | Healthy | Priya", 0.7),  # as sure as its least sure cell
        ("Revenue grew 18 percent", 0.9),
    ]
    assert rows(read)[0].box == (20, 9, 660, 25)
    assert rows([]) == []
