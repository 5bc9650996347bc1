"""The transformers backend on a tiny llava-interleave-shaped model loaded from disk by the real loading code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import Qwen2Config

from llava_video_mcp.tools.backends import DEFAULT_MODEL, BackendConfig, LazyBackend, Prompt
from llava_video_mcp.tools.backends.devices import cpu_has_native_bf16, pick_device, pick_dtype
from llava_video_mcp.tools.backends.transformers import TransformersBackend
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.frames import to_model_image, uniform_targets
from tests.media import nearest_reference, reference_frames
from tests.reference import reference_generate


def test_lazy_backend_loads_once(tiny_model: Path) -> None:
    lazy = LazyBackend(BackendConfig(model=str(tiny_model), device="auto"))
    backend, load_s = lazy.get()
    again, load_again_s = lazy.get()
    assert again is backend
    assert load_s > 0
    assert load_again_s == 0
    assert (backend.device, backend.dtype) == ("cpu", str(pick_dtype("cpu")).removeprefix("torch."))
    assert backend.model_id == str(tiny_model)


def test_generation_equals_a_direct_transformers_call(tiny_model: Path, h264_mp4: Path) -> None:
    reference = reference_frames(h264_mp4)
    duration = reference[-1][0] + 0.1
    images = [to_model_image(nearest_reference(reference, t)[1], 384) for t in uniform_targets(0, duration, 6)]
    text = "What moves in these frames?"
    backend = TransformersBackend.load(str(tiny_model), device="cpu", dtype="float32")
    generation = backend.generate(Prompt(images=images, text=text), max_new_tokens=24)
    assert list(generation.token_ids) == reference_generate(tiny_model, images, text, max_new_tokens=24)
    assert len(generation.token_ids) == 24
    assert generation.hit_token_limit
    # 6 frames of (32/8)^2 = 16 image tokens, plus the text around them.
    assert generation.prompt_tokens > 6 * 16


def first_token_logits(backend: TransformersBackend, prompt: Prompt) -> Any:
    """The logits of the first answer token, as generating computed them: a forward hook on the model's output
    layer (the prefix goes through the inner model, so the first logits it sees are the question's)."""
    seen: list[Any] = []
    hook = backend.model.lm_head.register_forward_hook(lambda module, args, output: seen.append(output.detach()))
    try:
        backend.generate(prompt, max_new_tokens=1)
    finally:
        hook.remove()
    return seen[0][0, -1].float()


def test_mixed_plan_logits_stay_close_to_fp32(tiny_model: Path, h264_mp4: Path) -> None:
    import torch

    reference = reference_frames(h264_mp4)
    images = [to_model_image(nearest_reference(reference, t)[1], 384) for t in uniform_targets(0, 3.0, 6)]
    prompt = Prompt(images=images, text="Frames of a clip.\n\nWhat moves?", question_start=19)
    planned = TransformersBackend.load(str(tiny_model), device="cpu", dtype="mixed")  # bf16 prefill, fp32 decoding
    exact = TransformersBackend.load(str(tiny_model), device="cpu", dtype="float32")
    assert (planned.dtype, planned.prefill_dtype) == ("float32", "bfloat16")
    assert exact.prefill_dtype == "float32"
    mixed, full = first_token_logits(planned, prompt), first_token_logits(exact, prompt)
    assert not torch.equal(mixed, full)  # the plan really ran in another precision
    # bf16 keeps 8 significant bits (0.4% per rounding); through the vision tower, the projector and the text
    # layers a dozen roundings compound, so a few percent of the logit scale is expected. 5% still catches a
    # broken plan: a cache left in bf16, or fp16 overflow, moves logits by their whole scale.
    assert (mixed - full).abs().max() <= 0.05 * full.abs().max()
    assert (mixed - full).abs().mean() <= 0.02 * full.abs().max()


def test_missing_model_folder_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"No model folder at .*Set --model \(or LLAVA_VIDEO_MCP_MODEL\)"):
        TransformersBackend.load(str(tmp_path / "no-such-model"))


def test_folder_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"holds no model \(no config\.json\).*local folder"):
        TransformersBackend.load(str(tmp_path))


def test_folder_with_another_kind_of_model(tmp_path: Path) -> None:
    Qwen2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    supported = r"Supported families: llava-interleave \('llava'\), llava-onevision \('llava_onevision'\), qwen2-vl "
    refused = r"is a 'qwen2' model, which this server does not run in process\. "
    with pytest.raises(ModelError, match=refused + supported):
        TransformersBackend.load(str(tmp_path))


def test_hub_id_without_network_says_how_to_use_a_local_folder() -> None:
    # conftest sets HF_HUB_OFFLINE=1: the hub is never contacted.
    with pytest.raises(
        ModelError, match=r"'llava-hf/.*' is not in the local Hugging Face cache.*hf download.*--model FOLDER"
    ):
        TransformersBackend.load(DEFAULT_MODEL)


def test_failed_load_is_retried_on_the_next_call(tmp_path: Path, tiny_model: Path) -> None:
    target = tmp_path / "model"
    lazy = LazyBackend(BackendConfig(model=str(target)))
    with pytest.raises(ModelError):
        lazy.get()
    target.symlink_to(tiny_model, target_is_directory=True)
    backend, _ = lazy.get()
    assert backend.device == "cpu"


def test_device_and_dtype_choice() -> None:
    import torch

    assert pick_device("cpu") == "cpu"
    assert pick_dtype("cpu") == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert pick_dtype("cpu", "mixed") == torch.float32
    assert pick_dtype("cuda", "float16") == torch.float16
    with pytest.raises(ModelError, match="Unknown device 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="--device cuda was asked for but is not available"):
            pick_device("cuda")
