"""Model runtime benchmark: pure fp32, pure bf16 and the project's chosen plan, first call and follow-up.

Builds the full-size llava-interleave-qwen-0.5b architecture with random weights (Qwen1.5-0.5B language model,
SigLIP so400m vision tower at 384 px, 729 tokens a frame; same FLOPs as the real model, no download), and runs
it through `tools.backend.TransformersBackend`, the code the server uses, on the current device. Each
configuration runs in its own process (for a clean peak RSS): one first call on N frames, then a follow-up
question on the same frames, each forced to generate exactly T new tokens.

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


def build_backend(config_name: str, device: str) -> Any:
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

    from tests.llava_builder import CHAT_TEMPLATE, FULL_0_5B, build_tokenizer
    from tools.backend import TransformersBackend

    tokenizer = build_tokenizer()
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
            vocab_size=152000, max_position_embeddings=32768, tie_word_embeddings=True, **FULL_0_5B["text"]
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
    from tools.backend import pick_dtype

    weights = {"fp32": torch.float32, "bf16": torch.bfloat16, "mixed": torch.float32}.get(config_name)
    weights = weights if weights is not None else pick_dtype(device, "auto")
    prefill = torch.bfloat16 if config_name == "mixed" else None
    model = model.to(device=device, dtype=weights).eval()
    model.generation_config.eos_token_id = None  # random weights: generate exactly max_new_tokens
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return TransformersBackend(model, processor, "random-llava-interleave-0.5b", device, prefill_dtype=prefill)


def frames(count: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (384, 683, 3), dtype=np.uint8)) for _ in range(count)]


def run_call(backend: Any, images: list[Any], question: str, new_tokens: int) -> dict[str, float]:
    from tools.backend import Prompt

    guide = f"The {len(images)} images are frames of one video, in time order.\n\n"
    marks: dict[str, float] = {}
    started = time.perf_counter()

    def on_progress(fraction: float, message: str) -> None:
        now = time.perf_counter() - started
        activity = message.split(":", 1)[0]
        marks.setdefault(activity, now)
        if activity == "Generating" and ":" in message:
            marks.setdefault("first_token", now)
            marks["last_token"] = now

    generation = backend.generate(Prompt(images, guide + question, len(guide)), new_tokens, on_progress)
    total = time.perf_counter() - started
    vision = marks.get("Reading the prompt", 0.0) if generation.reused_tokens == 0 else 0.0
    decode_span = marks["last_token"] - marks["first_token"]
    return {
        "vision_s_per_frame": round(vision / len(images), 3),
        "ttft_s": round(marks["first_token"], 3),
        "decode_tokens_per_s": round((len(generation.token_ids) - 1) / decode_span, 3) if decode_span else 0.0,
        "total_s": round(total, 3),
        "prompt_tokens": generation.prompt_tokens,
        "reused_tokens": generation.reused_tokens,
        "generated": len(generation.token_ids),
    }


def _child(config_name: str, device: str, count: int, new_tokens: int, queue: Any) -> None:
    import torch

    torch.manual_seed(0)
    built = time.perf_counter()
    backend = build_backend(config_name, device)
    build_s = time.perf_counter() - built
    images = frames(count)
    first = run_call(backend, images, "What happens in this video?", new_tokens)
    follow_up = run_call(backend, images, "What colour is the largest object?", new_tokens)
    status = Path("/proc/self/status")
    rss = int(status.read_text().split("VmHWM:")[1].split()[0]) / 1024 if status.exists() else 0.0
    queue.put(
        {
            "config": config_name,
            "weights": backend.dtype,
            "prefill": backend.prefill_dtype,
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


def main() -> None:
    import torch

    from tools.backend import pick_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["fp32", "bf16", "mixed", "auto"],
        help="fp32, bf16, mixed (bf16 prefill, fp32 decoding), auto (what --dtype auto picks here)",
    )
    args = parser.parse_args()
    device = pick_device(args.device)

    rows = []
    print(
        f"{'config':<8}{'call':<11}{'vision s/frame':>15}{'TTFT s':>9}{'decode tok/s':>13}{'total s':>9}{'RSS MB':>8}"
    )
    for name in args.configs:
        row = measure(name, device, args.frames, args.new_tokens)
        rows.append(row)
        for call in ("first", "follow_up"):
            m = row[call]
            print(
                f"{name:<8}{call:<11}{m['vision_s_per_frame']:>15.2f}{m['ttft_s']:>9.2f}"
                f"{m['decode_tokens_per_s']:>13.2f}{m['total_s']:>9.1f}{row['peak_rss_mb']:>8}",
                flush=True,
            )
    by_name = {row["config"]: row for row in rows}
    summary: dict[str, Any] = {}
    if {"fp32", "bf16", "auto"} <= by_name.keys():
        best_pure = min(by_name["fp32"]["first"]["total_s"], by_name["bf16"]["first"]["total_s"])
        plan = by_name["auto"]
        summary = {
            "chosen_plan": f"{plan['weights']} weights, {plan['prefill']} prefill",
            "chosen_over_fp32": round(by_name["fp32"]["first"]["total_s"] / plan["first"]["total_s"], 2),
            "chosen_over_best_pure": round(best_pure / plan["first"]["total_s"], 2),
            "follow_up_ttft_fraction": round(plan["follow_up"]["ttft_s"] / plan["first"]["ttft_s"], 3),
            "follow_up_speedup": round(plan["first"]["total_s"] / plan["follow_up"]["total_s"], 2),
        }
        if "mixed" in by_name:
            summary["mixed_over_best_pure"] = round(best_pure / by_name["mixed"]["first"]["total_s"], 2)
        print(
            f"chosen plan ({summary['chosen_plan']}): {summary['chosen_over_fp32']}x faster than fp32, "
            f"{summary['chosen_over_best_pure']}x the best pure one; follow-up TTFT "
            f"{summary['follow_up_ttft_fraction']} of the first's; follow-up {summary['follow_up_speedup']}x faster"
        )
    result = {
        "machine": machine(device),
        "date": time.strftime("%Y-%m-%d"),
        "frames": args.frames,
        "new_tokens": args.new_tokens,
        "results": rows,
        "summary": summary,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"model-{device}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"model_benchmark": result}))
    del torch


if __name__ == "__main__":
    main()
