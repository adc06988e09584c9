"""The one road from a finished job to the scene (bpy).

:func:`deliver` is called for every finished job, whoever waited for it: the timer (the
UI), a blocking operator (background mode, ``blocking=True``), the batch, and the public
``sam3d.import_result`` / ``sam3d.import_scene`` operators. It dispatches by the job's
:class:`~.core.jobs.JobKind`: one object (:func:`.importing.object.import_object`), or
the objects of one photo under one camera (:func:`.importing.scene.import_scene`). When
the job asks for it (``ImportSettings.asset``), the new objects are then marked as assets,
with a catalog, tags, metadata and a rendered preview (:mod:`.importing.asset`). A job
that failed or was cancelled is reported instead. Object jobs leave a line in the file's
History either way.

It returns an :class:`Outcome`: what reached the scene and one sentence for the artist,
which the caller shows as an operator report or as the panel's notice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from . import session
from .core.asset_metadata import AssetSettings
from .core.client import BackendClientError
from .core.jobs import Delivery, Job, JobKind, Phase
from .core.messages import ErrorInfo, describe
from .core.provenance import PROP_PREFIX, placement_note, provenance
from .importing.asset import MarkedAsset, mark_assets
from .importing.object import import_object
from .importing.scene import ImportedScene, import_scene

__all__ = ["Outcome", "deliver"]


@dataclass
class Outcome:
    """How one finished job ended in Blender.

    ``level`` ("INFO" | "WARNING" | "ERROR") and ``text`` (one sentence) are what the
    artist is told. ``objects``: what reached the scene (one object, or a scene's parts in
    part order); ``error``: why nothing (or not everything) did. Scene jobs also give
    ``scene`` (the camera, collection and failed parts) and ``part_glbs`` (part index ->
    local GLB). ``assets``: what marking the objects as assets did (empty when not asked).
    ``seconds``: ``{"job": Generate -> result here, "import": Blender import, "asset":
    marking as assets (previews included), "total": all}``, wall-clock.
    """

    job: Job
    level: str
    text: str
    objects: list[bpy.types.Object] = field(default_factory=list)
    error: ErrorInfo | None = None
    scene: ImportedScene | None = None
    part_glbs: dict[int, Path] = field(default_factory=dict)
    assets: list[MarkedAsset] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.objects)

    @property
    def result(self) -> dict[str, Any]:
        return self.job.result


def deliver(context: bpy.types.Context, job: Job, *, undo_step: bool = False) -> Outcome:
    """Bring the finished ``job`` into its Blender scene (or report why not); see the
    module docstring. ``undo_step``: push an undo step for the import (callers outside an
    operator with the UNDO flag: the timer, and operators that waited for the job).
    Blocking; main thread."""
    scene = bpy.data.scenes.get(job.request.settings.scene) or context.scene
    if scene != context.scene:
        with context.temp_override(scene=scene):
            outcome = _FINISHERS[job.kind](context, job)
    else:
        outcome = _FINISHERS[job.kind](context, job)
    job.delivery = Delivery.DELIVERED
    if undo_step and outcome.objects:
        # Imports run nested in an operator or a timer, where Blender pushes no undo step
        # by itself: push one, so that a single Undo removes what was imported.
        bpy.ops.ed.undo_push(message=f"SAM 3D: import {job.request.label}")
    return outcome


def _failed(job: Job) -> ErrorInfo | None:
    """Why ``job`` brought nothing (None when it is done with a GLB)."""
    if job.phase == Phase.CANCELLED:
        return ErrorInfo("cancelled")
    if job.phase != Phase.DONE or job.glb_path is None:
        return job.error or ErrorInfo("internal_error")
    return None


def _seconds_since_generate(job: Job) -> float:
    return time.monotonic() - job.request.settings.started


def _mark_assets(
    outcome: Outcome, settings: AssetSettings | None, view_from: bpy.types.Object | None
) -> None:
    """Mark ``outcome``'s objects as assets when ``settings`` ask for it; the artist is
    told where they went, and what could not be done. ``view_from``: the photo's camera
    (previews show the objects from its side), None: the front."""
    if settings is None or not outcome.objects:
        return
    t0 = time.monotonic()
    where = view_from.matrix_world.translation.copy() if view_from is not None else None
    outcome.assets = mark_assets(outcome.objects, settings, view_from=where)
    outcome.seconds["asset"] = time.monotonic() - t0
    n = len(outcome.assets)
    what = "an asset" if n == 1 else f"{n} assets"
    catalog = f" in the catalog '{settings.catalog}'" if settings.catalog else ""
    outcome.text += f" Marked as {what}{catalog}."
    # one sentence per distinct problem (a catalog that cannot be added fails every object)
    warnings = dict.fromkeys(w.message for marked in outcome.assets for w in marked.warnings)
    if warnings:
        if outcome.level == "INFO":
            outcome.level = "WARNING"
        outcome.text += " " + " ".join(warnings)


# -- one object ------------------------------------------------------------------------------


def _finish_object(context: bpy.types.Context, job: Job) -> Outcome:
    req, st = job.request, job.request.settings
    err = _failed(job)
    if err is not None:
        if err.code == "cancelled":
            _history(context.scene, job, "cancelled")
            return Outcome(job, "INFO", "Generation cancelled.", error=err)
        _history(context.scene, job, "failed", message=err.sentence())
        return Outcome(job, "ERROR", err.sentence(), error=err)
    assert job.glb_path is not None
    t_job = _seconds_since_generate(job)
    camera = bpy.data.objects.get(st.camera) if st.placement == "CAMERA" and st.camera else None
    t0 = time.monotonic()
    try:
        obj = import_object(
            context,
            job.glb_path,
            label=req.label,
            result=job.result,
            provenance=provenance(
                job.backend_id or "", job.result, req.options, req.source_sha256, st.source
            ),
            placement_mode=st.placement,
            camera=camera,
            decimate=st.decimate,
        )
    except (RuntimeError, OSError, ValueError) as exc:
        err = ErrorInfo("import_failed", str(exc))
        return Outcome(job, "ERROR", err.sentence(), error=err)
    seconds = {"job": t_job, "import": time.monotonic() - t0}
    note = placement_note(str(obj.get(PROP_PREFIX + "placement", "")))
    text = f"'{obj.name}' added to the scene{note}."
    outcome = Outcome(job, "INFO", text, objects=[obj], seconds=seconds)
    _mark_assets(outcome, st.asset, context.scene.camera if st.placement == "CAMERA" else None)
    seconds["total"] = _seconds_since_generate(job)
    _history(context.scene, job, "done", obj=obj, seconds=seconds["total"])
    return outcome


def _history(
    scene: bpy.types.Scene,
    job: Job,
    state: str,
    *,
    obj: bpy.types.Object | None = None,
    message: str = "",
    seconds: float = 0.0,
) -> None:
    """The job's line in this file's History (a re-import updates its own line)."""
    settings = getattr(scene, "sam3d", None)
    if settings is None:
        return
    req = job.request
    if obj is not None and req.settings.reimport:  # a re-import updates its own line only
        item = next((h for h in settings.history if h.job_id == job.backend_id), None)
        if item is None:
            return
    else:
        item = settings.history.add()
        item.job_id = job.backend_id or ""
        item.label = req.label
        item.engine = str(obj.get(PROP_PREFIX + "engine", "")) if obj else req.options.engine
        item.seed = int(req.options.seed)
        item.options_json = json.dumps(req.options.to_json(), sort_keys=True)
        item.source_sha256 = req.source_sha256
        item.created = time.time()
        item.seconds = seconds
        item.state = state
        item.message = message[:500]
        if obj is not None:
            settings.history_index = len(settings.history) - 1
    if obj is not None:
        item.object_name = obj.name
        item.glb_path = str(job.glb_path or "")


# -- one photo's objects under one camera ------------------------------------------------------


def _finish_scene(context: bpy.types.Context, job: Job) -> Outcome:
    req, st = job.request, job.request.settings
    seconds = {"job": _seconds_since_generate(job)}
    err = _failed(job)
    if err is not None:
        return Outcome(job, "ERROR", err.sentence(), error=err, seconds=seconds)
    t0 = time.monotonic()
    try:
        part_glbs = _part_glbs(job)
    except BackendClientError as exc:
        err = ErrorInfo(exc.code, f"downloading the parts: {exc.message}")
        return Outcome(job, "ERROR", err.sentence(), error=err, seconds=seconds)
    seconds["download_parts"] = time.monotonic() - t0
    t1 = time.monotonic()
    try:
        imported = import_scene(
            context,
            job.result,
            part_glbs,
            label=req.label,
            photo=_photo(st.photo_image, st.photo_path),
            names=st.names or None,
            camera_height=st.camera_height,
            make_scene_camera=st.make_scene_camera,
            decimate=st.decimate,
            provenance=provenance(
                job.backend_id or "",
                job.result,
                req.options,
                req.source_sha256,
                st.source,
                scene=req.label,
            ),
        )
    except (RuntimeError, OSError, ValueError) as exc:
        err = ErrorInfo("import_failed", str(exc))
        return Outcome(job, "ERROR", err.sentence(), error=err, seconds=seconds)
    seconds["import"] = time.monotonic() - t1
    objects = list(imported.objects.values())
    outcome = Outcome(
        job, "INFO", "", objects=objects, scene=imported, part_glbs=part_glbs, seconds=seconds
    )
    if not objects:
        first = next(iter(imported.failed.values()), {})
        outcome.error = ErrorInfo(
            str(first.get("code") or "internal_error"), str(first.get("message") or "")
        )
        outcome.level, outcome.text = "ERROR", outcome.error.sentence()
        seconds["total"] = _seconds_since_generate(job)
        return outcome
    n, total = len(objects), len(objects) + len(imported.failed)
    outcome.text = (
        f"'{imported.label}': {n} of {total} objects placed under '{imported.camera.name}'."
    )
    if imported.failed:
        fails = "; ".join(
            f"mask {i}: {describe(str(e.get('code')), str(e.get('message') or ''))}"
            for i, e in sorted(imported.failed.items())
        )
        outcome.level, outcome.text = "WARNING", f"{outcome.text} Failed: {fails}"
    _mark_assets(outcome, st.asset, imported.camera)
    seconds["total"] = _seconds_since_generate(job)
    return outcome


def _part_glbs(job: Job) -> dict[int, Path]:
    """A finished scene job's part GLBs; the job's download brought them, unless its
    folder came from elsewhere: then the missing ones are downloaded now (blocking)."""
    assert job.files is not None
    missing = job.files.missing_parts(job.result)
    if missing:
        client = session.get().current_backend().client()
        if client is None:
            raise BackendClientError("backend_unreachable", "the backend is not running")
        assert job.backend_id is not None
        for i in missing:
            client.download_result(job.backend_id, job.files.part_glb(i), part=i)
    return job.files.part_glbs(job.result)


def _photo(image_name: str, path: str) -> bpy.types.Image | str | None:
    """The camera's background: a Blender image (by name, if it still exists), else a file
    that exists, else None."""
    if image_name:
        return bpy.data.images.get(image_name)
    if path and Path(path).is_file():
        return path
    return None


_FINISHERS: dict[JobKind, Callable[[bpy.types.Context, Job], Outcome]] = {
    JobKind.OBJECT: _finish_object,
    JobKind.SCENE: _finish_scene,
}
