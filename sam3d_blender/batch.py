"""Headless batch: photos + masks -> posed 3D objects in a .blend, GLBs and a JSON report.

Booted by ``scripts/sam3d_batch.py`` (which enables the add-on as Blender does, then calls
:func:`main`); the arguments and manifests are ``core/batch_items.py``, the report and the
resume policy ``core/batch_report.py``.

Every item takes the add-on's own road: one scene job per photo through the session's job
manager and managed backend (started once, reused for every item), brought into its own
Blender scene by ``finish.deliver`` - the objects posed under ONE camera matching the
photo, with the photo as the camera's background. Each object is then measured: its
silhouette reprojected through that camera against its mask (IoU, :mod:`.batch_iou`; the
masks are sampled for it while the backend works on the job).

The objects are assets (catalogued, tagged, previewed) unless ``--no-assets``; an asset
library, per-object USD/FBX files and re-runs of those are :mod:`.batch_outputs`.

Outputs in ``--out``::

    batch.blend                  every item as its own Blender scene (named by item id)
    items/<id>/scene.glb         the item's objects as separate nodes + the camera
    items/<id>/object_<i>.glb    one GLB per object (its own frame; pose in node extras)
    items/<id>/object_<i>.fbx    (--export fbx) per object, texture embedded
    items/<id>/object_<i>.usdc   (--export usdc) per object, texture in items/<id>/textures/
    items/<id>/result.json       the backend's result (poses, intrinsics, stats, timings)
    report.json                  per item: status, error code, timings, face counts, IoU,
                                 assets (catalog, tags, size, preview time), exports

and with ``--asset-library DIR``: ``DIR/<id>.blend`` per item (or ``DIR/<--asset-blend>``)
and ``DIR/blender_assets.cats.txt``.

Exit status: 0 every item succeeded (possibly with failed parts), 1 some item or output
failed, 2 bad arguments or manifest (or an export format this Blender cannot write).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import bpy

from . import finish, job_inputs, measure, paths, session, timer
from .batch_iou import MaskGrids, object_iou
from .batch_outputs import Outputs
from .core.backend_process import BackendState
from .core.batch_items import (
    Item,
    UsageError,
    base_options,
    build_parser,
    check_outputs,
    export_formats,
    fingerprint,
    items_from_args,
    script_argv,
)
from .core.batch_report import REPORT_NAME, Report, progress_line, summary_table
from .core.job_manager import run_to_completion
from .core.jobs import ImportSettings
from .core.messages import InputError, describe
from .core.options import JobOptions
from .core.results import read_json, write_json
from .core.scene_result import scene_parts
from .exports import missing_formats
from .importing.scene import import_scene

__all__ = ["main"]


def module_mode() -> bool:
    """True under ``python`` with the bpy module, False inside a Blender executable."""
    return not getattr(bpy.app, "binary_path", "")


def configure_backend(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Point the add-on at the backend to use (environment variables win over the
    preferences, see ``core/settings.py``) and at the cache folder. Returns the preference
    values changed, to put back at the end."""
    if args.backend_url:
        os.environ["SAM3D_BACKEND_URL"] = args.backend_url
        if args.backend_token:
            os.environ["SAM3D_BACKEND_TOKEN"] = args.backend_token
    elif args.backend_python:
        # Absolute, but never resolved: a venv's python is a symlink to the base
        # interpreter, and only the link itself runs inside the venv (with its packages).
        os.environ["SAM3D_BACKEND_PYTHON"] = os.path.abspath(args.backend_python)
    elif module_mode() and not os.environ.get("SAM3D_BACKEND_PYTHON"):
        # python + bpy module: this interpreter can run the backend when its deps are here.
        if all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "scipy")):
            os.environ["SAM3D_BACKEND_PYTHON"] = sys.executable
    prefs = paths.addon_preferences()
    saved = {"cache_dir": prefs.cache_dir}
    cache = args.cache_dir or (str(out / "cache") if module_mode() else "")
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
        prefs.cache_dir = str(Path(cache).resolve())
    return saved


