"""The docs' generated tables: the flags from the settings' declarations, the benchmark figures from
bench/results/*.json. Each sits in its page (README.md or docs/*.md) between `<!-- generated: NAME -->` and
`<!-- /generated -->`.

    .venv/bin/python docs/generate.py          rewrite them in place
    .venv/bin/python docs/generate.py --check  exit 1 if a page differs from what this makes (tests/test_docs.py)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = ROOT / "bench" / "results"
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def _load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _machine(data: dict[str, Any]) -> str:
    machine = data["machine"]
    where = machine.get("gpu") or f"{machine['cores']}-core {machine['cpu']} VM, CPU only"
    return f"Measured on: {where}, {data['date'][:10]} (`torch {machine.get('torch', '-')}`)."


def flags() -> str:
    from llava_video_mcp.server.settings import flags_table

    return flags_table()


def frames() -> str:
    data = _load("frames.json")
    rows = [
        [r["video"], r["frames"], f"{r['seed_s']} s" if r.get("seed_s") is not None else "fails",
         f"{r['ours_s']} s", f"{r['seed_over_ours']}x" if r.get("seed_over_ours") else "-", r["ours_over_floor"],
         f"{r['peak_rss_mb']} MB"]
        for r in data["results"]
    ]  # fmt: skip
    header = ["video", "frames", "seed (OpenCV, every frame)", "ours", "seed / ours", "ours / GOP floor", "peak RSS"]
    cpu = data["machine"]
    return f"Measured on: {cpu['cores']}-core {cpu['cpu']}, {data['date'][:10]}.\n\n" + _table(header, rows)


def scenes() -> str:
    data = _load("scenes.json")
    rows = []
    for r in data["results"]:
        ours, content, adaptive = r["ours"], r["content"], r["adaptive"]
        rows.append([
            f"{r['size']}, {r['seconds']} s", ours["s_per_min"], f"{ours['found']}/{ours['of']}", ours["false"],
            f"{content['s_per_min']}, {content['false']}", f"{adaptive['s_per_min']}, {adaptive['false']}",
            f"{ours['peak_rss_mb']} MB",
        ])  # fmt: skip
    header = ["reel", "ours s/min", "cuts found", "false cuts", "ContentDetector s/min, false",
              "AdaptiveDetector s/min, false", "our peak RSS"]  # fmt: skip
    return _machine(data) + "\n\n" + _table(header, rows)


def _model_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for r in data["results"]:
        for call in ("first", "follow_up"):
            figures = r.get(call)
            if not figures:
                continue
            vision = figures.get("vision_s_per_frame")
            rows.append([
                r["config"], call.replace("_", "-"), vision if vision is not None and call == "first" else "-",
                f"{figures['ttft_s']} s", figures["decode_tokens_per_s"], f"{figures['total_s']} s",
                f"{figures['prompt_tokens']:,}", f"{r['peak_rss_mb'] / 1024:.1f} GB" if call == "first" else "",
            ])  # fmt: skip
    return rows


_MODEL_HEADER = ["plan", "call", "vision s/frame", "time to first token", "decode tokens/s", "total", "prompt tokens",
                 "peak RSS"]  # fmt: skip


def model_cpu() -> str:
    data = _load("model-cpu.json")
    return _machine(data) + "\n\n" + _table(_MODEL_HEADER, _model_rows(data))


def model_cuda() -> str:
    data = _load("model-cuda.json")
    return _machine(data) + "\n\n" + _table(_MODEL_HEADER, _model_rows(data))


def model_families() -> str:
    data = _load("model-families-cpu.json")
    return _machine(data) + "\n\n" + _table(_MODEL_HEADER, _model_rows(data))


def long() -> str:
    cpu, gpu = _load("long-cpu.json"), _load("long-cuda.json")
    exact, full = cpu["exact_8_frames_60min"], cpu["full_coverage_decode"]
    rows = [
        ["8 exact frames of the 60-minute video, ours", f"{exact['ours_s']} s", "-"],
        ["the same, torchcodec exact / approximate",
         f"{exact['torchcodec_exact_s']} s / {exact['torchcodec_approximate_s']} s", "-"],
        [f"`coverage=\"full\"`, frames only: {full['60min']['windows']} windows, {full['60min']['frames']} frames, "
         "planned / decoded", f"{full['60min']['plan_s']} s / {full['60min']['decode_s']} s", "-"],
        ["peak RSS of that, 60 minutes against 10 minutes",
         f"{full['60min']['peak_rss_mb']} MB vs {full['10min']['peak_rss_mb']} MB", "-"],
        ["model, one window (8 frames, notes)", f"{cpu['model']['map_s_per_window']} s",
         f"{gpu['model']['map_s_per_window']} s"],
        ["first question on the 60-minute video (estimate)", f"{cpu['model']['first_question_s_estimate']} s",
         f"{gpu['model']['first_question_s_estimate']} s"],
        ["second question (notes kept)", f"{cpu['model']['second_question_s']} s",
         f"{gpu['model']['second_question_s']} s"],
    ]  # fmt: skip
    return (
        f"CPU: {cpu['machine']['cores']}-core {cpu['machine']['cpu']} VM ({cpu['date'][:10]}); "
        f"GPU: {gpu['machine']['gpu']} ({gpu['date'][:10]}).\n\n" + _table(["what", "CPU", "GPU"], rows)
    )


def speech_real() -> str:
    data = _load("speech-real-cpu.json")
    rows = []
    for name, engines in data["files"].items():
        for engine, r in engines.items():
            rows.append([name, engine, r["wer"], f"{r['utterances'] - r['utterances_lost']}/{r['utterances']}",
                         r["invented_words"], r["cpu_s"], r["load_cpu_s"], f"{r['peak_rss_mb']} MB"])  # fmt: skip
    header = ["audio", "engine", "WER", "utterances heard", "invented words", "CPU s", "load CPU s", "peak RSS"]
    return f"{_machine(data)} Model: {data['model']}. Peer: {data['peer']}.\n\n" + _table(header, rows)


def ocr() -> str:
    data = _load("ocr-cpu.json")
    rows = []
    for engine in data["engines"].values():
        for r in engine["rows"]:
            rows.append([engine["engine"], r["resolution"], r["scene"], r["word_recall"], r["cer"], r["s_per_frame"],
                         r["frames_read"], r["frames"]])  # fmt: skip
    header = ["engine", "video", "scene", "word recall", "CER", "s/frame", "frames read", "frames"]
    return f"{_machine(data)} rapidocr {data['rapidocr']}, {data['tesseract']}, {data['threads']} thread.\n\n" + _table(
        header, rows
    )


def _auto(name: str, config: str = "auto") -> dict[str, Any]:
    return next(r for r in _load(name)["results"] if r["config"] == config)  # type: ignore[no-any-return]


def first_answers() -> str:
    """The first answer's time, CPU and GPU, the README's too: the full-size model's arithmetic with random
    weights, 8 frames and 32 new tokens, in a fresh process."""
    cpu, families, gpu = (
        _auto("model-cpu.json"),
        _auto("model-families-cpu.json", "onevision"),
        _auto("model-cuda.json"),
    )
    machine = _load("model-cpu.json")["machine"]
    on_cpu = f"{machine['cores']}-core {machine['cpu']} VM, **CPU**"

    def row(where: str, model: str, figures: dict[str, Any], digits: int) -> list[str]:
        return [where, model, f"{figures['first']['total_s']:.{digits}f} s", f"{figures['follow_up']['total_s']:.1f} s"]

    gpu_name = _load("model-cuda.json")["machine"]["gpu"]
    rows = [
        row(on_cpu, "llava-interleave-0.5b (default)", cpu, 0),
        row(on_cpu, "LLaVA-OneVision-0.5b", families, 0),
        row(f"{gpu_name}, **GPU**", "llava-interleave-0.5b (default)", gpu, 1),
    ]
    return _table(["machine", "model", "first answer, 8 frames", "follow-up on the same frames"], rows)


GENERATED: dict[str, Callable[[], str]] = {
    "flags": flags,
    "first-answers": first_answers,
    "frames": frames,
    "scenes": scenes,
    "model-cpu": model_cpu,
    "model-cuda": model_cuda,
    "model-families": model_families,
    "long": long,
    "speech-real": speech_real,
    "ocr": ocr,
}


def regenerated(text: str) -> str:
    """A page with each generated block made afresh."""

    def made(match: re.Match[str]) -> str:
        return f"{match[1]}{GENERATED[match[2]]()}\n{match[4]}"

    return BLOCK.sub(made, text)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def stale() -> list[str]:
    """The pages whose generated blocks differ from what the code and bench/results make now."""
    return [str(page.relative_to(ROOT)) for page in pages() if regenerated(page.read_text()) != page.read_text()]


def main() -> int:
    if "--check" in sys.argv[1:]:
        differing = stale()
        for page in differing:
            print(f"{page}: generated tables are stale; run .venv/bin/python docs/generate.py", file=sys.stderr)
        return 1 if differing else 0
    for page in pages():
        text = page.read_text()
        if (new := regenerated(text)) != text:
            page.write_text(new)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
