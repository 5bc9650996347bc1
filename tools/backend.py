"""Model backends: one small protocol, and the local transformers implementation of it.

A backend takes frames and a question and returns generated text with its token counts. The tools never talk
to transformers directly, so a remote backend (an OpenAI-compatible endpoint, say) can meet the same protocol.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from tools import attention
from tools.errors import LimitError, ModelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_MODEL = "llava-hf/llava-interleave-qwen-0.5b-hf"
DEVICES = ("auto", "cuda", "mps", "xpu", "cpu")
DTYPES = ("auto", "float32", "bfloat16", "float16", "mixed")
"""`mixed`: float32 weights for generating, with frames and prompt read under bfloat16 autocast."""


@dataclass(frozen=True)
class Prompt:
    """Frames in model order, and the text that follows them.

    `text[:question_start]` describes the frames (and carries their transcript); the rest is the question. Everything
    before the question is the same for every question about the same frames, so a backend may reuse its work.
    """

    images: Sequence[Image.Image]
    text: str
    question_start: int = 0


@dataclass(frozen=True)
class Generation:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    hit_token_limit: bool
    reused_tokens: int = 0
    """Prompt tokens whose attention state came from an earlier call about the same frames."""


InferenceProgress = Callable[[float, str], None]
"""Called with (fraction of the model stage done, what it is doing): encoding frames, reading the prompt,
generating tokens."""


class VideoLanguageBackend(ABC):
    """What every model backend offers the tools."""

    model_id: str
    device: str
    dtype: str
    prefill_dtype: str

    @abstractmethod
    def generate(self, prompt: Prompt, max_new_tokens: int, on_progress: InferenceProgress | None = None) -> Generation:
        """Answer the prompt greedily; thread-safe (calls take turns)."""


_HEADROOM = 256
"""Extra cache slots beyond this call's needs, so most follow-ups fit the prefix's cache as it is."""
_VISION_SHARE, _PREFILL_SHARE = 0.5, 0.2
"""Rough shares of the model stage taken by encoding frames and reading the prompt, for progress fractions."""


class TokenCounter:
    """A generate() streamer that counts the new tokens (the first push is the prompt) and reports each one."""

    def __init__(self, on_progress: InferenceProgress, max_new_tokens: int) -> None:
        self._on_progress = on_progress
        self._max_new_tokens = max_new_tokens
        self._seen_prompt = False
        self.count = 0

    def put(self, value: Any) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self.count += int(value.numel())
        done = _VISION_SHARE + _PREFILL_SHARE + (1 - _VISION_SHARE - _PREFILL_SHARE) * self.count / self._max_new_tokens
        self._on_progress(done, f"Generating: {self.count} of at most {self._max_new_tokens} tokens")

    def end(self) -> None:
        return None


class PrefixCache:
    """Attention state (KV cache) of prompt prefixes, least recently used out first, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0

    def take(self, key: str) -> Any | None:
        """The cache for this key, removed from the store while a generation extends it."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._bytes -= entry[1]
        return entry[0]

    def put(self, key: str, cache: Any, size: int) -> None:
        if size > self.max_bytes:
            return
        self._entries[key] = (cache, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._bytes -= evicted


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
    """The weights' dtype. Auto: bf16 (fp16 where bf16 is unsupported) on accelerators; on CPU, bf16 where the
    processor computes it natively (measured 1.75x faster than fp32 there, bench/model.py), else fp32, because
    emulated bf16 is slower than fp32."""
    import torch

    if requested not in DTYPES:
        raise ModelError(f"Unknown dtype '{requested}'. Use --dtype with one of: {', '.join(DTYPES)}.")
    if requested == "mixed":
        return torch.float32
    if requested != "auto":
        return getattr(torch, requested)  # type: ignore[no-any-return]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    if device == "xpu":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16, AMX, or Arm's BF16)."""
    import torch

    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return re.search(r"\b(avx512_bf16|amx_bf16|bf16)\b", flags) is not None


