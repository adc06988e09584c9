"""The add-on's session: one backend, one job manager, the installer run, the machine
checks (which install profile, what the doctor says), the last notice.

One :class:`Session` per Blender session (:func:`get`), shut down when the add-on is
disabled or Blender quits (:func:`reset`). It holds state only: the timer that advances it
is :mod:`.timer`, and bringing finished jobs into the scene is :mod:`.finish`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import paths
from .core.backend_process import (
    Backend,
    BackendState,
    LaunchConfig,
    ManagedBackend,
    RemoteBackend,
)
from .core.installer import InstallerRun, InstallState, ProfileChoice, choose_profile, run_doctor
from .core.job_manager import JobManager
from .core.jobs import Delivery, Job, JobRequest, Phase
from .core.results import ResultFiles
from .core.settings import BackendSettings, PreferenceValues, default_venv_dir, resolve
from .core.threads import BackgroundCall


@dataclass
class Notice:
    """The last thing worth telling the artist (shown in the panel)."""

    level: str  # "INFO" | "WARNING" | "ERROR"
    text: str
    at: float


class Session:
    """The backend, jobs, installer and notice of one Blender session."""

    def __init__(self) -> None:
        self.backend: ManagedBackend | RemoteBackend | None = None
        self._backend_key: tuple | None = None
        self.manager = JobManager(
            self.current_backend,
            lambda: settings().results_dir,
            lambda: settings().auto_start,
            installing=self.installing,  # Generate during the install waits for it
        )
        self.installer: InstallerRun | None = None
        self.notice: Notice | None = None
        #: The installer's choice per requested profile, and the doctor's report (each a
        #: subprocess in a daemon thread; see :meth:`profile_choice`, :meth:`doctor`).
        self._choices: dict[str, BackgroundCall] = {}
        self._doctor: tuple[str, BackgroundCall] | None = None

    def _wanted(self) -> tuple[tuple, Callable[[], ManagedBackend | RemoteBackend]]:
        """The key of the backend the preferences/environment ask for, and its factory."""
        s = settings()
        if s.mode == "REMOTE":
            return ("remote", s.url, s.token, s.ca_file), lambda: RemoteBackend(
                s.url, s.token, ca_file=s.ca_file
            )
        cfg = launch_config(s)
        return ("local", *cfg.key()), lambda: ManagedBackend(cfg)

    def _in_use(self) -> bool:
        """True while a job needs the current backend (it has, or is about to get, the
        job; or an exchange with it is in flight)."""
        return any(
            j._call is not None or (not j.finished and j.phase != Phase.WAITING_BACKEND)
            for j in self.manager.jobs
        )

    def current_backend(self) -> Backend:
        """The backend the preferences/environment ask for. A changed choice stops the old
        managed backend and makes a new one, but only while no job uses the old one and the
        installer is not running (until then it stays, and :meth:`restart_pending` is True). Never call this from draw
        code: use :meth:`shown_backend`."""
        key, make = self._wanted()
        if self.backend is None:
            self.backend, self._backend_key = make(), key
        elif key != self._backend_key and not self._in_use() and not self.installing():
            self.backend.stop()
            self.backend, self._backend_key = make(), key
            for job in self.manager.active():  # waiting jobs start the new backend
                job.start_tried = False
        return self.backend

    def shown_backend(self) -> Backend:
        """For drawing: the backend in use, never stopped or switched here, except a local
        one that is not installed (it has no process): once the installer made the venv,
        the new local backend is shown at once."""
        if self.backend is None:
            key, make = self._wanted()
            self.backend, self._backend_key = make(), key
        elif (
            self.backend.state == BackendState.NOT_INSTALLED
            and not self._in_use()
            and not self.installing()
        ):
            key, make = self._wanted()
            if key != self._backend_key and key[0] == "local" == (self._backend_key or ("",))[0]:
                self.backend, self._backend_key = make(), key
        return self.backend

    def installing(self) -> bool:
        """True while the installer runs (its half-made venv is not a backend yet)."""
        return self.installer is not None and self.installer.state == InstallState.RUNNING

    def restart_pending(self) -> bool:
        """True when the preferences ask for another backend than the one in use (the
        change applies once no job uses it, on the next start or generation)."""
        return self.backend is not None and self._wanted()[0] != self._backend_key

    def profile_choice(self, requested: str) -> BackgroundCall:
        """Which profile ``requested`` means on this machine, asked of the bundled installer
        (``--choose``) with Blender's Python in a daemon thread, once per requested value
        (:meth:`forget_checks` asks again). Its result is a :class:`ProfileChoice`."""
        call = self._choices.get(requested)
        if call is None:
            root, venv = paths.extension_root(), default_venv_dir(paths.user_dir())
            call = BackgroundCall(
                "profile-choice",
                lambda: choose_profile(installer_python(), root, venv, requested),
            )
            self._choices[requested] = call
        return call

    def choice_if_known(self, requested: str) -> ProfileChoice | None:
        """The finished :meth:`profile_choice` for ``requested``, else None (never waits)."""
        call = self._choices.get(requested)
        if call is None or not call.done:
            return None
        try:
            return call.result()
        except Exception:
            return None

    def doctor(self) -> BackgroundCall | None:
        """``python -m backend doctor --json`` of the installed managed backend, in a daemon
        thread, once per backend Python (None when no local backend is installed). Its
        result is the doctor's dict."""
        s = settings()
        if s.mode != "LOCAL" or s.python is None or not s.python.is_file():
            return None
        key = str(s.python)
        if self._doctor is None or self._doctor[0] != key:
            cfg = launch_config(s)
            env = ManagedBackend(cfg).environment()
            env.pop("SAM3D_BACKEND_TOKEN", None)
            self._doctor = (
                key,
                BackgroundCall("doctor", lambda: run_doctor(cfg.python, cfg.backend_root, env)),
            )
        return self._doctor[1]

    def checks_pending(self) -> bool:
        """True while a machine check (profile choice, doctor) still runs."""
        calls = [*self._choices.values(), *([self._doctor[1]] if self._doctor else [])]
        return any(not c.done for c in calls)

    def forget_checks(self) -> None:
        """Ask again next time (after an install, or on the artist's "Check again")."""
        self._choices.clear()
        self._doctor = None

    def notify(self, level: str, text: str) -> None:
        self.notice = Notice(level, text, time.time())
        print(f"SAM 3D: {text}")

    def submit(self, request: JobRequest, wait_here: bool) -> Job:
        """Queue a job; ``wait_here``: the caller waits for it and brings it into the scene
        itself, else the timer does once it has finished."""
        return self.manager.submit(request, Delivery.CALLER if wait_here else Delivery.TIMER)

    def fetch(self, job_id: str, request: JobRequest, wait_here: bool) -> Job:
        """Queue the download of a finished job whose local files are gone (see
        :meth:`submit` for ``wait_here``)."""
        return self.manager.fetch(job_id, request, Delivery.CALLER if wait_here else Delivery.TIMER)

    def stop_backend(self) -> None:
        """Stop the backend; jobs it runs are cancelled there (DELETE) and end CANCELLED
        here, not failed as 'cannot reach the backend'."""
        backend = self.backend
        client = backend.client() if backend is not None else None
        self.manager.cancel_all(client, wait_s=2.0)
        if backend is not None:
            backend.stop()

    def shutdown(self) -> None:
        """Stop everything this session started (add-on disabled, Blender quitting)."""
        self.stop_backend()
        if self.installer is not None and self.installer.state == InstallState.RUNNING:
            self.installer.cancel()


