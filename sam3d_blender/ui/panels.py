"""The "SAM 3D" sidebar panels (3D Viewport and Image Editor).

Drawing only reads state: the backend/job objects of the session (``session.py``) and
``scene.sam3d``.
Nothing here talks HTTP or loads files (coverage of a file is computed by the property
update callbacks; a Blender image's coverage is read from its pixels, throttled).
"""

from __future__ import annotations

import time

import bpy

from .. import blender_images, session
from ..core.backend_process import BackendState
from ..importing.gltf import DECIMATE_NAME
from .install_panel import draw_install, draw_machine_report, draw_progress, installing, wrapped
from .scene_panel import draw_scene_panel

CATEGORY = "SAM 3D"

_STATE_TEXT = {
    BackendState.NOT_INSTALLED: ("Backend: not installed", "ERROR"),
    BackendState.STOPPED: ("Backend: stopped", "RADIOBUT_OFF"),
    BackendState.STARTING: ("Backend: starting...", "SORTTIME"),
    BackendState.READY: ("Backend: ready", "CHECKMARK"),
    BackendState.ERROR: ("Backend: error", "ERROR"),
}


def draw_backend_status(
    layout: bpy.types.UILayout,
    context: bpy.types.Context,
    details: bool = True,
    install: bool = True,
) -> None:
    """State line (+ engine/GPU when ready, reason + log tail on error) and buttons; with
    ``install``, the Install backend box when it is not installed (and the installer's
    progress while it runs)."""
    rt = session.get()
    backend = rt.shown_backend()  # drawing never stops or switches the backend
    if backend.state == BackendState.READY:
        backend.poll()  # cheap (no I/O): notices a backend that died while idle
    state = backend.state
    text, icon = _STATE_TEXT[state]
    if install and installing():
        text, icon = "Backend: installing...", "IMPORT"
    col = layout.column(align=True)
    row = col.row(align=True)
    row.alert = state == BackendState.ERROR
    kind = "remote" if getattr(backend, "kind", "") == "remote" else "local"
    row.label(text=f"{text} ({kind})", icon=icon)
    if state == BackendState.READY:
        col.label(text=backend.describe())
    if rt.restart_pending() and not installing():
        col.label(
            text="Backend settings changed: they apply when the backend restarts", icon="INFO"
        )
    if state == BackendState.ERROR and backend.error is not None:
        wrapped(col, backend.error.sentence(), alert=True, width=60)
        if backend.error.message and details:
            wrapped(col, backend.error.message, width=60)
        if details:
            for line in backend.error.log_tail[-8:]:
                col.label(text=line[:140])
    if install and installing():
        draw_progress(layout)
        return
    row = layout.row(align=True)
    if state == BackendState.NOT_INSTALLED:
        if install and getattr(backend, "kind", "") != "remote":
            draw_install(layout, context)
        else:
            row.operator("sam3d.backend_install", icon="IMPORT")
    elif state in (BackendState.STOPPED, BackendState.ERROR):
        row.operator("sam3d.backend_start", icon="PLAY")
    else:
        op = row.operator("sam3d.backend_start", text="Restart", icon="FILE_REFRESH")
        op.restart = True
        row.operator("sam3d.backend_stop", icon="PAUSE")


def _mask_status(settings) -> tuple[str, bool]:
    """('mask: 12% of image', warn) for the chosen inputs; reads no files."""
    try:
        if settings.mask_source == "IMAGE":
            if settings.mask_image is None:
                return ("mask: none chosen", True)
            frac, why = blender_images.image_coverage(settings.mask_image, use_alpha=False)
            text, warn = blender_images.coverage_text(frac, why)
            img = settings.image if settings.image_source == "IMAGE" else None
            if img is not None and tuple(img.size) != tuple(settings.mask_image.size):
                return (f"{text} (size differs from the image)", True)
            return (text, warn)
        if settings.mask_source == "FILE":
            if not settings.mask_path:
                return ("mask: no file chosen", True)
            hit = blender_images.cached_file_coverage(settings.mask_path, use_alpha=False)
            return blender_images.coverage_text(*(hit or (None, "")))
        # ALPHA
        if settings.image_source == "IMAGE":
            if settings.image is None:
                return ("mask: choose an image", True)
            return blender_images.coverage_text(
                *blender_images.image_coverage(settings.image, use_alpha=True)
            )
        if not settings.image_path:
            return ("mask: choose an image", True)
        hit = blender_images.cached_file_coverage(settings.image_path, use_alpha=True)
        return blender_images.coverage_text(*(hit or (None, "")))
    except (ReferenceError, RuntimeError, ValueError) as exc:
        return (f"mask: {exc}", True)


