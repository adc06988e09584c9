"""The code's structure, checked on the real source: no import cycles in the add-on or the
backend, and no bpy in the add-on's ``core/`` folder.

The import graphs are built statically (``ast``), with every import a module makes -
including those inside functions, which would otherwise hide a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Top-level modules that only exist inside Blender.
BLENDER_MODULES = {"bpy", "bpy_extras", "mathutils", "addon_utils", "bl_math", "gpu", "bmesh"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imported(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports, anywhere in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                base_name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                base_name = node.module or ""
            # ``from pkg import name``: the submodule pkg.name when it is one, else pkg.
            targets = [
                f"{base_name}.{a.name}" if f"{base_name}.{a.name}" in modules else base_name
                for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``import a.b.c`` of a package path
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    files = sorted((REPO / package).rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imported(p, modules) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_relative_and_function_level_imports():
    graph = import_graph("sam3d_blender")
    assert "sam3d_blender.core.jobs" in graph["sam3d_blender.core.job_manager"]
    assert "sam3d_blender.operators" in graph["sam3d_blender"]  # inside register()
    assert "sam3d_blender.finish" in graph["sam3d_blender.timer"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", ["sam3d_blender", "backend"])
def test_no_import_cycles(package):
    graph = import_graph(package)
    assert len(graph) > 10
    assert cycles(graph) == []


def test_core_folder_never_imports_blender():
    """``sam3d_blender/core/`` is the add-on's bpy-free folder: nothing in it imports a
    module that exists only inside Blender, statically or when imported."""
    core = REPO / "sam3d_blender" / "core"
    offenders = []
    for path in sorted(core.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom):  # relative: must stay inside core/
                depth = len(path.relative_to(core).parts) - 1
                if node.level > depth + 1:
                    offenders.append(f"{path.name}: from {'.' * node.level}{node.module or ''}")
                continue
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in BLENDER_MODULES]
    assert offenders == []
    modules = sorted(_module_name(p) for p in core.rglob("*.py"))
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(BLENDER_MODULES)!r}"
        + " or m.split('.')[0] == 'torch')\n"
        + "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(modules) >= 15
