"""`Lazy[T]`: a model (the vision backend, the speech engine) brought up on first use, once, however many calls
arrive together; and what a failure to bring it up leaves behind, as a policy the user of it chooses.

Calls that arrive while it comes up wait for that one bring-up (a lock), then share what it brought. A failure is
remembered for as long as the policy says (`remember`), so that calls arriving in the meantime are answered at once
instead of each paying the failure's timeouts again; the memory holds only while the `key` is what it was when the
failure happened (what the model's folder holds, say), so a fixed setup is tried at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import DownloadProgress

__all__ = ["Closable", "Lazy", "never_remembered"]


class Closable(Protocol):
    def close(self) -> None: ...


T = TypeVar("T", bound=Closable)


def never_remembered(error: ModelError, key: str) -> float:
    """The default policy: no failure is remembered; every call tries again."""
    return 0.0


def as_it_was(error: ModelError, waited_s: float, left_s: float) -> ModelError:
    """A remembered failure told again as it was first told."""
    return error


@dataclass(frozen=True)
class _Failure:
    error: ModelError
    key: str
    at: float
    for_s: float


class Lazy(Generic[T]):
    """`bring_up` run once, on the first `get` that needs it. `remember(error, key)` says for how many seconds a
    failure is answered from memory (0: not at all, `math.inf`: until the key changes); `key()` is read before each
    bring-up; `retold(error, waited_s, left_s)` is the error a remembered failure raises."""

    def __init__(
        self,
        bring_up: Callable[[DownloadProgress | None], T],
        *,
        remember: Callable[[ModelError, str], float] = never_remembered,
        key: Callable[[], str] = lambda: "",
        retold: Callable[[ModelError, float, float], ModelError] = as_it_was,
    ) -> None:
        self._bring_up = bring_up
        self._remember = remember
        self._key = key
        self._retold = retold
        self._lock = threading.Lock()
        self._value: T | None = None
        self._failed: _Failure | None = None

    @property
    def loaded(self) -> T | None:
        """What was brought up, if it is up (brought up, and not closed since)."""
        return self._value

    def get(self, on_download: DownloadProgress | None = None) -> tuple[T, float]:
        """What was brought up, and the seconds this call spent bringing it up (0 when it already was)."""
        with self._lock:
            if self._value is not None:
                return self._value, 0.0
            key = self._key()
            failed = self._failed
            if failed is not None and failed.key == key:
                waited = time.monotonic() - failed.at
                if waited < failed.for_s:
                    raise self._retold(failed.error, waited, failed.for_s - waited)
            started = time.perf_counter()
            try:
                self._value = self._bring_up(on_download)
            except ModelError as exc:
                for_s = self._remember(exc, key)
                self._failed = _Failure(exc, key, time.monotonic(), for_s) if for_s > 0 else None
                raise
            self._failed = None
            return self._value, time.perf_counter() - started

    def close(self) -> None:
        """Close what was brought up (at shutdown); a later `get` brings it up again."""
        with self._lock:
            if self._value is not None:
                self._value.close()
                self._value = None
