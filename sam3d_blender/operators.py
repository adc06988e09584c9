"""Operators: ``bpy.ops.sam3d.*`` (the names pipelines depend on).

``generate`` turns the chosen image + mask into a job. In the UI it returns at once and a
timer (:func:`.runtime.tick`) polls the backend; in ``bpy.app.background`` (or with
``blocking=True``) it runs the same steps in a loop until the object is in the scene.
``import_result`` is the undoable step that brings a finished job's GLB in.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from . import image_io, importer, paths, runtime
from .backend_process import BackendState, ManagedBackend
from .installer import InstallerRun, InstallState, stage_source
from .job_manager import Job, JobRequest, Phase, read_json, run_to_completion
from .messages import ErrorInfo, describe
from .settings import default_venv_dir

SKIP = {"SKIP_SAVE"}


class InputError(Exception):
    """A problem with the chosen image/mask, with an add-on error code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message


def _settings(context: bpy.types.Context):
    return context.scene.sam3d


def _label_for(path_or_name: str) -> str:
    """The object's name: the image's file or datablock name without its extension."""
    return Path(path_or_name).stem or path_or_name or "SAM 3D object"


class JobOptionOverrides:
    """Operator properties that override the panel's job options when a script sets them
    (``bpy.ops.sam3d.generate(seed=3, target_faces=5000)``); unset ones keep the panel's."""

    engine: StringProperty(name="Engine", description="auto, sam3d or preview", options=SKIP)
    seed: IntProperty(name="Seed", min=0, max=2**31 - 1, options=SKIP)
    quality: StringProperty(name="Quality", description="fast, balanced or high", options=SKIP)
    target_faces: IntProperty(
        name="Target faces", description="0 keeps every face", min=0, options=SKIP
    )
    texture_size: IntProperty(name="Texture size", min=256, max=4096, options=SKIP)
    bake: BoolProperty(name="Bake texture", options=SKIP)

    def _given(self, name: str) -> bool:
        return self.properties.is_property_set(name)

    def _options(self, context: bpy.types.Context) -> dict:
        opts = _settings(context).job_options()
        if self._given("engine") and self.engine:
            opts["engine"] = self.engine.strip().lower()
        if self._given("seed"):
            opts["seed"] = int(self.seed)
        if self._given("quality") and self.quality:
            opts["quality"] = self.quality.strip().lower()
        if self._given("target_faces"):
            opts["target_faces"] = int(self.target_faces) or None
        if self._given("texture_size"):
            opts["texture_size"] = int(self.texture_size)
        if self._given("bake"):
            opts["bake"] = bool(self.bake)
        return opts


