"""The CPU attention for generated tokens: the same numbers as PyTorch's SDPA, and the path generation takes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from llava_video_mcp.tools.backends import Prompt, attention
from llava_video_mcp.tools.backends.transformers import TransformersBackend
from llava_video_mcp.tools.frames import to_model_image, uniform_targets
from tests.media import nearest_reference, reference_frames


def _inputs(dtype: torch.dtype, tokens: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    # 8 query heads sharing 2 key/value heads (grouped-query attention); 300 cache slots, the last 40 still empty.
    query = (torch.randn(2, 8, tokens, 32, generator=generator) * 3).to(dtype)
    key = torch.randn(2, 2, 300, 32, generator=generator).to(dtype)
    value = torch.randn(2, 2, 300, 32, generator=generator).to(dtype)
    mask = torch.zeros(2, 1, tokens, 300, dtype=torch.bool)
    mask[..., :260] = True
    return query, key, value, mask


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    repeat = query.shape[1] // key.shape[1]
    return F.scaled_dot_product_attention(
        query, key.repeat_interleave(repeat, 1), value.repeat_interleave(repeat, 1), attn_mask=mask
    ).transpose(1, 2)


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_one_token_equals_sdpa_in_float32(mask_kind: str) -> None:
    query, key, value, mask = _inputs(torch.float32)
    given: torch.Tensor | None = {
        "bool": mask,
        "additive": torch.zeros(mask.shape).masked_fill(~mask, float("-inf")),
        "none": None,
    }[mask_kind]
    output, weights = attention.attention(None, query, key, value, given, scaling=32**-0.5)
    assert weights is None
    assert output.shape == (2, 1, 8, 32)
    torch.testing.assert_close(output, _sdpa(query, key, value, given), rtol=1e-5, atol=1e-5)


def test_one_token_in_bf16_is_at_least_as_close_to_float32_as_sdpa() -> None:
    query, key, value, mask = _inputs(torch.bfloat16)
    exact = _sdpa(query.float(), key.float(), value.float(), mask)
    ours, _ = attention.attention(None, query, key, value, mask)
    theirs = _sdpa(query, key, value, mask)
    assert ours.dtype == torch.bfloat16
    # Ours computes in float32 and rounds once at the end: within one bf16 rounding (2^-8 relative) of float32.
    assert (ours.float() - exact).abs().max() <= (theirs.float() - exact).abs().max()
    torch.testing.assert_close(ours.float(), exact, rtol=2**-8, atol=2**-8)


def test_prompts_go_to_sdpa_unchanged() -> None:
    query, key, value, mask = _inputs(torch.float32, tokens=5)
    layer = SimpleNamespace(num_key_value_groups=4, is_causal=True, training=False)
    output, _ = attention.attention(layer, query, key, value, mask, scaling=32**-0.5)
    expected = _sdpa(query, key, value, mask)
    assert torch.equal(output, expected)


def test_generation_on_cpu_takes_the_one_token_path(
    tiny_model: Path, h264_mp4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = TransformersBackend.load(str(tiny_model), device="cpu", dtype="float32")
    model: Any = backend.model  # what the backend configured on its model
    assert model.config.get_text_config()._attn_implementation == attention.NAME
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(int(args[1].shape[2]))
        return attention.attention(*args, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, attention.NAME, counted)
    reference = reference_frames(h264_mp4)
    images = [to_model_image(nearest_reference(reference, t)[1], 384) for t in uniform_targets(0, 3.0, 2)]
    generation = backend.generate(Prompt(images=images, text="What moves?"), max_new_tokens=6)
    layers = model.config.get_text_config().num_hidden_layers
    # Each token after the first is generated with one query token per layer.
    assert calls.count(1) == layers * (len(generation.token_ids) - 1)
