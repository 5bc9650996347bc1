"""Voice activity: where in a stretch of 16 kHz mono audio someone speaks, with Silero VAD, so that only speech is
heard (Whisper writes text over music, hum and room tone), and how that speech is packed into Whisper's 30 s windows
with its times mapped back exactly.

The model is the one the `silero-vad` package ships (MIT), in its batched ("sequence") ONNX form: one ONNX Runtime
call per 16 s of audio instead of one per 32 ms frame, bit-exact with the streaming model. The package is located,
not imported: importing it sets torch's thread count for the whole process. Its file is pinned by its digest.

`speech_regions` turns the frame probabilities into padded regions with the rules and defaults faster-whisper uses
(`vad.get_speech_timestamps`); `Packed` does what its `collect_chunks` and `SpeechTimestampsMap` do.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llava_video_mcp.tools.errors import ModelError

SAMPLE_RATE = 16_000
FRAME = 512
"""Samples the model scores at once (32 ms)."""
CONTEXT = 64
"""Samples of the frame before that each frame is scored with."""
FRAMES_A_CALL = 512
MODEL_FILE = "silero_vad_16k_sequence.onnx"
MODEL_SHA256 = "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"

THRESHOLD = 0.5
NEG_THRESHOLD = THRESHOLD - 0.15
MIN_SILENCE_S = 2.0
"""Silence shorter than this stays inside a region (faster-whisper's default)."""
SPEECH_PAD_S = 0.4
MAX_REGION_S = 30.0
"""A region longer than a window is split, at its last pause of 98 ms or more where it has one."""


@dataclass(frozen=True)
class Region:
    """Speech in samples: [start, end)."""

    start: int
    end: int


class SileroVad:
    """The shipped Silero VAD on ONNX Runtime, one thread; safe to share (calls take turns)."""

    def __init__(self) -> None:
        path = model_path()
        try:
            runtime: Any = importlib.import_module("onnxruntime")
        except ImportError as exc:
            raise ModelError(
                "Voice activity detection needs onnxruntime: pip install onnxruntime (it comes with the server's own "
                "install), or set --asr-model none."
            ) from exc
        options = runtime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self._session = runtime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._turn = threading.Lock()

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """The speech probability of each 512-sample frame of `audio` (the last one zero-padded)."""
        samples = np.nan_to_num(np.ascontiguousarray(audio, dtype=np.float32).reshape(-1), nan=0.0, posinf=0.0,
                                neginf=0.0)  # fmt: skip
        count = (samples.size + FRAME - 1) // FRAME
        hidden = np.zeros((1, 1, 128), dtype=np.float32)
        cell = np.zeros((1, 1, 128), dtype=np.float32)
        previous = np.zeros(CONTEXT, dtype=np.float32)
        out: list[np.ndarray] = []
        with self._turn:
            for first in range(0, count, FRAMES_A_CALL):
                frames_here = min(FRAMES_A_CALL, count - first)
                piece = samples[first * FRAME : (first + frames_here) * FRAME]
                frames = np.zeros((frames_here, FRAME), dtype=np.float32)
                frames.reshape(-1)[: piece.size] = piece
                contexts = np.empty((frames_here, CONTEXT), dtype=np.float32)
                contexts[0] = previous
                contexts[1:] = frames[:-1, -CONTEXT:]
                previous = frames[-1, -CONTEXT:].copy()
                values, hidden, cell = self._session.run(
                    ["speech_probs", "hn", "cn"],
                    {"input": np.concatenate((contexts, frames), axis=1), "h": hidden, "c": cell},
                )
                out.append(np.asarray(values, dtype=np.float32).reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def regions(self, audio: np.ndarray) -> list[Region]:
        return speech_regions(self.probabilities(audio), len(audio))


def model_path() -> Path:
    """The ONNX file inside the installed `silero-vad` package, checked against its digest."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "Voice activity detection needs the silero-vad package (it ships Silero's weights): pip install "
            "silero-vad, or set --asr-model none."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILE
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelError(f"The silero-vad package has no {MODEL_FILE} ({exc.strerror}): reinstall silero-vad.") from exc
    if digest != MODEL_SHA256:
        raise ModelError(
            f"{path} is not the Silero VAD this server was measured with (sha256 {digest[:12]}..., expected "
            f"{MODEL_SHA256[:12]}...): reinstall silero-vad."
        )
    return path


_shared: SileroVad | None = None
_shared_lock = threading.Lock()


def shared_vad() -> SileroVad:
    """One VAD for the process, brought up on first use (a few MB; about 10 ms)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SileroVad()
        return _shared


def speech_regions(probs: np.ndarray, length: int) -> list[Region]:
    """Padded speech regions from frame probabilities, with faster-whisper's rules: speech starts at a frame at or
    above THRESHOLD and ends after MIN_SILENCE_S below NEG_THRESHOLD; a region longer than MAX_REGION_S is split at
    its last pause; regions are padded by SPEECH_PAD_S (half the gap where two are closer)."""
    pad = int(SPEECH_PAD_S * SAMPLE_RATE)
    max_speech = MAX_REGION_S * SAMPLE_RATE - FRAME - 2 * pad
    min_silence = MIN_SILENCE_S * SAMPLE_RATE
    min_silence_at_max = SAMPLE_RATE * 98 / 1000
    speeches: list[list[int]] = []
    triggered = False
    start = 0
    temp_end = prev_end = next_start = 0
    for i, prob in enumerate(probs.tolist()):
        at = FRAME * i
        if prob >= THRESHOLD and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = at
        if prob >= THRESHOLD and not triggered:
            triggered = True
            start = at
            continue
        if triggered and at - start > max_speech:
            if prev_end:
                speeches.append([start, prev_end])
                if next_start < prev_end:
                    triggered = False
                else:
                    start = next_start
                prev_end = next_start = temp_end = 0
            else:
                speeches.append([start, at])
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if prob < NEG_THRESHOLD and triggered:
            if not temp_end:
                temp_end = at
            if at - temp_end > min_silence_at_max:
                prev_end = temp_end
            if at - temp_end < min_silence:
                continue
            speeches.append([start, temp_end])
            prev_end = next_start = temp_end = 0
            triggered = False
    if triggered and length > start:
        speeches.append([start, length])
    for i, speech in enumerate(speeches):
        if i == 0:
            speech[0] = max(0, speech[0] - pad)
        if i + 1 < len(speeches):
            gap = speeches[i + 1][0] - speech[1]
            if gap < 2 * pad:
                speech[1] += gap // 2
                speeches[i + 1][0] = max(0, speeches[i + 1][0] - gap // 2)
            else:
                speech[1] = min(length, speech[1] + pad)
                speeches[i + 1][0] = max(0, speeches[i + 1][0] - pad)
        else:
            speech[1] = min(length, speech[1] + pad)
    return [Region(s, e) for s, e in speeches if e > s]


@dataclass(frozen=True)
class Packed:
    """One window of speech regions put end to end, and how its times map back to the audio they came from."""

    regions: tuple[Region, ...]

    @property
    def length(self) -> int:
        return sum(r.end - r.start for r in self.regions)

    def audio(self, samples: np.ndarray) -> np.ndarray:
        return np.concatenate([samples[r.start : r.end] for r in self.regions]).astype(np.float32, copy=False)

    def original_s(self, seconds: float, is_end: bool = False) -> float:
        """A time in the window (seconds) as seconds in the audio it was cut from, inside the region it falls in; an
        end exactly at a region's edge stays in the region it ends."""
        sample = round(seconds * SAMPLE_RATE)
        offset = 0
        for region in self.regions:
            size = region.end - region.start
            inside = sample < offset + size or (is_end and sample == offset + size)
            if inside or region is self.regions[-1]:
                return (region.start + min(max(sample - offset, 0), size)) / SAMPLE_RATE
            offset += size
        return 0.0
