"""Running the backend installer as a subprocess and reading its progress (no bpy).

The installer (``python -m backend install --venv DIR --profile auto|cuda|...|cpu``) prints
``STEP i/n <name>`` when a step starts and lines starting with ``OK``/``FAIL`` as steps end;
a machine that cannot take the profile gets ``REFUSED {json}`` and exit status 3, naming
the profile that works here instead. Whatever else it prints (or a crash before it prints
anything) is kept and shown, so the button is useful even when the installer misbehaves.

Before installing, :func:`choose_profile` asks the same installer (``--choose``) which
profile this machine gets and why; once installed, :func:`run_doctor` asks the backend's
own ``doctor``. Both run the bundled backend in a subprocess (this module never imports
it), and :func:`doctor_findings` / :func:`choice_findings` turn the answers into plain
sentences for the panel.
"""

from __future__ import annotations

import json
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
#: The installer's line when the machine cannot take the profile (then it exits with 3).
REFUSED_PREFIX = "REFUSED "
REFUSED_EXIT = 3
#: What each install profile gives, in the artist's words.
PROFILE_WORDS = {
    "cpu": "the preview engine (CPU)",
    "cuda121": "full SAM 3D on an NVIDIA GPU (CUDA 12.1)",
    "cuda128": "full SAM 3D on an NVIDIA GPU (CUDA 12.8, RTX 50xx)",
}
#: Clauses of the backend's messages that are terminal advice; the panel offers a button.
_TERMINAL_ADVICE = re.compile(
    r"\s*(?:\(run: [^)]*\)|[;,:]?\s*(?:or )?use --profile \w+|\(python -m backend[^)]*\))"
)

#: Details in parentheses, left out of one-line summaries.
_PARENTHESES = re.compile(r"\s*\([^)]*\)")


def plain(message: str) -> str:
    """A backend message without its command-line advice ("use --profile cpu", "(run:
    python -m backend ...)"): the panel offers the fix as a button instead."""
    return _TERMINAL_ADVICE.sub("", message).strip().rstrip(";,:").strip()


#: Which of the installer's refused checks a refusal names first.
_GPU_FIRST = {
    name: i
    for i, name in enumerate(
        ("nvidia driver", "platform", "compute capability", "gpu memory", "cuda stack", "driver")
    )
}


@dataclass
class Refusal:
    """The installer refused a profile: which one, why (``(name, message)`` pairs), and
    the profile that works on this machine instead (None: none does)."""

    profile: str
    reasons: list[tuple[str, str]]
    fallback: str | None

    @classmethod
    def parse(cls, line: str) -> Refusal | None:
        """From the installer's ``REFUSED {json}`` line; None for any other line."""
        if not line.startswith(REFUSED_PREFIX):
            return None
        try:
            body = json.loads(line[len(REFUSED_PREFIX) :])
            reasons = [(str(c["name"]), str(c["message"])) for c in body.get("refused", [])]
            return cls(str(body["profile"]), reasons, body.get("fallback"))
        except (ValueError, KeyError, TypeError):
            return None

    def sentence(self) -> str:
        """One line: "This computer can't take the cuda121 profile: no NVIDIA GPU found";
        the GPU's own reasons first (on a computer without one, the rest follows)."""
        if not self.reasons:
            return f"This computer can't take the {self.profile} profile."
        first = min(self.reasons, key=lambda r: _GPU_FIRST.get(r[0], len(_GPU_FIRST)))
        return f"This computer can't take the {self.profile} profile: {plain(first[1])}"


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
    refusal: Refusal | None = None

    @property
    def fraction(self) -> float:
        return (max(0, self.step - 1) / self.total) if self.total else 0.0

    def feed(self, line: str) -> None:
        self.lines.append(line)
        m = _STEP.match(line)
        if m:
            self.step, self.total = int(m.group(1)), int(m.group(2))
            self.name = " ".join(m.group(3).split())
        elif line.lstrip().startswith("FAIL"):
            self.failures.append(line.strip())
        elif line.startswith(REFUSED_PREFIX):
            self.refusal = Refusal.parse(line) or self.refusal


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
        self.started_at: float | None = None
        self.ended_at: float | None = None
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
        self.started_at = time.monotonic()
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

    @property
    def refusal(self) -> Refusal | None:
        """Set when the installer refused the profile (exit status 3)."""
        if self.state == InstallState.FAILED and self.returncode == REFUSED_EXIT:
            return self.progress.refusal
        return None

    @property
    def cancelled(self) -> bool:
        return self.state == InstallState.FAILED and "FAIL cancelled" in self.progress.failures

    def elapsed_s(self) -> float:
        """Seconds the run took (so far, while it runs)."""
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    def _finish(self, rc: int) -> None:
        self.returncode = rc
        self.ended_at = time.monotonic()
        self.state = InstallState.SUCCEEDED if rc == 0 else InstallState.FAILED
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def summary(self) -> str:
        """One line for the UI."""
        p = self.progress
        if self.state == InstallState.RUNNING:
            return (
                f"Step {p.step} of {p.total}: {p.name}" if p.total else "Checking this computer..."
            )
        if self.state == InstallState.SUCCEEDED:
            return "Backend installed."
        if self.cancelled:
            return "Install cancelled."
        if self.refusal is not None:
            return self.refusal.sentence()[:300]
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


# -- before installing: which profile, and what this computer can run ---------------------