class Batch:
    """One run over the items (see the module doc)."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.blend = out / args.blend
        self.report = Report(out / REPORT_NAME)
        self.outputs = Outputs(args, out)
        self.dirty = False

    # Blender file
    def save_blend(self) -> None:
        bpy.ops.wm.save_as_mainfile(filepath=str(self.blend))
        self.dirty = False

    def open_file(self) -> None:
        """Continue the .blend of an earlier run, or start an empty file."""
        if self.blend.is_file():
            bpy.ops.wm.open_mainfile(filepath=str(self.blend))
        else:
            bpy.ops.wm.read_homefile(use_empty=True)

    def item_scene(self, ident: str) -> bpy.types.Scene:
        """The Blender scene of item ``ident``, emptied (a redo replaces its content)."""
        scene = bpy.data.scenes.get(ident)
        if scene is None:
            fresh = [s for s in bpy.data.scenes if s.name == "Scene" and not s.objects]
            if fresh and len(bpy.data.scenes) == 1:
                scene = fresh[0]
                scene.name = ident
            else:
                scene = bpy.data.scenes.new(ident)
        for obj in list(scene.objects):
            bpy.data.objects.remove(obj, do_unlink=True)
        for child in list(scene.collection.children):
            scene.collection.children.unlink(child)
            if child.users == 0:
                bpy.data.collections.remove(child)
        bpy.data.orphans_purge(do_recursive=True)
        return scene

    def drop_scene(self, ident: str) -> None:
        """Remove a failed item's Blender scene (the file's last scene is emptied and
        renamed back to "Scene" instead: a file needs one), and its library file."""
        self.outputs.drop(ident)
        scene = bpy.data.scenes.get(ident)
        if scene is None:
            return
        if len(bpy.data.scenes) > 1:
            for obj in list(scene.objects):
                bpy.data.objects.remove(obj, do_unlink=True)
            bpy.data.scenes.remove(scene)
            bpy.data.orphans_purge(do_recursive=True)
        else:
            self.item_scene(ident).name = "Scene"
        self.dirty = True

    def start_backend(self) -> float:
        """Start (or reach) the backend the add-on is configured for, before the first item
        that needs it, so its start-up is timed apart from the items. Returns seconds. A
        backend that cannot start is reported by each item's job (with its code)."""
        t0 = time.perf_counter()
        backend = session.get().current_backend()
        backend.ensure_started()
        timer.wait_for(lambda: backend.poll() != BackendState.STARTING, timeout=300)
        seconds = time.perf_counter() - t0
        print(f"backend: {backend.poll().value} after {seconds:.1f} s", flush=True)
        return round(seconds, 3)

    # items
    def run_item(self, item: Item, options: JobOptions) -> dict[str, Any]:
        """Generate, import and save one item; returns its report record."""
        t0 = time.perf_counter()
        rec: dict[str, Any] = {
            "id": item.id,
            "image": str(item.image),
            "masks": [str(m) for m in item.masks],
            "options": options.to_json(),
            "status": "failed",
            "error": None,
            "objects": [],
            "timings": {},
        }
        if item.input_error:
            code, msg = item.input_error
            rec["error"] = {"code": code, "message": msg}
            self.drop_scene(item.id)
            return rec
        settings = ImportSettings(
            scene=item.id,
            decimate=not self.args.no_decimate,
            asset=self.outputs.settings(item),
        )
        try:
            request = job_inputs.scene_request_from_files(
                item.image, item.masks, options, settings, label=item.id
            )
        except InputError as exc:
            rec["error"] = {"code": exc.code, "message": exc.message}
            self.drop_scene(item.id)
            return rec
        scene = self.item_scene(item.id)
        settings.scene = scene.name
        self.dirty = True
        grids = MaskGrids(item.masks)
        with bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
            job = session.get().submit(request, wait_here=True)
            # While the backend works, this process would only poll: it samples the masks
            # for the IoU check then, one per poll, instead of after the import.
            run_to_completion(
                session.get().manager,
                job,
                timeout=self.args.timeout,
                on_update=lambda _job: grids.prepare_next(),
            )
            outcome = finish.deliver(bpy.context, job)
            rec["job_id"] = job.backend_id
            rec["cached"] = bool(job.cached)
            rec["engine"] = job.result.get("engine")
            if outcome.scene is not None:
                self._record_objects(rec, outcome, scene, grids)
        rec["timings"] = {
            "job_s": round(outcome.seconds.get("job", 0.0), 3),
            "import_s": round(outcome.seconds.get("import", 0.0), 3),
            "total_s": round(time.perf_counter() - t0, 3),
        }
        n_ok = sum(1 for o in rec["objects"] if o["state"] == "done")
        if n_ok:
            rec["timings"]["per_object_s"] = round(rec["timings"]["total_s"] / n_ok, 3)
        if outcome.error is not None and not n_ok:
            rec["error"] = {"code": outcome.error.code, "message": outcome.error.message}
            if outcome.error.code == "cancelled" and rec["timings"]["job_s"] >= self.args.timeout:
                rec["error"] = {
                    "code": "timeout",
                    "message": f"the item took longer than --timeout {self.args.timeout:g} s",
                }
            self.drop_scene(item.id)
        else:
            rec["status"] = "done" if n_ok == len(rec["objects"]) else "partial"
            self._copy_outputs(rec, item, outcome)
            self.outputs.deliver(item, scene, rec, outcome.assets if settings.asset else None)
            rec["timings"]["asset_s"] = round(outcome.seconds.get("asset", 0.0), 3)
        return rec

    def _record_objects(
        self,
        rec: dict[str, Any],
        outcome: finish.Outcome,
        scene: bpy.types.Scene,
        grids: MaskGrids,
    ) -> None:
        imp = outcome.scene
        assert imp is not None
        for part in scene_parts(outcome.result):
            i = int(part["index"])
            o: dict[str, Any] = {"index": i, "state": part.get("state"), "error": None}
            obj = imp.objects.get(i)
            if obj is None:
                o["state"] = "failed"
                o["error"] = imp.failed.get(i) or part.get("error")
            else:
                o["name"] = obj.name
                o["faces"] = len(obj.data.polygons)
                o["backend_faces"] = (part.get("stats") or {}).get("faces")
                o["iou"] = object_iou(bpy.context, obj, imp.camera, grids.get(i))
                o["depth_m"] = round(measure.camera_depth(obj, imp.camera), 4)
            rec["objects"].append(o)
        rec["camera"] = imp.camera.name
        rec["blender_scene"] = scene.name

    def _copy_outputs(self, rec: dict[str, Any], item: Item, outcome: finish.Outcome) -> None:
        d = self.out / "items" / item.id
        d.mkdir(parents=True, exist_ok=True)
        if outcome.job.glb_path is not None:
            shutil.copyfile(outcome.job.glb_path, d / "scene.glb")
            rec["scene_glb"] = str((d / "scene.glb").relative_to(self.out))
        for o in rec["objects"]:
            src = outcome.part_glbs.get(o["index"])
            if src is not None and o["state"] == "done":
                dest = d / f"object_{o['index']}.glb"
                shutil.copyfile(src, dest)
                o["glb"] = str(dest.relative_to(self.out))
        write_json(d / "result.json", outcome.result)

    def reimport_local(self, item: Item, prev: dict[str, Any]) -> bool:
        """A finished item missing from the .blend: import it again from its saved GLBs
        (no backend involved). Returns False when the saved files are gone."""
        result_path = self.out / "items" / item.id / "result.json"
        if not result_path.is_file():
            return False
        glbs = {
            int(o["index"]): self.out / o["glb"]
            for o in prev.get("objects", [])
            if o.get("glb") and (self.out / o["glb"]).is_file()
        }
        if not glbs:
            return False
        scene = self.item_scene(item.id)
        with bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
            import_scene(
                bpy.context,
                read_json(result_path),
                glbs,
                label=item.id,
                photo=str(item.image) if item.image.is_file() else None,
                decimate=not self.args.no_decimate,
                provenance={"job_id": prev.get("job_id") or "", "scene": item.id},
            )
        self.dirty = True
        return True


