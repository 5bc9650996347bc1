"""Where the in-process model runs, and in which precision."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from llava_video_mcp.tools.errors import ModelError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cuda", "mps", "xpu", "cpu")
DTYPES = ("auto", "float32", "bfloat16", "float16", "mixed")
"""`mixed`: float32 weights for generating, with frames and prompt read under bfloat16 autocast."""


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


def mixed_prefill_dtype(requested: str) -> torch.dtype | None:
    """`--dtype mixed`: bf16 autocast for encoding frames and reading the prompt, fp32 weights for generating.
    For machines where bf16 generation is much slower than fp32 but bf16 prefill is faster."""
    import torch

    return torch.bfloat16 if requested == "mixed" else None
