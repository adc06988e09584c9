"""The add-on's session state: the backend, the job manager, the installer, the timer.

One :class:`Runtime` per Blender session. :func:`tick` is the body of the
``bpy.app.timers`` callback (main thread): it advances jobs, backend startup and the
installer by small non-blocking steps, imports finished results, and asks the panels to
redraw. Blocking callers (background mode, tests, batch scripts) call the same steps in a
loop (:func:`wait_for`). No thread here touches bpy.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bpy

from . import importer, paths
from .backend_process import (
    Backend,
    BackendState,
    LaunchConfig,
    ManagedBackend,
    RemoteBackend,
)
from .installer import InstallerRun, InstallState
from .job_manager import Job, JobManager, Phase
from .messages import ErrorInfo
from .settings import BackendSettings, PreferenceValues, resolve


@dataclass
class Notice:
    """The last thing worth telling the artist (shown in the panel)."""

    level: str  # "INFO" | "WARNING" | "ERROR"
    text: str
    at: float


class Runtime:
    """Singletons of one session; see the module docstring."""

    def __init__(self) -> None:
        self.backend: ManagedBackend | RemoteBackend | None = None
        self._backend_key: tuple | None = None
        self.manager = JobManager(
            self.current_backend,
            lambda: settings().results_dir,
            lambda: settings().auto_start,
        )
        self.installer: InstallerRun | None = None
        self.notice: Notice | None = None

    def _wanted(self) -> tuple[tuple, Callable[[], ManagedBackend | RemoteBackend]]:
        """The key of the backend the preferences/environment ask for, and its factory."""
        s = settings()
        if s.mode == "REMOTE":
            return ("remote", s.url, s.token), lambda: RemoteBackend(s.url, s.token)
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
        managed backend and makes a new one, but only while no job uses the old one (until
        then it stays, and :meth:`restart_pending` is True). Never call this from draw
        code: use :meth:`shown_backend`."""
        key, make = self._wanted()
        if self.backend is None:
            self.backend, self._backend_key = make(), key
        elif key != self._backend_key and not self._in_use():
            self.backend.stop()
            self.backend, self._backend_key = make(), key
            for job in self.manager.active():  # waiting jobs start the new backend
                job.start_tried = False
        return self.backend

    def shown_backend(self) -> Backend:
        """For drawing: the backend in use, never stopped or switched here."""
        if self.backend is None:
            key, make = self._wanted()
            self.backend, self._backend_key = make(), key
        return self.backend

    def restart_pending(self) -> bool:
        """True when the preferences ask for another backend than the one in use (the
        change applies once no job uses it, on the next start or generation)."""
        return self.backend is not None and self._wanted()[0] != self._backend_key

    def notify(self, level: str, text: str) -> None:
        self.notice = Notice(level, text, time.time())
        print(f"SAM 3D: {text}")

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


_runtime: Runtime | None = None


def get() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime()
    return _runtime


def reset() -> None:
    """Shut the session down and forget it (unregister)."""
    global _runtime
    if _runtime is not None:
        _runtime.shutdown()
    _runtime = None


def preference_values() -> PreferenceValues:
    from .prefs import get_preferences

    prefs = get_preferences()
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


# -- timer --------------------------------------------------------------------------------


def tick() -> float | None:
    """One round of non-blocking work; returns seconds to the next round or None to stop.

    Runs on Blender's main thread (timer, or a blocking loop in background mode).
    """
    rt = get()
    waits: list[float] = []
    try:
        wait = rt.manager.step()
        if wait is not None:
            waits.append(wait)
        backend = rt.backend
        if backend is not None and backend.state == BackendState.STARTING:
            if backend.poll() == BackendState.STARTING:
                waits.append(0.1)
            elif backend.state == BackendState.ERROR and backend.error is not None:
                rt.notify("ERROR", backend.error.sentence())
        if rt.installer is not None and rt.installer.state == InstallState.RUNNING:
            if rt.installer.poll() == InstallState.RUNNING:
                waits.append(0.2)
            else:
                _installer_finished(rt)
        for job in rt.manager.unhandled():
            handle_finished(job, bpy.context)
    except Exception as exc:  # a timer that raises is removed by Blender: report, go on
        rt.notify("ERROR", f"Internal error in the SAM 3D add-on: {exc}")
        import traceback

        traceback.print_exc()
    redraw()
    return min(waits) if waits else None


