"""Operators that start and stop jobs: ``sam3d.generate``, ``sam3d.generate_scene``,
``sam3d.cancel``, ``sam3d.clear_notice`` (the names pipelines depend on).

``generate`` turns the chosen image + mask into one object; ``generate_scene`` turns one
photo + N masks into ONE backend scene job (the backend does the per-image work once; a
mask that fails costs only its part), then N posed objects under one camera that matches
the photo. Both wait or hand the job to the timer as :class:`.mixins.WaitOrTimer` decides,
and both reach the scene through ``finish.deliver``.

Inputs: the photo comes from the operator's ``image_path``/``image_name`` or the panel's
image. ``generate``'s mask from ``mask_path``/``mask_name``/``use_alpha`` or the panel;
``generate_scene``'s masks from ``mask_dir`` (a folder of ``0.png, 1.png, ...``), from
``files`` + ``directory`` (several files, e.g. picked in the file browser), from
``mask_names`` (Blender images) or the "Photo to scene" sub-panel's list.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, CollectionProperty, FloatProperty, IntProperty, StringProperty

from .. import job_inputs, session, timer
from ..core.jobs import ImportSettings, JobKind, JobRequest
from ..core.masks import mask_files_in
from ..core.messages import InputError
from .mixins import SKIP, AssetOverrides, JobOptionOverrides, Pending, WaitOrTimer


def _blender_image(name: str, code: str) -> bpy.types.Image:
    img = bpy.data.images.get(name)
    if img is None:
        raise InputError(code, f"no Blender image named {name!r}")
    return img


def _scene_settings(context: bpy.types.Context, source: str) -> ImportSettings:
    return ImportSettings(
        scene=context.scene.name, source=source, decimate=bool(context.scene.sam3d.add_decimate)
    )


class GenerateOperator(WaitOrTimer, JobOptionOverrides, AssetOverrides):
    """What ``generate`` and ``generate_scene`` share: the photo (``image_path`` or
    ``image_name``, else the panel's), the job options, "Mark as asset", ``timeout`` when
    waiting."""

    image_path: StringProperty(name="Image file", subtype="FILE_PATH", options=SKIP)
    image_name: StringProperty(name="Blender image", options=SKIP)
    timeout: FloatProperty(name="Timeout (s)", description="0: no limit", min=0.0, options=SKIP)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and hasattr(context.scene, "sam3d")

    def photo(self, context: bpy.types.Context):
        """The photo this call was given, else the panel's: (bytes, label, source, the
        Blender image or None). ``source`` is its path or Blender image name."""
        s = context.scene.sam3d
        path = self.image_path
        img = None
        if not path and self.image_name:
            img = _blender_image(self.image_name, "no_image")
        elif not path and s.image_source == "FILE":
            if not s.image_path:
                raise InputError("no_image")
            path = s.image_path
        elif not path:
            img = s.image
            if img is None:
                raise InputError("no_image")
        if path:
            path = bpy.path.abspath(path)
            return job_inputs.file_bytes(path, "image"), job_inputs.label_for(path), path, None
        return job_inputs.image_bytes(img), job_inputs.label_for(img.name), img.name, img


class SAM3D_OT_generate(GenerateOperator, bpy.types.Operator):
    """Generate a textured 3D object from the image and mask"""

    bl_idname = "sam3d.generate"
    bl_label = "Generate 3D"
    bl_options = {"REGISTER"}

    mask_path: StringProperty(name="Mask file", subtype="FILE_PATH", options=SKIP)
    mask_name: StringProperty(name="Blender mask image", options=SKIP)
    use_alpha: BoolProperty(name="Mask from alpha", options=SKIP)
    placement: StringProperty(name="Placement", description="CURSOR or CAMERA", options=SKIP)
    label: StringProperty(name="Object name", options=SKIP)
    blocking: BoolProperty(
        name="Wait", description="Wait for the object (default in background mode)", options=SKIP
    )

    def _mask(self, context: bpy.types.Context, image: bpy.types.Image | None) -> bytes | None:
        """Mask bytes, or None when the image's alpha is the mask."""
        s = context.scene.sam3d
        if self.mask_path:
            return job_inputs.file_bytes(self.mask_path, "mask")
        if self.mask_name:
            return job_inputs.mask_bytes(_blender_image(self.mask_name, "no_mask"))
        image_given = bool(self.image_path or self.image_name)
        if self.use_alpha or image_given or s.mask_source == "ALPHA":
            if image is not None:
                job_inputs.require_alpha(image)
            return None
        if s.mask_source == "FILE":
            if not s.mask_path:
                raise InputError("no_mask")
            return job_inputs.file_bytes(s.mask_path, "mask")
        if s.mask_image is None:
            raise InputError("no_mask")
        return job_inputs.mask_bytes(s.mask_image)

    def begin(self, context: bpy.types.Context) -> Pending | set[str]:
        s = context.scene.sam3d
        image, label, source, blender_image = self.photo(context)
        mask = self._mask(context, blender_image)
        placement = (self.placement or s.placement).upper()
        if placement not in {"CURSOR", "CAMERA"}:
            self.report({"ERROR"}, f"Unknown placement {self.placement!r}; use CURSOR or CAMERA.")
            return {"CANCELLED"}
        settings = _scene_settings(context, source)
        settings.asset = self.asset_settings(context)
        settings.placement = placement
        settings.camera = context.scene.camera.name if context.scene.camera else ""
        request = JobRequest(
            image=image,
            mask=mask,
            options=self.job_options(context),
            label=self.label or label,
            settings=settings,
        )
        return self.submit(request, timeout=self.timeout or None)


