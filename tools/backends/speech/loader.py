"""Hearing, brought up: the speech configuration, the registry of speech engines by name (`ENGINES`, one row an
engine), the one the configuration chooses, and the backend it brings up on first use.

A row names an engine (what `--asr-engine` takes, in any case, and lists in --help and its errors), says how it is
brought up, what keeps its speech apart (`identity`), when `auto` picks it (`suits`), and whether a configuration
can only mean it, whatever `--asr-engine` says (`claims`: `none` for `--asr-model none`, `remote` where
`--asr-endpoint` is set). A new engine is its module (a `SpeechBackend`) and a row here.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from llava_video_mcp.tools.backends.devices import pick_device
from llava_video_mcp.tools.backends.hub import local_snapshot
from llava_video_mcp.tools.backends.lazy import Lazy
from llava_video_mcp.tools.backends.speech.base import SpeechBackend
from llava_video_mcp.tools.backends.speech.remote import RemoteSpeech
from llava_video_mcp.tools.backends.speech.whisper import folder_identity, is_ctranslate2_folder, load_whisper
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import DownloadProgress

CPU_DEFAULT = "openai/whisper-base"
"""74M parameters: the CPU default (README, Speech: what it costs)."""
CUDA_DEFAULT = "openai/whisper-large-v3-turbo"
"""809M parameters, the English word error rate of large-v3 in published evaluations, fast on a GPU."""

AUTO = "auto"
NONE = "none"
ModelWord = Literal["auto", "none"]
MODEL_WORDS: tuple[ModelWord, ...] = get_args(ModelWord)
"""What --asr-model takes beside a Whisper's hub id or folder: `auto` (chosen by device), `none` (hear nothing)."""


def read_model(given: str) -> str:
    """--asr-model as given, read once: `auto` and `none` in any case become those words; a hub id or folder stays
    as written (hub ids are case-sensitive)."""
    word = given.strip()
    return word.lower() if word.lower() in MODEL_WORDS else word


def read_engine(given: str) -> str:
    """--asr-engine as given, read once: a row's name or `auto`, in any case; ModelError naming the choices for
    any other word."""
    name = given.strip().lower()
    if name not in engine_choices():
        raise ModelError(
            f"There is no speech engine '{given}' (--asr-engine). Choose one of: {', '.join(engine_choices())}."
        )
    return name


@dataclass(frozen=True)
class SpeechConfig:
    model: str = "auto"
    """A Whisper hub id or folder, `auto` (by device), or `none` (hear nothing); with an endpoint, the served id.
    Read once (`read_model`): the words in any case."""
    device: str = "auto"
    engine: str = "auto"
    """A row of `ENGINES` that --asr-engine may name, or `auto` (the first row that suits the device). Read once
    (`read_engine`), in any case."""
    store: Path | None = None
    """Where models converted for CTranslate2 are kept (under the cache folder)."""
    endpoint: str | None = None
    api_key: str | None = None
    request_timeout_s: float = 120.0
    request_retries: int = 2
    max_concurrent_requests: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", read_model(self.model))
        object.__setattr__(self, "engine", read_engine(self.engine))

    @property
    def enabled(self) -> bool:
        """Whether anything is heard: not with `none` (subtitles only). Known without resolving `auto` (which
        would import torch to find the device)."""
        row = _claiming(self) or ENGINES.get(self.engine)
        return row.hears if row is not None else True

    @property
    def named(self) -> str | None:
        """The hub id or folder given (with an endpoint, the served id); None for `auto` and `none`."""
        return self.model if self.model and self.model not in MODEL_WORDS else None


BringUp = Callable[[SpeechConfig, DownloadProgress | None], SpeechBackend]


def _never(config: SpeechConfig) -> bool:
    return False


@dataclass(frozen=True)
class SpeechEngine:
    """A row of the registry: one way to hear, by name."""

    name: str
    help: str
    """Its words in --help (after its name)."""
    bring_up: BringUp
    """The backend, up (a model loaded, an engine reached); ModelError saying what to change otherwise."""
    identity: Callable[[SpeechConfig], str]
    """Which model hears, and how: what kept speech is keyed by, and what a remembered failure holds for."""
    suits: Callable[[SpeechConfig], bool] = _never
    """Whether `auto` may pick it for this configuration (rows are tried in order)."""
    claims: Callable[[SpeechConfig], bool] = field(default=_never)
    """Whether this configuration can only mean it, whatever --asr-engine says."""
    hears: bool = True
    named: bool = True
    """Whether --asr-engine names it (the rows that other flags choose do not)."""


def resolved_model(config: SpeechConfig) -> str:
    """The model named, or for `auto` the large, fast model on CUDA and the small one elsewhere."""
    return config.named or (CUDA_DEFAULT if pick_device(config.device) == "cuda" else CPU_DEFAULT)


def _local_folder(model: str) -> Path | None:
    """The folder `model` names, when it names one (never the working directory for an empty name)."""
    if not model.strip():
        return None
    local = Path(model).expanduser()
    return local if model.startswith((".", "/", "~")) or local.exists() else None


