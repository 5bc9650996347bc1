"""Settings, each declared once: a typed field with its range or choices, its flag, its environment variable
LLAVA_VIDEO_MCP_<FLAG> and its help. The command line parser, the environment's reading, the checks and the
docs' flag table (docs/configuration.md) are all made from these declarations.

Why argparse generated from a pydantic model, and not pydantic-settings: every value, from a flag or from the
environment, goes through the same validation, and a bad one must be refused with one line that names where it came
from (`--port 99999: ...`, `LLAVA_VIDEO_MCP_PORT=abc: ...`); `--help` must stay fast and work whatever the
environment holds (the environment is read only after argparse is done); and flags shared by the server and the
terminal commands may stand before or after the command. Generating argparse from the fields keeps one declaration
and all three, with no extra dependency.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo

from llava_video_mcp.tools.backends import API_KEY_VARIABLE, DEFAULT_MODEL, BackendConfig, SpeechConfig
from llava_video_mcp.tools.backends.families import FrameCost
from llava_video_mcp.tools.backends.ocr import OcrChoice
from llava_video_mcp.tools.backends.speech.loader import (
    CPU_DEFAULT,
    CUDA_DEFAULT,
    engine_choices,
    engine_help,
    read_model,
)
from llava_video_mcp.tools.limits import MAX_SCREEN_FRAMES

if TYPE_CHECKING:
    from llava_video_mcp.tools.answer import WindowOptions
    from llava_video_mcp.tools.media import FetchPolicy

ENV_PREFIX = "LLAVA_VIDEO_MCP_"
AUTH_TOKEN_VARIABLE = ENV_PREFIX + "AUTH_TOKEN"
COMMANDS = ("describe", "compare", "moments")


class ConfigError(Exception):
    """A flag (or environment variable) that cannot work; the message names it and says what to change."""


@dataclass(frozen=True)
class Flag:
    """How a setting is given: its flag (derived from the field's name unless named), its environment variable
    (LLAVA_VIDEO_MCP_ and the flag's name), and its help."""

    help: str
    group: str = "general"
    flag: str | None = ""
    """"" derives it from the field's name; None: environment only (secrets: flags show in process lists)."""
    short: str | None = None
    env: bool = True
    server_only: bool = False
    """Only for the MCP server, not for the terminal commands."""
    metavar: str | None = None
    repeated: str | None = None
    """For a list: the flag may be given several times, and the environment separates values with this."""
    negatable: bool = False
    """A yes/no flag that also has its --no- form (its default is neither: decided from other settings)."""
    default: str | None = None
    """The default in words, where the field's own (None) says nothing."""
    choices: Callable[[], tuple[str, ...]] | None = None
    """The words it takes, where a registry lists them (read when asked); else a Literal annotation's."""


def _flag(info: FieldInfo) -> Flag:
    return next(item for item in info.metadata if isinstance(item, Flag))


TRANSPORTS = ("stdio", "http")
NO_MODEL = "none"
"""`--model none`: evidence mode, no model loaded or downloaded."""


class Settings(BaseModel):
    """Everything the server and the terminal commands are configured with."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: Annotated[
        str | None,
        Flag(
            "hub id or local folder of a llava-interleave, llava-onevision, Qwen2.5-VL or Qwen3-VL model (the first "
            "run downloads ~1.7 GB); "
            "llava-hf/llava-interleave-qwen-7b-hf for the larger one; with --endpoint, the served model's id; none: "
            "no model (evidence mode): the tools return the frames as images, the transcript and on-screen text, for "
            "the calling agent to look at",
            group="model",
            default=f"{DEFAULT_MODEL}; with --endpoint, the first model it lists",
        ),
    ] = None
    device: Annotated[
        Literal["auto", "cuda", "mps", "xpu", "cpu"],
        Flag("where the model runs; auto picks cuda, then mps, then xpu, then cpu", group="model"),
    ] = "auto"
    dtype: Annotated[
        Literal["auto", "float32", "bfloat16", "float16", "mixed"],
        Flag(
            "weights' dtype; auto is bfloat16 (float16 where unsupported) on accelerators and on CPUs with bf16 "
            "instructions, else float32; mixed: float32 weights, frames and prompt read in bfloat16",
            group="model",
        ),
    ] = "auto"
    prefix_cache_gb: Annotated[
        float | None,
        Field(ge=0),
        Flag(
            "memory kept for follow-up questions' reuse of the frames' attention state",
            group="model",
            default="half the free accelerator memory after loading, or a quarter of the available RAM on CPU",
        ),
    ] = None
    preload: Annotated[bool, Flag("load the model at start instead of on the first call", group="model")] = False
    compile_decode: Annotated[
        bool,
        Flag(
            "compile the decoding step over the static cache (CUDA graphs on CUDA): the same tokens, less overhead a "
            "token; experimental, not yet measured on a GPU, and its first call compiles for a minute",
            group="model",
        ),
    ] = False
    endpoint: Annotated[
        str | None,
        Flag(
            "base URL of an OpenAI-compatible server to run the model on, e.g. http://gpu-box:8000/v1",
            group="serving engine",
            metavar="URL",
        ),
    ] = None
    api_key: Annotated[
        str | None,
        Field(repr=False),
        Flag("API key for --endpoint (never a flag: flags show in process lists)", group="serving engine", flag=None),
    ] = None
    request_timeout_s: Annotated[
        float,
        Field(gt=0, le=3600),
        Flag("longest wait for the engine's next bytes, the first token included", group="serving engine"),
    ] = 120.0
    request_retries: Annotated[
        int,
        Field(ge=0, le=10),
        Flag("retries, with backoff, of an engine request that failed to connect, timed out, or got 429/5xx",
             group="serving engine"),
    ] = 2  # fmt: skip
    max_concurrent_requests: Annotated[
        int,
        Field(ge=1, le=256),
        Flag("calls in flight to the engine at once, so it can batch them; more wait their turn",
             group="serving engine"),
    ] = 8  # fmt: skip
    frame_cost: Annotated[
        tuple[Annotated[int, Field(ge=1, le=4096)], Annotated[int, Field(ge=1, le=65536)]] | None,
        Flag(
            "what a frame costs the engine's model, as its side in pixels and its prompt tokens (e.g. 384:729), for "
            "the tools' descriptions; a model in process costs what its family says",
            group="serving engine",
            metavar="PX:TOKENS",
            default="unsaid",
        ),
    ] = None
    asr_model: Annotated[
        str,
        Field(min_length=1),
        Flag(
            f"speech model that hears videos without subtitles: a Whisper hub id or folder; auto: {CUDA_DEFAULT} on "
            f"CUDA, else {CPU_DEFAULT}; none: subtitles only; with --asr-endpoint, the served model's id",
            group="speech",
        ),
    ] = "auto"
    asr_engine: Annotated[str, Flag(engine_help(), group="speech", choices=engine_choices)] = "auto"
    asr_endpoint: Annotated[
        str | None,
        Flag(
            "base URL of an OpenAI-compatible server whose /v1/audio/transcriptions hears the speech (vLLM serving "
            "Whisper); it shares --endpoint's API key",
            group="speech",
            metavar="URL",
        ),
    ] = None
    ocr_engine: Annotated[
        OcrChoice,
        Flag(
            "what reads text shown on screen (slides, terminals, captions): rapidocr (PP-OCRv6, its weights in the "
            "package); tesseract (the program on PATH); auto: the first of those installed; none: no reading",
            group="on-screen text",
        ),
    ] = "auto"
    ocr_max_frames: Annotated[
        int,
        Field(ge=1, le=10_000),
        Flag(
            "frames a call reads on screen in one video, at most, or one 30 s part whatever it holds (about a "
            "second of CPU a frame): a longer range is read in parts spread over it, and a later call reads on",
            group="on-screen text",
        ),
    ] = MAX_SCREEN_FRAMES
    cache_dir: Annotated[
        Path, Flag("where downloaded videos, and what is derived from videos, are kept", group="downloads and cache")
    ] = Field(default_factory=lambda: _default_cache_dir())
    cache_max_gb: Annotated[
        float,
        Field(gt=0),
        Flag("size cap of the download cache; least recently used videos go first", group="downloads and cache"),
    ] = 5.0
    max_duration_s: Annotated[
        float,
        Field(gt=0),
        Flag("longest video accepted (checked before downloading where the site says)", group="downloads and cache"),
    ] = 3 * 3600.0
    max_download_mb: Annotated[float, Field(gt=0), Flag("largest download accepted", group="downloads and cache")] = (
        2048.0
    )
    download_timeout_s: Annotated[
        float, Field(gt=0, le=3600), Flag("network timeout of each download request", group="downloads and cache")
    ] = 30.0
    download_deadline_s: Annotated[
        float,
        Field(gt=0),
        Flag("longest a whole download may take, a server that drips data included", group="downloads and cache"),
    ] = 3600.0
    download_retries: Annotated[
        int, Field(ge=0, le=20), Flag("retries of a failed download request", group="downloads and cache")
    ] = 3
    max_concurrent_downloads: Annotated[
        int,
        Field(ge=1, le=64),
        Flag("downloads running at once; calls on cached or local videos never wait for them",
             group="downloads and cache"),
    ] = 4  # fmt: skip
    cookies: Annotated[
        Path | None,
        Flag("cookies file (Netscape format) for private, age-restricted or bot-checked videos",
             group="downloads and cache", metavar="FILE"),
    ] = None  # fmt: skip
    window_s: Annotated[
        float,
        Field(ge=1, le=3600),
        Flag('longest window a long video is watched in (coverage="full")', group="long videos"),
    ] = 60.0
    max_windows: Annotated[
        int,
        Field(ge=1, le=10_000),
        Flag("most windows one call may watch, a bound on its cost", group="long videos"),
    ] = 120
    block_private_urls: Annotated[
        bool | None,
        Flag(
            "refuse URLs (redirects included) that reach loopback, private or link-local addresses",
            group="safety",
            negatable=True,
            default="on over HTTP, off on stdio",
        ),
    ] = None
    allow_dirs: Annotated[
        tuple[Path, ...],
        Flag(
            "folder that local paths may come from; without it, any local file on stdio and none over HTTP",
            group="safety",
            flag="--allow-dir",
            metavar="DIR",
            repeated=os.pathsep,
        ),
    ] = ()
    transport: Annotated[
        Literal["stdio", "http"],
        Flag("stdio, or http: streamable HTTP at http://HOST:PORT/mcp", group="server", server_only=True),
    ] = "stdio"
    host: Annotated[str, Field(min_length=1), Flag("HTTP host", group="server", server_only=True)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535), Flag("HTTP port", group="server", server_only=True)] = 8000
    auth_token: Annotated[
        str | None,
        Field(repr=False),
        Flag("bearer token HTTP clients must send, 16 characters or more", group="server", flag=None,
             server_only=True),
    ] = None  # fmt: skip
    auth_token_file: Annotated[
        Path | None,
        Flag("file holding the bearer token HTTP clients must send", group="server", server_only=True, metavar="FILE"),
    ] = None
    allowed_hosts: Annotated[
        tuple[str, ...],
        Flag(
            "host name (or name:port) clients may reach the server by, beside the bound address, e.g. a reverse "
            "proxy's; Host and Origin headers are checked against them",
            group="server",
            flag="--allowed-host",
            server_only=True,
            metavar="NAME",
            repeated=",",
        ),
    ] = ()
    trust_network: Annotated[
        bool,
        Flag("allow serving HTTP on a non-loopback address without a token: only on a network whose every client "
             "is trusted", group="server", server_only=True),
    ] = False  # fmt: skip
    max_connections: Annotated[
        int,
        Field(ge=8, le=65536),
        Flag("open HTTP connections at most (kept below the process's file limit); idle ones are closed first",
             group="server", server_only=True),
    ] = 256  # fmt: skip
    progress_interval_s: Annotated[
        float,
        Field(gt=0, le=3600),
        Flag("longest gap between progress notifications during a call", group="server", server_only=True),
    ] = 5.0
    verbose: Annotated[bool, Flag("debug logs on stderr", short="-v")] = False

    @field_validator("endpoint", "asr_endpoint")
    @classmethod
    def _endpoint_is_a_base_url(cls, value: str | None) -> str | None:
        if value is not None and (problem := _endpoint_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _none_in_any_case(cls, value: Any) -> Any:
        return NO_MODEL if isinstance(value, str) and value.strip().lower() == NO_MODEL else value

    @field_validator("endpoint")
    @classmethod
    def _engine_needs_a_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("model") == NO_MODEL:
            raise ValueError(f"runs a model, and --model is {NO_MODEL}: leave out one of them")
        return value

    @property
    def looking_only(self) -> bool:
        """`--model none`: no model; the tools return what they chose, heard and read for the agent to look at."""
        return self.model == NO_MODEL

    @field_validator("frame_cost", mode="before")
    @classmethod
    def _side_and_tokens(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        side, colon, tokens = value.strip().partition(":")
        if not colon:
            raise ValueError("must be a whole number of pixels, a colon, a whole number of tokens: PX:TOKENS (384:729)")
        return (side.strip(), tokens.strip())

    @field_validator("frame_cost")
    @classmethod
    def _frame_cost_is_an_engines(cls, value: tuple[int, int] | None, info: ValidationInfo) -> tuple[int, int] | None:
        if value is not None and not info.data.get("endpoint"):
            raise ValueError(
                "is for a model on a serving engine (--endpoint); a model in process costs what its family says"
            )
        return value

    @field_validator("transport", "device", "dtype", "asr_engine", "ocr_engine", mode="before")
    @classmethod
    def _choices_in_any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("asr_engine")
    @classmethod
    def _a_speech_engine(cls, value: str) -> str:
        if value not in (choices := engine_choices()):
            listed = ", ".join(f"'{choice}'" for choice in choices[:-1])
            raise ValueError(f"must be one of {listed} or '{choices[-1]}'")
        return value

    @field_validator("asr_model", mode="before")
    @classmethod
    def _speech_words_in_any_case(cls, value: Any) -> Any:
        return read_model(value) if isinstance(value, str) else value

    @field_validator("cache_dir", "cookies", "auth_token_file")
    @classmethod
    def _home_expanded(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("allow_dirs")
    @classmethod
    def _homes_expanded(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        return tuple(folder.expanduser() for folder in value)

    def backend_config(self) -> BackendConfig:
        return BackendConfig(
            model=self.model,
            device=self.device,
            dtype=self.dtype,
            endpoint=self.endpoint,
            api_key=self.api_key,
            request_timeout_s=self.request_timeout_s,
            request_retries=self.request_retries,
            max_concurrent_requests=self.max_concurrent_requests,
            prefix_cache_gb=self.prefix_cache_gb,
            compile_decode=self.compile_decode,
            frame_cost=FrameCost(*self.frame_cost) if self.frame_cost else None,
        )

    def speech_config(self) -> SpeechConfig:
        return SpeechConfig(
            model=self.asr_model,
            device=self.device,
            engine=self.asr_engine,
            store=self.cache_dir / "speech-models",
            endpoint=self.asr_endpoint,
            api_key=self.api_key,
            request_timeout_s=self.request_timeout_s,
            request_retries=self.request_retries,
            max_concurrent_requests=self.max_concurrent_requests,
        )

    def window_options(self) -> WindowOptions:
        from llava_video_mcp.tools.answer import WindowOptions

        return WindowOptions(window_s=self.window_s, max_windows=self.max_windows)

    def fetch_policy(self) -> FetchPolicy:
        from llava_video_mcp.tools.media import FetchPolicy

        over_http = self.transport == "http"
        return FetchPolicy(
            max_duration_s=self.max_duration_s,
            max_download_bytes=int(self.max_download_mb * 2**20),
            download_deadline_s=self.download_deadline_s,
            download_timeout_s=self.download_timeout_s,
            download_retries=self.download_retries,
            cookies=self.cookies,
            block_private_urls=over_http if self.block_private_urls is None else self.block_private_urls,
            local_files=bool(self.allow_dirs) or not over_http,
            allowed_dirs=tuple(folder.resolve() for folder in self.allow_dirs),
        )


_ENDPOINT_FORM = "write it as http://HOST:PORT/v1 (an IPv6 host in brackets: http://[::1]:8000/v1)"
_SECRET_FIELDS = ("endpoint", "asr_endpoint")
"""URLs that may hold a password (http://user:password@host/v1): a refusal shows them without it."""


def _endpoint_problem(url: str) -> str | None:
    """What keeps `url` from being an engine's base URL, in words that never repeat its credentials; None if it
    can be one."""
    if not url.lower().startswith(("http://", "https://")):
        if "://" in url:
            return f"the scheme must be http:// or https://; {_ENDPOINT_FORM}"
        return "needs a scheme: http://HOST:PORT/v1 or https://HOST/v1"
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError:
        return f"not a valid URL (a malformed host or port); {_ENDPOINT_FORM}"
    if not host or not all(ch.isprintable() and not ch.isspace() for ch in host):
        return f"names no host, or one with spaces or control characters; {_ENDPOINT_FORM}"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return (
            f"a base URL takes no query string or fragment (the engine's paths are added to it); {_ENDPOINT_FORM}, "
            f"and give an API key in {API_KEY_VARIABLE}"
        )
    import httpx2  # what the engine's client reads the URL with, and it is stricter (no control characters)

    try:
        httpx2.URL(url)
    except httpx2.InvalidURL:
        return f"not a valid URL (a malformed host or port, or a character a URL cannot hold); {_ENDPOINT_FORM}"
    return None


def _without_secrets(url: str) -> str:
    """The URL as a refusal may show it: no user or password, no query string or fragment."""
    return re.sub(r"(?<=//)[^/?#]*@", "", url).split("?", 1)[0].split("#", 1)[0]


def _default_cache_dir() -> Path:
    """Imported when used: the download stack (yt-dlp, PyAV) is not needed for --help."""
    from llava_video_mcp.tools.media.sources import default_cache_dir

    return default_cache_dir()


# The declarations, as the parser, the environment and the docs read them.


@dataclass(frozen=True)
class Declared:
    name: str
    info: FieldInfo
    flag: Flag

    @property
    def option(self) -> str | None:
        if self.flag.flag is None:
            return None
        return self.flag.flag or "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str | None:
        if not self.flag.env:
            return None
        stem = (self.option or "--" + self.name.replace("_", "-")).removeprefix("--")
        return ENV_PREFIX + stem.upper().replace("-", "_")

    @property
    def kind(self) -> str:
        annotation = str(self.info.annotation)
        if "bool" in annotation:
            return "bool"
        return "list" if self.flag.repeated else "value"

    def default_text(self) -> str:
        if self.flag.default is not None:
            return self.flag.default
        if self.name == "cache_dir":
            return "~/.cache/llava-video-mcp (per platform)"
        default = self.info.get_default(call_default_factory=False)
        if default is None or default == ():
            return "none"
        if isinstance(default, bool):
            return "on" if default else "off"
        if isinstance(default, float) and default.is_integer():
            return str(int(default))
        return str(default)

    def choices(self) -> tuple[str, ...]:
        if self.flag.choices is not None:
            return self.flag.choices()
        return tuple(str(choice) for choice in get_args(self.info.annotation) if isinstance(choice, str))


def declared() -> Iterator[Declared]:
    for name, info in Settings.model_fields.items():
        yield Declared(name, info, _flag(info))


def flags_table() -> str:
    """The flag table of docs/configuration.md, made from the declarations (docs/generate.py writes it there, and a
    test holds the page equal to it)."""
    rows = ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for item in declared():
        option = item.option
        shown = "(environment only)" if option is None else f"`{option}`"
        if option is not None and item.flag.short:
            shown = f"`{item.flag.short}`, {shown}"
        if item.flag.negatable and option is not None:
            shown += f", `--no-{option.removeprefix('--')}`"
        if item.flag.metavar and option is not None:
            shown = shown[:-1] + f" {item.flag.metavar}`"
        if item.flag.repeated:
            shown += " (repeatable)"
        variable = f"`{item.variable}`" if item.variable else ""
        if item.flag.repeated and item.variable:
            separator = "`:`" if item.flag.repeated == os.pathsep else f"`{item.flag.repeated}`"
            variable += f" ({separator}-separated)"
        meaning = item.flag.help
        if item.choices():
            meaning = f"{', '.join(f'`{c}`' for c in item.choices())}: {meaning}"
        if item.flag.server_only:
            meaning += " (server only)"
        rows.append(f"| {shown} | {variable} | {item.default_text()} | {meaning} |")
    return "\n".join(rows)


# Parsing: flags, then the environment, then one validation that names where a bad value came from.


def add_settings_arguments(parser: argparse.ArgumentParser, *, server: bool) -> None:
    """The settings' flags, grouped; every default is SUPPRESS, so the namespace holds only what was given."""
    groups: dict[str, Any] = {}
    for item in declared():
        option = item.option
        if option is None or (item.flag.server_only and not server):
            continue
        group = groups.setdefault(item.flag.group, parser.add_argument_group(item.flag.group))
        names = [item.flag.short, option] if item.flag.short else [option]
        where = f"; env {item.variable}" if item.variable else ""
        help_text = f"{item.flag.help} (default: {item.default_text()}{where})".replace("%", "%%")
        common: dict[str, Any] = {"dest": item.name, "default": argparse.SUPPRESS, "help": help_text}
        if item.flag.negatable:
            group.add_argument(*names, action=argparse.BooleanOptionalAction, **common)
        elif item.kind == "bool":
            group.add_argument(*names, action="store_true", **common)
        elif item.flag.repeated:
            group.add_argument(*names, action="append", metavar=item.flag.metavar or "VALUE", **common)
        else:
            choices = item.choices()
            metavar = "{" + ",".join(choices) + "}" if choices else (item.flag.metavar or _metavar(item))
            group.add_argument(*names, metavar=metavar, **common)


def _metavar(item: Declared) -> str:
    for suffix, unit in (("_s", "SECONDS"), ("_gb", "GB"), ("_mb", "MB")):
        if item.name.endswith(suffix):
            return unit
    if "int" in str(item.info.annotation):
        return "N"
    return "DIR" if "Path" in str(item.info.annotation) else item.name.upper()


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Validate what was given: flags win over the environment; ConfigError names the flag or the variable. A
    variable with this server's prefix that names no setting (a typo) is refused with the closest one, not
    ignored."""
    _refuse_unknown_variables(environ)
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    given = vars(args)
    for item in declared():
        if item.name in given:
            value = given[item.name]
            raw[item.name] = value
            shown = " ".join(str(v) for v in value) if isinstance(value, list) else str(value)
            shown = _without_secrets(shown) if item.name in _SECRET_FIELDS else shown
            sources[item.name] = f"{item.option} {shown}" if not isinstance(value, bool) else str(item.option)
        elif item.variable and (text := environ.get(item.variable, "").strip()):
            if item.flag.repeated:
                raw[item.name] = [part for part in text.split(item.flag.repeated) if part.strip()]
            else:
                raw[item.name] = text
            shown = "..." if item.flag.flag is None else text  # secrets are never shown
            shown = _without_secrets(shown) if item.name in _SECRET_FIELDS else shown
            sources[item.name] = f"{item.variable}={shown}"
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        raise ConfigError(f"{sources.get(name, name)}: {_problem(error)}") from None


def _refuse_unknown_variables(environ: Mapping[str, str]) -> None:
    known = sorted(item.variable for item in declared() if item.variable)
    unknown = sorted(name for name in environ if name.upper().startswith(ENV_PREFIX) and name not in known)
    if not unknown:
        return
    name = unknown[0]
    stems = [variable.removeprefix(ENV_PREFIX) for variable in known]
    close = difflib.get_close_matches(name.upper().removeprefix(ENV_PREFIX), stems, n=1, cutoff=0.6)
    hint = (
        f"did you mean {ENV_PREFIX}{close[0]}?"
        if close
        else f"they are {ENV_PREFIX}<FLAG>, one for each flag in --help."
    )
    raise ConfigError(f"{name}: this server has no such setting; {hint}")


def _problem(error: Any) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "int_parsing" or kind == "int_from_float" or kind == "int_type":
        return "must be a whole number."
    if kind in ("float_parsing", "float_type", "finite_number"):
        return "must be a finite number."
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false (also 1/0, yes/no, on/off)."
    if kind == "literal_error":
        return f"must be one of {context.get('expected', 'the listed values')}."
    if kind == "greater_than":
        return f"must be more than {context['gt']:g}."
    if kind == "greater_than_equal":
        return f"must be {context['ge']:g} or more."
    if kind == "less_than_equal":
        return f"must be {context['le']:g} at most."
    if kind == "less_than":
        return f"must be less than {context['lt']:g}."
    if kind == "value_error":
        return str(context.get("error", error["msg"])).rstrip(".") + "."
    return str(error["msg"]).rstrip(".") + "."


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("llava-video-mcp")
    except PackageNotFoundError:
        return "0.0.0"
