"""Running an install ``Plan``: ``STEP i/n name`` then ``OK``/``SKIP``/``FAIL`` per step.

Each command's output goes to ``<venv>/sam3d-install.log``; a failing step prints the
failing command and its last lines. A step whose requirements are already met (the pinned
version / commit / source installed, or the step's marker present) is skipped, so re-running
after a failure continues where it stopped. The end imports every module the profile needs
in the new venv and reports each failure by name.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

from backend.install.plan import CPU_MIN_PYTHON, PYTHON_VERSION, Plan, Requirement, Step

TAIL_LINES = 25
HEARTBEAT_S = 30.0

#: Runs inside the target venv: which requirements are installed as asked (JSON in, JSON out).
_CHECK_SCRIPT = r"""
import json, os, sys
from importlib import metadata
from urllib.parse import unquote, urlparse
reqs = json.loads(sys.argv[1])
out = []
for r in reqs:
    try:
        d = metadata.distribution(r["dist"])
    except metadata.PackageNotFoundError:
        out.append(False)
        continue
    ok = r["version"] is None or d.version == r["version"] or d.version.split("+")[0] == r["version"]
    if r["version"] and "+" in r["version"]:
        ok = d.version == r["version"]
    if ok and (r["commit"] or r["source"]):
        try:
            du = json.loads(d.read_text("direct_url.json") or "{}")
        except Exception:
            du = {}
        if r["commit"]:
            ok = du.get("vcs_info", {}).get("commit_id") == r["commit"]
        if r["source"]:
            url = du.get("url", "")
            path = unquote(urlparse(url).path) if url.startswith("file:") else ""
            if len(path) > 2 and path[0] == "/" and path[2] == ":":
                path = path[1:]  # file:///C:/x on Windows
            norm = lambda p: os.path.normcase(os.path.realpath(p))
            ok = bool(path) and norm(path) == norm(r["source"])
    out.append(bool(ok))
print(json.dumps(out))
"""

_IMPORT_SCRIPT = r"""
import importlib, json, sys, traceback
failed = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed[name] = (type(exc).__name__ + ": " + str(exc)).strip().splitlines()[0][:300]
print(json.dumps(failed))
"""


class Runner:
    """Executes a plan; ``out`` receives the progress lines (stdout by default)."""

    def __init__(self, plan: Plan, out: Callable[[str], None] | None = None) -> None:
        self.plan = plan
        self.out = out or (lambda s: print(s, flush=True))
        self.log_path = plan.venv / "sam3d-install.log"

    # -- satisfaction ---------------------------------------------------------------------
    def satisfied(self, step: Step) -> bool:
        if not step.satisfied_by:
            return False
        markers = [r for r in step.satisfied_by if r.marker]
        if any(not (self.plan.venv / r.marker).exists() for r in markers):
            return False
        if step.name == "venv":
            return self._venv_python_ok()
        dists = [r for r in step.satisfied_by if r.dist]
        if not dists:
            return True
        if not self.plan.python.exists():
            return False
        return all(self.query(dists))

    def _venv_python_ok(self) -> bool:
        if not self.plan.python.exists():
            return False
        try:
            out = subprocess.run(
                [str(self.plan.python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        version = out.stdout.strip()
        if version == PYTHON_VERSION:
            return True
        # the cpu profile's venv may be any Python from CPU_MIN_PYTHON up (e.g. Blender's 3.13)
        parts = version.split(".")
        return (
            self.plan.profile == "cpu"
            and len(parts) == 2
            and all(p.isdigit() for p in parts)
            and (int(parts[0]), int(parts[1])) >= CPU_MIN_PYTHON
        )

    def query(self, reqs: list[Requirement]) -> list[bool]:
        try:
            # -I: isolated (no cwd / PYTHONPATH on sys.path), so only the venv's packages count
            proc = subprocess.run(
                [
                    str(self.plan.python),
                    "-I",
                    "-c",
                    _CHECK_SCRIPT,
                    json.dumps([r.to_dict() for r in reqs]),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=str(self.plan.venv),
            )
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
            return [False] * len(reqs)

    # -- running --------------------------------------------------------------------------
    def _run_cmd(self, cmd: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        full_env = dict(os.environ)
        full_env.update(env)
        full_env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8", errors="replace") as log:
            log.write(f"\n$ {shlex.join(cmd)}\n")
            log.flush()
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=full_env,
                    text=True,
                    encoding="utf-8",
                    errors="replace",
                    bufsize=1,
                )
            except OSError as exc:
                msg = f"cannot start {cmd[0]}: {exc}"
                log.write(msg + "\n")
                return 127, [msg]
            t0 = last = time.monotonic()
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
                now = time.monotonic()
                if now - last > HEARTBEAT_S:
                    self.out(
                        f"  ... still running ({now - t0:.0f} s): {tail[-1][:100] if tail else ''}"
                    )
                    last = now
            rc = proc.wait()
            log.write(f"[exit {rc}]\n")
        return rc, list(tail)

    def run(self, dry_run: bool = False) -> int:
        """0 when every step and the import check pass; 1 at the first failing step; 2 when
        only the import check failed."""
        steps = self.plan.steps
        n = len(steps)
        for i, step in enumerate(steps, 1):
            self.out(f"STEP {i}/{n} {step.name}" + (f"  ({step.note})" if step.note else ""))
            if dry_run:
                for cmd in step.commands:
                    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in step.env.items())
                    self.out("  $ " + (env + " " if env else "") + shlex.join(cmd))
                continue
            if self.satisfied(step):
                self.out(f"SKIP {step.name} (already satisfied)")
                continue
            t0 = time.monotonic()
            for cmd in step.commands:
                rc, tail = self._run_cmd(cmd, step.env)
                if rc != 0:
                    self.out(f"FAIL {step.name}: exit status {rc} from")
                    self.out(f"  $ {shlex.join(cmd)}")
                    self.out(f"  last {len(tail)} lines (full log: {self.log_path}):")
                    for line in tail:
                        self.out(f"  | {line}")
                    return 1
            self.out(f"OK {step.name} ({time.monotonic() - t0:.0f} s)")
        if dry_run:
            self.out(
                f"IMPORT-CHECK {len(self.plan.import_check)} modules: {' '.join(self.plan.import_check)}"
            )
            return 0
        return self.import_check()

    def import_check(self) -> int:
        mods = list(self.plan.import_check)
        self.out(f"IMPORT-CHECK {len(mods)} modules with {self.plan.python}")
        env = dict(os.environ, LIDRA_SKIP_INIT="true")
        try:
            proc = subprocess.run(
                [str(self.plan.python), "-I", "-c", _IMPORT_SCRIPT, json.dumps(mods)],
                capture_output=True,
                text=True,
                timeout=900,
                env=env,
                cwd=str(self.plan.venv),
            )
            failed = json.loads(proc.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
            self.out(f"FAIL import-check: the venv's Python could not run the check ({exc})")
            return 2
        for name, err in failed.items():
            self.out(f"FAIL import {name}: {err}")
        if failed:
            self.out(
                f"IMPORT-CHECK FAILED: {len(failed)} of {len(mods)} modules ({', '.join(failed)})"
            )
            return 2
        self.out(f"IMPORT-CHECK OK ({len(mods)} modules)")
        return 0


def default_out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
