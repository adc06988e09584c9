"""The Image Editor's "SAM 3D" sidebar tab: starts click-to-mask on the photo shown."""

from __future__ import annotations

import bpy


class SAM3D_PT_click_mask(bpy.types.Panel):
    bl_label = "Click to mask"
    bl_idname = "SAM3D_PT_click_mask"
    bl_space_type = "IMAGE_EDITOR"
    bl_region_type = "UI"
    bl_category = "SAM 3D"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        space = context.space_data
        if space is None or space.image is None:
            layout.label(text="Open the photo in this editor first.", icon="INFO")
            return
        col = layout.column(align=True)
        op = col.operator("sam3d.click_mask", text="Click to mask", icon="RESTRICT_SELECT_OFF")
        op.target = "PANEL"
        op = col.operator("sam3d.click_mask", text="Add to photo to scene", icon="ADD")
        op.target = "SCENE_LIST"
        layout.label(text="Click: object · Shift: background")
        layout.label(text="Drag: box · Enter: use · Esc: cancel")


classes = (SAM3D_PT_click_mask,)
