"""The installed package is the whole package, under one name: a wheel built from the project holds every module of
`server/` and `tools/` (their subpackages included) as `llava_video_mcp.server` and `llava_video_mcp.tools`, and
the self-test's builders (`llava_video_mcp.testing`), so `pip install git+…` and `uvx` get a server that starts
(and a self-test that runs), and nothing called `server` or `tools` lands in site-packages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


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
    # The selftest's builders and media makers ship too: `llava-video-mcp selftest` runs from a wheel.
    wanted |= {path.relative_to(ROOT).as_posix() for path in (ROOT / "llava_video_mcp" / "testing").rglob("*.py")}
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


def _cpu_torch_wheel() -> Path | None:
    for folder in os.environ.get("PIP_FIND_LINKS", "/opt/wheels").split():
        for wheel in sorted(Path(folder).glob("torch-*+cpu-*.whl")) if Path(folder).is_dir() else []:
            return wheel
    return None


def test_the_readmes_uv_cpu_path_resolves_the_cpu_torch(tmp_path: Path) -> None:
    """PyTorch's index cannot be reached here, so a stand-in serves the one CPU build of torch this machine has,
    under the README's own uv flags: uv must take that build, and so no CUDA package, where PyPI alone gives the
    CUDA build with its nvidia-* packages."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    wheel = _cpu_torch_wheel()
    if uv is None or wheel is None:
        pytest.skip("needs uv (the test extra) and a CPU build of torch on disk (PIP_FIND_LINKS)")
    documented = re.search(r"uvx (--index \S+ --index-strategy \S+) --from \.", (ROOT / "README.md").read_text())
    assert documented is not None, "the README shows the uvx command for CPU machines"
    flags = documented.group(1).split()
    assert flags[1] == PYTORCH_CPU_INDEX
    stand_in = tmp_path / "index"
    (stand_in / "torch").mkdir(parents=True)
    (stand_in / "torch" / wheel.name).symlink_to(wheel)
    (stand_in / "torch" / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>')
    version = wheel.name.split("-")[1].split("+")[0]
    (tmp_path / "constraints.txt").write_text(f"torch=={version}\n")  # the one version the stand-in has

    def resolved(*index: str) -> str:
        platform = sysconfig.get_platform().replace("linux-", "") + "-manylinux_2_28"
        done = subprocess.run(
            [uv, "pip", "compile", "pyproject.toml", *index, "-c", str(tmp_path / "constraints.txt"), "--no-header",
             "--quiet", "--python-version", "3.11", "--python-platform", platform],
            cwd=ROOT, capture_output=True, text=True, timeout=180, env=os.environ | {"UV_CACHE_DIR": str(tmp_path)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    cpu = resolved(flags[0], (stand_in).as_uri(), *flags[2:])
    assert f"torch=={version}+cpu" in cpu
    assert not re.search(r"^(nvidia-|triton)", cpu, re.MULTILINE)
    assert re.search(r"^nvidia-", resolved(), re.MULTILINE)  # the test tells the two apart
