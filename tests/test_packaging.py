"""The installed package is the whole package, under one name: a wheel built from the project holds every module of
`server/` and `tools/` (their subpackages included) as `llava_video_mcp.server` and `llava_video_mcp.tools`, so
`pip install git+…` and `uvx` get a server that starts, and nothing called `server` or `tools` lands in
site-packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_module(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "bench", "tests")
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("llava_video_mcp-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        "llava_video_mcp/" + path.relative_to(ROOT).as_posix()
        for package in ("server", "tools")
        for path in (ROOT / package).rglob("*")
        if path.suffix == ".py" or path.name == "py.typed"
    } | {"llava_video_mcp/__init__.py", "llava_video_mcp/__main__.py", "llava_video_mcp/py.typed"}
    assert wanted - inside == set()
    assert {name.split("/")[0] for name in inside if not name.startswith("llava_video_mcp-")} == {"llava_video_mcp"}

    # Installed (here into a folder of its own), it is llava_video_mcp, and only that.
    target = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    probe = (
        "import importlib.util, llava_video_mcp.server.settings as s\n"
        f"print(s.__file__.startswith({str(target)!r}), importlib.util.find_spec('server'), "
        "importlib.util.find_spec('tools'))"
    )
    elsewhere = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True
    )
    assert elsewhere.stdout.split() == ["True", "None", "None"], elsewhere.stderr
