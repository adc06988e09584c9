"""Photo to scene: ``bpy.ops.sam3d.generate_scene`` and friends, plus the "Photo to scene"
sub-panel.

One photo + N masks become ONE backend scene job (the backend does the per-image work once
and reports progress per part; a mask that fails costs only its part), then N posed objects
under one camera that matches the photo, with the photo as the camera's background
(:mod:`.scene_import`).

The job runs through the add-on's own machinery - the session's
:class:`~.job_manager.JobManager` and backend (:mod:`.runtime`) - so the backend is started,
reused and stopped exactly as for single objects. Scene jobs are marked ``handled`` at
submit time because THIS module imports them (:func:`runtime.tick` would otherwise import
the scene GLB as one object): in the UI a timer (:func:`scene_tick`) steps the manager and
runs the undoable ``sam3d.import_scene`` when a scene job ends; in background mode, in
tests and in ``scripts/sam3d_batch.py`` :func:`run_blocking` steps it in a loop.

Inputs: the photo comes from the operator's ``image_path``/``image_name`` or the main
panel's image; the masks from ``mask_dir`` (a folder of ``0.png, 1.png, ...``, the layout of
upstream's examples), from ``files`` + ``directory`` (several files, e.g. picked in the
file browser), or from the sub-panel's mask list. A mask is the file's alpha when it has
transparency, else its brightness (white = object) - exactly how the backend reads masks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import image_io, runtime, scene_import
from .backend_process import BackendState
from .client import BackendClientError
from .importer import window_override
from .job_manager import Job, JobRequest, Phase, read_json, run_to_completion
from .messages import ErrorInfo, describe
from .operators import JobOptionOverrides

SKIP = {"SKIP_SAVE"}
#: Extensions accepted as mask files in a folder (the backend decodes them all).
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".exr")
#: The backend's limit on masks per scene (``backend/server.py: MAX_SCENE_MASKS``) is
#: enforced there; the add-on only needs at least one.
MIN_MASKS = 1


class SceneInputError(Exception):
    """A problem with the chosen photo or masks, with an add-on error code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message


# -- inputs --------------------------------------------------------------------------------


@dataclass
class SceneInputs:
    """What one scene job sends and how its import is named.

    ``image``: the photo's encoded bytes; ``masks``: encoded mask images (one per object,
    same size/aspect as the photo); ``label``: the scene's name (collection, camera);
    ``names``: object name per mask ("" = ``"<label> <index>"``); ``source``: the photo's
    path or Blender image name (provenance); ``photo``: the camera background - a Blender
    image, or a file path that is loaded and packed at import.
    """

    image: bytes
    masks: list[bytes]
    label: str
    names: list[str] = field(default_factory=list)
    source: str = ""
    photo: Any = None


def mask_files_in(folder: str | Path) -> list[Path]:
    """The mask files of a folder in object order: ``0.png, 1.png, ...`` (numeric names,
    sorted as numbers). Raises :class:`SceneInputError` ``no_mask`` when there are none."""
    d = Path(bpy.path.abspath(str(folder)))
    if not d.is_dir():
        raise SceneInputError("no_mask", f"mask folder not found: {d}")
    files = [p for p in d.iterdir() if p.suffix.lower() in MASK_SUFFIXES and p.stem.isdigit()]
    if not files:
        raise SceneInputError("no_mask", f"no mask files named 0.png, 1.png, ... in {d}")
    return sorted(files, key=lambda p: int(p.stem))


def read_file(path: str | Path, what: str) -> bytes:
    """A photo or mask file as bytes for the backend (PNG/JPEG as they are; other formats
    written as PNG by Blender)."""
    try:
        return image_io.file_bytes(str(path))
    except FileNotFoundError:
        raise SceneInputError(
            "no_image" if what == "image" else "no_mask", f"{what} file not found: {path}"
        ) from None
    except (RuntimeError, ValueError, OSError) as exc:
        raise SceneInputError("image_unreadable", f"{path}: {exc}") from None


def mask_bytes_from_image(img: bpy.types.Image) -> bytes:
    """A Blender image used as a mask -> black/white PNG bytes (alpha when it has
    transparency, else brightness; white = object)."""
    try:
        mask = image_io.mask_from_pixels(image_io.pixels(img))
    except (RuntimeError, ValueError) as exc:
        raise SceneInputError("bad_mask", f"{img.name}: {exc}") from None
    if not mask.any():
        raise SceneInputError("empty_mask", f"the mask image {img.name!r} is empty")
    return image_io.mask_png(mask)