class SAM3D_OT_generate(JobOptionOverrides, bpy.types.Operator):
    """Generate a textured 3D object from the image and mask"""

    bl_idname = "sam3d.generate"
    bl_label = "Generate 3D"
    bl_options = {"REGISTER"}

    image_path: StringProperty(name="Image file", subtype="FILE_PATH", options=SKIP)
    image_name: StringProperty(name="Blender image", options=SKIP)
    mask_path: StringProperty(name="Mask file", subtype="FILE_PATH", options=SKIP)
    mask_name: StringProperty(name="Blender mask image", options=SKIP)
    use_alpha: BoolProperty(name="Mask from alpha", options=SKIP)
    placement: StringProperty(name="Placement", description="CURSOR or CAMERA", options=SKIP)
    label: StringProperty(name="Object name", options=SKIP)
    blocking: BoolProperty(
        name="Wait", description="Wait for the object (default in background mode)", options=SKIP
    )
    timeout: FloatProperty(name="Timeout (s)", description="0: no limit", min=0.0, options=SKIP)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and hasattr(context.scene, "sam3d")

    # -- inputs ---------------------------------------------------------------------------

    def _image(self, context: bpy.types.Context) -> tuple[bytes, str, str, bpy.types.Image | None]:
        """(bytes, label, source description, Blender image or None)."""
        s = _settings(context)
        if self.image_path:
            path = bpy.path.abspath(self.image_path)
            return self._file(path, "image"), _label_for(path), path, None
        if self.image_name:
            img = bpy.data.images.get(self.image_name)
            if img is None:
                raise InputError("no_image", f"no Blender image named {self.image_name!r}")
            return self._blender_image(img), _label_for(img.name), img.name, img
        if s.image_source == "FILE":
            if not s.image_path:
                raise InputError("no_image")
            path = bpy.path.abspath(s.image_path)
            return self._file(path, "image"), _label_for(path), path, None
        if s.image is None:
            raise InputError("no_image")
        return self._blender_image(s.image), _label_for(s.image.name), s.image.name, s.image

    @staticmethod
    def _file(path: str, what: str) -> bytes:
        try:
            return image_io.file_bytes(path)
        except FileNotFoundError:
            raise InputError(
                "no_image" if what == "image" else "no_mask", f"{what} file not found: {path}"
            ) from None
        except (RuntimeError, ValueError) as exc:
            raise InputError("image_unreadable", f"{path}: {exc}") from None

    @staticmethod
    def _blender_image(img: bpy.types.Image) -> bytes:
        try:
            return image_io.image_png(img)
        except (RuntimeError, ValueError, OSError) as exc:
            raise InputError("image_unreadable", f"{img.name}: {exc}") from None

    def _mask(self, context: bpy.types.Context, image: bpy.types.Image | None) -> bytes | None:
        """Mask bytes, or None when the image's alpha is the mask."""
        s = _settings(context)
        if self.mask_path:
            return self._file(bpy.path.abspath(self.mask_path), "mask")
        if self.mask_name:
            img = bpy.data.images.get(self.mask_name)
            if img is None:
                raise InputError("no_mask", f"no Blender image named {self.mask_name!r}")
            return self._mask_from_image(img)
        image_given = bool(self.image_path or self.image_name)
        if self.use_alpha or image_given or s.mask_source == "ALPHA":
            if image is not None and image_io.alpha_mask(image_io.pixels(image)) is None:
                raise InputError("no_alpha")
            return None
        if s.mask_source == "FILE":
            if not s.mask_path:
                raise InputError("no_mask")
            return self._file(bpy.path.abspath(s.mask_path), "mask")
        if s.mask_image is None:
            raise InputError("no_mask")
        return self._mask_from_image(s.mask_image)

    @staticmethod
    def _mask_from_image(img: bpy.types.Image) -> bytes:
        try:
            mask = image_io.mask_from_pixels(image_io.pixels(img))
        except (RuntimeError, ValueError) as exc:
            raise InputError("bad_mask", f"{img.name}: {exc}") from None
        if not mask.any():
            raise InputError("empty_mask")
        return image_io.mask_png(mask)

    # -- run ------------------------------------------------------------------------------

    def execute(self, context: bpy.types.Context) -> set[str]:
        s = _settings(context)
        try:
            image, label, source, blender_image = self._image(context)
            mask = self._mask(context, blender_image)
        except InputError as exc:
            self.report({"ERROR"}, describe(exc.code, exc.message))
            return {"CANCELLED"}
        placement = (self.placement or s.placement).upper()
        if placement not in {"CURSOR", "CAMERA"}:
            self.report({"ERROR"}, f"Unknown placement {self.placement!r}; use CURSOR or CAMERA.")
            return {"CANCELLED"}
        request = JobRequest(
            image=image,
            mask=mask,
            options=self._options(context),
            label=self.label or label,
            meta={
                "scene": context.scene.name,
                "placement": placement,
                "camera": context.scene.camera.name if context.scene.camera else "",
                "source": source,
                "decimate": bool(s.add_decimate),
                "t0": time.monotonic(),
            },
        )
        rt = runtime.get()
        job = rt.manager.submit(request)
        blocking = self.blocking if self._given("blocking") else bool(bpy.app.background)
        if not blocking:
            runtime.ensure_timer()
            runtime.tick()
            self.report({"INFO"}, f"SAM 3D: generating '{request.label}'...")
            return {"FINISHED"}
        return self._run_blocking(context, job)

    def _run_blocking(self, context: bpy.types.Context, job: Job) -> set[str]:
        last = [""]

        def show(j: Job) -> None:
            if j.finished:
                return  # the outcome is reported once, below
            line = j.status_line()
            if line != last[0]:
                last[0] = line
                print(f"SAM 3D: {line}", file=sys.stdout, flush=True)

        rt = runtime.get()
        run_to_completion(rt.manager, job, timeout=self.timeout or None, on_update=show)
        obj = runtime.handle_finished(job, context)
        if job.phase == Phase.DONE and obj is not None:
            # The import ran nested inside this operator, where Blender skips its undo
            # push: push one explicitly so Undo removes the object.
            bpy.ops.ed.undo_push(message=f"SAM 3D: import {obj.name}")
            self.report(
                {"INFO"}, f"SAM 3D: '{obj.name}' added to the scene{importer.placement_note(obj)}."
            )
            return {"FINISHED"}
        if job.phase == Phase.CANCELLED:
            self.report({"WARNING"}, describe("cancelled"))
            return {"CANCELLED"}
        err = job.error or ErrorInfo("import_failed")
        self.report({"ERROR"}, err.sentence())
        return {"CANCELLED"}


