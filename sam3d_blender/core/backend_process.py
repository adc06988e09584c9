"""Starting, watching and stopping the backend (no bpy).

Two kinds of backend share one small interface (``state``, ``ensure_started``, ``poll``,
``client``, ``stop``):

* :class:`ManagedBackend` - a local ``<python> -m backend serve --port 0 --parent-pid <pid>``
  subprocess started with a fresh random token. Its stdout's first JSON line
  ``{"event":"ready","port":N,...}`` gives the port; ``/health`` and ``/info`` confirm it.
  Every step is non-blocking (a reader thread drains the pipe; it never touches bpy), so
  a Blender timer can drive startup; :meth:`ManagedBackend.wait_ready` loops the same step
  for scripts.
* :class:`RemoteBackend` - a URL + token for a backend somebody else runs (a GPU server).

Stale backends: each managed backend is recorded in ``<run_dir>/<blender pid>.json``; a
record whose Blender is gone and whose backend still runs is terminated before a new start.
The backend also exits by itself when its ``--parent-pid`` dies, so a crashed Blender never
leaves one behind for long, and port 0 means an old one can never block the port.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any, Protocol

from .client import BackendClient, BackendClientError
from .messages import ErrorInfo, cache_error
from .subprocesses import (
    LineReader,
    cmdline,
    new_group_kwargs,
    pid_alive,
    signal_group,
    tail_lines,
    terminate_tree,
)
from .threads import BackgroundCall


class BackendState(str, Enum):
    """What the panel shows about the backend."""

    NOT_INSTALLED = "not_installed"
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    ERROR = "error"


class Backend(Protocol):
    """What the job manager needs from a backend, managed or remote."""

    state: BackendState
    error: ErrorInfo | None
    info: dict[str, Any]

    def ensure_started(self) -> None:
        """Start (or restart after a failure) without blocking."""

    def poll(self) -> BackendState:
        """Advance startup / notice a death; never blocks for long."""

    def client(self) -> BackendClient | None:
        """A client when ``state`` is READY, else None."""

    def stop(self) -> None:
        """Stop a managed backend; forget a remote one's connection."""

    def describe(self) -> str:
        """One line for the panel (engine, GPU, VRAM when ready)."""


class CompatibilityCheck(BackgroundCall):
    """``client.check_compatible()`` (health, API version, token, ``/info``) in the
    background, so a slow first ``/info`` (GPU probing) or a remote host that does not
    answer never stalls Blender's main thread. Read ``info`` / ``error`` once ``done``."""

    def __init__(self, client: BackendClient) -> None:
        self.started = time.monotonic()
        super().__init__("backend-check", client.check_compatible)

    @property
    def info(self) -> dict[str, Any] | None:
        return self._value if self._exc is None else None

    @property
    def error(self) -> BackendClientError | None:
        if self._exc is None or isinstance(self._exc, BackendClientError):
            return self._exc
        return BackendClientError("bad_response", str(self._exc))


def _looks_like_backend(pid: int) -> bool:
    cmd = cmdline(pid)
    if cmd is None:  # no /proc: trust the record only if the process still exists
        return pid_alive(pid)
    return "backend" in cmd and "serve" in cmd


