"""Attention for generating on CPU: one new token against thousands of cached ones, as two float32 matmuls.

PyTorch's CPU flash-attention kernel is fast for a long prompt but not for one query token: with a bf16 cache of
6,000 tokens it takes 7.5 ms per layer (measured on the 2-core benchmark machine), most of each generated token.
Upcasting the query, keys and values and doing the two matmuls and a float32 softmax takes 3.4 ms, and it is as
exact as float32 attention over the cached values, so closer to float32 than the bf16 kernel (which keeps bf16
probabilities). Everything else (prompts, the vision tower, accelerators) goes to PyTorch's SDPA unchanged.

Registered with transformers' attention and mask interfaces under `NAME`; the masks are SDPA's.
"""

from __future__ import annotations

import importlib
from typing import Any

NAME = "llava_video_cpu"


def register() -> str:
    """Make `NAME` known to transformers (idempotent); returns it, for `attn_implementation`."""
    hf: Any = importlib.import_module("transformers")
    masking: Any = importlib.import_module("transformers.masking_utils")
    hf.AttentionInterface.register(NAME, attention)
    masking.AttentionMaskInterface.register(NAME, masking.sdpa_mask)
    return NAME


def attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention signature: (batch, heads, tokens, dim) in, (batch, tokens, heads, dim) out."""
    import torch

    sdpa: Any = importlib.import_module("transformers.integrations.sdpa_attention")
    batch, heads, tokens, dim = query.shape
    kv_heads = key.shape[1]
    one_token = tokens == 1 and query.device.type == "cpu" and heads % kv_heads == 0
    plain_mask = attention_mask is None or (attention_mask.dim() == 4 and attention_mask.shape[1] == 1)
    if not (one_token and plain_mask and dropout == 0.0 and kwargs.get("position_bias") is None):
        return sdpa.sdpa_attention_forward(  # type: ignore[no-any-return]
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    # Grouped-query heads share a key/value head: (batch, kv_heads, heads per kv head, dim) meets the cache as is.
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim).float()
    scores = torch.matmul(grouped, key.float().transpose(-1, -2))
    scores.mul_(scaling if scaling is not None else dim**-0.5)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores.masked_fill_(~attention_mask, float("-inf"))
        else:
            scores.add_(attention_mask.float())
    output = torch.matmul(scores.softmax(dim=-1), value.float()).to(query.dtype)
    return output.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None