class SAM3D_OT_cancel(bpy.types.Operator):
    """Cancel the running SAM 3D job"""

    bl_idname = "sam3d.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    local_job: IntProperty(name="Job", description="0: every running job", options=SKIP)

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.get()
        jobs = [rt.manager.get(self.local_job)] if self.local_job else rt.manager.active()
        jobs = [j for j in jobs if j is not None and not j.finished]
        if not jobs:
            self.report({"INFO"}, "No SAM 3D job is running.")
            return {"CANCELLED"}
        for job in jobs:
            rt.manager.cancel(job)
        runtime.ensure_timer()
        self.report({"INFO"}, "Cancelling...")
        return {"FINISHED"}


class SAM3D_OT_import_result(bpy.types.Operator):
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

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            if self.local_job:
                obj = self._import_job(context)
            elif self.job_id:
                obj = self._reimport(context)
                if obj is None:
                    self.report({"INFO"}, "SAM 3D: downloading the result again...")
                    return {"FINISHED"}
            else:
                self.report({"ERROR"}, "Nothing to import: give local_job or job_id.")
                return {"CANCELLED"}
        except InputError as exc:
            self.report({"ERROR"}, describe(exc.code, exc.message))
            return {"CANCELLED"}
        except ValueError as exc:  # a damaged result.json
            self.report({"ERROR"}, describe("no_result", str(exc)))
            return {"CANCELLED"}
        except (RuntimeError, OSError) as exc:
            self.report({"ERROR"}, describe("import_failed", str(exc)))
            return {"CANCELLED"}
        self.report({"INFO"}, f"SAM 3D: imported '{obj.name}'{importer.placement_note(obj)}.")
        return {"FINISHED"}

    def _import_job(self, context: bpy.types.Context) -> bpy.types.Object:
        job = runtime.get().manager.get(self.local_job)
        if job is None or job.phase != Phase.DONE or job.glb_path is None:
            raise InputError("no_result", f"job {self.local_job} has no result")
        meta = job.request.meta
        scene = bpy.data.scenes.get(meta.get("scene", "")) or context.scene
        placement = (self.placement or meta.get("placement") or "CURSOR").upper()
        camera = bpy.data.objects.get(meta.get("camera") or "") if placement == "CAMERA" else None
        provenance = _provenance(
            job.backend_id or "",
            job.result,
            job.request.options,
            job.request.source_sha256,
            meta.get("source", ""),
        )
        with context.temp_override(scene=scene):
            obj = importer.import_generated(
                context,
                job.glb_path,
                label=job.request.label,
                result=job.result,
                provenance=provenance,
                placement_mode=placement,
                camera=camera,
                decimate=bool(meta.get("decimate", True)),
            )
        seconds = time.monotonic() - float(meta.get("t0", time.monotonic()))
        meta["object_name"] = obj.name
        meta["seconds"] = seconds
        item = None
        if meta.get("reimport"):  # a History re-import that had to download again
            item = next((h for h in scene.sam3d.history if h.job_id == job.backend_id), None)
        if item is not None:
            item.object_name = obj.name
            item.glb_path = str(job.glb_path or "")
        else:
            _add_history(scene, job, obj, seconds)
        return obj

    def _reimport(self, context: bpy.types.Context) -> bpy.types.Object | None:
        """Import a History entry. Returns None when its files must be downloaded again
        and that happens in the background (the timer imports it when done)."""
        s = _settings(context)
        item = next((h for h in s.history if h.job_id == self.job_id), None)
        glb = Path(bpy.path.abspath(item.glb_path)) if item and item.glb_path else None
        if glb is None or not glb.is_file():
            glb = runtime.results_folder(self.job_id) / "result.glb"
        result_path = glb.with_name("result.json")
        options = item.options if item else {}
        if not glb.is_file():
            blocking = (
                self.blocking
                if self.properties.is_property_set("blocking")
                else bool(bpy.app.background)
            )
            placement = (self.placement or s.placement).upper()
            request = JobRequest(
                image=b"",
                options=options,
                label=item.label if item else self.job_id[:8],
                sha256=(item.source_sha256 if item else "") or "-",
                meta={
                    "scene": context.scene.name,
                    "placement": placement,
                    "camera": context.scene.camera.name if context.scene.camera else "",
                    "source": item.label if item else "",
                    "decimate": bool(s.add_decimate),
                    "t0": time.monotonic(),
                    "reimport": True,
                },
            )
            job = _fetch_again(self.job_id, request)
            if not blocking:
                runtime.ensure_timer()
                return None
            run_to_completion(runtime.get().manager, job, timeout=300)
            job.handled = True
            if job.phase != Phase.DONE or job.glb_path is None:
                err = job.error or ErrorInfo("no_result")
                raise InputError(err.code, err.message)
            glb, result_path = job.glb_path, job.glb_path.with_name("result.json")
        result = read_json(result_path) if result_path.is_file() else {}
        provenance = _provenance(
            self.job_id,
            result,
            options,
            item.source_sha256 if item else "",
            item.label if item else "",
        )
        obj = importer.import_generated(
            context,
            glb,
            label=item.label if item else self.job_id[:8],
            result=result,
            provenance=provenance,
            placement_mode=(self.placement or s.placement).upper(),
            decimate=s.add_decimate,
        )
        if item is not None:
            item.object_name = obj.name
            item.glb_path = str(glb)
        return obj