class SAM3D_OT_generate_scene(GenerateOperator, bpy.types.Operator):
    """Turn every masked object of one photo into a posed 3D object under a camera that
    matches the photo"""

    bl_idname = "sam3d.generate_scene"
    bl_label = "Generate scene"
    bl_options = {"REGISTER"}

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

    def _masks(self, context: bpy.types.Context) -> tuple[list[bytes], list[str]]:
        """(mask bytes, object names) in object order ("" = the default name)."""
        if self.mask_dir:
            files = mask_files_in(bpy.path.abspath(self.mask_dir))
            return [job_inputs.file_bytes(p, "mask") for p in files], []
        if len(self.files) and any(f.name for f in self.files):
            base = bpy.path.abspath(self.directory) if self.directory else ""
            paths = [Path(base) / f.name for f in self.files if f.name]
            return [job_inputs.file_bytes(p, "mask") for p in paths], [p.stem for p in paths]
        if self.mask_names:
            names = [n.strip() for n in self.mask_names.split(";") if n.strip()]
            images = [_blender_image(n, "no_mask") for n in names]
            return [job_inputs.mask_bytes(i) for i in images], [Path(n).stem for n in names]
        ss = context.scene.sam3d_scene
        if ss.mask_source == "FOLDER":
            if not ss.mask_dir:
                raise InputError("no_mask", "choose the mask folder")
            files = mask_files_in(bpy.path.abspath(ss.mask_dir))
            return [job_inputs.file_bytes(p, "mask") for p in files], []
        masks, names = [], []
        for item in ss.masks:
            if item.image is not None:
                masks.append(job_inputs.mask_bytes(item.image))
            elif item.path:
                masks.append(job_inputs.file_bytes(item.path, "mask"))
            else:
                continue
            names.append(Path(item.label()).stem)
        return masks, names

    def begin(self, context: bpy.types.Context) -> Pending | set[str]:
        ss = context.scene.sam3d_scene
        image, label, source, blender_image = self.photo(context)
        masks, names = self._masks(context)
        if not masks:
            raise InputError("no_mask", "add at least one mask")
        given = self.properties.is_property_set("camera_height")
        height = self.camera_height if given else ss.camera_height
        settings = _scene_settings(context, source)
        settings.asset = self.asset_settings(context)
        settings.photo_image = blender_image.name if blender_image is not None else ""
        settings.photo_path = "" if blender_image is not None else source
        settings.names = names
        settings.camera_height = None if height < 0 else float(height)
        settings.make_scene_camera = bool(ss.make_scene_camera)
        request = JobRequest(
            image=image,
            masks=masks,
            options=self.job_options(context),
            label=self.label or label,
            kind=JobKind.SCENE,
            settings=settings,
        )
        pending = self.submit(request, timeout=self.timeout or None)
        pending.started = f"SAM 3D: generating scene '{request.label}' ({len(masks)} masks)..."
        return pending


class SAM3D_OT_cancel(bpy.types.Operator):
    """Cancel the running SAM 3D job"""

    bl_idname = "sam3d.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    local_job: IntProperty(name="Job", description="0: every running job", options=SKIP)

    def execute(self, context: bpy.types.Context) -> set[str]:
        s = session.get()
        jobs = [s.manager.get(self.local_job)] if self.local_job else s.manager.active()
        jobs = [j for j in jobs if j is not None and not j.finished]
        if not jobs:
            self.report({"INFO"}, "No SAM 3D job is running.")
            return {"CANCELLED"}
        for job in jobs:
            s.manager.cancel(job)
        timer.ensure()
        self.report({"INFO"}, "Cancelling...")
        return {"FINISHED"}


class SAM3D_OT_clear_notice(bpy.types.Operator):
    """Dismiss this message"""

    bl_idname = "sam3d.clear_notice"
    bl_label = "Dismiss"

    def execute(self, context: bpy.types.Context) -> set[str]:
        session.get().notice = None
        return {"FINISHED"}


classes = (SAM3D_OT_generate, SAM3D_OT_generate_scene, SAM3D_OT_cancel, SAM3D_OT_clear_notice)
