"""The seam per model family: how frames, their times and the text become one family's native prompt and inputs.

    base.py       Family: what the in-process backend asks of a family (its prompt, inputs, frame cost, encoder)
    llava.py      llava-interleave (`llava`): every frame an image, 729 tokens at 384 px
    onevision.py  LLaVA-OneVision (`llava_onevision`): the frames as one video, 196 tokens a frame at 384 px
    qwen.py       Qwen2-VL, Qwen2.5-VL, Qwen3-VL: every frame an image at its own resolution (about 336 tokens)

A family is found by its config's `model_type` (`family_for`). The registry is every concrete `Family` defined in
this package's modules, so a new family is a new module here and its tests, and nothing else. Importing this
package imports neither torch nor transformers.
"""

from __future__ import annotations

import importlib
import pkgutil

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
]
