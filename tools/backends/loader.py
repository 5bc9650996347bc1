"""Picks the backend from the configuration and brings it up once: the local model is loaded on first use (or at
start with `--preload`), a remote endpoint is checked at start. Calls that arrive together share one load."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from tools.backends.base import DEFAULT_MODEL, VideoLanguageBackend

API_KEY_VARIABLE = "LLAVA_VIDEO_MCP_API_KEY"
"""The one place a remote engine's API key comes from: never a flag (flags show in process lists)."""


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


class LazyBackend:
    """Brings up the backend on first use (or at start), once, however many calls arrive together."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self._backend: VideoLanguageBackend | None = None
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        if self._backend is not None:
            return self._backend.model_id
        if self.config.endpoint:
            return self.config.model or self.config.endpoint
        return self.config.model or DEFAULT_MODEL

    def get(self) -> tuple[VideoLanguageBackend, float]:
        """The backend, and the seconds this call spent bringing it up (0 when it already was)."""
        with self._lock:
            if self._backend is not None:
                return self._backend, 0.0
            started = time.perf_counter()
            self._backend = self._bring_up()
            return self._backend, time.perf_counter() - started

    def close(self) -> None:
        """Release the backend's open connections (at shutdown); a later call brings it up again."""
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None

    def _bring_up(self) -> VideoLanguageBackend:
        config = self.config
        if config.endpoint:
            from tools.backends.remote import RemoteBackend

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
        from tools.backends.transformers import TransformersBackend

        return TransformersBackend.load(
            config.model or DEFAULT_MODEL, config.device, config.dtype, prefix_cache_gb=config.prefix_cache_gb
        )