def draw_inputs(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    s = context.scene.sam3d
    col = layout.column(align=True)
    col.label(text="Image")
    col.row(align=True).prop(s, "image_source", expand=True)
    if s.image_source == "IMAGE":
        col.prop(s, "image", text="")
        space = context.space_data
        if space is not None and space.type == "IMAGE_EDITOR":
            col.operator("sam3d.use_editor_image", icon="IMAGE_DATA")
    else:
        col.prop(s, "image_path", text="")
    col = layout.column(align=True)
    col.label(text="Mask")
    col.row(align=True).prop(s, "mask_source", expand=True)
    if s.mask_source == "IMAGE":
        row = col.row(align=True)
        row.prop(s, "mask_image", text="")
        row.operator("sam3d.new_mask", text="New", icon="ADD")
        if s.mask_image is None:  # where the click-to-mask tool is
            col.label(text="Or click the object: Image Editor > Sidebar > SAM 3D", icon="INFO")
    elif s.mask_source == "FILE":
        col.prop(s, "mask_path", text="")
    text, warn = _mask_status(s)
    row = col.row()
    painting = blender_images.PAINTING in text
    row.alert = warn and not painting
    row.label(text=text, icon="BRUSH_DATA" if painting else ("ERROR" if warn else "INFO"))
    if painting:
        row.operator("sam3d.mask_coverage", text="", icon="FILE_REFRESH")


def draw_job(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """Generate button, or progress + Cancel while a job runs; then the last notice."""
    rt = session.get()
    active = rt.manager.active()
    if active:
        job = active[0]
        col = layout.column(align=True)
        col.progress(factor=float(job.progress), type="BAR", text=job.status_line())
        row = col.row(align=True)
        row.label(text=job.request.label)
        op = row.operator("sam3d.cancel", icon="X")
        op.local_job = job.local_id
        if len(active) > 1:
            col.label(text=f"{len(active) - 1} more queued")
    else:
        row = layout.row()
        row.scale_y = 1.5
        row.operator("sam3d.generate", icon="MESH_MONKEY")
    notice = rt.notice
    if notice is not None and time.time() - notice.at < 600:
        box = layout.box()
        row = box.row()
        row.alert = notice.level == "ERROR"
        row.label(text="", icon={"ERROR": "ERROR", "WARNING": "ERROR"}.get(notice.level, "INFO"))
        wrapped(row.column(), notice.text, alert=notice.level == "ERROR", width=48)
        row.operator("sam3d.clear_notice", text="", icon="X", emboss=False)


def draw_options(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    s = context.scene.sam3d
    col = layout.column()
    col.prop(s, "engine")
    col.prop(s, "quality")
    col.prop(s, "seed")
    row = col.row(align=True)
    row.prop(s, "simplify", text="")
    sub = row.row(align=True)
    sub.enabled = s.simplify
    sub.prop(s, "target_faces")
    row = col.row(align=True)
    row.prop(s, "bake")
    sub = row.row(align=True)
    sub.enabled = s.bake
    sub.prop(s, "texture_size", text="")
    col.prop(s, "placement")
    col.prop(s, "add_decimate")
    col.prop(s, "mark_asset")
    sub = col.row()
    sub.enabled = s.mark_asset
    sub.prop(s, "asset_catalog", icon="ASSET_MANAGER")


def draw_selected(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """For a selected SAM 3D object: its Decimate ratio and where it came from."""
    obj = context.active_object
    if obj is None or "sam3d_job_id" not in obj:
        return
    box = layout.box()
    box.label(
        text=f"{obj.name}: {obj.get('sam3d_engine', '')} seed {obj.get('sam3d_seed', 0)}",
        icon="OBJECT_DATA",
    )
    mod = obj.modifiers.get(DECIMATE_NAME)
    if mod is not None:
        box.prop(mod, "ratio", text="Simplify further")


def draw_history(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    s = context.scene.sam3d
    if not len(s.history):
        layout.label(text="No jobs in this file yet.")
        return
    for item in list(reversed(s.history))[:12]:
        row = layout.row(align=True)
        icon = {"done": "CHECKMARK", "failed": "ERROR", "cancelled": "X"}.get(item.state, "DOT")
        text = f"{item.label}  ({item.engine}, seed {item.seed})"
        row.label(text=text, icon=icon)
        if item.job_id and item.state == "done":
            op = row.operator("sam3d.import_result", text="", icon="IMPORT")
            op.job_id = item.job_id
            op = row.operator("sam3d.open_folder", text="", icon="FILE_FOLDER")
            op.job_id = item.job_id
        elif item.message:
            row.label(text="", icon="INFO")


class _Sidebar:
    bl_region_type = "UI"
    bl_category = CATEGORY

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and hasattr(context.scene, "sam3d")


def _sub_panel(space: str, prefix: str, key: str, label: str, draw, closed: bool) -> type:
    """A sub-panel of the main SAM 3D panel of ``space`` that draws with ``draw``."""

    class Sub(_Sidebar, bpy.types.Panel):
        bl_idname = f"SAM3D_PT_{prefix}_{key}"
        bl_label = label
        bl_space_type = space
        bl_parent_id = f"SAM3D_PT_{prefix}_main"
        bl_options = {"DEFAULT_CLOSED"} if closed else set()

        def draw(self, context: bpy.types.Context) -> None:
            draw(self.layout, context)

    Sub.__name__ = Sub.__qualname__ = Sub.bl_idname
    return Sub


def _panels_for(space: str, prefix: str) -> list[type]:
    """The main panel of ``space`` and its sub-panels, in the order they are shown."""

    class Main(_Sidebar, bpy.types.Panel):
        bl_idname = f"SAM3D_PT_{prefix}_main"
        bl_label = "SAM 3D"
        bl_space_type = space

        def draw(self, context: bpy.types.Context) -> None:
            layout = self.layout
            draw_backend_status(layout, context, details=False)
            draw_machine_report(layout, context)
            layout.separator()
            draw_inputs(layout, context)
            layout.separator()
            draw_job(layout, context)
            draw_selected(layout, context)

    Main.__name__ = Main.__qualname__ = Main.bl_idname
    return [
        Main,
        _sub_panel(space, prefix, "options", "Options", draw_options, closed=False),
        _sub_panel(space, prefix, "history", "History", draw_history, closed=True),
        _sub_panel(space, prefix, "backend", "Backend", draw_backend_status, closed=True),
        _sub_panel(space, prefix, "scene", "Photo to scene", draw_scene_panel, closed=True),
    ]


classes = (*_panels_for("VIEW_3D", "view3d"), *_panels_for("IMAGE_EDITOR", "image"))
