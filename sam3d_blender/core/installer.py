"""Running the backend installer as a subprocess and reading its progress (no bpy).

The installer (``python -m backend install --venv DIR --profile cuda|cpu``) prints
``STEP i/n <name>`` when a step starts and lines starting with ``OK``/``FAIL`` as steps end.
Whatever else it prints (or a crash before it prints anything) is kept and shown, so the
button is useful even when the installer misbehaves.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO

from .subprocesses import LineReader, new_group_kwargs, signal_group

_STEP = re.compile(r"^\s*STEP\s+(\d+)\s*/\s*(\d+)\s*(.*)$")


class InstallState(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class InstallProgress:
    """What the preferences show: step ``i`` of ``n`` named ``name``; all output lines."""

    step: int = 0
    total: int = 0
    name: str = ""
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return (max(0, self.step - 1) / self.total) if self.total else 0.0

    def feed(self, line: str) -> None:
        self.lines.append(line)
        m = _STEP.match(line)
        if m:
            self.step, self.total, self.name = int(m.group(1)), int(m.group(2)), m.group(3).strip()
        elif line.lstrip().startswith("FAIL"):
            self.failures.append(line.strip())


class InstallerRun:
    """One run of the installer. ``start`` spawns it; ``poll`` reads new lines and notices
    the end; ``wait`` blocks (for scripts and tests)."""

    def __init__(
        self,
        python: str | Path,
        backend_root: Path,
        venv_dir: Path,
        profile: str,
        log_path: Path,
        extra_args: list[str] | None = None,
    ) -> None:
        self.python = str(python)
        self.backend_root = backend_root
        self.venv_dir = venv_dir
        self.profile = profile
        self.log_path = log_path
        self.extra_args = list(extra_args or [])
        self.state = InstallState.IDLE
        self.progress = InstallProgress()
        self.returncode: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: LineReader | None = None
        self._log_fh: IO[str] | None = None

    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "backend",
            "install",
            "--venv",
            str(self.venv_dir),
            "--profile",
            self.profile,
            *self.extra_args,
        ]

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.backend_root), *filter(None, [env.get("PYTHONPATH")])]
        )
        env["PYTHONUNBUFFERED"] = "1"
        self.state = InstallState.RUNNING
        self.progress = InstallProgress()
        try:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=str(self.backend_root),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                **new_group_kwargs(),  # its own group: cancel() reaches pip too
            )
        except OSError as exc:
            self.progress.feed(f"FAIL cannot run {self.python}: {exc}")
            self._finish(-1)
            return
        self._reader = LineReader(self.proc.stdout, self._log_fh)  # type: ignore[arg-type]

    def poll(self) -> InstallState:
        if self.state != InstallState.RUNNING or self.proc is None:
            return self.state
        assert self._reader is not None
        for line in self._reader.lines():
            self.progress.feed(line)
        rc = self.proc.poll()
        if rc is not None:
            self._reader.join(2.0)
            for line in self._reader.lines():
                self.progress.feed(line)
            self._finish(rc)
        return self.state

    def wait(self, timeout: float | None = None) -> InstallState:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() == InstallState.RUNNING:
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                break
            time.sleep(0.1)
        return self.state

    def cancel(self, grace_s: float = 5.0) -> None:
        """Stop the installer and everything it started (pip and its builds) without
        blocking: the process group gets SIGTERM now; a daemon thread (no bpy) kills what
        is left after ``grace_s`` seconds, reaps it and closes the log."""
        proc = self.proc
        if proc is None or proc.poll() is not None or self.state != InstallState.RUNNING:
            return
        signal_group(proc.pid, signal.SIGTERM if sys.platform != "win32" else None)
        self.progress.feed("FAIL cancelled")
        log_fh, reader = self._log_fh, self._reader
        self._log_fh = None  # the reaper closes it once the reader is done writing
        self._finish(-1)

        def reap() -> None:
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
            signal_group(proc.pid, signal.SIGKILL if sys.platform != "win32" else None)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            if reader is not None:
                reader.join(2.0)
            if log_fh is not None:
                try:
                    log_fh.close()
                except OSError:
                    pass

        threading.Thread(target=reap, daemon=True, name="sam3d-installer-cancel").start()

    def _finish(self, rc: int) -> None:
        self.returncode = rc
        self.state = InstallState.SUCCEEDED if rc == 0 else InstallState.FAILED
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def summary(self) -> str:
        """One line for the UI."""
        p = self.progress
        if self.state == InstallState.RUNNING:
            return f"Step {p.step}/{p.total}: {p.name}" if p.total else "Starting installer..."
        if self.state == InstallState.SUCCEEDED:
            return "Backend installed."
        if self.state == InstallState.FAILED:
            last = p.failures[-1] if p.failures else (p.lines[-1] if p.lines else "")
            return f"Install failed (exit code {self.returncode}): {last}"[:300]
        return ""


def stage_source(extension_root: Path, dest: Path) -> Path | None:
    """Copy what ``pip install <source>`` needs (pyproject.toml, README.md, backend/) from
    the extension folder to ``dest`` (in the add-on's user folder) and return ``dest``.

    pip builds a local project in place (``build/``, ``*.egg-info``); pointing the
    installer at this copy keeps the extension's own folder untouched (it may be
    read-only, and Blender replaces it on update). None when the extension folder has no
    pyproject.toml (then the installer's own default source is used).
    """
    import shutil

    if not (extension_root / "pyproject.toml").is_file():
        return None
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (extension_root / name).is_file():
            shutil.copy2(extension_root / name, dest / name)
    shutil.copytree(
        extension_root / "backend",
        dest / "backend",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"),
    )
    return dest


def venv_python(venv_dir: Path) -> Path:
    """The interpreter inside a virtual environment created by the installer."""
    if sys.platform == "win32":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"
