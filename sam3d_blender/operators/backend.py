"""Operators on the backend: ``sam3d.backend_start``, ``sam3d.backend_stop``,
``sam3d.backend_install`` (+ ``backend_install_cancel``), ``sam3d.machine_check``.

Starting and installing take a while: they wait, or let the timer follow them, as
:class:`.mixins.WaitOrTimer` decides.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, StringProperty

from .. import paths, session, timer
from ..core.backend_process import BackendState, ManagedBackend
from ..core.installer import InstallerRun, InstallState, stage_source
from ..core.messages import ErrorInfo, describe
from ..core.settings import default_venv_dir
from .mixins import SKIP, Pending, WaitOrTimer

#: Seconds a blocking start waits for the backend to become ready.
START_TIMEOUT_S = 120.0


class SAM3D_OT_backend_start(WaitOrTimer, bpy.types.Operator):
    """Start (or restart) the SAM 3D backend"""

    bl_idname = "sam3d.backend_start"
    bl_label = "Start backend"
    bl_options = {"REGISTER"}

    restart: BoolProperty(name="Restart", options=SKIP)
    blocking: BoolProperty(name="Wait until ready", options=SKIP)

    def begin(self, context: bpy.types.Context) -> Pending | set[str]:
        backend = session.get().current_backend()
        if self.restart:
            backend.stop()
        backend.ensure_started()
        if backend.state != BackendState.STARTING:
            return self._report(backend)

        def starting() -> bool:
            return backend.poll() == BackendState.STARTING

        return Pending(
            lambda: timer.wait_for(lambda: not starting(), START_TIMEOUT_S),
            "SAM 3D backend starting...",
        )

    def end(self, context: bpy.types.Context, pending: Pending) -> set[str]:
        return self._report(session.get().current_backend())

    def _report(self, backend) -> set[str]:
        if backend.state in (BackendState.ERROR, BackendState.NOT_INSTALLED):
            err = backend.error or ErrorInfo("backend_not_installed")
            self.report({"ERROR"}, err.sentence())
            return {"CANCELLED"}
        ready = backend.state == BackendState.READY
        self.report({"INFO"}, "SAM 3D backend ready." if ready else "SAM 3D backend starting...")
        return {"FINISHED"}


class SAM3D_OT_backend_stop(bpy.types.Operator):
    """Stop the SAM 3D backend (running jobs are cancelled)"""

    bl_idname = "sam3d.backend_stop"
    bl_label = "Stop backend"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        session.get().stop_backend()
        self.report({"INFO"}, "SAM 3D backend stopped.")
        return {"FINISHED"}


class SAM3D_OT_backend_install(WaitOrTimer, bpy.types.Operator):
    """Install the backend into its own virtual environment (runs the bundled installer)"""

    bl_idname = "sam3d.backend_install"
    bl_label = "Install backend"
    bl_options = {"REGISTER"}

    profile: StringProperty(
        name="Profile",
        description="auto, cuda, cuda121, cuda128 or cpu (empty: the preferences' profile)",
        options=SKIP,
    )
    make_default: BoolProperty(
        name="Make it the preference",
        description="Also make this profile the preferences' install profile",
        options=SKIP,
    )
    venv: StringProperty(name="Venv folder", subtype="DIR_PATH", options=SKIP)
    blocking: BoolProperty(name="Wait", options=SKIP)
    dry_run: BoolProperty(
        name="Dry run", description="Only print the checks and commands", options=SKIP
    )

    def begin(self, context: bpy.types.Context) -> Pending | set[str]:
        s = session.get()
        if s.installing():
            self.report({"WARNING"}, "The installer is already running.")
            return {"CANCELLED"}
        prefs = paths.addon_preferences(context)
        profile = self.profile or (prefs.install_profile if prefs else "auto")
        if self.make_default and prefs is not None and profile != prefs.install_profile:
            prefs.install_profile = profile
        venv = Path(self.venv) if self.venv else default_venv_dir(paths.user_dir())
        if isinstance(s.backend, ManagedBackend) and not self.dry_run:
            s.stop_backend()  # the venv is about to change under it
        # The installer runs from (and pip-installs) a copy in the user folder, never
        # from the extension folder itself.
        staged = stage_source(paths.extension_root(), paths.user_dir("installer_source"))
        extra = ["--source", str(staged)] if staged is not None else []
        if self.dry_run:
            extra.append("--dry-run")
        run = InstallerRun(
            session.installer_python(),
            staged or paths.extension_root(),
            venv,
            profile,
            session.settings().cache_dir / "logs" / "install.log",
            extra_args=extra,
        )
        s.installer = run
        run.start()
        return Pending(
            lambda: timer.wait_for(lambda: run.state != InstallState.RUNNING),
            "Installing the SAM 3D backend...",
        )

    def end(self, context: bpy.types.Context, pending: Pending) -> set[str]:
        run = session.get().installer
        if run is None or run.state != InstallState.SUCCEEDED:
            if run is not None and (run.refusal is not None or run.cancelled):
                self.report({"ERROR"}, run.summary())
            else:
                self.report({"ERROR"}, describe("installer_failed", run.summary() if run else ""))
            return {"CANCELLED"}
        self.report({"INFO"}, "Backend installed.")
        return {"FINISHED"}


class SAM3D_OT_backend_install_cancel(bpy.types.Operator):
    """Stop the running backend installer (and the downloads and builds it started)"""

    bl_idname = "sam3d.backend_install_cancel"
    bl_label = "Cancel install"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return session.get().installing()

    def execute(self, context: bpy.types.Context) -> set[str]:
        run = session.get().installer
        if run is not None:
            run.cancel()
        timer.redraw()
        self.report({"INFO"}, "Install cancelled.")
        return {"FINISHED"}


class SAM3D_OT_machine_check(bpy.types.Operator):
    """Check this computer again: which install profile fits it, and what the backend's
    doctor says"""

    bl_idname = "sam3d.machine_check"
    bl_label = "Check again"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        session.get().forget_checks()
        timer.redraw()
        return {"FINISHED"}


classes = (
    SAM3D_OT_backend_start,
    SAM3D_OT_backend_stop,
    SAM3D_OT_backend_install,
    SAM3D_OT_backend_install_cancel,
    SAM3D_OT_machine_check,
)