def _whisper(engine: str) -> tuple[BringUp, Callable[[SpeechConfig], str]]:
    """Whisper in process on `engine`: how it is brought up, and its identity (a folder counts by what it holds:
    its files' names, sizes and times, not where it is, so a fixed or replaced folder hears again)."""

    def bring_up(config: SpeechConfig, on_download: DownloadProgress | None) -> SpeechBackend:
        model = resolved_model(config)
        folder = _local_folder(model)
        source = str(folder) if folder is not None else local_snapshot(model, on_download, flag="--asr-model")
        store = config.store
        if store is None:
            from llava_video_mcp.tools.media.sources import default_cache_dir

            store = default_cache_dir() / "speech-models"
        return load_whisper(str(folder) if folder else model, source, engine, pick_device(config.device), store)

    def identity(config: SpeechConfig) -> str:
        model = resolved_model(config)
        folder = _local_folder(model)
        if folder is not None and folder.is_dir():
            model = f"folder:{folder_identity(folder)}"
        return f"{model} {engine}"

    return bring_up, identity


def _ctranslate2_suits(config: SpeechConfig) -> bool:
    """Where it runs faster (on CPU, where it is installed), and for a folder already in its layout."""
    if importlib.util.find_spec("ctranslate2") is None:
        return False
    folder = _local_folder(config.named or "")
    return (folder is not None and is_ctranslate2_folder(folder)) or pick_device(config.device) == "cpu"


def _remote(config: SpeechConfig, on_download: DownloadProgress | None) -> SpeechBackend:
    assert config.endpoint is not None  # claimed only with one
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


def _nothing(config: SpeechConfig, on_download: DownloadProgress | None) -> SpeechBackend:
    raise ModelError("No speech is heard (--asr-model none): set --asr-model to a Whisper, or auto, to hear it.")


ENGINES: dict[str, SpeechEngine] = {
    row.name: row
    for row in (
        SpeechEngine(
            NONE,
            "hears nothing: subtitles only (--asr-model none)",
            _nothing,
            lambda config: NONE,
            claims=lambda config: config.model == NONE,
            hears=False,
            named=False,
        ),
        SpeechEngine(
            "remote",
            "an OpenAI-compatible engine's /v1/audio/transcriptions (--asr-endpoint)",
            _remote,
            lambda config: f"{config.endpoint} {config.model}",
            claims=lambda config: config.endpoint is not None,
            named=False,
        ),
        SpeechEngine(
            "ctranslate2",
            "int8, the folder converted once into the cache; auto on CPU",
            *_whisper("ctranslate2"),
            suits=_ctranslate2_suits,
        ),
        SpeechEngine(
            "transformers",
            "float16 and batched on CUDA; auto elsewhere",
            *_whisper("transformers"),
            suits=lambda config: True,
        ),
    )
}
"""The registry, one row an engine, in the order `claims` and `auto` try them."""


def engine_choices() -> tuple[str, ...]:
    """Every word --asr-engine takes: auto, and each engine it may name."""
    return (AUTO, *(name for name, row in ENGINES.items() if row.named))


def engine_help() -> str:
    """--asr-engine's help, from the rows it may name."""
    rows = "; ".join(f"{row.name} ({row.help})" for row in ENGINES.values() if row.named)
    return f"what hears speech in process: {rows}; auto: the first that suits the device"


def _claiming(config: SpeechConfig) -> SpeechEngine | None:
    return next((row for row in ENGINES.values() if row.claims(config)), None)


def chosen_engine(config: SpeechConfig) -> SpeechEngine:
    """The row that hears for `config`: the one that claims it, else the one --asr-engine names, else for `auto`
    the first that suits it."""
    row = _claiming(config)
    if row is not None:
        return row
    if config.engine != AUTO:
        return ENGINES[config.engine]
    return next(row for row in ENGINES.values() if row.suits(config))


def resolved_engine(config: SpeechConfig) -> str:
    """The name of the engine that hears for `config` (`chosen_engine`)."""
    return chosen_engine(config).name


RETRY_S = 60.0
"""How long a failure to bring up the speech model is answered from memory, while the setup stays the same."""


def _remembered_for(error: ModelError, identity: str) -> float:
    """A folder that cannot be loaded fails until what it holds changes (fixed, or replaced); anything else (a hub
    or a network down) is tried again after RETRY_S."""
    return math.inf if identity.startswith("folder:") and not error.retryable else RETRY_S


class LazySpeech:
    """Brings up the speech backend the configuration chooses on first use, once. A failure is remembered: a folder
    that cannot be loaded is not tried again until what it holds changes (fixed, or replaced); anything else (a hub
    or a network down) is tried again after a minute."""

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
            from llava_video_mcp.tools.backends.engine import endpoint_host

            return endpoint_host(self.config.endpoint)
        return self.config.model

    def identity(self) -> str:
        """Which model hears, and how: what kept speech is keyed by (the chosen row's `identity`)."""
        return chosen_engine(self.config).identity(self.config)

    def get(self, on_download: DownloadProgress | None = None) -> SpeechBackend:
        return self._lazy.get(on_download)[0]

    def _bring_up(self, on_download: DownloadProgress | None) -> SpeechBackend:
        return chosen_engine(self.config).bring_up(self.config, on_download)

    def close(self) -> None:
        self._lazy.close()
