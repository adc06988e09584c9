"""``scripts/blender.sh`` itself: it says why when Blender cannot run (exit 77, the reason
the tier is skipped with), sees the checkout and the venv's interpreter at their own paths,
runs concurrently, and leaves nothing mounted on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.blender.blender_run import BLENDER_SH, REPO, UNAVAILABLE, run_blender

CACHE = os.environ.get("SAM3D_BLENDER_CACHE", "/var/cache/sam3d-blender")


def test_says_why_when_blender_cannot_run():
    env = {**os.environ, "SAM3D_BLENDER": "skip"}
    proc = subprocess.run(
        [str(BLENDER_SH), "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == UNAVAILABLE
    assert proc.stderr.strip() == "blender.sh: unavailable: SAM3D_BLENDER=skip is set"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_says_why_when_not_root():
    script = BLENDER_SH.read_text()
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "bash",
            "-c",
            script,
            "blender.sh",
            "--version",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={k: v for k, v in os.environ.items() if k != "SAM3D_BLENDER"},
    )
    assert proc.returncode == UNAVAILABLE, proc.stderr
    assert "blender.sh: unavailable: needs root" in proc.stderr


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [ln for ln in fh if f" {path}" in ln]


def test_checkout_and_venv_visible_concurrent_runs_no_mounts_left(real_blender, tmp_path):
    probe = (
        "import json, os, sys; print('FACTS', json.dumps({"
        f"'manifest': os.path.isfile({str(REPO / 'blender_manifest.toml')!r}), "
        "'backend_python': os.environ.get('SAM3D_BACKEND_PYTHON'), "
        "'runs': os.access(os.environ.get('SAM3D_BACKEND_PYTHON', ''), os.X_OK), "
        f"'tmp': os.path.isdir({str(tmp_path)!r}), "
        "'python': sys.version.split()[0]}))"
    )
    args = ["--background", "--factory-startup", "--python-expr", probe]
    with ThreadPoolExecutor(3) as pool:
        procs = list(pool.map(lambda _: run_blender(args, timeout=120), range(3)))
    for proc in procs:
        assert proc.returncode == 0, proc.stdout[-2000:]
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("FACTS "))
        facts = json.loads(line[len("FACTS ") :])
        assert facts == {
            "manifest": True,
            "backend_python": f"{REPO}/.venv/bin/python",
            "runs": True,
            "tmp": True,
            "python": facts["python"],
        }
    # each run's bind mounts lived in its own mount namespace: none is left on the host
    assert _mounts_under(CACHE) == []
    # the venv's interpreter really runs in there (the managed backend's)
    proc = run_blender(
        ["--exec", f"{REPO}/.venv/bin/python", "-c", "import uvicorn, fastapi; print('ok')"]
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout
