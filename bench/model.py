"""Model runtime benchmark: pure fp32 and pure bf16 against the project's chosen plan, first call and follow-up.

Builds the full-size llava-interleave-qwen-0.5b architecture with random weights (Qwen1.5-0.5B language model,
SigLIP so400m vision tower at 384 px, 729 tokens a frame; same FLOPs as the real model, no download). Each
configuration runs in its own process (for a clean peak RSS), forced to generate exactly T new tokens on N frames:

- naive-fp32, naive-bf16: the baselines, "pure fp32" and "pure bf16" as the issue measured them: the model card's
  stock `model.generate(**processor(...))` in one precision. One call (a follow-up would cost the same).
- fp32, bf16, mixed: this project's runtime (`tools.backends.transformers.TransformersBackend`, the code the server
  runs) with its precision forced, to show what the precision choice alone is worth. A first call, then a follow-up
  question on the same frames.
- auto: the chosen plan, what `--dtype auto` picks on this device.

Prints a table and a final JSON line; writes bench/results/model-<device>.json with the machine it ran on.

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/model.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
VOCAB_SIZE = 152000
"""Qwen1.5's vocabulary (151,646 tokens, padded): the language model head's size, so its cost, is the real one."""


def build_backend(config_name: str, device: str) -> Any:
    """The project's runtime (`TransformersBackend`) on the model, in the precision the configuration names;
    `onevision` is LLaVA-OneVision-0.5B in the auto plan."""
    from llava_video_mcp.tools.backends.families import LlavaInterleave
    from llava_video_mcp.tools.backends.transformers import TransformersBackend, decode_compile_config

    if config_name == "onevision":
        return build_onevision_backend(device)
    if config_name == "qwen3-vl":
        return build_qwen3_backend(device)
    model, processor, prefill = build_model(config_name, device)
    family = LlavaInterleave(processor, model.config, "random-llava-interleave-0.5b")
    compiled = decode_compile_config(device, config_name == "compiled")
    return TransformersBackend(
        model, family, "random-llava-interleave-0.5b", device, prefill_dtype=prefill, compile_config=compiled
    )


def build_qwen3_backend(device: str) -> Any:
    """Full-size Qwen3-VL-2B (28 layers 2048 wide, 8 key-value heads; a 24-layer vision tower of 16 px patches
    merged 2x2, about 252 tokens a 384p frame), random weights, in the auto plan, through its family adapter: each
    call reads its whole prompt (no prefix cache for this family)."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.initialization import no_init_weights
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from llava_video_mcp.testing.tiny_qwen import QWEN3_CHAT_TEMPLATE, SPECIAL_TOKENS, build_tokenizer
    from llava_video_mcp.tools.backends.devices import pick_dtype
    from llava_video_mcp.tools.backends.families import Qwen3VL
    from llava_video_mcp.tools.backends.families.qwen import QwenProcessor
    from llava_video_mcp.tools.backends.transformers import TransformersBackend

    tokenizer = build_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    rope = {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20], "mrope_interleaved": True}
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": VOCAB_SIZE, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
            "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "rope_parameters": rope,
            "max_position_embeddings": 32768, "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2048,
            "patch_size": 16, "num_position_embeddings": 2304, "deepstack_visual_indexes": [5, 11, 17],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )  # fmt: skip
    with no_init_weights():
        model = Qwen3VLForConditionalGeneration(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    model = model.to(device=device, dtype=pick_dtype(device, "auto")).eval()
    model.generation_config.eos_token_id = None  # random weights: generate exactly max_new_tokens
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    images = Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        min_pixels=65536, max_pixels=16777216,
    )  # fmt: skip
    family = Qwen3VL(QwenProcessor(tokenizer, QWEN3_CHAT_TEMPLATE, images), model.config, "random-qwen3-vl-2b")
    return TransformersBackend(model, family, "random-qwen3-vl-2b", device)


