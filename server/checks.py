"""Configuration checked at start, so that a wrong flag stops the server (or a terminal command) at once with one
line naming the flag, instead of failing on the first call: the model folders (llava's, none with --model none, and
Whisper's), the device, the engine, the cookies file, the allowed folders, the cache folder, and for HTTP the port,
the token and a safe bind."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from pathlib import Path

from llava_video_mcp.server.settings import AUTH_TOKEN_VARIABLE, ConfigError, Settings
from llava_video_mcp.tools.backends import DEFAULT_MODEL

__all__ = ["ConfigError", "check", "is_loopback"]


def check(settings: Settings, *, serving_http: bool = False) -> Settings:
    """Check the configuration; return the settings with the HTTP token read from its file."""
    if settings.endpoint is None and not settings.looking_only:
        from llava_video_mcp.tools.backends.families import FAMILIES

        _check_model(settings.model or DEFAULT_MODEL, kinds={family.model_type: family.name for family in FAMILIES})
        _check_device(settings.device)
    named = settings.speech_config().named  # `auto` and `none` read once, in any case, by the speech config
    if settings.asr_endpoint is None and named is not None:
        _check_model(named, flag="--asr-model", kinds={"whisper": "whisper"})
    _check_ocr(settings.ocr_engine)
    if settings.cookies is not None and not _readable(settings.cookies):
        raise ConfigError(
            f"--cookies {settings.cookies}: cannot read that file. Export cookies (Netscape format) there."
        )
    for folder in settings.allow_dirs:
        if not folder.is_dir():
            raise ConfigError(f"--allow-dir {folder}: no such folder.")
    _check_cache(settings.cache_dir)
    if serving_http:
        settings = _check_http(settings)
    return settings


def _check_model(model: str, *, kinds: dict[str, str], flag: str = "--model") -> None:
    """A folder holding a model of one of `kinds` (model_type: name), or a hub id that can be had."""
    local = Path(model).expanduser()
    names = " or ".join(kinds.values())
    if model.startswith((".", "/", "~")) or local.exists():
        if not local.is_dir():
            raise ConfigError(f"{flag} {model}: no such folder. Pass a folder holding a {names} model, or a hub id.")
        from llava_video_mcp.tools.backends.speech.whisper import is_ctranslate2_folder

        if flag == "--asr-model" and is_ctranslate2_folder(local):
            return  # faster-whisper's layout: the speech model checks the rest when it loads
        try:
            config = json.loads((local / "config.json").read_text())
        except (OSError, ValueError):
            raise ConfigError(f"{flag} {model}: the folder holds no model (no readable config.json).") from None
        found = config.get("model_type")
        if found not in kinds and len(kinds) == 1:
            raise ConfigError(f"{flag} {model}: the folder holds a '{found}' model, not a {names} model.")
        if found not in kinds:
            supported = ", ".join(f"{name} ('{kind}')" for kind, name in kinds.items())
            raise ConfigError(
                f"{flag} {model}: the folder holds a '{found}' model, which this server does not run in process. "
                f"Supported: {supported}."
            )
        return
    if not _is_hub_id(model):
        raise ConfigError(
            f"{flag} {model}: neither a folder nor a hub id (NAME or OWNER/NAME: letters, digits, '-', '_' and '.', "
            f"at most 96 characters). Pass a hub id such as {_EXAMPLES.get(flag, DEFAULT_MODEL)}, or a folder (a "
            "path starting with ./, / or ~)."
        )
    if _hub_offline() and not _cached(model):
        raise ConfigError(
            f"{flag} {model}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set. Download it once "
            f"(`hf download {model} --local-dir FOLDER`) and pass {flag} FOLDER."
        )


_EXAMPLES = {"--asr-model": "openai/whisper-base"}


def _is_hub_id(model: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils._validators import validate_repo_id  # exported lazily, which mypy cannot see

    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return True


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cached(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "config.json"), str)


def _check_ocr(choice: str) -> None:
    """An OCR engine named must be able to run here (`auto` and `none` always can: auto without one reads none)."""
    from llava_video_mcp.tools.backends.ocr import resolve_engine
    from llava_video_mcp.tools.errors import ModelError

    try:
        resolve_engine(choice)
    except ModelError as exc:
        raise ConfigError(f"--ocr-engine {choice}: {exc}") from None


def _check_device(device: str) -> None:
    if device in ("auto", "cpu"):
        return
    from llava_video_mcp.tools.backends.devices import pick_device
    from llava_video_mcp.tools.errors import ModelError

    try:
        pick_device(device)
    except ModelError:
        raise ConfigError(f"--device {device}: not available on this machine. Use --device auto.") from None


def _check_cache(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--cache-dir {folder}: cannot create it ({exc.strerror}).") from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--cache-dir {folder}: not writable by this user.")


def _check_http(settings: Settings) -> Settings:
    token = settings.auth_token
    if settings.auth_token_file is not None:
        try:
            token = settings.auth_token_file.read_text().strip()
        except OSError:
            raise ConfigError(f"--auth-token-file {settings.auth_token_file}: cannot read that file.") from None
        if not token:
            raise ConfigError(f"--auth-token-file {settings.auth_token_file}: the file is empty.")
    if token is not None and len(token) < 16:
        raise ConfigError(f"The HTTP token ({AUTH_TOKEN_VARIABLE} or --auth-token-file) must be 16 characters or more.")
    if token is None and not is_loopback(settings.host) and not settings.trust_network:
        raise ConfigError(
            f"--host {settings.host}: serving HTTP beyond this machine needs a token ({AUTH_TOKEN_VARIABLE} or "
            "--auth-token-file), or --trust-network on a network whose every client is trusted."
        )
    try:
        with socket.create_server((settings.host, settings.port)):
            pass
    except OSError as exc:
        raise ConfigError(f"--port {settings.port}: cannot listen on {settings.host} ({exc.strerror}).") from None
    return _with_token(settings, token)


def _with_token(settings: Settings, token: str | None) -> Settings:
    return settings.model_copy(update={"auth_token": token})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _readable(path: Path) -> bool:
    try:
        with path.open("rb"):
            return path.is_file()
    except OSError:
        return False