def reap_stale_backends(run_dir: Path, own_parent_pid: int) -> list[int]:
    """Terminate backends recorded in ``run_dir`` whose Blender (parent) is gone.

    Returns the pids that were terminated. Records of live Blenders (another Blender window
    with its own backend) are left alone; our own old record is replaced by the caller.
    """
    killed: list[int] = []
    if not run_dir.is_dir():
        return killed
    for rec_path in run_dir.glob("*.json"):
        try:
            rec = json.loads(rec_path.read_text())
            parent, pid = int(rec["parent_pid"]), int(rec["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            rec_path.unlink(missing_ok=True)
            continue
        if parent != own_parent_pid and pid_alive(parent):
            continue  # another Blender's backend
        if pid_alive(pid) and _looks_like_backend(pid):
            terminate_tree(pid, group=bool(rec.get("group")), timeout=3.0)
            killed.append(pid)
        rec_path.unlink(missing_ok=True)
    return killed


# ---------------------------------------------------------------------------------------
# Managed (local subprocess) backend


@dataclass
class LaunchConfig:
    """How to start a managed backend.

    ``python``: the backend venv's interpreter (None = not installed). ``backend_root``: the
    folder that contains the ``backend`` package (the extension folder). ``data_dir``,
    ``checkpoints``, ``idle_unload_s`` become SAM3D_DATA_DIR / SAM3D_CHECKPOINTS /
    SAM3D_IDLE_UNLOAD_S. ``log_path``: the backend's stdout+stderr. ``run_dir``: where the
    pid records for stale-backend cleanup live. ``startup_timeout_s``: seconds to wait for
    the ready line.
    """

    python: Path | None
    backend_root: Path
    log_path: Path
    run_dir: Path | None = None
    data_dir: Path | None = None
    checkpoints: Path | None = None
    idle_unload_s: float | None = None
    parent_pid: int = field(default_factory=os.getpid)
    startup_timeout_s: float = 90.0
    extra_env: dict[str, str] = field(default_factory=dict)

    def key(self) -> tuple:
        """Identity: a backend must be restarted when this changes."""
        return (
            str(self.python),
            str(self.backend_root),
            str(self.data_dir),
            str(self.checkpoints),
            self.idle_unload_s,
            tuple(sorted(self.extra_env.items())),
        )


class ManagedBackend:
    """A backend subprocess owned by this Blender session (see module docstring)."""

    kind = "managed"

    def __init__(self, config: LaunchConfig) -> None:
        self.config = config
        self.state = BackendState.STOPPED if self._installed() else BackendState.NOT_INSTALLED
        self.error: ErrorInfo | None = None
        self.info: dict[str, Any] = {}
        self.port: int | None = None
        self.token = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._reader: LineReader | None = None
        self._log_fh: IO[str] | None = None
        self._client: BackendClient | None = None
        self._started_at = 0.0
        self._check: CompatibilityCheck | None = None

    # -- queries --------------------------------------------------------------------------

    def _installed(self) -> bool:
        p = self.config.python
        return p is not None and Path(p).is_file()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port else None

    def client(self) -> BackendClient | None:
        return self._client if self.state == BackendState.READY else None

    def log_tail(self, n: int = 20) -> list[str]:
        return tail_lines(self.config.log_path, n)

    def describe(self) -> str:
        return describe_info(self.info) if self.state == BackendState.READY else ""

    def command(self) -> list[str]:
        assert self.config.python is not None
        return [
            str(self.config.python),
            "-m",
            "backend",
            "serve",
            "--port",
            "0",
            "--parent-pid",
            str(self.config.parent_pid),
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        root = str(self.config.backend_root)
        # The bundled backend (beside the add-on) wins over any other copy.
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        env["PYTHONUNBUFFERED"] = "1"
        env["SAM3D_BACKEND_TOKEN"] = self.token
        for var in ("PYTHONHOME", "PYTHONSTARTUP"):  # Blender's own must not leak in
            env.pop(var, None)
        if self.config.data_dir is not None:
            env["SAM3D_DATA_DIR"] = str(self.config.data_dir)
        if self.config.checkpoints is not None:
            env["SAM3D_CHECKPOINTS"] = str(self.config.checkpoints)
        if self.config.idle_unload_s is not None:
            env["SAM3D_IDLE_UNLOAD_S"] = str(int(self.config.idle_unload_s))
        env.update(self.config.extra_env)
        return env

    # -- lifecycle ------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start when stopped, or restart after an error (e.g. the process died)."""
        if self.state in (BackendState.STARTING, BackendState.READY):
            self.poll()
            if self.state in (BackendState.STARTING, BackendState.READY):
                return
        self.start()

    def start(self) -> None:
        """Spawn the process (non-blocking); ``poll`` finishes the startup."""
        self._cleanup_process(kill=True)
        self.info = {}
        self.port = None
        self._check = None
        if not self._installed():
            self.state = BackendState.NOT_INSTALLED
            self.error = ErrorInfo(
                "backend_not_installed",
                f"no backend Python at {self.config.python}" if self.config.python else "",
            )
            return
        if self.config.run_dir is not None:
            reap_stale_backends(self.config.run_dir, self.config.parent_pid)
        self.token = secrets.token_urlsafe(32)
        try:
            self.config.log_path.parent.mkdir(parents=True, exist_ok=True)
            if self.config.data_dir is not None:
                self.config.data_dir.mkdir(parents=True, exist_ok=True)
            self._log_fh = open(self.config.log_path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            folder = getattr(exc, "filename", None) or self.config.log_path.parent
            self.state = BackendState.ERROR
            self.error = cache_error(Path(folder), exc)
            return
        self._log_fh.write(
            f"\n--- starting backend {time.strftime('%Y-%m-%d %H:%M:%S')}: "
            f"{' '.join(self.command())}\n"
        )
        self._log_fh.flush()
        try:
            self.proc = subprocess.Popen(  # its own group: stop() reaches the workers
                self.command(),
                cwd=str(self.config.backend_root),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log_fh,
                **new_group_kwargs(),
            )
        except OSError as exc:
            self._log_fh.write(f"cannot start: {exc}\n")
            self._fail("backend_start_failed", f"cannot run {self.config.python}: {exc}")
            return
        self._reader = LineReader(self.proc.stdout, self._log_fh)  # type: ignore[arg-type]
        self._started_at = time.monotonic()
        self.state = BackendState.STARTING
        self.error = None
        self._write_record()

    def poll(self) -> BackendState:
        """Advance STARTING -> READY/ERROR; notice a READY backend that died."""
        if self.state == BackendState.STARTING:
            self._poll_starting()
        elif self.state == BackendState.READY:
            if self.proc is not None and self.proc.poll() is not None:
                code = self.proc.returncode
                self._fail("backend_died", f"the backend process exited (code {code})")
        return self.state

    def _poll_starting(self) -> None:
        assert self.proc is not None and self._reader is not None
        for line in self._reader.lines():
            event = _parse_event(line)
            if event and event.get("event") == "ready" and self.port is None:
                try:
                    self.port = int(event["port"])
                except (KeyError, TypeError, ValueError):
                    self._fail("backend_start_failed", f"unreadable ready line: {line[:200]}")
                    return
        if self.port is None:
            if self.proc.poll() is not None:
                self._reader.join(1.0)
                self._fail(
                    "backend_start_failed",
                    f"the backend exited during startup (code {self.proc.returncode})",
                )
            elif time.monotonic() - self._started_at > self.config.startup_timeout_s:
                self._fail(
                    "backend_start_timeout",
                    f"no ready line after {self.config.startup_timeout_s:.0f} s",
                )
            return
        if self._check is None:
            self._check = CompatibilityCheck(BackendClient(self.url or "", self.token))
        if not self._check.done:
            if time.monotonic() - self._started_at > self.config.startup_timeout_s:
                self._fail("backend_start_timeout", "the backend does not answer /health")
            return
        check, self._check = self._check, None
        if check.error is not None:
            exc = check.error
            if exc.code in ("backend_unreachable", "timeout") and self.proc.poll() is None:
                if time.monotonic() - self._started_at < self.config.startup_timeout_s:
                    return  # listening socket not up yet: check again next poll
            self._fail(
                exc.code if exc.code == "api_mismatch" else "backend_start_failed", exc.message
            )
            return
        self.info = check.info or {}
        self._client = BackendClient(self.url or "", self.token)
        self.state = BackendState.READY

    def wait_ready(self, timeout: float | None = None, interval: float = 0.05) -> BackendState:
        """Blocking: ``ensure_started`` then poll until READY or a failure (for scripts)."""
        self.ensure_started()
        deadline = time.monotonic() + (
            timeout if timeout is not None else self.config.startup_timeout_s + 5
        )
        while self.poll() == BackendState.STARTING and time.monotonic() < deadline:
            time.sleep(interval)
        if self.state == BackendState.STARTING:
            self._fail("backend_start_timeout", f"not ready after {timeout} s")
        return self.state

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the backend and its workers; state becomes STOPPED."""
        self._cleanup_process(kill=True, timeout=timeout)
        self.state = BackendState.STOPPED if self._installed() else BackendState.NOT_INSTALLED
        self.error = None
        self.info = {}
        self.port = None

    # -- internals ------------------------------------------------------------------------

    def _fail(self, code: str, message: str) -> None:
        self._cleanup_process(kill=True, timeout=2.0)
        self.state = BackendState.ERROR
        self.error = ErrorInfo(code, message, log_tail=self.log_tail(15))

    def _cleanup_process(self, kill: bool, timeout: float = 5.0) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        proc = self.proc
        if proc is not None:
            if kill and proc.poll() is None:
                terminate_tree(proc.pid, group=sys.platform != "win32", timeout=timeout, proc=proc)
            elif sys.platform != "win32":
                # The backend exited on its own; its workers share its group: end them too.
                signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
            if self._reader is not None:
                self._reader.join(1.0)
            self._remove_record()
        self.proc = None
        self._reader = None
        if self._log_fh is not None:
            try:
                self._log_fh.close()
            except OSError:
                pass
            self._log_fh = None

    def _record_path(self) -> Path | None:
        if self.config.run_dir is None:
            return None
        return self.config.run_dir / f"{self.config.parent_pid}.json"

    def _write_record(self) -> None:
        path = self._record_path()
        if path is None or self.proc is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        rec = {
            "pid": self.proc.pid,
            "parent_pid": self.config.parent_pid,
            "group": sys.platform != "win32",
            "started": time.time(),
        }
        path.write_text(json.dumps(rec))

    def _remove_record(self) -> None:
        path = self._record_path()
        if path is not None:
            path.unlink(missing_ok=True)


def _parse_event(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------------------------------
# Remote backend


class RemoteBackend:
    """A backend at ``url`` that someone else runs; "starting" means checking it answers
    (in a :class:`CompatibilityCheck` thread, so an unresponsive host never stalls the UI).

    A failed check is retried on the next ``ensure_started`` (the next request), at most
    every ``retry_s`` seconds.
    """

    kind = "remote"

    def __init__(
        self,
        url: str,
        token: str,
        retry_s: float = 2.0,
        check_timeout_s: float = 15.0,
        ca_file: str = "",
    ) -> None:
        """``ca_file``: a PEM file of the CA that signed an https backend's certificate
        (empty: the system's trust store)."""
        self.url = url.rstrip("/")
        self.token = token
        self.ca_file = ca_file
        self.state = BackendState.STOPPED
        self.error: ErrorInfo | None = None
        self.info: dict[str, Any] = {}
        self.retry_s = retry_s
        self.check_timeout_s = check_timeout_s
        self._client = BackendClient(self.url, token, ca_file=ca_file)
        self._check: CompatibilityCheck | None = None
        self._last_check = -1e9

    def key(self) -> tuple:
        return ("remote", self.url, self.token, self.ca_file)

    def ensure_started(self) -> None:
        if self.state in (BackendState.READY, BackendState.STARTING):
            return
        if self.state == BackendState.ERROR and time.monotonic() - self._last_check < self.retry_s:
            return
        if not self.url:
            self.state = BackendState.ERROR
            self.error = ErrorInfo("backend_unreachable", "no remote URL is set")
            return
        self.state = BackendState.STARTING
        self._last_check = time.monotonic()
        self._check = CompatibilityCheck(self._client)
        self.poll()

    def poll(self) -> BackendState:
        if self.state != BackendState.STARTING or self._check is None:
            return self.state
        check = self._check
        if not check.done:
            if time.monotonic() - check.started > self.check_timeout_s:
                self._check = None
                self.state = BackendState.ERROR
                self.error = ErrorInfo("timeout", f"{self.url}: no answer in time")
            return self.state
        self._check = None
        self._last_check = time.monotonic()
        if check.error is not None:
            self.state = BackendState.ERROR
            self.error = ErrorInfo(check.error.code, f"{self.url}: {check.error.message}")
            return self.state
        self.info = check.info or {}
        self.state = BackendState.READY
        self.error = None
        return self.state

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.05) -> BackendState:
        """Blocking: check the remote backend (for scripts and tests)."""
        self.ensure_started()
        deadline = time.monotonic() + timeout
        while self.poll() == BackendState.STARTING and time.monotonic() < deadline:
            time.sleep(interval)
        return self.state

    def connection_lost(self, exc: BackendClientError) -> None:
        """A request failed for lack of an answer: show it and re-check next time."""
        self.state = BackendState.ERROR
        self.error = ErrorInfo(exc.code, f"{self.url}: {exc.message}")
        self._last_check = time.monotonic()

    def client(self) -> BackendClient | None:
        return self._client if self.state == BackendState.READY else None

    def stop(self) -> None:
        self.state = BackendState.STOPPED
        self._check = None
        self.info = {}

    def describe(self) -> str:
        return describe_info(self.info) if self.state == BackendState.READY else ""


def describe_info(info: dict[str, Any]) -> str:
    """'preview engine, CPU' / 'sam3d engine, NVIDIA RTX 4090 (20.1 of 24.0 GB free)'."""
    if not info:
        return ""
    engine = info.get("default_engine") or "?"
    gpus = info.get("gpu") or []
    if gpus:
        g = gpus[0]
        total = (g.get("memory_total_mb") or 0) / 1024
        free = (g.get("memory_free_mb") or 0) / 1024
        hw = f"{g.get('name', 'GPU')} ({free:.1f} of {total:.1f} GB free)"
    else:
        hw = "CPU only"
    return f"{engine} engine, {hw}"