def inputs_from_files(
    image_path: str | Path,
    mask_paths: Sequence[str | Path],
    *,
    label: str = "",
    names: Sequence[str] | None = None,
) -> SceneInputs:
    """Scene inputs from a photo file and mask files (object order = ``mask_paths`` order)."""
    if not mask_paths:
        raise SceneInputError("no_mask", "no mask files given")
    image_path = Path(bpy.path.abspath(str(image_path)))
    image = read_file(image_path, "image")
    masks = [read_file(Path(bpy.path.abspath(str(m))), "mask") for m in mask_paths]
    return SceneInputs(
        image=image,
        masks=masks,
        label=label or image_path.stem,
        names=list(names) if names is not None else [],
        source=str(image_path),
        photo=str(image_path),
    )


# -- running a scene job ---------------------------------------------------------------------


@dataclass
class SceneOutcome:
    """How one scene job ended.

    ``imported`` is None when nothing was imported (``error`` says why). ``parts``: the
    result's parts (index, state, error, pose, stats). ``scene_glb``: the whole scene as
    one GLB (objects as separate nodes + the camera), ``part_glbs``: part index -> GLB.
    ``seconds``: ``{"job": submit -> result downloaded, "import": Blender import,
    "total": both}`` wall-clock seconds.
    """

    job: Job
    imported: scene_import.ImportedScene | None = None
    error: ErrorInfo | None = None
    result: dict[str, Any] = field(default_factory=dict)
    scene_glb: Path | None = None
    part_glbs: dict[int, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def parts(self) -> list[dict[str, Any]]:
        return scene_import.scene_parts(self.result)

    @property
    def ok(self) -> bool:
        return self.imported is not None and bool(self.imported.objects)


#: local job id -> True while a UI scene job waits for its import (see :func:`scene_tick`).
_pending: dict[int, bool] = {}


def submit(
    inputs: SceneInputs,
    options: dict[str, Any],
    *,
    scene_name: str = "",
    camera_height: float | None = None,
    decimate: bool = True,
    make_scene_camera: bool = True,
) -> Job:
    """Queue a scene job with the session's job manager (never blocks).

    ``options``: the backend ``JobOptions`` (engine, seed, quality, target_faces, bake,
    texture_size). The rest is kept for the import (job ``meta``).
    """
    if len(inputs.masks) < MIN_MASKS:
        raise SceneInputError("no_mask", "a scene needs at least one mask")
    request = JobRequest(
        image=inputs.image,
        masks=list(inputs.masks),
        options=dict(options),
        label=inputs.label,
        meta={
            "kind": "scene",
            "scene": scene_name,
            "source": inputs.source,
            # A Blender image by name, never by reference: the job may outlive the file.
            "photo": _photo_ref(inputs.photo),
            "names": list(inputs.names),
            "camera_height": camera_height,
            "decimate": bool(decimate),
            "make_scene_camera": bool(make_scene_camera),
            "t0": time.monotonic(),
        },
    )
    job = runtime.get().manager.submit(request)
    job.handled = True  # this module imports it, not runtime.tick (see module doc)
    return job


def finish(context: bpy.types.Context, job: Job) -> SceneOutcome:
    """After ``job`` has ended: fetch the part GLBs and build the scene in
    ``context.scene`` (or report why not). Blocking; main thread."""
    meta = job.request.meta
    t_job = time.monotonic() - float(meta.get("t0", time.monotonic()))
    outcome = SceneOutcome(job=job, result=dict(job.result or {}))
    outcome.seconds = {"job": t_job}
    if job.phase == Phase.CANCELLED:
        outcome.error = ErrorInfo("cancelled")
        return outcome
    if job.phase != Phase.DONE or job.glb_path is None:
        outcome.error = job.error or ErrorInfo("internal_error")
        return outcome
    outcome.scene_glb = job.glb_path
    folder = job.glb_path.parent
    t0 = time.monotonic()
    try:
        outcome.part_glbs = _part_glbs(job, folder)
    except BackendClientError as exc:
        outcome.error = ErrorInfo(exc.code, f"downloading the parts: {exc.message}")
        return outcome
    outcome.seconds["download_parts"] = time.monotonic() - t0
    t1 = time.monotonic()
    try:
        outcome.imported = scene_import.import_scene(
            context,
            outcome.result,
            outcome.part_glbs,
            label=job.request.label,
            photo=_photo(meta.get("photo")),
            names=meta.get("names") or None,
            camera_height=meta.get("camera_height"),
            make_scene_camera=bool(meta.get("make_scene_camera", True)),
            decimate=bool(meta.get("decimate", True)),
            provenance={
                "job_id": job.backend_id or "",
                "engine": str(outcome.result.get("engine") or ""),
                "seed": int(job.request.options.get("seed", 0)),
                "options": job.request.options,
                "source_sha256": job.request.source_sha256,
                "source_image": str(meta.get("source") or ""),
                "backend_version": str(outcome.result.get("backend_version") or ""),
                "scene": job.request.label,
            },
        )
    except (RuntimeError, OSError, ValueError) as exc:
        outcome.error = ErrorInfo("import_failed", str(exc))
        return outcome
    outcome.seconds["import"] = time.monotonic() - t1
    outcome.seconds["total"] = time.monotonic() - float(meta.get("t0", t0))
    if not outcome.imported.objects:
        first = next(iter(outcome.imported.failed.values()), {})
        outcome.error = ErrorInfo(
            str(first.get("code") or "internal_error"), str(first.get("message") or "")
        )
    meta["collection"] = outcome.imported.collection.name
    meta["objects"] = [o.name for o in outcome.imported.objects.values()]
    return outcome


def _part_glbs(job: Job, folder: Path) -> dict[int, Path]:
    """Part GLBs of a finished job, downloaded next to its scene GLB when not there yet."""
    local = scene_import.local_part_glbs(job.result, folder)
    done = [p for p in scene_import.scene_parts(job.result) if p.get("state") == "done"]
    if len(local) == len(done):
        return local
    backend = runtime.get().current_backend()
    client = backend.client()
    if client is None:
        raise BackendClientError("backend_unreachable", "the backend is not running")
    assert job.backend_id is not None
    return scene_import.fetch_part_glbs(client, job.backend_id, job.result, folder)


def _photo_ref(photo: Any) -> Any:
    """What a job keeps of its photo: ``{"image": name}`` for a Blender image, else the
    path (or None)."""
    if isinstance(photo, bpy.types.Image):
        return {"image": photo.name}
    return photo


def _photo(photo: Any) -> Any:
    """The job's photo for the background: a Blender image (by name, or by reference when
    a caller passed one, if still alive), a file path, or None."""
    if isinstance(photo, dict):
        return bpy.data.images.get(str(photo.get("image") or ""))
    if isinstance(photo, bpy.types.Image):
        try:
            photo.name  # noqa: B018 - raises ReferenceError when the image was removed
        except ReferenceError:
            return None
        return photo
    if isinstance(photo, str) and photo and Path(photo).is_file():
        return photo
    return None


def run_blocking(
    context: bpy.types.Context,
    inputs: SceneInputs,
    options: dict[str, Any],
    *,
    timeout: float | None = None,
    on_update: Callable[[Job], None] | None = None,
    camera_height: float | None = None,
    decimate: bool = True,
    make_scene_camera: bool = True,
) -> SceneOutcome:
    """Submit, wait (stepping the session's job manager) and import: the whole scene in one
    call, for background mode, tests and the batch script."""
    job = submit(
        inputs,
        options,
        scene_name=context.scene.name,
        camera_height=camera_height,
        decimate=decimate,
        make_scene_camera=make_scene_camera,
    )
    run_to_completion(runtime.get().manager, job, timeout=timeout, on_update=on_update)
    return finish(context, job)


def outcome_summary(outcome: SceneOutcome) -> tuple[str, str]:
    """(report level, one sentence) for an operator report / the panel notice."""
    if outcome.imported is None or not outcome.imported.objects:
        err = outcome.error or ErrorInfo("internal_error")
        return "ERROR", err.sentence()
    imp = outcome.imported
    n, total = len(imp.objects), len(imp.objects) + len(imp.failed)
    text = f"'{imp.label}': {n} of {total} objects placed under '{imp.camera.name}'."
    if imp.failed:
        fails = "; ".join(
            f"mask {i}: {describe(str(e.get('code')), str(e.get('message') or ''))}"
            for i, e in sorted(imp.failed.items())
        )
        return "WARNING", f"{text} Failed: {fails}"
    return "INFO", text


def scene_tick() -> float | None:
    """Timer body (UI): advance the session's jobs; import finished scene jobs as undoable
    steps. Returns seconds to the next call, None when no scene job is left."""
    rt = runtime.get()
    try:
        wait = rt.manager.step()
        for local_id in list(_pending):
            job = rt.manager.get(local_id)
            if job is None:
                _pending.pop(local_id, None)
                continue
            if not job.finished:
                continue
            _pending.pop(local_id, None)
            ctx = bpy.context
            with ctx.temp_override(**window_override(ctx)):
                try:
                    bpy.ops.sam3d.import_scene("EXEC_DEFAULT", True, local_job=local_id)
                except RuntimeError as exc:  # the operator reported an error
                    rt.notify("ERROR", str(exc).removeprefix("Error: ").strip())
    except Exception as exc:  # a timer that raises is removed by Blender: report, go on
        rt.notify("ERROR", f"Internal error in SAM 3D photo to scene: {exc}")
        import traceback

        traceback.print_exc()
    runtime.redraw()
    if not _pending:
        return None
    return min(max(wait or 0.1, 0.05), 0.25)


def ensure_scene_timer() -> None:
    if not bpy.app.timers.is_registered(scene_tick):
        bpy.app.timers.register(scene_tick, first_interval=0.05, persistent=True)


def forget_pending() -> int:
    """Drop the scene jobs waiting for their import (a file is being opened); returns how
    many there were."""
    n = len(_pending)
    _pending.clear()
    return n


def stop_scene_timer() -> None:
    if bpy.app.timers.is_registered(scene_tick):
        bpy.app.timers.unregister(scene_tick)
    _pending.clear()


# -- properties ----------------------------------------------------------------------------


class Sam3DSceneMask(bpy.types.PropertyGroup):
    """One mask of the sub-panel's list: a Blender image, or a file when no image is set."""

    image: PointerProperty(name="Mask image", type=bpy.types.Image)
    path: StringProperty(name="Mask file", subtype="FILE_PATH")

    def label(self) -> str:
        if self.image is not None:
            return self.image.name
        return Path(self.path).stem if self.path else ""


class Sam3DSceneSettings(bpy.types.PropertyGroup):
    """The "Photo to scene" sub-panel's settings (``scene.sam3d_scene``)."""

    mask_source: EnumProperty(
        name="Masks from",
        items=[
            ("LIST", "Mask list", "Mask images or files chosen one by one"),
            ("FOLDER", "Folder", "A folder of masks named 0.png, 1.png, ..."),
        ],
        default="LIST",
    )
    masks: CollectionProperty(type=Sam3DSceneMask)
    mask_dir: StringProperty(name="Mask folder", subtype="DIR_PATH")
    camera_height: FloatProperty(
        name="Camera height",
        description=(
            "Metres above the ground (z = 0) for the new camera; negative: the engine's own "
            "assumption (preview: 1.2 m, others: at the origin)"
        ),
        default=-1.0,
        soft_min=-1.0,
        soft_max=10.0,
        unit="LENGTH",
    )
    make_scene_camera: BoolProperty(
        name="Make it the scene camera",
        description="Look through the new camera and use the photo's resolution for renders",
        default=True,
    )

    @classmethod
    def register(cls) -> None:
        bpy.types.Scene.sam3d_scene = PointerProperty(type=cls)

    @classmethod
    def unregister(cls) -> None:
        stop_scene_timer()  # the add-on is going away: no timer may outlive it
        del bpy.types.Scene.sam3d_scene


# -- operators -------------------------------------------------------------------------------


class SAM3D_OT_generate_scene(JobOptionOverrides, bpy.types.Operator):
    """Turn every masked object of one photo into a posed 3D object under a camera that
    matches the photo"""

    bl_idname = "sam3d.generate_scene"
    bl_label = "Generate scene"
    bl_options = {"REGISTER"}

    image_path: StringProperty(name="Image file", subtype="FILE_PATH", options=SKIP)
    image_name: StringProperty(name="Blender image", options=SKIP)
    mask_dir: StringProperty(
        name="Mask folder",
        description="Masks named 0.png, 1.png, ...",
        subtype="DIR_PATH",
        options=SKIP,
    )
    directory: StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE", "HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"SKIP_SAVE"})
    mask_names: StringProperty(
        name="Blender mask images",
        description="Names of Blender images, separated by ';'",
        options=SKIP,
    )
    camera_height: FloatProperty(
        name="Camera height",
        description="Metres; negative: the engine's assumption",
        default=-1.0,
        options=SKIP,
    )
    label: StringProperty(name="Scene name", options=SKIP)
    blocking: BoolProperty(
        name="Wait", description="Wait for the scene (default in background mode)", options=SKIP
    )
    timeout: FloatProperty(name="Timeout (s)", description="0: no limit", min=0.0, options=SKIP)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and hasattr(context.scene, "sam3d")

    # inputs
    def _photo(self, context: bpy.types.Context) -> tuple[bytes, str, str, Any]:
        """(bytes, label, source, background photo)."""
        s = context.scene.sam3d
        path = self.image_path or (
            s.image_path if s.image_source == "FILE" and not self.image_name else ""
        )
        if path:
            path = bpy.path.abspath(path)
            return read_file(path, "image"), Path(path).stem, path, path
        img = bpy.data.images.get(self.image_name) if self.image_name else s.image
        if self.image_name and img is None:
            raise SceneInputError("no_image", f"no Blender image named {self.image_name!r}")
        if img is None:
            raise SceneInputError("no_image")
        try:
            data = image_io.image_png(img)
        except (RuntimeError, ValueError, OSError) as exc:
            raise SceneInputError("image_unreadable", f"{img.name}: {exc}") from None
        return data, Path(img.name).stem or img.name, img.name, img

    def _masks(self, context: bpy.types.Context) -> tuple[list[bytes], list[str]]:
        """(mask bytes, object names) in object order."""
        if self.mask_dir:
            return [read_file(p, "mask") for p in mask_files_in(self.mask_dir)], []
        if len(self.files) and any(f.name for f in self.files):
            base = bpy.path.abspath(self.directory) if self.directory else ""
            paths = [Path(base) / f.name for f in self.files if f.name]
            return [read_file(p, "mask") for p in paths], [p.stem for p in paths]
        if self.mask_names:
            masks, names = [], []
            for name in (n.strip() for n in self.mask_names.split(";")):
                if not name:
                    continue
                img = bpy.data.images.get(name)
                if img is None:
                    raise SceneInputError("no_mask", f"no Blender image named {name!r}")
                masks.append(mask_bytes_from_image(img))
                names.append(Path(name).stem)
            return masks, names
        ss = context.scene.sam3d_scene
        if ss.mask_source == "FOLDER":
            if not ss.mask_dir:
                raise SceneInputError("no_mask", "choose the mask folder")
            return [read_file(p, "mask") for p in mask_files_in(ss.mask_dir)], []
        masks, names = [], []
        for item in ss.masks:
            if item.image is not None:
                masks.append(mask_bytes_from_image(item.image))
            elif item.path:
                masks.append(read_file(bpy.path.abspath(item.path), "mask"))
            else:
                continue
            names.append(Path(item.label()).stem)
        return masks, names

    def execute(self, context: bpy.types.Context) -> set[str]:
        ss = context.scene.sam3d_scene
        try:
            image, label, source, photo = self._photo(context)
            masks, names = self._masks(context)
            if not masks:
                raise SceneInputError("no_mask", "add at least one mask")
        except SceneInputError as exc:
            self.report({"ERROR"}, describe(exc.code, exc.message))
            return {"CANCELLED"}
        inputs = SceneInputs(image, masks, self.label or label, names, source, photo)
        height = self.camera_height if self._given("camera_height") else ss.camera_height
        kw = dict(
            camera_height=None if height < 0 else float(height),
            decimate=bool(context.scene.sam3d.add_decimate),
            make_scene_camera=bool(ss.make_scene_camera),
        )
        blocking = self.blocking if self._given("blocking") else bool(bpy.app.background)
        if blocking:
            last = [""]

            def show(j: Job) -> None:
                line = j.status_line()
                if line != last[0]:
                    last[0] = line
                    print(f"SAM 3D scene: {line}", file=sys.stdout, flush=True)

            outcome = run_blocking(
                context,
                inputs,
                self._options(context),
                timeout=self.timeout or None,
                on_update=show,
                **kw,
            )
            level, text = outcome_summary(outcome)
            self.report({level}, f"SAM 3D: {text}")
            return {"FINISHED"} if outcome.ok else {"CANCELLED"}
        job = submit(inputs, self._options(context), scene_name=context.scene.name, **kw)
        _pending[job.local_id] = True
        ensure_scene_timer()
        scene_tick()
        self.report({"INFO"}, f"SAM 3D: generating scene '{inputs.label}' ({len(masks)} masks)...")
        return {"FINISHED"}


