"""What the "Photo to scene" sub-panel draws: one photo's masks -> objects under one
camera (bpy; the sub-panel itself is made with the others in ``panels.py``).

The photo is the main panel's image; the masks come from a list (Blender images or files)
or a folder (``scene.sam3d_scene``, see ``props.py``). Drawing only reads state.
"""

from __future__ import annotations

import bpy

from .. import session
from ..core.jobs import JobKind


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
    scene_jobs = [j for j in session.get().manager.active() if j.kind == JobKind.SCENE]
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
