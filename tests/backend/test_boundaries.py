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


def _loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` (top-level names) a fresh Python has loaded after ``code``."""
    code += f"\nimport sys\nprint(sorted(m for m in {modules!r} if m in sys.modules))\n"
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return ast.literal_eval(r.stdout.strip().splitlines()[-1])


def test_server_process_loads_no_gpu_stack():
    """What the HTTP server imports and runs (app, engine availability, GPU probe, /info)
    must not pull in torch or any CUDA extension, even where they are installed."""
    code = """
import tempfile
from pathlib import Path
from backend.api.state import ServerSettings
from backend.machine import gpu_summary
from backend.server import create_app
from backend.engines.registry import engine_report
app = create_app(ServerSettings(data_dir=Path(tempfile.mkdtemp()), token="t"))
engine_report(); gpu_summary()
"""
    heavy = ("torch", "bpy", "kaolin", "pytorch3d", "gsplat", "sam3d_objects", "nvdiffrast")
    assert _loaded_after(code, heavy) == []


def test_cli_parser_needs_no_third_party_package():
    """``python -m backend install`` runs on Blender's own Python (the Install button): the
    CLI's parser must not import what only the backend's venv has."""
    code = "from backend.cli import build_parser\nbuild_parser().parse_args(['doctor'])"
    third = ("pydantic", "fastapi", "starlette", "numpy", "PIL", "psutil", "requests")
    assert _loaded_after(code, third) == []


def test_job_folder_files_are_named_in_job_dir_only():
    """Every file of a job folder is named once, by ``backend.jobs.job_dir.JobDir``."""
    names = {"request.json", "image.png", "mask.png", "status.json", "job.log", "cancel"}
    names |= {"result.glb", "result.json"}
    offenders = []
    for path in sorted((REPO / "backend").rglob("*.py")):
        if path.relative_to(REPO).as_posix() == "backend/jobs/job_dir.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if value in names or value.startswith(("masks/", "parts/")):
                    offenders.append(f"{path.name}:{node.lineno} {value!r}")
    # the worker protocol's command is also called "cancel"
    offenders = [o for o in offenders if not o.startswith(("pool.py", "worker.py"))]
    assert offenders == []
