"""Running the real Blender of ``scripts/blender.sh`` from pytest (host side).

Each call is its own process: ``scripts/blender.sh ARGS`` with this test's Blender user
folder (``BLENDER_USER_RESOURCES``), pytest's temporary folders visible inside Blender at
the same paths (``SAM3D_BLENDER_BIND``), and the managed backend started from the
checkout's ``.venv`` (the script's default ``SAM3D_BACKEND_PYTHON``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLENDER_SH = REPO / "scripts" / "blender.sh"
IN_BLENDER = Path(__file__).resolve().parent / "in_blender"
#: ``scripts/blender.sh``'s exit status when Blender cannot run on this machine.
UNAVAILABLE = 77
#: Screenshots and logs of this tier, for people to look at (``out/`` is ignored by git).
OUT = REPO / "out" / "blender"


def _env(user_dir: Path | None, extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("SAM3D_BACKEND_URL", "SAM3D_BACKEND_TOKEN", "SAM3D_BACKEND_PYTHON"):
        env.pop(var, None)  # blender.sh points the add-on at the checkout's .venv
    env.pop("SAM3D_ENABLE_TEST_ENGINES", None)
    if user_dir is not None:
        env["BLENDER_USER_RESOURCES"] = str(user_dir)
    binds = [tempfile.gettempdir(), str(OUT)]
    env["SAM3D_BLENDER_BIND"] = ":".join(dict.fromkeys(b for b in binds if b))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def provision(timeout: float = 1800) -> tuple[int, str, str, float]:
    """``scripts/blender.sh --provision``: (exit status, stdout, stderr, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(BLENDER_SH), "--provision"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(None, None),
    )
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0


def run_blender(
    args: list[str],
    *,
    user_dir: Path | None = None,
    log: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``scripts/blender.sh ARGS`` to completion; stdout and stderr together in
    ``.stdout`` (also written to ``log``)."""
    t0 = time.perf_counter()
    # Its own session: on a timeout the whole tree (Blender, Xvfb, the backend) is killed.
    with subprocess.Popen(
        [str(BLENDER_SH), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(user_dir, env),
        cwd=str(cwd or REPO),
        start_new_session=True,
    ) as child:
        try:
            out, _ = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            out, _ = child.communicate()
            out += f"\n[killed after {timeout:g} s]"
        proc = subprocess.CompletedProcess(child.args, child.returncode, out)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ scripts/blender.sh {' '.join(args)}\n{proc.stdout}")
    print(
        f"scripts/blender.sh {' '.join(args[:4])} ... -> {proc.returncode} in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return proc


def run_scenario(
    script: str,
    args: list[str],
    result: Path,
    *,
    user_dir: Path,
    gui: bool = False,
    timeout: float = 300,
    log: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[dict, subprocess.CompletedProcess[str]]:
    """Run ``in_blender/<script>`` in Blender (background, or the GUI under Xvfb) and
    return the facts it wrote, and the process."""
    head = ["--xvfb"] if gui else ["--background"]
    proc = run_blender(
        [
            *head,
            "--python-exit-code",
            "3",
            "--python",
            str(IN_BLENDER / script),
            "--",
            "--result",
            str(result),
            *args,
        ],
        user_dir=user_dir,
        log=log or result.with_suffix(".log"),
        timeout=timeout,
        env=env,
    )
    assert result.is_file(), f"{script} wrote no result ({proc.returncode}):\n{proc.stdout[-5000:]}"
    facts = json.loads(result.read_text())
    assert "error" not in facts, f"{facts['error']}\n--- Blender output ---\n{proc.stdout[-5000:]}"
    return facts, proc


def screenshots_dir(test_name: str) -> Path:
    """``out/blender/<test name>/``, emptied."""
    d = OUT / "".join(c if c.isalnum() or c in "-_." else "_" for c in test_name)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    return d
