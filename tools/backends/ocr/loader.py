"""The OCR engines by name, and the one chosen: `auto`, an engine's name, or `none`, in any case."""

from __future__ import annotations

from typing import Literal

from llava_video_mcp.tools.backends.ocr.base import OcrEngine, OcrOptions
from llava_video_mcp.tools.backends.ocr.rapidocr import RapidOcr
from llava_video_mcp.tools.backends.ocr.tesseract import Tesseract
from llava_video_mcp.tools.errors import ModelError

OcrChoice = Literal["auto", "rapidocr", "tesseract", "none"]
"""The OCR engine setting's values: `engine_choices()`, spelled for the settings' type (a test holds them equal)."""

ENGINES: dict[str, type[OcrEngine]] = {engine.name: engine for engine in (RapidOcr, Tesseract)}
"""The registry, one row an engine, in the order `auto` prefers them."""
AUTO = "auto"
NONE = "none"


def engine_choices() -> tuple[str, ...]:
    """Every name the OCR engine setting accepts: auto, each engine, none."""
    return (AUTO, *ENGINES, NONE)


def resolve_engine(choice: str) -> str | None:
    """The engine a choice names (`auto`: the first in the registry that can run here), None for `none` or for
    `auto` where none can run. ModelError for an unknown name, or for an engine named that cannot run here."""
    name = choice.strip().lower()
    if name == NONE:
        return None
    if name == AUTO:
        return next((engine.name for engine in ENGINES.values() if engine.available()), None)
    engine = ENGINES.get(name)
    if engine is None:
        raise ModelError(f"There is no OCR engine '{choice}'. Choose one of: {', '.join(engine_choices())}.")
    if not engine.available():
        others = ", ".join(other for other in engine_choices() if other != name)
        raise ModelError(f"The OCR engine {name} cannot run here: {engine.missing()}. Or choose one of: {others}.")
    return name


def load_engine(choice: str, options: OcrOptions | None = None) -> OcrEngine | None:
    """The engine a choice names, constructed (its model is brought up on its first read); None when no on-screen
    text is to be read."""
    name = resolve_engine(choice)
    return None if name is None else ENGINES[name](options)