def build_onevision_backend(device: str) -> Any:
    """Full-size LLaVA-OneVision-qwen2-0.5b (Qwen2-0.5B, the same SigLIP tower, 196 tokens a frame), random
    weights, in the auto plan, through its family adapter."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )
    from transformers.initialization import no_init_weights

    from llava_video_mcp.testing.tiny_llava import FULL_ONEVISION_0_5B, ONEVISION_CHAT_TEMPLATE, build_tokenizer
    from llava_video_mcp.tools.backends.devices import pick_dtype
    from llava_video_mcp.tools.backends.families import LlavaOnevision
    from llava_video_mcp.tools.backends.families.onevision import OnevisionProcessor, VideoProcessing
    from llava_video_mcp.tools.backends.transformers import TransformersBackend

    tokenizer = build_tokenizer(VOCAB_SIZE, extra=("<video>",))
    vision = FULL_ONEVISION_0_5B["vision"]
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(vision_use_head=False, **vision),
        text_config=Qwen2Config(
            vocab_size=VOCAB_SIZE, max_position_embeddings=32768, tie_word_embeddings=True,
            **FULL_ONEVISION_0_5B["text"],
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )  # fmt: skip
    with no_init_weights():
        model = LlavaOnevisionForConditionalGeneration(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    model = model.to(device=device, dtype=pick_dtype(device, "auto")).eval()
    model.generation_config.eos_token_id = None  # random weights: generate exactly max_new_tokens
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    side = vision["image_size"]
    video = VideoProcessing(height=side, width=side, image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
    processor = OnevisionProcessor(tokenizer, ONEVISION_CHAT_TEMPLATE, video)
    family = LlavaOnevision(processor, model.config, "random-llava-onevision-0.5b")
    return TransformersBackend(model, family, "random-llava-onevision-0.5b", device)


def build_model(config_name: str, device: str) -> tuple[Any, Any, Any]:
    """The full-size model with random weights in the configuration's precision, its processor, and the prefill
    precision of the mixed plan (None for the others)."""
    import torch
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )
    from transformers.initialization import no_init_weights
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    from llava_video_mcp.testing.tiny_llava import CHAT_TEMPLATE, FULL_0_5B, build_tokenizer

    tokenizer = build_tokenizer(VOCAB_SIZE)
    vision = FULL_0_5B["vision"]
    processor = LlavaProcessor(
        image_processor=SiglipImageProcessorPil(
            size={"height": vision["image_size"], "width": vision["image_size"]},
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        ),
        tokenizer=tokenizer,
        patch_size=vision["patch_size"],
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    config = LlavaConfig(
        vision_config=SiglipVisionConfig(vision_use_head=False, **vision),
        text_config=Qwen2Config(
            vocab_size=VOCAB_SIZE, max_position_embeddings=32768, tie_word_embeddings=True, **FULL_0_5B["text"]
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    # Skipping transformers' per-module initialisation and filling the weights in bulk takes seconds, not minutes.
    with no_init_weights():
        model = LlavaForConditionalGeneration(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    from llava_video_mcp.tools.backends.devices import pick_dtype

    precision = config_name.removeprefix("naive-")
    weights = {"fp32": torch.float32, "bf16": torch.bfloat16, "mixed": torch.float32}.get(precision)
    weights = weights if weights is not None else pick_dtype(device, "auto")
    prefill = torch.bfloat16 if config_name == "mixed" else None
    model = model.to(device=device, dtype=weights).eval()
    model.generation_config.eos_token_id = None  # random weights: generate exactly max_new_tokens
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, processor, prefill


def frames(count: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (384, 683, 3), dtype=np.uint8)) for _ in range(count)]


def guide(count: int) -> str:
    """What the tools say about the frames before the question."""
    return f"The {count} images are frames of one video, in time order.\n\n"


def figures(
    vision_s: float, frame_count: int, tokens: list[float], total_s: float, prompt_tokens: int, reused_tokens: int
) -> dict[str, float]:
    """One call's figures, from the seconds its vision tower took and the times its new tokens arrived."""
    decode_span = tokens[-1] - tokens[0]
    return {
        "vision_s_per_frame": round(vision_s / frame_count, 3),
        "ttft_s": round(tokens[0], 3),
        "decode_tokens_per_s": round((len(tokens) - 1) / decode_span, 3) if decode_span else 0.0,
        "total_s": round(total_s, 3),
        "prompt_tokens": prompt_tokens,
        "reused_tokens": reused_tokens,
        "generated": len(tokens),
    }