_session: Session | None = None


def get() -> Session:
    global _session
    if _session is None:
        _session = Session()
    return _session


def current() -> Session | None:
    """The session if one was started (never starts one)."""
    return _session


def reset() -> None:
    """Shut the session down and forget it (unregister)."""
    global _session
    if _session is not None:
        _session.shutdown()
    _session = None


def installer_python() -> str:
    """The interpreter that runs the bundled installer: Blender's own (``sys.executable``
    is its Python, bundled or the system's, e.g. Debian's 3.13)."""
    return sys.executable


def preference_values() -> PreferenceValues:
    prefs = paths.addon_preferences()
    return prefs.values() if prefs is not None else PreferenceValues()


def settings() -> BackendSettings:
    """The resolved backend choice (preferences + environment)."""
    return resolve(preference_values(), os.environ, paths.user_dir())


def launch_config(s: BackendSettings) -> LaunchConfig:
    """How the managed backend is started for settings ``s``."""
    logs = s.cache_dir / "logs"
    return LaunchConfig(
        python=s.python,
        backend_root=paths.extension_root(),
        log_path=logs / "backend.log",
        run_dir=paths.user_dir("run"),
        data_dir=s.data_dir,
        checkpoints=s.checkpoints,
        idle_unload_s=s.idle_unload_s,
    )


def results_files(job_id: str) -> ResultFiles:
    """Where the finished job ``job_id``'s files are kept on this computer."""
    return ResultFiles.of(settings().results_dir, job_id)
