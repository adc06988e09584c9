"""``install --profile cpu`` for real: a fresh venv, the project installed from this checkout
(dependencies from the package index, pip's cache reused), then a preview job run with that
venv's Python from outside the checkout, then a re-run that skips every step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from backend.install.plan import IMPORT_CHECK_CPU

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _install_cpu(venv, env, timeout: int) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "backend",
        "install",
        "--venv",
        str(venv),
        "--profile",
        "cpu",
        "--tool",
        "pip",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)


def test_cpu_profile_installs_and_runs_a_preview_job(tmp_path):
    venv = tmp_path / "venv"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PIP_NO_CACHE_DIR", None)
    proc = _install_cpu(venv, env, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for line in (
        "STEP 1/2 venv",
        "OK venv",
        "STEP 2/2 backend",
        "OK backend",
        f"IMPORT-CHECK OK ({len(IMPORT_CHECK_CPU)} modules)",  # click-to-mask's cv2 among them
    ):
        assert line in out, out

    work = tmp_path / "job"
    work.mkdir()
    img = Image.new("RGB", (320, 240), (90, 90, 90))
    ImageDraw.Draw(img).ellipse((100, 60, 220, 200), fill=(200, 40, 40))
    img.save(work / "photo.png")
    mask = Image.new("L", (320, 240), 0)
    ImageDraw.Draw(mask).ellipse((100, 60, 220, 200), fill=255)
    mask.save(work / "mask.png")
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run(
        [str(py), "-c", "import backend; print(backend.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=clean,
        check=True,
    )
    assert str(venv) in where.stdout  # the installed package, not this checkout
    job = subprocess.run(
        [
            str(py),
            "-m",
            "backend",
            "generate",
            "--image",
            "photo.png",
            "--mask",
            "mask.png",
            "--engine",
            "preview",
            "--out",
            "x.glb",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        env=clean,
        timeout=600,
    )
    assert job.returncode == 0, job.stdout + job.stderr
    glb = (work / "x.glb").read_bytes()
    assert glb[:4] == b"glTF" and len(glb) > 10_000

    again = _install_cpu(venv, env, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (
        "SKIP venv (already satisfied)" in again.stdout
        and "SKIP backend (already satisfied)" in again.stdout
    )
