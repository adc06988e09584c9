"""Ray stays optional: only ``backend.cluster`` imports it, and the local executor's path
(CLI, server, pool, worker, jobs) never loads it - checked on the source and in a real
interpreter that builds the local server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_only_the_cluster_package_imports_ray():
    importers = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "backend").rglob("*.py")
        if any(m == "ray" or m.startswith("ray.") for m in _imports(p))
    )
    assert importers, "the scan found no Ray import at all"
    assert all(p.startswith("backend/cluster/") for p in importers), importers
    for p in (REPO / "backend").rglob("*.py"):
        if "cluster" in p.parts:
            continue
        for m in _imports(p):
            if m.startswith("backend.cluster"):
                # the one door: ServerState builds RayPool for --executor ray, inside a branch
                assert p == REPO / "backend" / "api" / "state.py", (p, m)


def test_the_local_server_never_loads_ray(tmp_path):
    code = f"""
import sys
from pathlib import Path
from backend.cli import build_parser
from backend.api.state import ServerSettings
from backend.server import create_app
build_parser().parse_args(["serve", "--data-dir", {str(tmp_path)!r}])
app = create_app(ServerSettings(data_dir=Path({str(tmp_path)!r}), token="t", workers=1))
state = app.state.server
state.start()
state.stop()
import backend.worker, backend.jobs.run
bad = sorted(m for m in sys.modules if m == "ray" or m.startswith(("ray.", "backend.cluster")))
print(bad)
sys.exit(1 if bad else 0)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