class SAM3D_OT_import_scene(bpy.types.Operator):
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

    def _given(self, name: str) -> bool:
        return self.properties.is_property_set(name)

    def execute(self, context: bpy.types.Context) -> set[str]:
        if self.local_job:
            job = runtime.get().manager.get(self.local_job)
            if job is None or not job.finished:
                self.report({"ERROR"}, describe("no_result", f"job {self.local_job}"))
                return {"CANCELLED"}
            scene = bpy.data.scenes.get(job.request.meta.get("scene") or "") or context.scene
            with context.temp_override(scene=scene):
                outcome = finish(context, job)
        elif self.job_id:
            try:
                outcome = self._reimport(context)
            except BackendClientError as exc:
                self.report({"ERROR"}, describe(exc.code, exc.message))
                return {"CANCELLED"}
            except ValueError as exc:  # a damaged result.json
                self.report({"ERROR"}, describe("no_result", str(exc)))
                return {"CANCELLED"}
            if outcome is None:
                self.report({"INFO"}, "SAM 3D: downloading the scene again...")
                return {"FINISHED"}
        else:
            self.report({"ERROR"}, "Nothing to import: give local_job or job_id.")
            return {"CANCELLED"}
        level, text = outcome_summary(outcome)
        self.report({level}, f"SAM 3D: {text}")
        if level != "ERROR":
            runtime.get().notify(level, text)
        return {"FINISHED"} if outcome.ok else {"CANCELLED"}

    def _reimport(self, context: bpy.types.Context) -> SceneOutcome | None:
        """A scene job by backend id: from the local results folder, else downloaded (in
        the background, like a generation: None is returned and the scene timer imports it
        once the files are here; blocking in background mode or with ``blocking``)."""
        folder = runtime.results_folder(self.job_id)
        result_path = folder / "result.json"
        glb = folder / "result.glb"
        photo = bpy.path.abspath(self.image_path) if self.image_path else None
        label = self.label or f"scene {self.job_id[:8]}"
        if not (result_path.is_file() and glb.is_file()):
            rt = runtime.get()
            backend = rt.backend
            if backend is None or backend.poll() != BackendState.READY:
                raise BackendClientError("backend_unreachable", "the backend is not running")
            request = JobRequest(
                image=b"",
                label=label,
                sha256="-",
                meta={
                    "kind": "scene",
                    "scene": context.scene.name,
                    "photo": photo,
                    "t0": time.monotonic(),
                    "source": photo or "",
                },
            )
            job = rt.manager.fetch(self.job_id, request)
            job.handled = True  # imported here or by scene_tick, not by runtime.tick
            blocking = self.blocking if self._given("blocking") else bool(bpy.app.background)
            if not blocking:
                _pending[job.local_id] = True
                ensure_scene_timer()
                return None
            run_to_completion(rt.manager, job, timeout=300)
            return finish(context, job)
        result = read_json(result_path)
        job = Job(
            0,
            JobRequest(
                image=b"",
                masks=[],
                options=dict(result.get("options") or {}),
                label=label,
                meta={"photo": photo, "t0": time.monotonic(), "source": photo or ""},
            ),
            phase=Phase.DONE,
            backend_id=self.job_id,
            glb_path=glb,
            result=result,
        )
        return finish(context, job)