@bpy.app.handlers.persistent
def on_load_pre(*_args) -> None:
    """A file is about to be opened (or File > New): jobs started for the old file must
    not land in the new one. Active jobs are cancelled (on the backend too) and nothing
    unimported is imported later; the artist is told."""
    rt = _runtime
    if rt is None:
        return
    dropped = 0
    for job in rt.manager.jobs:
        if job.handled and job.finished:
            continue
        if not job.finished:
            rt.manager.cancel(job)
        if not job.handled:
            job.handled = True
            dropped += 1
    from . import scene_ops

    dropped += scene_ops.forget_pending()
    if dropped:
        rt.notify(
            "WARNING",
            f"{dropped} SAM 3D job(s) of the previous file were cancelled: a file was opened.",
        )


def register_handlers() -> None:
    if on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(on_load_pre)


def unregister_handlers() -> None:
    if on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(on_load_pre)


def ensure_timer() -> None:
    """Start the UI timer (no effect in module mode, where timers never fire)."""
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=0.05, persistent=True)


def stop_timer() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)


def wait_for(done: Callable[[], bool], timeout: float | None = None) -> bool:
    """Blocking: run :func:`tick` until ``done()`` (or ``timeout`` seconds). For background
    mode and tests, where timers don't run. Returns ``done()``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done():
        wait = tick()
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(0.05 if wait is None else min(wait, 0.25))
    return done()


def redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type in {"VIEW_3D", "IMAGE_EDITOR", "PREFERENCES"}:
                area.tag_redraw()


def _installer_finished(rt: Runtime) -> None:
    run = rt.installer
    assert run is not None
    if run.state == InstallState.SUCCEEDED:
        # current_backend() notices the new venv's Python (its key changes) on next use.
        rt.notify("INFO", "Backend installed.")
    else:
        rt.notify("ERROR", run.summary())


# -- finished jobs ------------------------------------------------------------------------


def handle_finished(job: Job, context: bpy.types.Context) -> bpy.types.Object | None:
    """Import a done job (as an undoable step) or report why it did not finish.

    Marks the job handled. Returns the new object for done jobs.
    """
    if job.handled:
        return None
    job.handled = True
    if job.phase == Phase.DONE:
        try:
            with context.temp_override(**importer.window_override(context)):
                result = bpy.ops.sam3d.import_result("EXEC_DEFAULT", True, local_job=job.local_id)
        except RuntimeError as exc:  # the operator reported an error
            get().notify("ERROR", str(exc).removeprefix("Error: ").strip())
            return None
        if "FINISHED" not in result:
            return None
        name = job.request.meta.get("object_name")
        obj = bpy.data.objects.get(name) if name else None
        if obj is not None:  # replaces an earlier job's notice (e.g. "cancelled")
            get().notify("INFO", f"'{obj.name}' added to the scene{importer.placement_note(obj)}.")
        return obj
    if job.phase == Phase.CANCELLED:
        get().notify("INFO", "Generation cancelled.")
        _record(job, "cancelled", "")
    else:
        err = job.error or ErrorInfo("internal_error")
        get().notify("ERROR", err.sentence())
        _record(job, "failed", err.sentence())
    return None


def _record(job: Job, state: str, message: str) -> None:
    """A history line for a job that produced no object (so the artist sees what happened)."""
    scene = bpy.data.scenes.get(job.request.meta.get("scene", "")) or bpy.context.scene
    if scene is None or not hasattr(scene, "sam3d"):
        return
    item = scene.sam3d.history.add()
    item.job_id = job.backend_id or ""
    item.label = job.request.label
    item.engine = str(job.request.options.get("engine", ""))
    item.seed = int(job.request.options.get("seed", 0))
    item.options_json = json.dumps(job.request.options, sort_keys=True)
    item.source_sha256 = job.request.source_sha256
    item.created = time.time()
    item.state = state
    item.message = message[:500]


def results_folder(job_id: str) -> Path:
    return settings().results_dir / job_id
