"""Hearing: the speech engines, one module an engine, and the choice among them.

    base.py      SpeechBackend: 30 s blocks of 16 kHz mono in, timed text out; Transcription, SAMPLE_RATE
    whisper.py   Whisper in process: its decoding policy over CTranslate2 (int8, CPU) or transformers (CUDA)
    remote.py    an OpenAI-compatible engine's /v1/audio/transcriptions (vLLM, `transformers serve`)
    vad.py       where speech is (Silero VAD on ONNX Runtime), so silence is not heard
    loader.py    the registry (`ENGINES`, one row an engine: none, remote, ctranslate2, transformers), SpeechConfig
                 with `auto`/`none` and the engine's name read once in any case, and LazySpeech: the engine the
                 configuration chooses, brought up once

A new engine is a module here (a SpeechBackend) and a row in `loader.ENGINES`.

Importing this package imports neither torch, transformers nor CTranslate2.
"""

from __future__ import annotations

from llava_video_mcp.tools.backends.speech.base import SAMPLE_RATE, SpeechBackend, Transcription
from llava_video_mcp.tools.backends.speech.loader import ENGINES, LazySpeech, SpeechConfig, SpeechEngine
from llava_video_mcp.tools.backends.speech.remote import RemoteSpeech

__all__ = [
    "ENGINES",
    "SAMPLE_RATE",
    "LazySpeech",
    "RemoteSpeech",
    "SpeechBackend",
    "SpeechConfig",
    "SpeechEngine",
    "Transcription",
]
