"""What the artist looks at after an import: selection, framing, and window contexts (bpy).

Code run from a timer has no window in its context: :func:`window_override` gives it one,
for operators (the glTF importer, undo pushes) that need it.
"""

from __future__ import annotations

from typing import Any

import bpy


def window_override(context: bpy.types.Context) -> dict[str, Any]:
    """A context override with a window, for operators run from timers (no window there)."""
    if context.window is not None:
        return {}
    wm = context.window_manager
    if wm is not None and wm.windows:
        win = wm.windows[0]
        return {"window": win, "screen": win.screen}
    return {}


def select_only(context: bpy.types.Context, objects: list[bpy.types.Object]) -> None:
    """Leave ``objects`` selected (the first one active) and nothing else, as Blender's own
    importers do. Objects outside ``context.view_layer`` are left alone."""
    layer = context.view_layer
    for ob in layer.objects:
        ob.select_set(False)
    shown = [ob for ob in objects if layer.objects.get(ob.name) is not None]
    for ob in shown:
        ob.select_set(True)
    if shown:
        layer.objects.active = shown[0]
    layer.update()


def frame_in_views(context: bpy.types.Context) -> int:
    """Frame the selected objects in every 3D Viewport of the open windows that show
    ``context.scene`` (View > Frame Selected), so the artist sees what was just added.
    Viewports looking through the camera keep their view. No effect in background mode.
    Returns how many views were framed."""
    wm = context.window_manager
    if bpy.app.background or wm is None:
        return 0
    framed = 0
    for win in wm.windows:
        if win.scene != context.scene or win.screen is None:
            continue
        for area in win.screen.areas:
            if area.type != "VIEW_3D":
                continue
            for region in area.regions:
                rv3d = region.data if region.type == "WINDOW" else None
                if rv3d is None or rv3d.view_perspective == "CAMERA":
                    continue
                with context.temp_override(window=win, area=area, region=region):
                    bpy.ops.view3d.view_selected(use_all_regions=False)
                framed += 1
    return framed


def show_new_objects(context: bpy.types.Context, objects: list[bpy.types.Object]) -> int:
    """Make just-imported ``objects`` what the artist looks at: selected (the first one
    active) and framed in the 3D Viewports (:func:`frame_in_views`). Returns the number of
    views framed."""
    select_only(context, objects)
    return frame_in_views(context) if objects else 0
