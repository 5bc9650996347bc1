"""The seam per model family: how frames, their times and the text become one family's native prompt and inputs.

    base.py       Family: what the in-process backend asks of a family (its prompt, inputs, frame cost, encoder,
                  how it takes a still image beside a video: `still_images`)
    llava.py      llava-interleave (`llava`): every frame an image, 729 tokens at 384 px
    onevision.py  LLaVA-OneVision (`llava_onevision`): the frames as one video, 196 tokens a frame at 384 px
    qwen.py       Qwen2-VL, Qwen2.5-VL, Qwen3-VL: every frame an image at its own resolution (about 336 tokens a
                  16:9 frame; Qwen3-VL about 252)

A family is found by its config's `model_type` (`family_for`), and before its model loads by the config in the
model's folder or the hub cache, else by its name in the model's id (`family_of`): what a frame costs it
(`Family.nominal_cost`) is then known to the tool descriptions and --help. The registry is every concrete `Family`
defined in this package's modules, so a new family is a new module here and its tests, and nothing else. Importing
this package imports neither torch nor transformers.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

from llava_video_mcp.tools.backends.families.base import Family, FrameCost
from llava_video_mcp.tools.backends.families.llava import LlavaInterleave
from llava_video_mcp.tools.backends.families.onevision import LlavaOnevision
from llava_video_mcp.tools.backends.families.qwen import Qwen2VL, Qwen3VL, Qwen25VL
from llava_video_mcp.tools.errors import ModelError


def _registry() -> tuple[type[Family], ...]:
    """Every concrete family defined in this package (its modules imported first), the default family first."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found: list[type[Family]] = []
    pending = list(Family.__subclasses__())
    while pending:
        family = pending.pop(0)
        pending.extend(family.__subclasses__())
        if "model_type" in vars(family) and family not in found:
            found.append(family)
    return tuple(sorted(found, key=lambda family: (family.model_type != "llava", family.name)))


FAMILIES: tuple[type[Family], ...] = _registry()
"""The families that run in process, keyed by their config's model_type."""


def family_for(model_type: str, model_id: str) -> type[Family]:
    """The family of a model whose config says `model_type`; ModelError naming the supported ones otherwise."""
    for family in FAMILIES:
        if model_type == family.model_type:
            return family
    supported = ", ".join(f"{family.name} ('{family.model_type}')" for family in FAMILIES)
    raise ModelError(
        f"{model_id} is a '{model_type}' model, which this server does not run in process. Supported families: "
        f"{supported}. Any other model can run on a serving engine, through --endpoint."
    )


def family_of(model: str) -> type[Family] | None:
    """The family of a model named by hub id or folder, before it loads and without the network: by the model_type
    of its config.json (the folder's, or the hub cache's), else by a family's name in its id
    (llava-hf/llava-onevision-qwen2-0.5b-ov-hf, Qwen/Qwen2.5-VL-3B-Instruct); None when neither tells."""
    model_type = _cached_model_type(model)
    if model_type is not None:
        return next((family for family in FAMILIES if family.model_type == model_type), None)
    return next((family for family in FAMILIES if family.name in model.lower()), None)


def _cached_model_type(model: str) -> str | None:
    local = Path(model).expanduser()
    is_folder = model.startswith((".", "/", "~")) or local.exists()
    config = local / "config.json" if is_folder else _hub_cached_config(model)
    if config is None:
        return None
    try:
        loaded = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = loaded.get("model_type") if isinstance(loaded, dict) else None
    return found if isinstance(found, str) else None


def _hub_cached_config(model: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "config.json")
    except ValueError:  # not a repository id at all
        return None
    return Path(cached) if isinstance(cached, str) else None


__all__ = [
    "FAMILIES",
    "Family",
    "FrameCost",
    "LlavaInterleave",
    "LlavaOnevision",
    "Qwen2VL",
    "Qwen3VL",
    "Qwen25VL",
    "family_for",
    "family_of",
]