def _fetch_again(job_id: str, request: JobRequest) -> Job:
    """Queue the download of a job's GLB + result.json when the local copy is gone (a
    session job: the download runs in a background thread, like a generation's)."""
    rt = runtime.get()
    backend = rt.backend
    if backend is None or backend.poll() != BackendState.READY or backend.client() is None:
        raise InputError("no_result", "the backend is not running, and no local copy exists")
    return rt.manager.fetch(job_id, request)


def _provenance(job_id: str, result: dict, options: dict, sha: str, source: str) -> dict:
    engine = (
        result.get("engine")
        or (result.get("stats") or {}).get("engine")
        or options.get("engine")
        or ""
    )
    return {
        "job_id": job_id,
        "engine": engine if isinstance(engine, str) else json.dumps(engine),
        "seed": int(options.get("seed", 0)),
        "options": options,
        "source_sha256": sha,
        "source_image": source,
        "backend_version": str(result.get("backend_version") or result.get("version") or ""),
    }


def _add_history(scene: bpy.types.Scene, job: Job, obj: bpy.types.Object, seconds: float) -> None:
    s = scene.sam3d
    item = s.history.add()
    item.job_id = job.backend_id or ""
    item.label = job.request.label
    item.engine = str(obj.get("sam3d_engine", job.request.options.get("engine", "")))
    item.seed = int(job.request.options.get("seed", 0))
    item.options_json = json.dumps(job.request.options, sort_keys=True)
    item.glb_path = str(job.glb_path or "")
    item.source_sha256 = job.request.source_sha256
    item.object_name = obj.name
    item.created = time.time()
    item.seconds = seconds
    item.state = "done"
    s.history_index = len(s.history) - 1