def run_call(backend: Any, images: list[Any], question: str, new_tokens: int) -> dict[str, float]:
    from llava_video_mcp.tools.backends import Prompt

    marks: dict[str, float] = {}
    tokens: list[float] = []
    started = time.perf_counter()

    def on_progress(fraction: float, message: str) -> None:
        now = time.perf_counter() - started
        activity = message.split(":", 1)[0]
        marks.setdefault(activity, now)
        if activity == "Generating" and ":" in message:
            tokens.append(now)

    text = guide(len(images))
    generation = backend.generate(Prompt(images, text + question, len(text)), new_tokens, on_progress)
    total = time.perf_counter() - started
    vision = marks.get("Reading the prompt", 0.0) if generation.reused_tokens == 0 else 0.0
    return figures(vision, len(images), tokens, total, generation.prompt_tokens, generation.reused_tokens)


def run_naive(model: Any, processor: Any, images: list[Any], question: str, new_tokens: int) -> dict[str, float]:
    """The baseline: the model card's way, stock transformers generate (its own cache, SDPA) in one precision."""
    import torch

    from llava_video_mcp.tools.backends.transformers import TokenCounter
    from tests.reference import model_card_inputs

    started = time.perf_counter()
    inputs = model_card_inputs(processor, images, guide(len(images)) + question).to(model.device, dtype=model.dtype)
    vision: list[float] = []
    tower = model.model.vision_tower
    before = tower.register_forward_pre_hook(lambda *_: vision.append(time.perf_counter()))
    after = tower.register_forward_hook(lambda *_: vision.append(time.perf_counter() - vision.pop()))
    tokens: list[float] = []
    clock = TokenCounter(lambda *_: tokens.append(time.perf_counter() - started), new_tokens)
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, streamer=clock)
    total = time.perf_counter() - started
    before.remove()
    after.remove()
    return figures(sum(vision), len(images), tokens, total, int(inputs["input_ids"].shape[1]), 0)


def _child(config_name: str, device: str, count: int, new_tokens: int, queue: Any) -> None:
    import torch

    torch.manual_seed(0)
    images = frames(count)
    built = time.perf_counter()
    if config_name.startswith("naive-"):
        # Nothing carries over from one stock call to the next, so a follow-up costs what the first call costs.
        model, processor, _ = build_model(config_name, device)
        build_s = time.perf_counter() - built
        first = run_naive(model, processor, images, "What happens in this video?", new_tokens)
        follow_up = None
        weights = prefill = str(model.dtype).removeprefix("torch.")
    else:
        backend = build_backend(config_name, device)
        build_s = time.perf_counter() - built
        first = run_call(backend, images, "What happens in this video?", new_tokens)
        follow_up = run_call(backend, images, "What colour is the largest object?", new_tokens)
        weights, prefill = backend.dtype, backend.prefill_dtype
    status = Path("/proc/self/status")
    rss = int(status.read_text().split("VmHWM:")[1].split()[0]) / 1024 if status.exists() else 0.0
    queue.put(
        {
            "config": config_name,
            "weights": weights,
            "prefill": prefill,
            "build_s": round(build_s, 1),
            "first": first,
            "follow_up": follow_up,
            "peak_rss_mb": round(rss),
        }
    )


def measure(config_name: str, device: str, count: int, new_tokens: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(config_name, device, count, new_tokens, queue))
    process.start()
    result: dict[str, Any] = queue.get(timeout=3600)
    process.join()
    return result


def own_peak_rss_mb() -> float:
    """This process's peak RSS (MB): VmHWM, not ru_maxrss, since Linux carries ru_maxrss across fork and exec, so a
    child would report its parent's peak."""
    status = Path("/proc/self/status")
    if status.exists() and "VmHWM:" in (text := status.read_text()):
        return round(int(text.split("VmHWM:")[1].split()[0]) / 1024)
    import resource

    return round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * (1024 if sys.platform == "darwin" else 1))
    )