def _no_progress(fraction: float, message: str) -> None:
    return None


def _attention(device: str) -> str:
    """flash-attention 2 on CUDA when it is installed, else PyTorch's scaled-dot-product attention."""
    if device == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _prefill_dtype(requested: str) -> torch.dtype | None:
    """`--dtype mixed`: bf16 autocast for encoding frames and reading the prompt, fp32 weights for generating.
    For machines where bf16 generation is much slower than fp32 but bf16 prefill is faster."""
    import torch

    return torch.bfloat16 if requested == "mixed" else None


def _cache_bytes(cache: Any) -> int:
    return sum(
        int(t.numel() * t.element_size())
        for layer in cache.layers
        for t in (layer.keys, layer.values)
        if t is not None and hasattr(t, "numel")
    )


def _load_hint(model_id: str) -> str:
    return (
        f"Set --model (or LLAVA_VIDEO_MCP_MODEL) to a llava-interleave hub id such as {DEFAULT_MODEL} "
        "(the first run downloads about 1.7 GB, so the network must reach huggingface.co), or to a local folder "
        f"holding one (config.json, the weights and the processor files), e.g. after `hf download {DEFAULT_MODEL} "
        "--local-dir ./llava-interleave`."
    )


class TransformersBackend(VideoLanguageBackend):
    """llava-interleave (or any llava model) through transformers, on the best local device."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        model_id: str,
        device: str,
        *,
        prefill_dtype: torch.dtype | None = None,
        vision_chunk: int = 8,
        prefix_cache_bytes: int = 4 * 2**30,
    ) -> None:
        self._model = model
        self._processor = processor
        self._turn = threading.Lock()
        self._prefixes = PrefixCache(prefix_cache_bytes)
        self._prefill_dtype = prefill_dtype
        self._vision_chunk = vision_chunk
        self.model_id = model_id
        self.device = device
        if device == "cpu" and model.config.get_text_config()._attn_implementation == "sdpa":
            model.set_attn_implementation(attention.register())
        self.dtype = str(model.dtype).removeprefix("torch.")
        self.prefill_dtype = str(prefill_dtype or model.dtype).removeprefix("torch.")

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
            model = hf.LlavaForConditionalGeneration.from_pretrained(
                model_id, dtype=chosen_dtype, attn_implementation=_attention(chosen_device)
            )
        except ModelError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"Could not load the model '{model_id}': {reason}. {_load_hint(model_id)}") from exc
        model.to(chosen_device)
        model.eval()
        log.info("loaded %s on %s (%s) in %.1f s", model_id, chosen_device, model.dtype, time.perf_counter() - started)
        return cls(model, processor, model_id, chosen_device, prefill_dtype=_prefill_dtype(dtype))

    def _render(self, prompt: Prompt) -> str:
        """The prompt as text, from the processor's own chat template, one image entry per frame."""
        content: list[dict[str, str]] = [{"type": "image"} for _ in prompt.images]
        content.append({"type": "text", "text": prompt.text})
        conversation = [{"role": "user", "content": content}]
        return str(self._processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False))

    def _inputs(self, prompt: Prompt, rendered: str) -> Any:
        """Model inputs for the prompt: token ids with each frame's image tokens, and the frames' pixels."""
        inputs = self._processor(text=rendered, images=list(prompt.images), return_tensors="pt")
        return inputs.to(self._model.device, dtype=self._model.dtype)

    @property
    def context_length(self) -> int:
        config = self._model.config.get_text_config()
        return int(config.max_position_embeddings)

    @property
    def tokens_per_image(self) -> int:
        size = self._processor.image_processor.size
        side = int(size.get("shortest_edge") or size["height"])
        patches = (side // int(self._processor.patch_size)) ** 2
        tokens = patches + int(getattr(self._processor, "num_additional_image_tokens", 0) or 0)
        return tokens - 1 if self._processor.vision_feature_select_strategy == "default" else tokens

    def _check_context(self, prompt: Prompt, rendered: str, max_new_tokens: int) -> None:
        """Refuse, before any image is encoded, a prompt and answer that would not fit in the model's context."""
        text_tokens = len(self._processor.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        frames = len(prompt.images)
        per_image = self.tokens_per_image
        needed = text_tokens - frames + frames * per_image + max_new_tokens
        if needed <= self.context_length:
            return
        room = self.context_length - (text_tokens - frames) - max_new_tokens
        fitting = max(room // per_image, 0)
        raise LimitError(
            f"{frames} frames x {per_image} image tokens, the text and max_new_tokens={max_new_tokens} need "
            f"{needed} tokens, over this model's context of {self.context_length}. At most {fitting} frames fit: "
            "ask for fewer frames (num_frames or frames_per_video), or a smaller max_new_tokens."
        )

    def generate(self, prompt: Prompt, max_new_tokens: int, on_progress: InferenceProgress | None = None) -> Generation:
        import torch

        report = on_progress or _no_progress
        with self._turn:
            rendered = self._render(prompt)
            self._check_context(prompt, rendered, max_new_tokens)
            inputs = self._inputs(prompt, rendered)
            ids = inputs["input_ids"]
            prompt_length = int(ids.shape[1])
            prefix_length = self._prefix_length(prompt, rendered, ids)
            key = self._prefix_key(ids[0, :prefix_length], inputs["pixel_values"])
            tokenizer = self._processor.tokenizer
            streamer = TokenCounter(report, max_new_tokens)
            try:
                with torch.inference_mode():
                    capacity = prompt_length + max_new_tokens
                    cache = self._prefixes.take(key)
                    reused = prefix_length if cache is not None else 0
                    if cache is None:
                        cache = self._prefill(inputs, prefix_length, report, capacity + _HEADROOM)
                    elif int(cache.layers[0].get_max_length()) < capacity:
                        cache = self._grown(cache, prefix_length, capacity + _HEADROOM)
                    output = self._model.generate(
                        input_ids=ids,
                        attention_mask=inputs["attention_mask"],
                        cache=cache,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        disable_compile=True,
                        streamer=streamer,
                        pad_token_id=tokenizer.pad_token_id
                        if tokenizer.pad_token_id is not None
                        else tokenizer.eos_token_id,
                    )
                    cache.crop(prefix_length - int(cache.get_seq_length()))
                    self._prefixes.put(key, cache, _cache_bytes(cache))
            except torch.OutOfMemoryError as exc:
                raise ModelError(
                    f"The model ran out of memory on {self.device} with {len(prompt.images)} frames. "
                    "Ask for fewer frames (num_frames / frames_per_video)."
                ) from exc
        new_ids = [int(t) for t in output[0, prompt_length:].tolist()]
        eos_ids = self._eos_ids()
        hit_limit = len(new_ids) >= max_new_tokens and not (new_ids and new_ids[-1] in eos_ids)
        text = self._processor.decode(new_ids, skip_special_tokens=True).strip()
        return Generation(
            text=text, token_ids=new_ids, prompt_tokens=prompt_length, hit_token_limit=hit_limit, reused_tokens=reused
        )

    def _prefill(self, inputs: Any, prefix_length: int, report: InferenceProgress, capacity: int) -> Any:
        """Run the frames and the text before the question through the model, keeping the attention state.

        Cold calls and follow-ups alike prefill the prefix on its own and then the question, so both do the same
        arithmetic after the prefix and a follow-up's answer equals a cold call's, token for token. Frames are
        encoded a chunk at a time, so 32 frames do not need 32 frames' worth of vision activations at once.

        The cache is preallocated (static) for `capacity` tokens, so generating writes into it in place instead of
        copying the thousands of image tokens' keys and values at every token.
        """
        hf: Any = importlib.import_module("transformers")
        outputs: Any = importlib.import_module("transformers.modeling_outputs")
        config = self._model.config
        pixels = inputs["pixel_values"]
        features: list[Any] = []
        with self._prefill_precision():
            for start in range(0, len(pixels), self._vision_chunk):
                encoded = self._model.get_image_features(
                    pixel_values=pixels[start : start + self._vision_chunk],
                    vision_feature_layer=config.vision_feature_layer,
                    vision_feature_select_strategy=config.vision_feature_select_strategy,
                    return_dict=True,
                )
                features.extend(encoded.pooler_output)
                done = len(features)
                report(_VISION_SHARE * done / len(pixels), f"Encoding frames: {done} of {len(pixels)}")
            report(_VISION_SHARE, f"Reading the prompt: {prefix_length} tokens")
            cache = hf.StaticCache(config=config, max_cache_len=capacity)
            # The inner model: the prefix needs no logits (the full model would compute 152,000 per prompt token).
            self._model.model(
                input_ids=inputs["input_ids"][:, :prefix_length],
                attention_mask=inputs["attention_mask"][:, :prefix_length],
                mm_encoder_outputs={"image": outputs.BaseModelOutputWithPooling(pooler_output=features)},
                cache=cache,
                use_cache=True,
            )
        if self._mixed_precision:
            for layer in cache.layers:
                layer.keys = layer.keys.to(self._model.dtype)
                layer.values = layer.values.to(self._model.dtype)
        report(_VISION_SHARE + _PREFILL_SHARE, "Generating")
        return cache

    def _grown(self, cache: Any, prefix_length: int, capacity: int) -> Any:
        """The same prefix in a larger preallocated cache, for a follow-up with a longer question or answer."""
        hf: Any = importlib.import_module("transformers")
        grown = hf.StaticCache(config=self._model.config, max_cache_len=capacity)
        for old, new in zip(cache.layers, grown.layers, strict=True):
            new.update(old.keys[:, :, :prefix_length], old.values[:, :, :prefix_length])
        return grown

    @property
    def _mixed_precision(self) -> bool:
        """Whether frames and prompt are read in another precision than the weights generate in."""
        return self._prefill_dtype is not None and self._prefill_dtype != self._model.dtype

    def _prefill_precision(self) -> AbstractContextManager[Any]:
        """bf16 autocast for the prefill when the plan says so (CPU): fp32 weights stay for decoding."""
        import torch

        if not self._mixed_precision:
            return nullcontext()
        return torch.autocast(device_type=self._model.device.type, dtype=self._prefill_dtype)

    def first_token_logits(self, prompt: Prompt) -> Any:
        """Logits of the first answer token, computed as generate computes them (prefill, then the question)."""
        import torch

        with self._turn, torch.inference_mode():
            rendered = self._render(prompt)
            inputs = self._inputs(prompt, rendered)
            prefix_length = self._prefix_length(prompt, rendered, inputs["input_ids"])
            cache = self._prefill(inputs, prefix_length, _no_progress, int(inputs["input_ids"].shape[1]))
            output = self._model(
                input_ids=inputs["input_ids"][:, prefix_length:],
                attention_mask=inputs["attention_mask"],
                cache=cache,
                use_cache=True,
            )
        return output.logits[0, -1].float()

    def _prefix_length(self, prompt: Prompt, rendered: str, ids: Any) -> int:
        """Tokens before the question; at least one token is always left for the generation step itself."""
        question = prompt.text[prompt.question_start :]
        suffix = rendered[rendered.rindex(prompt.text) + prompt.question_start :]
        suffix_ids = self._processor.tokenizer(suffix, add_special_tokens=False)["input_ids"]
        total = int(ids.shape[1])
        if question and 0 < len(suffix_ids) < total and ids[0, total - len(suffix_ids) :].tolist() == suffix_ids:
            return total - len(suffix_ids)
        return total - 1

    def _prefix_key(self, prefix_ids: Any, pixel_values: Any) -> str:
        digest = hashlib.sha256(self.model_id.encode())
        digest.update(prefix_ids.cpu().numpy().tobytes())
        digest.update(pixel_values.float().cpu().numpy().tobytes())
        return digest.hexdigest()

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
