"""rapidocr: PP-OCRv6 small (text detection and recognition, Latin and CJK scripts) on ONNX Runtime, with the
weights its wheel ships, so that it reads offline as installed.

The weights are pinned: their sha256 is checked before they are loaded, and handed to rapidocr by path, so that
rapidocr never fetches a model of its own (it downloads one over a file whose checksum it does not expect). Its
orientation classifier is off: it turned an 89-character terminal line upside down (word recall 0.84 with it, 0.99
without), and video text is upright. Readings under 0.8 confidence are dropped: below it, textures (pier posts, a
boat) were read as words.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llava_video_mcp.tools.backends.ocr.base import OcrEngine, OcrLine, OcrOptions, bounding_box
from llava_video_mcp.tools.errors import ModelError

DETECTION = "PP-OCRv6_det_small.onnx"
RECOGNITION = "PP-OCRv6_rec_small.onnx"
WEIGHTS = {
    DETECTION: "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
    RECOGNITION: "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
}
"""The files of rapidocr 3.10's wheel that are run, and their sha256."""
INSTALL = "pip install 'rapidocr>=3.10,<4' onnxruntime"


def models_folder() -> Path | None:
    """Where the installed rapidocr keeps its weights, found without importing it; None when it is not installed."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def checked_weights(folder: Path) -> dict[str, Path]:
    """The pinned weight files in `folder`, each checked against its sha256; ModelError naming the file otherwise."""
    found: dict[str, Path] = {}
    for name, expected in WEIGHTS.items():
        path = folder / name
        if not path.is_file():
            raise ModelError(
                f"rapidocr's weights {name} are not in {folder}: the installed rapidocr is not the one this server "
                f"reads with. Reinstall it ({INSTALL}), or choose another OCR engine (--ocr-engine tesseract, or none)."
            )
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while block := file.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise ModelError(
                f"rapidocr's weights {path} have sha256 {digest.hexdigest()}, not the {expected} of the PP-OCRv6 "
                f"small weights this server was checked with: the file was changed or damaged. Reinstall rapidocr "
                f"({INSTALL} --force-reinstall), or choose another OCR engine (--ocr-engine tesseract, or none)."
            )
        found[name] = path
    return found


def on_cuda(device: str) -> bool:
    """Whether to read on the GPU: the model runs there (`device` cuda) and ONNX Runtime can (onnxruntime-gpu's
    CUDA provider is installed); else the CPU, where a frame costs about a second."""
    if device != "cuda" or importlib.util.find_spec("onnxruntime") is None:
        return False
    runtime: Any = importlib.import_module("onnxruntime")
    return "CUDAExecutionProvider" in runtime.get_available_providers()


class RapidOcr(OcrEngine):
    name: ClassVar[str] = "rapidocr"
    default_min_confidence: ClassVar[float] = 0.8

    def __init__(self, options: OcrOptions | None = None) -> None:
        super().__init__(options)
        self._engine: Any = None
        self._lock = threading.Lock()

    @classmethod
    def available(cls) -> bool:
        return models_folder() is not None and importlib.util.find_spec("onnxruntime") is not None

    @classmethod
    def missing(cls) -> str:
        return f"rapidocr and ONNX Runtime are not installed: {INSTALL}"

    def _load(self) -> Any:
        folder = models_folder()
        if folder is None or importlib.util.find_spec("onnxruntime") is None:
            raise ModelError(f"The OCR engine rapidocr cannot run here: {self.missing()}.")
        weights = checked_weights(folder)
        threads = min(max(self.options.threads, 1), os.cpu_count() or 1)
        try:
            from rapidocr import RapidOCR

            return RapidOCR(
                params={
                    "Global.use_cls": False,
                    "Global.text_score": self.min_confidence,
                    "Global.log_level": "error",
                    "Det.model_path": str(weights[DETECTION]),
                    "Rec.model_path": str(weights[RECOGNITION]),
                    "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                    "EngineConfig.onnxruntime.use_cuda": on_cuda(self.options.device),
                }
            )
        except Exception as exc:  # an installation that imports but does not load: say which, keep serving
            raise ModelError(
                f"rapidocr could not be brought up ({type(exc).__name__}: {exc}). Reinstall it: {INSTALL}."
            ) from exc

    def read_lines(self, rgb: np.ndarray) -> list[OcrLine]:
        with self._lock:
            if self._engine is None:
                self._engine = self._load()
            try:
                # rapidocr takes an array as OpenCV's BGR
                result = self._engine(np.ascontiguousarray(rgb[:, :, ::-1]))
            except Exception as exc:
                raise ModelError(f"rapidocr failed on a frame ({type(exc).__name__}: {exc}).") from exc
        texts = getattr(result, "txts", None) or ()
        scores = getattr(result, "scores", None) or ()
        boxes = getattr(result, "boxes", None)
        if boxes is None:
            return []
        return [
            OcrLine(str(text), float(score), bounding_box(box))
            for text, score, box in zip(texts, scores, boxes, strict=False)
        ]

    def close(self) -> None:
        with self._lock:
            self._engine = None
