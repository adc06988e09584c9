"""Operators on the panel's inputs: the image, the mask, and the "Photo to scene" list.

``sam3d.new_mask``, ``sam3d.mask_coverage``, ``sam3d.use_editor_image``,
``sam3d.scene_add_masks``, ``sam3d.scene_mask_add``, ``sam3d.scene_mask_remove``.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, CollectionProperty, IntProperty, StringProperty

from .. import blender_images, timer
from ..core.messages import describe
from .mixins import SKIP


class SAM3D_OT_new_mask(bpy.types.Operator):
    """Create a black mask image the size of the chosen image, to paint the object white"""

    bl_idname = "sam3d.new_mask"
    bl_label = "New mask"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        s = context.scene.sam3d
        if s.image_source == "IMAGE" and s.image is not None:
            w, h = s.image.size
            name = f"{s.image.name} mask"
        elif s.image_source == "FILE" and s.image_path:
            try:
                with blender_images.loaded_image(bpy.path.abspath(s.image_path)) as img:
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
        mask = blender_images.new_mask_image(name, w, h)
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
        s = context.scene.sam3d
        if s.mask_source == "IMAGE" and s.mask_image is not None:
            frac, why = blender_images.image_coverage(s.mask_image, use_alpha=False, force=True)
        elif s.mask_source == "ALPHA" and s.image_source == "IMAGE" and s.image is not None:
            frac, why = blender_images.image_coverage(s.image, use_alpha=True, force=True)
        else:
            return {"CANCELLED"}
        self.report({"INFO"}, blender_images.coverage_text(frac, why)[0])
        timer.redraw()
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
        s = context.scene.sam3d
        s.image = context.space_data.image
        s.image_source = "IMAGE"
        return {"FINISHED"}


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


classes = (
    SAM3D_OT_new_mask,
    SAM3D_OT_mask_coverage,
    SAM3D_OT_use_editor_image,
    SAM3D_OT_scene_add_masks,
    SAM3D_OT_scene_mask_add,
    SAM3D_OT_scene_mask_remove,
)