class SAM3D_OT_scene_add_masks(bpy.types.Operator):
    """Add mask files to the photo-to-scene list (select several in the file browser)"""

    bl_idname = "sam3d.scene_add_masks"
    bl_label = "Add mask files"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE", "HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"SKIP_SAVE"})
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        ss = context.scene.sam3d_scene
        added = 0
        for f in self.files:
            if not f.name:
                continue
            item = ss.masks.add()
            item.path = str(Path(self.directory) / f.name)
            added += 1
        if not added:
            self.report({"WARNING"}, "No mask files chosen.")
            return {"CANCELLED"}
        ss.mask_source = "LIST"
        return {"FINISHED"}


class SAM3D_OT_scene_mask_add(bpy.types.Operator):
    """Add a row for a Blender mask image to the photo-to-scene list"""

    bl_idname = "sam3d.scene_mask_add"
    bl_label = "Add mask image"
    bl_options = {"REGISTER", "UNDO"}

    image_name: StringProperty(name="Blender image", options=SKIP)

    def execute(self, context: bpy.types.Context) -> set[str]:
        ss = context.scene.sam3d_scene
        item = ss.masks.add()
        if self.image_name:
            item.image = bpy.data.images.get(self.image_name)
        ss.mask_source = "LIST"
        return {"FINISHED"}


