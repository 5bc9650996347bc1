"""The in-process backend: a supported model family (`families`) through transformers, on the best local device.

The family says how frames and text become its model's prompt and inputs, and encodes the frames; the backend owns
the rest, the same for every family. Follow-up questions about the same frames reuse the attention state of
everything before the question (a static KV cache kept in `PrefixCache`); frames are encoded a chunk at a time; on
CPU, generated tokens use the float32 matmul attention of `attention.py`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from llava_video_mcp.tools.backends import attention
from llava_video_mcp.tools.backends.base import (
    DEFAULT_MODEL,
    Generation,
    Prompt,
    VideoLanguageBackend,
    finished_text,
    generating,
)
from llava_video_mcp.tools.backends.devices import mixed_prefill_dtype, pick_device, pick_dtype
from llava_video_mcp.tools.backends.families import Family, family_for
from llava_video_mcp.tools.backends.hub import local_snapshot
from llava_video_mcp.tools.backends.prefix_cache import PrefixCache, cache_bytes
from llava_video_mcp.tools.cancel import CancelToken
from llava_video_mcp.tools.errors import LimitError, ModelError
from llava_video_mcp.tools.progress import DownloadProgress, InferenceProgress, no_inference_progress

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

HEADROOM = 256
"""Extra cache slots beyond a call's needs, so most follow-ups fit the prefix's cache as it is."""
CUDA_BATCH = 4
"""Independent prompts (a long video's windows) read in one batch on CUDA; elsewhere one after another, since a
CPU gains little from batching and pays its padding."""
COMPILED_SLOTS = 2048
"""With compiled decoding, cache lengths come in steps of this many slots: each length is one compiled graph."""
_VISION_SHARE, _PREFILL_SHARE = 0.5, 0.2
"""Rough shares of the model stage taken by encoding frames and reading the prompt, for progress fractions."""


class TokenCounter:
    """A generate() streamer that counts the new tokens (the first push is the prompt), reports each one, and stops
    generation at the next token once the call is cancelled."""

    def __init__(self, on_progress: InferenceProgress, max_new_tokens: int, cancel: CancelToken | None = None) -> None:
        self._on_progress = on_progress
        self._max_new_tokens = max_new_tokens
        self._cancel = cancel
        self._seen_prompt = False
        self.count = 0

    def put(self, value: Any) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        if self._cancel is not None:
            self._cancel.check()
        self.count += int(value.numel())
        done = _VISION_SHARE + _PREFILL_SHARE + (1 - _VISION_SHARE - _PREFILL_SHARE) * self.count / self._max_new_tokens
        self._on_progress(done, generating(self.count, self._max_new_tokens))

    def end(self) -> None:
        return None


def _attention(device: str) -> str:
    """flash-attention 2 on CUDA when it is installed, else PyTorch's scaled-dot-product attention."""
    if device == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def prefix_cache_budget(device: str) -> int:
    """Bytes for follow-ups' prefixes: half the accelerator memory still free once the model is loaded (the rest is
    for activations), or a quarter of the available RAM on CPU. The 7b model's cache takes 512 KiB a token in bf16,
    so a fixed few GB would hold only a handful of frames there."""
    import torch

    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return int(free * 0.5)
    if device == "xpu":
        free, _ = torch.xpu.mem_get_info()
        return int(free * 0.5)
    if device == "mps":
        return int(torch.mps.recommended_max_memory() * 0.25)
    return int(available_ram() * 0.25)


def available_ram() -> int:
    """RAM available to new allocations, as the operating system counts it."""
    return int(psutil.virtual_memory().available)


def _collated(parts: list[Any], pad_id: int) -> Any:
    """Several prompts' inputs as one batch, left-padded; None when they cannot share one (their pixels differ in
    shape, as videos of different frame counts do)."""
    import torch

    hf: Any = importlib.import_module("transformers")
    keys = set(parts[0].keys())
    if any(set(part.keys()) != keys for part in parts):
        return None
    width = max(int(part["input_ids"].shape[1]) for part in parts)
    batch: dict[str, Any] = {}
    for key in keys:
        values = [part[key] for part in parts]
        if key in ("input_ids", "attention_mask", "mm_token_type_ids"):
            fill = pad_id if key == "input_ids" else 0
            padded = [torch.nn.functional.pad(v, (width - int(v.shape[1]), 0), value=fill) for v in values]
            batch[key] = torch.cat(padded)
        elif any(tuple(v.shape[1:]) != tuple(values[0].shape[1:]) for v in values):
            return None
        else:
            batch[key] = torch.cat(values)
    return hf.BatchFeature(batch)


def decode_compile_config(device: str, wanted: bool) -> Any:
    """transformers' CompileConfig for the decoding step, None when it is not compiled. On CUDA, mode
    "reduce-overhead" captures the step in CUDA graphs; elsewhere (a test's CPU) inductor's default mode."""
    if not wanted:
        return None
    hf: Any = importlib.import_module("transformers")
    config = hf.CompileConfig(fullgraph=False, dynamic=False, mode="reduce-overhead" if device == "cuda" else "default")
    config._compile_all_devices = device != "cuda"  # transformers compiles on accelerators only unless told
    return config


def _load_hint(model_id: str) -> str:
    return (
        f"Set --model (or LLAVA_VIDEO_MCP_MODEL) to the hub id of a supported model such as {DEFAULT_MODEL} "
        "(the first run downloads about 1.7 GB, so the network must reach huggingface.co), or to a local folder "
        f"holding one (config.json, the weights and the processor files), e.g. after `hf download {DEFAULT_MODEL} "
        "--local-dir ./llava-interleave`."
    )


@dataclass(frozen=True)
class _Output:
    sequences: Any
    reused: bool
    """Whether the prefix's attention state came from an earlier call."""


class TransformersBackend(VideoLanguageBackend):
    """A supported model family through transformers, on the best local device."""

    def __init__(
        self,
        model: Any,
        family: Family,
        model_id: str,
        device: str,
        *,
        prefill_dtype: torch.dtype | None = None,
        vision_chunk: int = 8,
        prefix_cache_bytes: int = 4 * 2**30,
        headroom: int = HEADROOM,
        compile_config: Any = None,
        batch_size: int = 1,
    ) -> None:
        super().__init__(max_concurrency=1)
        self._model = model
        self._family = family
        self._processor = family.processor
        self._turn = threading.Lock()
        self._prefixes = PrefixCache(prefix_cache_bytes)
        self._prefill_dtype = prefill_dtype
        self._vision_chunk = vision_chunk
        self._headroom = headroom
        self.batch_size = batch_size
        self.compile_config: Any = compile_config
        """transformers' CompileConfig when the decoding step is compiled (CUDA graphs on CUDA), else None."""
        self.model_id = model_id
        self.device = device
        if device == "cpu" and model.config.get_text_config()._attn_implementation == "sdpa":
            model.set_attn_implementation(attention.register())
        self.dtype = str(model.dtype).removeprefix("torch.")
        self.prefill_dtype = str(prefill_dtype or model.dtype).removeprefix("torch.")
        tokenizer = family.tokenizer
        self.special_tokens = frozenset(tokenizer.all_special_tokens) | frozenset(
            str(token) for token in tokenizer.get_added_vocab()
        )

    @classmethod
    def load(
        cls,
        model_id: str,
        device: str = "auto",
        dtype: str = "auto",
        *,
        prefix_cache_gb: float | None = None,
        on_download: DownloadProgress | None = None,
        headroom: int = HEADROOM,
        compile_decode: bool = False,
    ) -> TransformersBackend:
        """Load from a hub id (the cache, or a download reported through `on_download`) or a local folder; raise
        ModelError with a fix when that fails. `compile_decode`: compile the decoding step over the static cache
        (on CUDA its CUDA graphs remove the per-token overhead; off until measured there)."""
        # transformers is only partly typed: everything from it is handled as Any here.
        hf: Any = importlib.import_module("transformers")

        hf.utils.logging.disable_progress_bar()
        # One log format for the whole process: transformers' messages go through the root logger, once.
        hf.utils.logging.disable_default_handler()
        hf.utils.logging.enable_propagation()
        chosen_device = pick_device(device)
        chosen_dtype = pick_dtype(chosen_device, dtype)
        local = Path(model_id).expanduser()
        if model_id.startswith((".", "/", "~")) or local.exists():
            if not local.is_dir():
                raise ModelError(f"No model folder at {local}. {_load_hint(model_id)}")
            if not (local / "config.json").is_file():
                raise ModelError(f"{local} holds no model (no config.json). {_load_hint(model_id)}")
            model_id = source = str(local)
        else:
            source = local_snapshot(model_id, on_download)
        started = time.perf_counter()
        try:
            config = hf.AutoConfig.from_pretrained(source)
            kind = family_for(config.model_type, model_id)
            processor = kind.load_processor(source)
            model = getattr(hf, kind.model_class).from_pretrained(
                source, dtype=chosen_dtype, attn_implementation=_attention(chosen_device)
            )
        except ModelError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"Could not load the model '{model_id}': {reason}. {_load_hint(model_id)}") from exc
        family = kind(processor, model.config, model_id)
        model.to(chosen_device)
        model.eval()
        log.info("loaded %s (%s) on %s (%s) in %.1f s", model_id, kind.name, chosen_device, model.dtype,
                 time.perf_counter() - started)  # fmt: skip
        budget = int(prefix_cache_gb * 2**30) if prefix_cache_gb is not None else prefix_cache_budget(chosen_device)
        log.info("prefix cache for follow-up questions: %.1f GB (--prefix-cache-gb)", budget / 2**30)
        return cls(
            model,
            family,
            model_id,
            chosen_device,
            prefill_dtype=mixed_prefill_dtype(dtype),
            prefix_cache_bytes=budget,
            headroom=headroom,
            compile_config=decode_compile_config(chosen_device, compile_decode),
            batch_size=CUDA_BATCH if chosen_device == "cuda" else 1,
        )

    @property
    def model(self) -> Any:
        """The transformers model this backend runs (for inspection: its config, hooks)."""
        return self._model

    @property
    def processor(self) -> Any:
        """The family's processor: its tokenizer (`.tokenizer`) and what it reads frames with."""
        return self._processor

    @property
    def prefixes(self) -> PrefixCache:
        """The attention state kept of prompt prefixes, reused by follow-ups (for inspection)."""
        return self._prefixes

    @property
    def family(self) -> Family:
        """The model family: how its model sees frames and text."""
        return self._family

    def token_ids(self, prompt: Prompt) -> list[int]:
        """The prompt as the model reads it: token ids, each frame's image tokens included."""
        return [int(t) for t in self._inputs(prompt, self._render(prompt))["input_ids"][0].tolist()]

    def _render(self, prompt: Prompt) -> str:
        """The prompt as text, in the family's own chat template."""
        return self._family.render(prompt)

    def _inputs(self, prompt: Prompt, rendered: str) -> Any:
        """Model inputs for the prompt: token ids with each frame's tokens, and the frames' pixels."""
        return self._family.inputs(prompt, rendered).to(self._model.device, dtype=self._model.dtype)

    @property
    def context_length(self) -> int:
        config = self._model.config.get_text_config()
        return int(config.max_position_embeddings)

    @property
    def tokens_per_image(self) -> int:
        """Prompt tokens a frame takes with this model."""
        return self._family.cost.tokens_per_frame

    def _check_context(self, prompt: Prompt, rendered: str, max_new_tokens: int) -> None:
        """Refuse, before any image is encoded, a prompt and answer that would not fit in the model's context."""
        text_tokens = len(self._family.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        frames = len(prompt.images)
        cost = self._family.cost
        frame_tokens = self._family.frame_tokens(list(prompt.images))
        per_image = -(-frame_tokens // frames) if frames else cost.tokens_per_frame
        text_only = text_tokens - self._family.placeholders(frames)
        needed = text_only + frame_tokens + max_new_tokens
        if needed <= self.context_length:
            return
        room = self.context_length - text_only - cost.tokens_per_prompt - max_new_tokens
        fitting = max(room // per_image, 0)
        raise LimitError(
            f"{frames} frames x {per_image} image tokens, the text and max_new_tokens={max_new_tokens} need "
            f"{needed} tokens, over this model's context of {self.context_length}. At most {fitting} frames fit: "
            "ask for fewer frames (num_frames or frames_per_video), or a smaller max_new_tokens."
        )

    def generate(
        self,
        prompt: Prompt,
        max_new_tokens: int,
        on_progress: InferenceProgress = no_inference_progress,
        cancel: CancelToken | None = None,
    ) -> Generation:
        import torch

        with self._turn:
            rendered = self._render(prompt)
            self._check_context(prompt, rendered, max_new_tokens)
            inputs = self._inputs(prompt, rendered)
            ids = inputs["input_ids"]
            prompt_length = int(ids.shape[1])
            streamer = TokenCounter(on_progress, max_new_tokens, cancel)
            try:
                with torch.inference_mode():
                    if self._family.prefix_cache:
                        prefix_length = self._prefix_length(prompt, rendered, ids)
                        key = self._prefix_key(ids[0, :prefix_length], inputs.get(self._family.pixel_key))
                        output = self._generate(
                            inputs, key, prefix_length, max_new_tokens, streamer, on_progress, cancel
                        )
                    else:
                        prefix_length = 0
                        output = self._generate_whole(inputs, max_new_tokens, streamer, on_progress)
            except torch.OutOfMemoryError as exc:
                raise ModelError(
                    f"The model ran out of memory on {self.device} with {len(prompt.images)} frames. "
                    "Ask for fewer frames (num_frames / frames_per_video)."
                ) from exc
        new_ids = tuple(int(t) for t in output.sequences[0, prompt_length:].tolist())
        eos_ids = self._eos_ids()
        hit_limit = len(new_ids) >= max_new_tokens and not (new_ids and new_ids[-1] in eos_ids)
        text = finished_text(self._family.tokenizer.decode(list(new_ids), skip_special_tokens=True))
        return Generation(
            text=text,
            generated_tokens=len(new_ids),
            hit_token_limit=hit_limit,
            prompt_tokens=prompt_length,
            reused_tokens=prefix_length if output.reused else 0,
            token_ids=new_ids,
        )

    def generate_batch(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int,
        on_progress: InferenceProgress = no_inference_progress,
        cancel: CancelToken | None = None,
    ) -> list[Generation]:
        """Independent prompts in one generate(), left-padded, without the prefix cache (they share no prefix).
        Prompts that cannot go together (videos of different frame counts), or a batch that runs out of memory,
        go one after another instead."""
        import torch

        sequences = None
        with self._turn:
            rendered = [self._render(prompt) for prompt in prompts]
            for prompt, text in zip(prompts, rendered, strict=True):
                self._check_context(prompt, text, max_new_tokens)
            parts = [self._family.inputs(prompt, text) for prompt, text in zip(prompts, rendered, strict=True)]
            batch = _collated(parts, self._pad_id()) if len(prompts) > 1 else None
            if batch is not None:
                streamer = TokenCounter(on_progress, max_new_tokens * len(prompts), cancel)
                on_progress(0.0, f"Reading {len(prompts)} prompts together: {int(batch['input_ids'].numel())} tokens")
                try:
                    with torch.inference_mode():
                        sequences = self._model.generate(
                            **batch.to(self._model.device, dtype=self._model.dtype),
                            max_new_tokens=max_new_tokens,
                            do_sample=False,
                            disable_compile=True,
                            streamer=streamer,
                            pad_token_id=self._pad_id(),
                        )
                except torch.OutOfMemoryError:
                    log.warning("%d prompts did not fit in memory together: reading them one by one", len(prompts))
                    sequences = None
        if sequences is None:
            return [self.generate(prompt, max_new_tokens, on_progress, cancel) for prompt in prompts]
        width = int(batch["input_ids"].shape[1]) if batch is not None else 0
        return [self._batched_answer(sequences[row, width:], part, max_new_tokens) for row, part in enumerate(parts)]

    def _batched_answer(self, row: Any, inputs: Any, max_new_tokens: int) -> Generation:
        """One prompt's answer from its row of a batch: up to and with its end token (the rest is padding)."""
        ids = [int(t) for t in row.tolist()]
        eos_ids = self._eos_ids()
        ended = next((n for n, token in enumerate(ids) if token in eos_ids), None)
        new_ids = tuple(ids if ended is None else ids[: ended + 1])
        text = finished_text(self._family.tokenizer.decode(list(new_ids), skip_special_tokens=True))
        return Generation(
            text=text,
            generated_tokens=len(new_ids),
            hit_token_limit=ended is None and len(new_ids) >= max_new_tokens,
            prompt_tokens=int(inputs["input_ids"].shape[1]),
            token_ids=new_ids,
        )

    def _pad_id(self) -> int:
        tokenizer = self._family.tokenizer
        return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)

    def _generate(
        self,
        inputs: Any,
        key: str,
        prefix_length: int,
        max_new_tokens: int,
        streamer: TokenCounter,
        on_progress: InferenceProgress,
        cancel: CancelToken | None,
    ) -> _Output:
        """Generate on the prefix's cache, taken from the store (or prefilled) and put back, cropped to the prefix.

        A complete prefix is kept also when the answer was cancelled part way: the generated tokens only ever extend
        it and are cropped off. A prefill cut short is never stored.
        """
        ids = inputs["input_ids"]
        capacity = int(ids.shape[1]) + max_new_tokens
        cache = self._prefixes.take(key)
        reused = cache is not None
        if cache is None:
            cache = self._prefill(inputs, prefix_length, on_progress, self._slots(capacity), cancel)
        elif int(cache.layers[0].get_max_length()) < capacity:
            cache = self._grown(cache, prefix_length, self._slots(capacity))
        tokenizer = self._family.tokenizer
        try:
            sequences = self._model.generate(
                input_ids=ids,
                attention_mask=inputs["attention_mask"],
                cache=cache,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                disable_compile=self.compile_config is None,
                compile_config=self.compile_config,
                streamer=streamer,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            )
        finally:
            cache.crop(prefix_length - int(cache.get_seq_length()))
            size = cache_bytes(cache)
            if not self._prefixes.put(key, cache, size):
                log.warning(
                    "the frames' attention state (%d tokens, %.1f GB) is larger than the prefix cache (%.1f GB): "
                    "follow-up questions about these frames will read them again. Raise --prefix-cache-gb to keep it.",
                    prefix_length,
                    size / 2**30,
                    self._prefixes.max_bytes / 2**30,
                )
        return _Output(sequences, reused)

    def _slots(self, needed: int) -> int:
        """The cache length for a call that needs `needed` slots: with headroom for follow-ups, and, when decoding is
        compiled, rounded up to a multiple of COMPILED_SLOTS, so that a few compiled graphs (one per cache length)
        serve every call instead of one compilation per prompt length."""
        slots = needed + self._headroom
        if self.compile_config is None:
            return slots
        return -(-slots // COMPILED_SLOTS) * COMPILED_SLOTS

    def _generate_whole(
        self, inputs: Any, max_new_tokens: int, streamer: TokenCounter, on_progress: InferenceProgress
    ) -> _Output:
        """Generate from the whole prompt, frames and all, in one generate() (a family without the prefix cache)."""
        tokenizer = self._family.tokenizer
        on_progress(0.0, f"Reading the frames and the prompt: {int(inputs['input_ids'].shape[1])} tokens")
        sequences = self._model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            disable_compile=True,
            streamer=streamer,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
        return _Output(sequences, reused=False)

    def _prefill(
        self,
        inputs: Any,
        prefix_length: int,
        report: InferenceProgress,
        capacity: int,
        cancel: CancelToken | None = None,
    ) -> Any:
        """Run the frames and the text before the question through the model, keeping the attention state.

        Cold calls and follow-ups alike prefill the prefix on its own and then the question, so both do the same
        arithmetic after the prefix and a follow-up's answer equals a cold call's, token for token. Frames are
        encoded a chunk at a time, so 32 frames do not need 32 frames' worth of vision activations at once.

        The cache is preallocated (static) for `capacity` tokens, so generating writes into it in place instead of
        copying the thousands of image tokens' keys and values at every token.
        """
        hf: Any = importlib.import_module("transformers")
        config = self._model.config
        pixels = inputs.get(self._family.pixel_key)

        def encoded(done: int, total: int) -> None:
            report(_VISION_SHARE * done / total, f"Encoding frames: {done} of {total}")

        with self._prefill_precision():
            encoded_images = {}
            if pixels is not None:
                features = self._family.encode(self._model, pixels, self._vision_chunk, encoded, cancel)
                encoded_images = {"mm_encoder_outputs": features}
            if cancel is not None:
                cancel.check()
            report(_VISION_SHARE, f"Reading the prompt: {prefix_length} tokens")
            cache = hf.StaticCache(config=config, max_cache_len=capacity)
            # The inner model: the prefix needs no logits (the full model would compute 152,000 per prompt token).
            self._model.model(
                input_ids=inputs["input_ids"][:, :prefix_length],
                attention_mask=inputs["attention_mask"][:, :prefix_length],
                cache=cache,
                use_cache=True,
                **encoded_images,
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

    def _prefix_length(self, prompt: Prompt, rendered: str, ids: Any) -> int:
        """Tokens before the question; at least one token is always left for the generation step itself."""
        question = prompt.text[prompt.question_start :]
        suffix = rendered[rendered.rindex(prompt.text) + prompt.question_start :]
        suffix_ids = self._family.tokenizer(suffix, add_special_tokens=False)["input_ids"]
        total = int(ids.shape[1])
        if question and 0 < len(suffix_ids) < total and ids[0, total - len(suffix_ids) :].tolist() == suffix_ids:
            return total - len(suffix_ids)
        return total - 1

    def _prefix_key(self, prefix_ids: Any, pixel_values: Any) -> str:
        digest = hashlib.sha256(self.model_id.encode())
        digest.update(prefix_ids.cpu().numpy().tobytes())
        if pixel_values is not None:
            digest.update(pixel_values.float().cpu().numpy().tobytes())
        return digest.hexdigest()

    def _eos_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        if eos is None:
            eos = self._family.tokenizer.eos_token_id
        if isinstance(eos, int):
            return {eos}
        return {int(e) for e in eos or []}