def machine(device: str) -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "device": device,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def summarize(by_name: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios of the chosen plan (auto) against the baselines measured in the same run."""
    if "auto" not in by_name:
        return {}
    plan = by_name["auto"]
    total = plan["first"]["total_s"]
    summary: dict[str, Any] = {"chosen_plan": f"{plan['weights']} weights, {plan['prefill']} prefill"}
    lines = []
    naive = [by_name[n]["first"]["total_s"] for n in ("naive-fp32", "naive-bf16") if n in by_name]
    if len(naive) == 2:
        summary["chosen_over_best_pure"] = round(min(naive) / total, 2)
        summary["chosen_over_pure_fp32"] = round(naive[0] / total, 2)
        lines.append(
            f"chosen plan ({summary['chosen_plan']}): {summary['chosen_over_best_pure']}x faster than the better of "
            f"stock fp32 and bf16 generate (target 1.3x), {summary['chosen_over_pure_fp32']}x stock fp32"
        )
    runtime = {n: by_name[n]["first"]["total_s"] for n in ("fp32", "bf16", "mixed") if n in by_name}
    if runtime:
        fastest = min(runtime, key=lambda n: runtime[n])
        summary["fastest_precision_in_runtime"] = fastest
        summary["chosen_over_fastest_precision_in_runtime"] = round(runtime[fastest] / total, 2)
        lines.append(
            f"within this project's runtime, {fastest} is the fastest precision: the chosen plan is "
            f"{summary['chosen_over_fastest_precision_in_runtime']}x its time"
        )
    follow_up = plan["follow_up"]
    summary["follow_up_ttft_fraction"] = round(follow_up["ttft_s"] / plan["first"]["ttft_s"], 3)
    summary["follow_up_speedup"] = round(total / follow_up["total_s"], 2)
    lines.append(
        f"follow-up: time to first token {summary['follow_up_ttft_fraction']} of the first call's (target 0.1), "
        f"{summary['follow_up_speedup']}x faster in all (target 4x)"
    )
    summary["lines"] = lines
    return summary


def main() -> None:
    import torch

    from llava_video_mcp.tools.backends.devices import pick_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["naive-fp32", "naive-bf16", "fp32", "bf16", "mixed", "auto"],
        help="naive-fp32 and naive-bf16 (stock transformers generate, the baselines); this project's runtime in "
        "fp32, bf16 or mixed (bf16 prefill, fp32 decoding); auto (the plan --dtype auto picks here); onevision "
        "(LLaVA-OneVision-0.5B, auto plan, beside auto's llava-interleave); compiled (the auto plan with "
        "--compile-decode: its first call includes the compilation, its follow-up shows the decode rate); qwen3-vl "
        "(Qwen3-VL-2B, auto plan, no prefix cache)",
    )
    args = parser.parse_args()
    device = pick_device(args.device)

    rows = []
    print(
        f"{'config':<12}{'call':<11}{'vision s/frame':>15}{'TTFT s':>9}{'decode tok/s':>13}{'total s':>9}{'RSS MB':>8}"
    )
    for name in args.configs:
        row = measure(name, device, args.frames, args.new_tokens)
        rows.append(row)
        for call in ("first", "follow_up"):
            m = row[call]
            if m is None:
                continue
            print(
                f"{name:<12}{call:<11}{m['vision_s_per_frame']:>15.2f}{m['ttft_s']:>9.2f}"
                f"{m['decode_tokens_per_s']:>13.2f}{m['total_s']:>9.1f}{row['peak_rss_mb']:>8}",
                flush=True,
            )
    summary = summarize({row["config"]: row for row in rows})
    for line in summary.pop("lines", []):
        print(line)
    result = {
        "machine": machine(device),
        "date": time.strftime("%Y-%m-%d"),
        "frames": args.frames,
        "new_tokens": args.new_tokens,
        "results": rows,
        "summary": summary,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    families = {"auto", "onevision", "qwen3-vl"}
    name = "model-families" if set(args.configs) <= families and len(args.configs) > 1 else "model"
    (RESULTS / f"{name}-{device}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"model_benchmark": result}))
    del torch


if __name__ == "__main__":
    main()