class SAM3D_OT_backend_start(bpy.types.Operator):
    """Start (or restart) the SAM 3D backend"""

    bl_idname = "sam3d.backend_start"
    bl_label = "Start backend"
    bl_options = {"REGISTER"}

    restart: BoolProperty(name="Restart", options=SKIP)
    blocking: BoolProperty(name="Wait until ready", options=SKIP)

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.get()
        backend = rt.current_backend()
        if self.restart:
            backend.stop()
        backend.ensure_started()
        blocking = (
            self.blocking
            if self.properties.is_property_set("blocking")
            else bool(bpy.app.background)
        )
        if blocking:
            runtime.wait_for(lambda: backend.poll() != BackendState.STARTING, timeout=120)
        else:
            runtime.ensure_timer()
        if backend.state in (BackendState.ERROR, BackendState.NOT_INSTALLED):
            err = backend.error or ErrorInfo("backend_not_installed")
            self.report({"ERROR"}, err.sentence())
            return {"CANCELLED"}
        self.report(
            {"INFO"},
            "SAM 3D backend ready."
            if backend.state == BackendState.READY
            else "SAM 3D backend starting...",
        )
        return {"FINISHED"}


class SAM3D_OT_backend_stop(bpy.types.Operator):
    """Stop the SAM 3D backend (running jobs are cancelled)"""

    bl_idname = "sam3d.backend_stop"
    bl_label = "Stop backend"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        runtime.get().stop_backend()
        self.report({"INFO"}, "SAM 3D backend stopped.")
        return {"FINISHED"}