class SAM3D_OT_scene_mask_remove(bpy.types.Operator):
    """Remove this mask from the photo-to-scene list (-1: clear the list)"""

    bl_idname = "sam3d.scene_mask_remove"
    bl_label = "Remove mask"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(name="Index", default=-1, options=SKIP)

    def execute(self, context: bpy.types.Context) -> set[str]:
        ss = context.scene.sam3d_scene
        if self.index < 0:
            ss.masks.clear()
        elif self.index < len(ss.masks):
            ss.masks.remove(self.index)
        return {"FINISHED"}


# -- panel ------------------------------------------------------------------------------------


def draw_scene_panel(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The "Photo to scene" sub-panel (the photo is the main panel's image)."""
    ss = context.scene.sam3d_scene
    col = layout.column(align=True)
    col.row(align=True).prop(ss, "mask_source", expand=True)
    if ss.mask_source == "FOLDER":
        col.prop(ss, "mask_dir", text="")
    else:
        for i, item in enumerate(ss.masks):
            row = col.row(align=True)
            row.label(text=f"{i}")
            if item.path and item.image is None:
                row.prop(item, "path", text="")
            else:
                row.prop(item, "image", text="")
            op = row.operator("sam3d.scene_mask_remove", text="", icon="X")
            op.index = i
        row = col.row(align=True)
        row.operator("sam3d.scene_mask_add", text="Image", icon="ADD")
        row.operator("sam3d.scene_add_masks", text="Files...", icon="FILEBROWSER")
        if len(ss.masks):
            op = row.operator("sam3d.scene_mask_remove", text="", icon="TRASH")
            op.index = -1
    col = layout.column(align=True)
    col.prop(ss, "camera_height")
    col.prop(ss, "make_scene_camera")
    rt = runtime.get()
    scene_jobs = [j for j in rt.manager.active() if j.request.meta.get("kind") == "scene"]
    if scene_jobs:
        job = scene_jobs[0]
        box = layout.column(align=True)
        box.progress(factor=float(job.progress), type="BAR", text=job.status_line())
        row = box.row(align=True)
        row.label(text=f"{job.request.label}: {job.request.mask_count} masks")
        op = row.operator("sam3d.cancel", icon="X")
        op.local_job = job.local_id
    else:
        row = layout.row()
        row.scale_y = 1.3
        row.operator("sam3d.generate_scene", icon="SCENE_DATA")


def _scene_panel(space: str, prefix: str) -> type:
    class ScenePanel(bpy.types.Panel):
        bl_idname = f"SAM3D_PT_{prefix}_scene"
        bl_label = "Photo to scene"
        bl_space_type = space
        bl_region_type = "UI"
        bl_category = "SAM 3D"
        bl_parent_id = f"SAM3D_PT_{prefix}_main"
        bl_options = {"DEFAULT_CLOSED"}

        @classmethod
        def poll(cls, context: bpy.types.Context) -> bool:
            scene = context.scene
            return scene is not None and hasattr(scene, "sam3d") and hasattr(scene, "sam3d_scene")

        def draw(self, context: bpy.types.Context) -> None:
            draw_scene_panel(self.layout, context)

    ScenePanel.__name__ = ScenePanel.__qualname__ = ScenePanel.bl_idname
    return ScenePanel


classes = (
    Sam3DSceneMask,
    Sam3DSceneSettings,
    SAM3D_OT_generate_scene,
    SAM3D_OT_import_scene,
    SAM3D_OT_scene_add_masks,
    SAM3D_OT_scene_mask_add,
    SAM3D_OT_scene_mask_remove,
    _scene_panel("VIEW_3D", "view3d"),
    _scene_panel("IMAGE_EDITOR", "image"),
)