def _cannot_write_outputs(args: argparse.Namespace) -> str | None:
    """Why this Blender cannot write the outputs asked for (an asset library folder that
    cannot be made, an export format it was built without), found before any work; None
    when it can."""
    if args.asset_library:
        try:
            Path(args.asset_library).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return describe("asset_library_unwritable", str(exc))
    missing = missing_formats(export_formats(args.export))
    if missing:
        return f"--export {','.join(missing)}: {describe('export_unavailable')}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the batch over ``argv`` (the script's arguments, see ``core/batch_items.py``);
    returns the exit status."""
    t_start = time.perf_counter()
    args = build_parser().parse_args(script_argv(argv))
    try:
        check_outputs(args)
        items, defaults = items_from_args(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reason = _cannot_write_outputs(args)
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    saved = configure_backend(args, out)
    batch = Batch(args, out)
    base = base_options(args).updated(defaults)
    records: list[dict[str, Any]] = []
    skipped: set[str] = set()
    run: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "items": len(items)}
    try:
        batch.open_file()
        for n, item in enumerate(items, 1):
            options = base.updated(item.options)
            fp = fingerprint(item, options)
            prev = batch.report.finished_before(item.id, fp, args.retry_failed)
            note = ""
            if prev is not None:
                finished = prev["status"] in ("done", "partial")
                reimported = False
                if finished and bpy.data.scenes.get(item.id) is None:
                    if batch.reimport_local(item, prev):
                        note, reimported = "; re-imported from its saved GLBs", True
                    else:
                        prev = None  # the saved files are gone: do it again
                if (
                    prev is not None
                    and finished
                    and (reimported or batch.outputs.stale(item, prev))
                ):
                    batch.outputs.deliver(item, bpy.data.scenes[item.id], prev)
                    note += "; its assets and exports updated"
                    batch.report.items[item.id] = prev
                    batch.report.save()
                    batch.save_blend()
                if prev is not None:
                    skipped.add(item.id)
                    records.append(prev)
                    print(progress_line(n, len(items), prev, True, note), flush=True)
                    continue
            if "backend_start_s" not in run and item.input_error is None:
                run["backend_start_s"] = batch.start_backend()
            rec = batch.run_item(item, options)
            rec["fingerprint"] = fp
            rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            records.append(rec)
            batch.report.items[item.id] = rec
            batch.report.save()
            if batch.dirty:
                batch.save_blend()
            print(progress_line(n, len(items), rec, False), flush=True)
        if batch.dirty or not batch.blend.is_file():
            batch.save_blend()
        done = [r for r in records if r["status"] in ("done", "partial")]
        scenes = [bpy.data.scenes.get(r.get("blender_scene") or r["id"]) for r in done]
        error = batch.outputs.finish([sc for sc in scenes if sc is not None])
        if error:
            run["library_error"] = error
            print(f"error: {error}", file=sys.stderr)
    finally:
        wall = time.perf_counter() - t_start
        run["wall_s"] = round(wall, 3)
        run["skipped"] = len(skipped)
        batch.report.close_run(run, records, len(skipped), batch.blend)
        prefs = paths.addon_preferences()
        for key, value in saved.items():
            setattr(prefs, key, value)
        session.reset()  # stops the managed backend this run started
    print(summary_table(records, skipped, wall, run.get("backend_start_s")), flush=True)
    failed = any(r["status"] == "failed" or r.get("output_errors") for r in records)
    return 1 if failed or run.get("library_error") else 0
