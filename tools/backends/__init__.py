"""Stage 4, prompt -> answer: model backends behind one small protocol (`base.VideoLanguageBackend`).

    base.py          Prompt, Generation, the protocol, ModelProvider; imports no implementation
    turns.py         how many calls a backend runs at once, and the queue in front of it
    loader.py        picks the local or the remote backend from the configuration, brings it up once
    transformers.py  in process: llava through transformers, with devices.py, prefix_cache.py and attention.py
    remote.py        an OpenAI-compatible serving engine (vLLM, SGLang, `transformers serve`) over HTTP
    speech/          hearing: the protocol, Whisper in process, a serving engine's /v1/audio/transcriptions,
                     voice activity, and the configuration that brings one up once
    families/        the model families run in process, a registry by model_type
    ocr/             reading on-screen text: the engines, a registry by name
    fake.py          a stand-in for tests and demos: scripted answers, prompts recorded

Importing this package imports neither torch nor transformers.
"""

from llava_video_mcp.tools.backends.base import (
    DEFAULT_MODEL,
    Generation,
    ModelProvider,
    Prompt,
    VideoLanguageBackend,
)
from llava_video_mcp.tools.backends.loader import API_KEY_VARIABLE, BackendConfig, LazyBackend, Ready
from llava_video_mcp.tools.backends.speech import LazySpeech, SpeechBackend, SpeechConfig, Transcription
from llava_video_mcp.tools.progress import InferenceProgress

__all__ = [
    "API_KEY_VARIABLE",
    "DEFAULT_MODEL",
    "BackendConfig",
    "Generation",
    "InferenceProgress",
    "LazyBackend",
    "LazySpeech",
    "ModelProvider",
    "Prompt",
    "Ready",
    "SpeechBackend",
    "SpeechConfig",
    "Transcription",
    "VideoLanguageBackend",
]
