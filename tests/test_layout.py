"""The layout shows the design, and stays so: tools/ has one sub-package per stage, in the order data flows, and a
stage imports only the stages before it; nothing in tools/ imports MCP or the server; the test-model builders
(testing/) are used by the self-test alone, and use tools/ only; there are no import circles; each stage has an
explicit surface; no function is over 80 lines. Read from the source, not by importing it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "llava_video_mcp"
STAGES = ["foundation", "media", "frames", "prompt", "backends", "tracks", "answer"]
"""In the order data flows: a source becomes a file, the file timed images, images and text a prompt, the prompt
an answer; the tracks read what a range says or shows as timed text (subtitles, speech heard); the tools' logic uses
them all. The foundation (errors, cancel, untrusted text, the shared LRU, timed text, progress shapes) is what every
stage may use."""


TESTING = f"{PACKAGE}.testing"
"""The tiny model builders and media makers: for the tests, the benchmarks and the self-test, not the product."""
SELFTEST = f"{PACKAGE}.server.selftest"
FOLDERS = {"server": ROOT / "server", "tools": ROOT / "tools", "testing": ROOT / PACKAGE / "testing"}


def modules() -> dict[str, Path]:
    """Every module of the installed package, by its dotted name, from the repository's folders."""
    found = {}
    for folder, root in FOLDERS.items():
        for path in root.rglob("*.py"):
            parts = [PACKAGE, folder, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = modules()


def imports(path: Path) -> Iterator[str]:
    """The modules of this package that a file imports, at any depth (an import inside a function counts)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in MODULES else node.module


def stage(module: str) -> str:
    parts = module.split(".")
    if parts[1] != "tools" or len(parts) < 3 or parts[2] not in STAGES:
        return "foundation"
    return parts[2]


TOOLS = sorted(name for name in MODULES if name.startswith(f"{PACKAGE}.tools."))


@pytest.mark.parametrize("module", TOOLS)
def test_a_stage_imports_only_the_stages_before_it(module: str) -> None:
    for imported in imports(MODULES[module]):
        assert not imported.startswith(("mcp", f"{PACKAGE}.server")), f"{module} imports {imported}"
        if imported.startswith(f"{PACKAGE}.tools"):
            assert STAGES.index(stage(imported)) <= STAGES.index(stage(module)), f"{module} imports {imported}"


@pytest.mark.parametrize("module", sorted(name for name in MODULES if name != SELFTEST))
def test_only_the_selftest_imports_the_test_builders_and_they_import_only_tools(module: str) -> None:
    for imported in imports(MODULES[module]):
        if module.startswith(TESTING):
            assert not imported.startswith(("mcp", f"{PACKAGE}.server")), f"{module} imports {imported}"
        else:
            assert not imported.startswith(TESTING), f"{module} imports {imported}"


def test_the_test_builders_are_a_package_of_their_own() -> None:
    assert (ROOT / PACKAGE / "testing" / "__init__.py").is_file()
    assert not (ROOT / PACKAGE / "testing").is_symlink()
    assert not list((ROOT / "tools").rglob("tiny_*.py")), "test builders belong in llava_video_mcp/testing/"
    assert any(imported.startswith(TESTING) for imported in imports(MODULES[SELFTEST]))


def test_there_are_no_import_circles() -> None:
    graph = {name: {i for i in imports(path) if i in MODULES and i != name} for name, path in MODULES.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, " -> ".join([*visiting[visiting.index(name) :], name])
        visiting.append(name)
        for child in sorted(graph[name]):
            visit(child)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


@pytest.mark.parametrize("stage_name", STAGES[1:])
def test_each_stage_has_an_explicit_surface(stage_name: str) -> None:
    source = (ROOT / "tools" / stage_name / "__init__.py").read_text()
    tree = ast.parse(source)
    names = [node for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "__all__"]  # type: ignore[attr-defined]
    assert names, f"tools/{stage_name}/__init__.py has no __all__"
    assert ast.get_docstring(tree), f"tools/{stage_name} says nothing of what it is"


def test_no_function_is_over_80_lines() -> None:
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


def test_no_test_module_imports_another() -> None:
    """The tests are shaped like the product: what several test modules share is in a support module
    (tests/support.py and the makers beside it), never imported from another test module."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "tests":
                imported = [f"tests.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {name}" for name in imported if name.startswith("tests.test_")]
    assert offenders == []


def test_the_fast_subset_names_tests_that_exist() -> None:
    """`pytest -m fast` runs the tests tests/conftest.py names; a renamed or removed one is named here."""
    from tests.conftest import FAST

    missing = {}
    for module, names in FAST.items():
        tree = ast.parse((ROOT / "tests" / module).read_text())
        defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if names - defined:
            missing[module] = names - defined
    assert missing == {}