@dataclass
class Finding:
    """One plain sentence of a machine check: ``ok`` True (fine), False (a problem), None
    (information)."""

    ok: bool | None
    text: str


@dataclass
class ProfileChoice:
    """The installer's answer to ``--choose``: the profile ``requested`` resolves to on this
    machine, the one-line reason, the checks, and the profile that works when this one would
    be refused (``fallback``)."""

    requested: str
    profile: str
    reason: str
    checks: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    fallback: str | None = None
    python: str | None = None

    @property
    def line(self) -> str:
        """ "cpu - no NVIDIA GPU found; the preview engine will be installed"."""
        return f"{self.profile} - {_PARENTHESES.sub('', plain(self.reason))}"

    @property
    def refusal(self) -> Refusal | None:
        """What installing this profile would end with, when it would be refused."""
        if not self.refused:
            return None
        reasons = [(c["name"], c["message"]) for c in self.refused]
        return Refusal(self.profile, reasons, self.fallback)


def _bundled_env(backend_root: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that runs the bundled backend from ``backend_root`` without writing
    into it (no ``__pycache__``: the extension folder stays as Blender installed it)."""
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = os.pathsep.join([str(backend_root), *filter(None, [out.get("PYTHONPATH")])])
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    for var in ("PYTHONHOME", "PYTHONSTARTUP"):  # Blender's own must not leak in
        out.pop(var, None)
    return out


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def choose_profile(
    python: str | Path,
    backend_root: Path,
    venv_dir: Path,
    requested: str = "auto",
    timeout_s: float = 60.0,
) -> ProfileChoice:
    """Blocking (run it in a thread): the installer's own choice for ``requested`` on this
    machine (``python -m backend install --choose``), run with ``python`` (Blender's: the
    one that will run the installer). Raises RuntimeError with the output when it fails."""
    cmd = [str(python), "-m", "backend", "install", "--venv", str(venv_dir)]
    cmd += ["--profile", requested, "--choose"]
    proc = subprocess.run(
        cmd,
        cwd=str(backend_root),
        env=_bundled_env(backend_root),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    try:
        body = _last_json(proc.stdout)
    except ValueError:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise RuntimeError(
            f"the installer could not check this computer (exit {proc.returncode}): "
            + " / ".join(tail)
        ) from None
    return ProfileChoice(
        requested=str(body.get("requested", requested)),
        profile=str(body["profile"]),
        reason=str(body.get("reason", "")),
        checks=list(body.get("checks", [])),
        refused=list(body.get("refused", [])),
        fallback=body.get("fallback"),
        python=body.get("python"),
    )


def run_doctor(
    python: str | Path, backend_root: Path, env: dict[str, str], timeout_s: float = 60.0
) -> dict:
    """Blocking (run it in a thread): ``<venv python> -m backend doctor --json`` with the
    managed backend's environment ``env``. Raises RuntimeError with the output on failure."""
    proc = subprocess.run(
        [str(python), "-m", "backend", "doctor", "--json"],
        cwd=str(backend_root),
        env=_bundled_env(backend_root, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise RuntimeError(f"the doctor failed (exit {proc.returncode}): " + " / ".join(tail))
    return json.loads(proc.stdout)


def _reasons(text: str) -> list[str]:
    """A doctor reason ("a (run: ...); b; c") as plain separate sentences."""
    parts = [plain(p) for p in re.split(r";\s+|\n", text or "")]
    return [p[0].upper() + p[1:] for p in parts if p]


def doctor_findings(info: dict) -> list[Finding]:
    """The doctor's JSON (``python -m backend doctor --json``) in plain sentences."""
    out: list[Finding] = []
    gpus = info.get("gpu") or []
    if gpus:
        names = ", ".join(f"{g.get('name')} ({g.get('memory_total_mb')} MB)" for g in gpus)
        out.append(Finding(True, f"GPU: {names}"))
    else:
        out.append(Finding(None, "No NVIDIA GPU found on this computer."))
    words = {"preview": "The preview engine", "sam3d": "SAM 3D"}
    for name, engine in (info.get("engines") or {}).items():
        label = words.get(name, f"The {name} engine")
        if engine.get("available"):
            out.append(Finding(True, f"{label} can run here."))
        else:
            out.append(Finding(False, f"{label} can't run here:"))
            out.extend(Finding(None, f"  {r}") for r in _reasons(engine.get("reason", "")))
    auto = info.get("auto_engine")
    if auto:
        out.append(Finding(None, f"Generate uses: {words.get(auto, auto).lower()}."))
    profile = info.get("install_profile") or {}
    if profile.get("profile"):
        out.append(
            Finding(
                None,
                f"Install profile for this computer: {profile['profile']} - "
                f"{plain(profile.get('reason', ''))}",
            )
        )
    if info.get("python"):
        out.append(Finding(None, f"Backend Python {info['python']}"))
    return out


def choice_findings(choice: ProfileChoice) -> list[Finding]:
    """The installer's checks for the chosen profile, in plain sentences (before the backend
    is installed, when there is no backend to ask)."""
    out = [Finding(None, f"Profile {choice.line}")]
    for c in choice.checks:
        ok = bool(c.get("ok"))
        level: bool | None = ok if c.get("fatal", True) or not ok else None
        out.append(Finding(level, f"{c.get('name')}: {plain(str(c.get('message', '')))}"))
    if choice.fallback and choice.refused:
        out.append(
            Finding(None, f"{choice.fallback} works here: {PROFILE_WORDS.get(choice.fallback)}")
        )
    return out
