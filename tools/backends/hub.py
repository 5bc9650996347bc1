"""Getting a hub model onto this machine: from the local cache without touching the network, or downloaded with its
bytes reported, or refused at once, with the fix, when the hub cannot be reached.

Left to itself, `from_pretrained` on a machine without network spends half a minute in retries on every call, and
a first download shows no progress at all (about 1.7 GB for the 0.5b model).
"""

from __future__ import annotations

import io
import logging
import os
import socket
from typing import Any
from urllib.parse import urlsplit

from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import DownloadProgress

log = logging.getLogger(__name__)


_WANTED = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]
"""The files a llava checkpoint needs: configs, safetensors weights, tokenizer and chat template (no .bin or
other formats' duplicates)."""
_PROBE_TIMEOUT_S = 5.0


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def local_snapshot(model_id: str, on_download: DownloadProgress | None = None, flag: str = "--model") -> str:
    """A local folder holding the model: the cached snapshot, or a fresh download with progress; `flag` is the
    setting that named it, for the fix."""
    import huggingface_hub
    from huggingface_hub import errors

    try:
        return str(huggingface_hub.snapshot_download(model_id, allow_patterns=_WANTED, local_files_only=True))
    except (errors.LocalEntryNotFoundError, OSError):
        pass
    fix = (
        f"Download it where there is network (`hf download {model_id} --local-dir FOLDER`), copy the folder here, "
        f"and pass {flag} FOLDER."
    )
    if offline():
        raise ModelError(
            f"The model '{model_id}' is not in the local Hugging Face cache, and HF_HUB_OFFLINE is set. {fix}"
        )
    _probe(model_id, fix)
    log.info("downloading %s from %s", model_id, hub_endpoint())
    try:
        folder = huggingface_hub.snapshot_download(
            model_id, allow_patterns=_WANTED, tqdm_class=_bytes_reporter(on_download)
        )
    except errors.RepositoryNotFoundError as exc:
        raise ModelError(f"The hub has no model '{model_id}' (or it is private). Check {flag}.") from exc
    except (errors.HfHubHTTPError, OSError) as exc:
        raise ModelError(
            f"Downloading the model '{model_id}' failed ({_first_line(exc)}). {fix}", retryable=True
        ) from exc
    return str(folder)


def _probe(model_id: str, fix: str) -> None:
    """Fail at once, not after half a minute of retries, when the hub's host cannot be reached at all."""
    parts = urlsplit(hub_endpoint())
    host = parts.hostname or "huggingface.co"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            return
    except OSError as exc:
        raise ModelError(
            f"Cannot reach {host} to download the model '{model_id}' ({exc.strerror or exc}). {fix} Or set "
            "HF_HUB_OFFLINE=1 to use only what is already cached.",
            retryable=True,
        ) from exc


def _bytes_reporter(on_download: DownloadProgress | None) -> Any:
    """A tqdm class for the hub's progress bars that prints nothing and reports the byte bars' counts."""
    from tqdm import tqdm

    class BytesReported(tqdm):  # type: ignore[misc]  # tqdm is untyped
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if on_download is not None and self.unit == "B":
                on_download(int(self.n), int(self.total) if self.total else None)
            return shown  # type: ignore[no-any-return]

    return BytesReported


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
