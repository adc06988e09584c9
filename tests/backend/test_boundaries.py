"""Process boundaries the architecture depends on, checked on the real modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports(folder: Path) -> dict[Path, set[str]]:
    out = {}
    for path in folder.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[path] = names
    return out


def test_backend_never_imports_bpy():
    offenders = [str(p) for p, names in _imports(REPO / "backend").items() if "bpy" in names]
    assert offenders == []


def test_addon_never_imports_torch():
    offenders = [
        str(p) for p, names in _imports(REPO / "sam3d_blender").items() if "torch" in names
    ]
    assert offenders == []


def test_server_process_loads_no_gpu_stack():
    """What the HTTP server imports and runs (app, engine availability, GPU probe, /info)
    must not pull in torch or any CUDA extension, even where they are installed."""
    code = """
import sys, tempfile
from pathlib import Path
from backend.api.state import ServerSettings
from backend.machine import gpu_summary
from backend.server import create_app
from backend.engines.registry import engine_report
app = create_app(ServerSettings(data_dir=Path(tempfile.mkdtemp()), token="t"))
engine_report(); gpu_summary()
heavy = sorted(m for m in ("torch", "bpy", "kaolin", "pytorch3d", "gsplat", "sam3d_objects", "nvdiffrast")
               if m in sys.modules)
print("HEAVY", heavy)
"""
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout, r.stdout
