"""Operators on finished results: ``sam3d.import_result``, ``sam3d.import_scene``,
``sam3d.open_folder``.

``import_result`` and ``import_scene`` are the undoable public entry points to
``finish.deliver``, the road every finished job takes into the scene: a job of this
session (``local_job``), or a job of the backend by id (``job_id``: a History re-import),
read from the results folder or, when its files are gone, downloaded again first (waited
for, or finished by the timer, as :class:`.mixins.WaitOrTimer` decides).
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from .. import session
from ..core.backend_process import BackendState
from ..core.jobs import ImportSettings, Job, JobKind, JobRequest, Phase
from ..core.messages import InputError, describe
from ..core.options import JobOptions
from ..core.results import ResultFiles
from .mixins import SKIP, Pending, WaitOrTimer

#: Seconds a blocking re-import waits for the download of a result.
DOWNLOAD_TIMEOUT_S = 300.0


def _session_job(local_id: int, need_glb: bool) -> Job:
    job = session.get().manager.get(local_id)
    if job is None or not job.finished or (need_glb and job.glb_path is None):
        raise InputError("no_result", f"job {local_id} has no result")
    return job


def _restored(request: JobRequest, job_id: str, files: ResultFiles) -> Job:
    """A finished job read back from its local files."""
    try:
        return Job.from_results(request, job_id, files)
    except ValueError as exc:  # a damaged result.json
        raise InputError("no_result", str(exc)) from None


def _fetch_again(op: WaitOrTimer, job_id: str, request: JobRequest, started: str) -> Pending:
    """Download a finished job again (its local files are gone), in the background like a
    generation's download."""
    s = session.get()
    backend = s.backend
    if backend is None or backend.poll() != BackendState.READY or backend.client() is None:
        raise InputError("no_result", "the backend is not running, and no local copy exists")
    job = s.fetch(job_id, request, op.wait_here())
    return op.pending_job(job, started, DOWNLOAD_TIMEOUT_S)


class SAM3D_OT_import_result(WaitOrTimer, bpy.types.Operator):
    """Import a finished SAM 3D result into the scene"""

    bl_idname = "sam3d.import_result"
    bl_label = "Import SAM 3D result"
    bl_options = {"REGISTER", "UNDO"}

    local_job: IntProperty(name="Job (this session)", options=SKIP)
    job_id: StringProperty(name="Backend job id", options=SKIP)
    placement: StringProperty(name="Placement", description="CURSOR or CAMERA", options=SKIP)
    blocking: BoolProperty(
        name="Wait",
        description="When the result must be downloaded again, wait for it (default in "
        "background mode); otherwise it is imported once the download has finished",
        options=SKIP,
    )

    def begin(self, context: bpy.types.Context) -> Pending | set[str]:
        if self.local_job:
            job = _session_job(self.local_job, need_glb=True)
            if job.phase != Phase.DONE:
                raise InputError("no_result", f"job {self.local_job} has no result")
            if self.placement:
                job.request.settings.placement = self.placement.upper()
            return self.deliver(context, job)
        if not self.job_id:
            self.report({"ERROR"}, "Nothing to import: give local_job or job_id.")
            return {"CANCELLED"}
        s = context.scene.sam3d
        item = next((h for h in s.history if h.job_id == self.job_id), None)
        request = JobRequest(
            image=b"",
            options=JobOptions.from_json(item.options if item else {}),
            label=item.label if item else self.job_id[:8],
            sha256=(item.source_sha256 if item else "") or "-",
            settings=ImportSettings(
                scene=context.scene.name,
                source=item.label if item else "",
                decimate=bool(s.add_decimate),
                reimport=True,
                placement=(self.placement or s.placement).upper(),
                camera=context.scene.camera.name if context.scene.camera else "",
            ),
        )
        kept = Path(bpy.path.abspath(item.glb_path)) if item and item.glb_path else None
        files = ResultFiles(kept.parent) if kept is not None and kept.is_file() else None
        files = files or session.results_files(self.job_id)
        if files.glb.is_file():
            return self.deliver(context, _restored(request, self.job_id, files))
        return _fetch_again(self, self.job_id, request, "SAM 3D: downloading the result again...")


class SAM3D_OT_import_scene(WaitOrTimer, bpy.types.Operator):
    """Import a finished SAM 3D scene job: its objects posed under a camera matching the
    photo"""

    bl_idname = "sam3d.import_scene"
    bl_label = "Import SAM 3D scene"
    bl_options = {"REGISTER", "UNDO"}

    local_job: IntProperty(name="Job (this session)", options=SKIP)
    job_id: StringProperty(name="Backend job id", options=SKIP)
    image_path: StringProperty(name="Photo (background)", subtype="FILE_PATH", options=SKIP)
    label: StringProperty(name="Scene name", options=SKIP)
    blocking: BoolProperty(
        name="Wait",
        description="When the result must be downloaded again, wait for it (default in "
        "background mode)",
        options=SKIP,
    )

    def begin(self, context: bpy.types.Context) -> Pending | set[str]:
        if self.local_job:
            return self.deliver(context, _session_job(self.local_job, need_glb=False))
        if not self.job_id:
            self.report({"ERROR"}, "Nothing to import: give local_job or job_id.")
            return {"CANCELLED"}
        photo = bpy.path.abspath(self.image_path) if self.image_path else ""
        request = JobRequest(
            image=b"",
            label=self.label or f"scene {self.job_id[:8]}",
            kind=JobKind.SCENE,
            sha256="-",
            settings=ImportSettings(scene=context.scene.name, source=photo, photo_path=photo),
        )
        files = session.results_files(self.job_id)
        if files.complete():
            job = _restored(request, self.job_id, files)
            request.options = JobOptions.from_json(job.result.get("options") or {})
            return self.deliver(context, job)
        return _fetch_again(self, self.job_id, request, "SAM 3D: downloading the scene again...")


class SAM3D_OT_open_folder(bpy.types.Operator):
    """Open the folder holding this job's result files"""

    bl_idname = "sam3d.open_folder"
    bl_label = "Open folder"
    bl_options = {"REGISTER"}

    job_id: StringProperty(options=SKIP)
    path: StringProperty(subtype="DIR_PATH", options=SKIP)

    def execute(self, context: bpy.types.Context) -> set[str]:
        folder = Path(self.path) if self.path else session.results_files(self.job_id).folder
        if not folder.is_dir():
            self.report({"ERROR"}, describe("no_result", str(folder)))
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=str(folder))
        return {"FINISHED"}


classes = (SAM3D_OT_import_result, SAM3D_OT_import_scene, SAM3D_OT_open_folder)