class SAM3D_OT_backend_install(bpy.types.Operator):
    """Install the backend into its own virtual environment (runs the bundled installer)"""

    bl_idname = "sam3d.backend_install"
    bl_label = "Install backend"
    bl_options = {"REGISTER"}

    profile: StringProperty(name="Profile", description="cuda or cpu", options=SKIP)
    venv: StringProperty(name="Venv folder", subtype="DIR_PATH", options=SKIP)
    blocking: BoolProperty(name="Wait", options=SKIP)
    dry_run: BoolProperty(
        name="Dry run", description="Only print the checks and commands", options=SKIP
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .prefs import get_preferences

        rt = runtime.get()
        if rt.installer is not None and rt.installer.state == InstallState.RUNNING:
            self.report({"WARNING"}, "The installer is already running.")
            return {"CANCELLED"}
        prefs = get_preferences(context)
        profile = self.profile or (prefs.install_profile if prefs else "cuda")
        venv = Path(self.venv) if self.venv else default_venv_dir(paths.user_dir())
        s = runtime.settings()
        if isinstance(rt.backend, ManagedBackend) and not self.dry_run:
            rt.stop_backend()  # the venv is about to change under it
        # The installer runs from (and pip-installs) a copy in the user folder, never
        # from the extension folder itself.
        staged = stage_source(paths.extension_root(), paths.user_dir("installer_source"))
        extra = ["--source", str(staged)] if staged is not None else []
        if self.dry_run:
            extra.append("--dry-run")
        run = InstallerRun(
            sys.executable,
            staged or paths.extension_root(),
            venv,
            profile,
            s.cache_dir / "logs" / "install.log",
            extra_args=extra,
        )
        rt.installer = run
        run.start()
        blocking = (
            self.blocking
            if self.properties.is_property_set("blocking")
            else bool(bpy.app.background)
        )
        if blocking:
            runtime.wait_for(lambda: run.state != InstallState.RUNNING)
            if run.state != InstallState.SUCCEEDED:
                self.report({"ERROR"}, describe("installer_failed", run.summary()))
                return {"CANCELLED"}
            self.report({"INFO"}, "Backend installed.")
            return {"FINISHED"}
        runtime.ensure_timer()
        self.report({"INFO"}, "Installing the SAM 3D backend...")
        return {"FINISHED"}


class SAM3D_OT_new_mask(bpy.types.Operator):
    """Create a black mask image the size of the chosen image, to paint the object white"""

    bl_idname = "sam3d.new_mask"
    bl_label = "New mask"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        s = _settings(context)
        if s.image_source == "IMAGE" and s.image is not None:
            w, h = s.image.size
            name = f"{s.image.name} mask"
        elif s.image_source == "FILE" and s.image_path:
            try:
                with image_io.loaded_image(bpy.path.abspath(s.image_path)) as img:
                    w, h = img.size
            except RuntimeError as exc:
                self.report({"ERROR"}, describe("image_unreadable", str(exc)))
                return {"CANCELLED"}
            name = f"{Path(s.image_path).stem} mask"
        else:
            self.report({"ERROR"}, describe("no_image"))
            return {"CANCELLED"}
        if w == 0 or h == 0:
            self.report({"ERROR"}, describe("image_unreadable", "the image has no pixels"))
            return {"CANCELLED"}
        mask = image_io.new_mask_image(name, w, h)
        s.mask_image = mask
        s.mask_source = "IMAGE"
        space = context.space_data
        if space is not None and space.type == "IMAGE_EDITOR":
            space.image = mask
            space.ui_mode = "PAINT"
        self.report({"INFO"}, f"Paint the object white in '{mask.name}' (Image Editor, Paint).")
        return {"FINISHED"}


class SAM3D_OT_mask_coverage(bpy.types.Operator):
    """Measure how much of the image the mask covers now (large images are not re-read
    while being painted)"""

    bl_idname = "sam3d.mask_coverage"
    bl_label = "Refresh"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        s = _settings(context)
        if s.mask_source == "IMAGE" and s.mask_image is not None:
            frac, why = image_io.image_coverage(s.mask_image, use_alpha=False, force=True)
        elif s.mask_source == "ALPHA" and s.image_source == "IMAGE" and s.image is not None:
            frac, why = image_io.image_coverage(s.image, use_alpha=True, force=True)
        else:
            return {"CANCELLED"}
        self.report({"INFO"}, image_io.coverage_text(frac, why)[0])
        runtime.redraw()
        return {"FINISHED"}


class SAM3D_OT_use_editor_image(bpy.types.Operator):
    """Use the image shown in this Image Editor as the SAM 3D source image"""

    bl_idname = "sam3d.use_editor_image"
    bl_label = "Use this image"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        space = context.space_data
        return space is not None and space.type == "IMAGE_EDITOR" and space.image is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        s = _settings(context)
        s.image = context.space_data.image
        s.image_source = "IMAGE"
        return {"FINISHED"}


class SAM3D_OT_open_folder(bpy.types.Operator):
    """Open the folder holding this job's result files"""

    bl_idname = "sam3d.open_folder"
    bl_label = "Open folder"
    bl_options = {"REGISTER"}

    job_id: StringProperty(options=SKIP)
    path: StringProperty(subtype="DIR_PATH", options=SKIP)

    def execute(self, context: bpy.types.Context) -> set[str]:
        folder = Path(self.path) if self.path else runtime.results_folder(self.job_id)
        if not folder.is_dir():
            self.report({"ERROR"}, describe("no_result", str(folder)))
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=str(folder))
        return {"FINISHED"}


class SAM3D_OT_clear_notice(bpy.types.Operator):
    """Dismiss this message"""

    bl_idname = "sam3d.clear_notice"
    bl_label = "Dismiss"

    def execute(self, context: bpy.types.Context) -> set[str]:
        runtime.get().notice = None
        return {"FINISHED"}


classes = (
    SAM3D_OT_generate,
    SAM3D_OT_cancel,
    SAM3D_OT_import_result,
    SAM3D_OT_backend_start,
    SAM3D_OT_backend_stop,
    SAM3D_OT_backend_install,
    SAM3D_OT_new_mask,
    SAM3D_OT_mask_coverage,
    SAM3D_OT_use_editor_image,
    SAM3D_OT_open_folder,
    SAM3D_OT_clear_notice,
)
