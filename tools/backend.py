"""Model backends: one small protocol, and the local transformers implementation of it.

A backend takes frames and a question and returns generated text with its token counts. The tools never talk
to transformers directly, so a remote backend (an OpenAI-compatible endpoint, say) can meet the same protocol.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from tools.errors import ModelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_MODEL = "llava-hf/llava-interleave-qwen-0.5b-hf"
DEVICES = ("auto", "cuda", "mps", "xpu", "cpu")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Prompt:
    """Frames in model order, and the text that follows them."""

    images: Sequence[Image.Image]
    text: str


@dataclass(frozen=True)
class Generation:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    hit_token_limit: bool


class VideoLanguageBackend(ABC):
    """What every model backend offers the tools."""

    model_id: str
    device: str
    dtype: str

    @abstractmethod
    def generate(self, prompt: Prompt, max_new_tokens: int) -> Generation:
        """Answer the prompt greedily; thread-safe (calls take turns)."""


def pick_device(requested: str = "auto") -> str:
    """The best local accelerator: cuda, then mps, then xpu, else cpu."""
    import torch

    if requested not in DEVICES:
        raise ModelError(f"Unknown device '{requested}'. Use --device with one of: {', '.join(DEVICES)}.")
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "xpu": hasattr(torch, "xpu") and torch.xpu.is_available(),
        "cpu": True,
    }
    if requested != "auto":
        if not available[requested]:
            raise ModelError(f"--device {requested} was asked for but is not available here. Use --device auto.")
        return requested
    return next(name for name, ok in available.items() if ok)


def pick_dtype(device: str, requested: str = "auto") -> torch.dtype:
    """bf16 (fp16 where bf16 is unsupported) on accelerators; fp32 on CPU, where bf16 decoding is 3x slower."""
    import torch

    if requested not in DTYPES:
        raise ModelError(f"Unknown dtype '{requested}'. Use --dtype with one of: {', '.join(DTYPES)}.")
    if requested != "auto":
        return getattr(torch, requested)  # type: ignore[no-any-return]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    if device == "xpu":
        return torch.bfloat16
    return torch.float32


def _load_hint(model_id: str) -> str:
    return (
        f"Set --model (or LLAVA_VIDEO_MCP_MODEL) to a llava-interleave hub id such as {DEFAULT_MODEL} "
        "(the first run downloads about 1.7 GB, so the network must reach huggingface.co), or to a local folder "
        f"holding one (config.json, the weights and the processor files), e.g. after `hf download {DEFAULT_MODEL} "
        "--local-dir ./llava-interleave`."
    )


class TransformersBackend(VideoLanguageBackend):
    """llava-interleave (or any llava model) through transformers, on the best local device."""

    def __init__(self, model: Any, processor: Any, model_id: str, device: str) -> None:
        self._model = model
        self._processor = processor
        self._turn = threading.Lock()
        self.model_id = model_id
        self.device = device
        self.dtype = str(model.dtype).removeprefix("torch.")

    @classmethod
    def load(cls, model_id: str, device: str = "auto", dtype: str = "auto") -> TransformersBackend:
        """Load from a hub id or a local folder; raise ModelError with a fix when that fails."""
        # transformers is only partly typed: everything from it is handled as Any here.
        hf: Any = importlib.import_module("transformers")

        hf.utils.logging.disable_progress_bar()
        chosen_device = pick_device(device)
        chosen_dtype = pick_dtype(chosen_device, dtype)
        local = Path(model_id).expanduser()
        if model_id.startswith((".", "/", "~")) or local.exists():
            if not local.is_dir():
                raise ModelError(f"No model folder at {local}. {_load_hint(model_id)}")
            if not (local / "config.json").is_file():
                raise ModelError(f"{local} holds no model (no config.json). {_load_hint(model_id)}")
            model_id = str(local)
        started = time.perf_counter()
        try:
            config = hf.AutoConfig.from_pretrained(model_id)
            if config.model_type != "llava":
                raise ModelError(
                    f"{model_id} is a '{config.model_type}' model, not a llava model. {_load_hint(model_id)}"
                )
            processor = hf.AutoProcessor.from_pretrained(model_id)
            model = hf.LlavaForConditionalGeneration.from_pretrained(model_id, dtype=chosen_dtype)
        except ModelError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"Could not load the model '{model_id}': {reason}. {_load_hint(model_id)}") from exc
        model.to(chosen_device)
        model.eval()
        log.info("loaded %s on %s (%s) in %.1f s", model_id, chosen_device, model.dtype, time.perf_counter() - started)
        return cls(model, processor, model_id, chosen_device)

    def prompt_inputs(self, prompt: Prompt) -> Any:
        """Model inputs for the prompt, built with the processor's own chat template, one image entry per frame."""
        content: list[dict[str, str]] = [{"type": "image"} for _ in prompt.images]
        content.append({"type": "text", "text": prompt.text})
        conversation = [{"role": "user", "content": content}]
        text = self._processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        inputs = self._processor(text=text, images=list(prompt.images), return_tensors="pt")
        return inputs.to(self._model.device, dtype=self._model.dtype)

    def generate(self, prompt: Prompt, max_new_tokens: int) -> Generation:
        import torch

        with self._turn:
            inputs = self.prompt_inputs(prompt)
            prompt_length = int(inputs["input_ids"].shape[1])
            tokenizer = self._processor.tokenizer
            try:
                with torch.inference_mode():
                    output = self._model.generate(
                        **inputs,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        pad_token_id=tokenizer.pad_token_id
                        if tokenizer.pad_token_id is not None
                        else tokenizer.eos_token_id,
                    )
            except torch.OutOfMemoryError as exc:
                raise ModelError(
                    f"The model ran out of memory on {self.device} with {len(prompt.images)} frames. "
                    "Ask for fewer frames (num_frames / frames_per_video)."
                ) from exc
        new_ids = [int(t) for t in output[0, prompt_length:].tolist()]
        eos_ids = self._eos_ids()
        hit_limit = len(new_ids) >= max_new_tokens and not (new_ids and new_ids[-1] in eos_ids)
        text = self._processor.decode(new_ids, skip_special_tokens=True).strip()
        return Generation(text=text, token_ids=new_ids, prompt_tokens=prompt_length, hit_token_limit=hit_limit)

    def _eos_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        if eos is None:
            eos = self._processor.tokenizer.eos_token_id
        if isinstance(eos, int):
            return {eos}
        return {int(e) for e in eos or []}


class ModelProvider(Protocol):
    """Hands out the backend, loading it on first use; reports the seconds a call spent loading it."""

    model_id: str

    def get(self) -> tuple[VideoLanguageBackend, float]: ...


class LazyBackend:
    """Loads the backend on first use (or at start with preload), once, however many calls arrive together."""

    def __init__(self, model_id: str, device: str = "auto", dtype: str = "auto") -> None:
        self.model_id = model_id
        self._device = device
        self._dtype = dtype
        self._backend: VideoLanguageBackend | None = None
        self._lock = threading.Lock()

    def get(self) -> tuple[VideoLanguageBackend, float]:
        """The backend, and the seconds this call spent loading it (0 when it was already loaded)."""
        with self._lock:
            if self._backend is not None:
                return self._backend, 0.0
            started = time.perf_counter()
            self._backend = TransformersBackend.load(self.model_id, self._device, self._dtype)
            return self._backend, time.perf_counter() - started
