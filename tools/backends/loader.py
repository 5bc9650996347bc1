"""Picks the backend from the configuration and brings it up once: the local model is loaded on first use (or at
start with `--preload`), a remote endpoint is checked at start. Calls that arrive together share one load."""

from __future__ import annotations

from dataclasses import dataclass

from llava_video_mcp.tools.backends.base import API_KEY_VARIABLE, DEFAULT_MODEL, VideoLanguageBackend
from llava_video_mcp.tools.backends.families import FrameCost, family_of
from llava_video_mcp.tools.backends.lazy import Lazy
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import DownloadProgress

__all__ = ["API_KEY_VARIABLE", "BackendConfig", "LazyBackend", "ModelSummary", "Ready", "model_summary"]


@dataclass(frozen=True)
class BackendConfig:
    model: str | None = None
    """Hub id or folder of a local model (default: DEFAULT_MODEL); for an endpoint, the served model's id
    (default: the first one it lists)."""
    device: str = "auto"
    dtype: str = "auto"
    endpoint: str | None = None
    """Base URL of an OpenAI-compatible server; when set, the model runs there."""
    api_key: str | None = None
    request_timeout_s: float = 120.0
    request_retries: int = 2
    max_concurrent_requests: int = 8
    prefix_cache_gb: float | None = None
    """Memory for follow-ups' prefix reuse (in process); None sizes it from the device."""
    compile_decode: bool = False
    """Compile the decoding step over the static cache (in process)."""
    frame_cost: FrameCost | None = None
    """What a frame costs the engine's model, where one is set (--frame-cost); in process, the family says."""


@dataclass(frozen=True)
class ModelSummary:
    """The model as the tools describe it, known before it loads."""

    family: str | None
    """Its family in words (llava-interleave), "on a serving engine", or None when not known before it loads."""
    frame_cost: FrameCost | None
    """What a frame costs it, None when not known."""


def model_summary(config: BackendConfig) -> ModelSummary:
    """A model in process is its family's, found from its config or its id (`families.family_of`). An engine's model
    has no family here (the engine reads frames with its own processor: a OneVision model's as images, not as the
    video this server makes of them in process), so its frame cost is the one set for it, if any."""
    if config.endpoint:
        return ModelSummary("on a serving engine", config.frame_cost)
    family = family_of(config.model or DEFAULT_MODEL)
    if family is None:
        return ModelSummary(None, None)
    return ModelSummary(family.name, family.nominal_cost)


REMEMBER_FAILURE_S = 60.0
"""How long a failure to reach the hub or the engine is answered from memory instead of being tried again: every
try would otherwise cost the caller its timeouts and retries."""


def _remembered_for(error: ModelError, key: str) -> float:
    """Only a failure that may pass (no network) is remembered: a wrong folder is fixed and tried again at once."""
    return REMEMBER_FAILURE_S if error.retryable else 0.0


def _retold(error: ModelError, waited_s: float, left_s: float) -> ModelError:
    return ModelError(
        f"{error} (This failed {waited_s:.0f} s ago; the server tries again {left_s:.0f} s from now.)",
        retryable=True,
    )


class LazyBackend:
    """Brings up the backend on first use (or at start), once, however many calls arrive together."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self._lazy: Lazy[VideoLanguageBackend] = Lazy(self._bring_up, remember=_remembered_for, retold=_retold)

    @property
    def loaded(self) -> VideoLanguageBackend | None:
        """The backend, if it is already up."""
        return self._lazy.loaded

    @property
    def label(self) -> str:
        backend = self._lazy.loaded
        if backend is not None:
            return backend.model_id
        if self.config.endpoint:
            from llava_video_mcp.tools.backends.engine import endpoint_host

            return self.config.model or endpoint_host(self.config.endpoint)
        return self.config.model or DEFAULT_MODEL

    def get(self, on_download: DownloadProgress | None = None) -> tuple[VideoLanguageBackend, float]:
        """The backend, and the seconds this call spent bringing it up (0 when it already was); a model download
        on the way is reported through `on_download`."""
        return self._lazy.get(on_download)

    def close(self) -> None:
        """Release the backend's open connections (at shutdown); a later call brings it up again."""
        self._lazy.close()

    def _bring_up(self, on_download: DownloadProgress | None) -> VideoLanguageBackend:
        config = self.config
        if config.endpoint:
            from llava_video_mcp.tools.backends.remote import RemoteBackend

            remote = RemoteBackend(
                config.endpoint,
                config.model,
                api_key=config.api_key,
                timeout_s=config.request_timeout_s,
                retries=config.request_retries,
                max_concurrency=config.max_concurrent_requests,
            )
            remote.connect()
            return remote
        from llava_video_mcp.tools.backends.transformers import TransformersBackend

        return TransformersBackend.load(
            config.model or DEFAULT_MODEL,
            config.device,
            config.dtype,
            prefix_cache_gb=config.prefix_cache_gb,
            on_download=on_download,
            compile_decode=config.compile_decode,
        )


class Ready:
    """A provider for a backend that is already up (a test's, a notebook's): nothing to load."""

    def __init__(self, backend: VideoLanguageBackend) -> None:
        self.backend = backend

    @property
    def label(self) -> str:
        return self.backend.model_id

    @property
    def loaded(self) -> VideoLanguageBackend | None:
        return self.backend

    def get(self, on_download: DownloadProgress | None = None) -> tuple[VideoLanguageBackend, float]:
        return self.backend, 0.0

    def close(self) -> None:
        self.backend.close()
