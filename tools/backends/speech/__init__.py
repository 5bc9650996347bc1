"""Hearing: the speech engines, one module an engine, and the choice among them.

    base.py      SpeechBackend: 30 s blocks of 16 kHz mono in, timed text out; Transcription, SAMPLE_RATE
    whisper.py   Whisper in process: its decoding policy over CTranslate2 (int8, CPU) or transformers (CUDA)
    remote.py    an OpenAI-compatible engine's /v1/audio/transcriptions (vLLM, `transformers serve`)
    vad.py       where speech is (Silero VAD on ONNX Runtime), so silence is not heard
    loader.py    SpeechConfig, `auto`/`none` read once, and LazySpeech: the engine brought up once

Importing this package imports neither torch, transformers nor CTranslate2.
"""

from __future__ import annotations

from llava_video_mcp.tools.backends.speech.base import SAMPLE_RATE, SpeechBackend, Transcription
from llava_video_mcp.tools.backends.speech.loader import LazySpeech, SpeechConfig
from llava_video_mcp.tools.backends.speech.remote import RemoteSpeech

__all__ = ["SAMPLE_RATE", "LazySpeech", "RemoteSpeech", "SpeechBackend", "SpeechConfig", "Transcription"]
