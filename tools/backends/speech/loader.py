"""Hearing, brought up: the speech configuration, which model and engine it names, and the one backend it brings up
on first use (a serving engine's, or Whisper in process)."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from llava_video_mcp.tools.backends.devices import pick_device
from llava_video_mcp.tools.backends.hub import local_snapshot
from llava_video_mcp.tools.backends.lazy import Lazy
from llava_video_mcp.tools.backends.speech.base import SpeechBackend
from llava_video_mcp.tools.backends.speech.remote import RemoteSpeech
from llava_video_mcp.tools.backends.speech.whisper import folder_identity, load_whisper
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import DownloadProgress

CPU_DEFAULT = "openai/whisper-base"
"""74M parameters: the CPU default (README, Speech: what it costs)."""
CUDA_DEFAULT = "openai/whisper-large-v3-turbo"
"""809M parameters, the English word error rate of large-v3 in published evaluations, fast on a GPU."""

Engine = Literal["auto", "ctranslate2", "transformers"]
ENGINES: tuple[Engine, ...] = get_args(Engine)
"""What runs Whisper in process, as --asr-engine takes it (any case)."""
ModelWord = Literal["auto", "none"]
MODEL_WORDS: tuple[ModelWord, ...] = get_args(ModelWord)
"""What --asr-model takes beside a Whisper's hub id or folder: `auto` (chosen by device), `none` (hear nothing)."""


def read_model(given: str) -> str:
    """--asr-model as given, read once: `auto` and `none` in any case become those words; a hub id or folder stays
    as written (hub ids are case-sensitive)."""
    word = given.strip()
    return word.lower() if word.lower() in MODEL_WORDS else word


@dataclass(frozen=True)
class SpeechConfig:
    model: str = "auto"
    """A Whisper hub id or folder, `auto` (by device), or `none` (hear nothing); with an endpoint, the served id.
    Read once (`read_model`): the words in any case."""
    device: str = "auto"
    engine: Engine = "auto"
    """In process: `ctranslate2` (int8) on CPU and `transformers` elsewhere when `auto`."""
    store: Path | None = None
    """Where models converted for CTranslate2 are kept (under the cache folder)."""
    endpoint: str | None = None
    api_key: str | None = None
    request_timeout_s: float = 120.0
    request_retries: int = 2
    max_concurrent_requests: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", read_model(self.model))

    @property
    def enabled(self) -> bool:
        """Whether anything is heard: not with `none` (subtitles only)."""
        return self.model != "none"

    @property
    def named(self) -> str | None:
        """The hub id or folder given (with an endpoint, the served id); None for `auto` and `none`."""
        return self.model if self.model and self.model not in MODEL_WORDS else None


def resolved_model(config: SpeechConfig) -> str:
    """The model named, or for `auto` the large, fast model on CUDA and the small one elsewhere."""
    return config.named or (CUDA_DEFAULT if pick_device(config.device) == "cuda" else CPU_DEFAULT)


def resolved_engine(config: SpeechConfig) -> Literal["ctranslate2", "transformers"]:
    """`auto`: CTranslate2 where it runs faster (on CPU, where it is installed), transformers elsewhere."""
    if config.engine != "auto":
        return config.engine
    if pick_device(config.device) == "cpu" and importlib.util.find_spec("ctranslate2") is not None:
        return "ctranslate2"
    return "transformers"


def _local_folder(model: str) -> Path | None:
    local = Path(model).expanduser()
    return local if model.startswith((".", "/", "~")) or local.exists() else None


RETRY_S = 60.0
"""How long a failure to bring up the speech model is answered from memory, while the setup stays the same."""


def _remembered_for(error: ModelError, identity: str) -> float:
    """A folder that cannot be loaded fails until what it holds changes (fixed, or replaced); anything else (a hub
    or a network down) is tried again after RETRY_S."""
    return math.inf if identity.startswith("folder:") and not error.retryable else RETRY_S


class LazySpeech:
    """Brings up the speech backend on first use, once. A failure is remembered: a folder that cannot be loaded is
    not tried again until what it holds changes (fixed, or replaced); anything else (a hub or a network down) is
    tried again after a minute."""

    def __init__(self, config: SpeechConfig) -> None:
        self.config = config
        self._lazy: Lazy[SpeechBackend] = Lazy(self._bring_up, remember=_remembered_for, key=self.identity)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def loaded(self) -> SpeechBackend | None:
        """The backend, if it is already up (brought up, and not closed since)."""
        return self._lazy.loaded

    @property
    def label(self) -> str:
        backend = self._lazy.loaded
        if backend is not None:
            return backend.model_id
        if self.config.endpoint:
            from llava_video_mcp.tools.backends.remote import endpoint_host

            return endpoint_host(self.config.endpoint)
        return self.config.model

    def identity(self) -> str:
        """Which model hears, and how: what kept speech is keyed by. A folder counts by what it holds (its files'
        names, sizes and times), not where it is, so a fixed or replaced folder hears again."""
        config = self.config
        if config.endpoint:
            return f"{config.endpoint} {config.model}"
        model = resolved_model(config)
        folder = _local_folder(model)
        if folder is not None and folder.is_dir():
            model = f"folder:{folder_identity(folder)}"
        return f"{model} {resolved_engine(config)}"

    def get(self, on_download: DownloadProgress | None = None) -> SpeechBackend:
        return self._lazy.get(on_download)[0]

    def _bring_up(self, on_download: DownloadProgress | None) -> SpeechBackend:
        config = self.config
        if config.endpoint:
            remote = RemoteSpeech(
                config.endpoint,
                config.named,
                api_key=config.api_key,
                timeout_s=config.request_timeout_s,
                retries=config.request_retries,
                max_concurrency=config.max_concurrent_requests,
            )
            remote.connect()
            return remote
        model = resolved_model(config)
        folder = _local_folder(model)
        source = str(folder) if folder is not None else local_snapshot(model, on_download, flag="--asr-model")
        engine = resolved_engine(config)
        store = config.store
        if store is None:
            from llava_video_mcp.tools.media.sources import default_cache_dir

            store = default_cache_dir() / "speech-models"
        return load_whisper(str(folder) if folder else model, source, engine, pick_device(config.device), store)

    def close(self) -> None:
        self._lazy.close()
