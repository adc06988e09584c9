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
from .mixins import SKIP, AssetOverrides, Pending, WaitOrTimer

#: Seconds a blocking re-import waits for the download of a result.
DOWNLOAD_TIMEOUT_S = 300.0


class ImportOperator(WaitOrTimer, AssetOverrides):
    """What ``import_result`` and ``import_scene`` share: ``local_job`` (a finished job of
    this session) or ``job_id`` (a finished backend job: its local files, else downloaded
    again first), and "Mark as asset" (a job of this session keeps its own unless this
    call sets it). Subclasses say how to find their job and how to restore it."""

    local_job: IntProperty(name="Job (this session)", options=SKIP)
    job_id: StringProperty(name="Backend job id", options=SKIP)
    blocking: BoolProperty(
        name="Wait",
        description="When the result must be downloaded again, wait for it (default in "
        "background mode); otherwise it is imported once the download has finished",
        options=SKIP,
    )

    def begin(self, context: bpy.types.Context) -> Pending | set[str]:
        if self.local_job:
            job = session.get().manager.get(self.local_job)
            if job is None or not self.importable(job):
                raise InputError("no_result", f"job {self.local_job} has no result")
            if self.properties.is_property_set("mark_asset"):
                job.request.settings.asset = self.asset_settings(context)
            return self.deliver(context, job)
        if not self.job_id:
            self.report({"ERROR"}, "Nothing to import: give local_job or job_id.")
            return {"CANCELLED"}
        request = self.request(context)
        files = self.local_files(context)
        if files is None:
            return self._fetch_again(request)
        try:
            job = Job.from_results(request, self.job_id, files)
        except ValueError as exc:  # a damaged result.json
            raise InputError("no_result", str(exc)) from None
        self.restored(job)
        return self.deliver(context, job)

    def importable(self, job: Job) -> bool:
        """Whether a job of this session can be imported (it may take a placement)."""
        return job.finished

    def request(self, context: bpy.types.Context) -> JobRequest:
        """What a job restored or downloaded by ``job_id`` is imported as."""
        raise NotImplementedError

    def local_files(self, context: bpy.types.Context) -> ResultFiles | None:
        """The job's files on this computer, or None when they must be downloaded."""
        files = session.results_files(self.job_id)
        return files if files.complete() else None

    def restored(self, job: Job) -> None:
        """A hook for what only the restored result tells."""

    def _fetch_again(self, request: JobRequest) -> Pending:
        """Download the finished job again, in the background like a generation's."""
        s = session.get()
        backend = s.backend
        if backend is None or backend.poll() != BackendState.READY or backend.client() is None:
            raise InputError("no_result", "the backend is not running, and no local copy exists")
        job = s.fetch(self.job_id, request, self.wait_here())
        return self.pending_job(job, "SAM 3D: downloading the result again...", DOWNLOAD_TIMEOUT_S)


class SAM3D_OT_import_result(ImportOperator, bpy.types.Operator):
    """Import a finished SAM 3D result into the scene"""

    bl_idname = "sam3d.import_result"
    bl_label = "Import SAM 3D result"
    bl_options = {"REGISTER", "UNDO"}

    placement: StringProperty(name="Placement", description="CURSOR or CAMERA", options=SKIP)

    def importable(self, job: Job) -> bool:
        return job.phase == Phase.DONE and job.glb_path is not None

    def begin(self, context: bpy.types.Context) -> Pending | set[str]:
        job = session.get().manager.get(self.local_job) if self.local_job else None
        if job is not None and self.placement:  # this call's placement wins
            job.request.settings.placement = self.placement.upper()
        return super().begin(context)

    def _history_item(self, context: bpy.types.Context):
        return next((h for h in context.scene.sam3d.history if h.job_id == self.job_id), None)

    def request(self, context: bpy.types.Context) -> JobRequest:
        s = context.scene.sam3d
        item = self._history_item(context)
        return JobRequest(
            image=b"",
            options=JobOptions.from_json(item.options if item else {}),
            label=item.label if item else self.job_id[:8],
            sha256=(item.source_sha256 if item else "") or "-",
            settings=ImportSettings(
                scene=context.scene.name,
                source=item.label if item else "",
                decimate=bool(s.add_decimate),
                reimport=True,
                asset=self.asset_settings(context),
                placement=(self.placement or s.placement).upper(),
                camera=context.scene.camera.name if context.scene.camera else "",
            ),
        )

    def local_files(self, context: bpy.types.Context) -> ResultFiles | None:
        """The GLB the History entry points at, else the results folder's."""
        item = self._history_item(context)
        kept = Path(bpy.path.abspath(item.glb_path)) if item and item.glb_path else None
        if kept is not None and kept.is_file():
            return ResultFiles(kept.parent)
        files = session.results_files(self.job_id)
        return files if files.glb.is_file() else None


class SAM3D_OT_import_scene(ImportOperator, bpy.types.Operator):
    """Import a finished SAM 3D scene job: its objects posed under a camera matching the
    photo"""

    bl_idname = "sam3d.import_scene"
    bl_label = "Import SAM 3D scene"
    bl_options = {"REGISTER", "UNDO"}

    image_path: StringProperty(name="Photo (background)", subtype="FILE_PATH", options=SKIP)
    label: StringProperty(name="Scene name", options=SKIP)

    def request(self, context: bpy.types.Context) -> JobRequest:
        photo = bpy.path.abspath(self.image_path) if self.image_path else ""
        return JobRequest(
            image=b"",
            label=self.label or f"scene {self.job_id[:8]}",
            kind=JobKind.SCENE,
            sha256="-",
            settings=ImportSettings(
                scene=context.scene.name,
                source=photo,
                photo_path=photo,
                asset=self.asset_settings(context),
            ),
        )

    def restored(self, job: Job) -> None:
        job.request.options = JobOptions.from_json(job.result.get("options") or {})


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
