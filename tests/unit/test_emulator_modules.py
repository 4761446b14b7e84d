"""The emulator's modules import one another without a circle, and each imports alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

EMULATOR = Path(__file__).resolve().parents[2] / "emulator"
MODULES = sorted(p.stem for p in EMULATOR.glob("*.py") if p.stem != "__init__")


def _imports(module: str) -> set[str]:
    """The emulator modules `module` imports outside functions (TYPE_CHECKING included)."""
    tree = ast.parse((EMULATOR / f"{module}.py").read_text())
    found: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "emulator":
                found.update(a.name for a in node.names if a.name in MODULES)
            elif node.module.startswith("emulator."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("emulator."))
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            pending.extend(ast.iter_child_nodes(node))
    return found - {module}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph`, as the modules along it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_emulator_modules_import_one_another_without_a_circle() -> None:
    graph = {module: _imports(module) for module in MODULES}
    circle = _cycle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_each_emulator_module_imports_alone_in_a_fresh_interpreter() -> None:
    # One interpreter for all: third-party packages stay loaded, every emulator (and
    # rollout) module is forgotten before the next import, so each one loads alone.
    script = (
        "import importlib, sys\n"
        "OURS = ('emulator', 'rollout')\n"
        f"for name in {MODULES!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in OURS]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module('emulator.' + name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=EMULATOR.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
