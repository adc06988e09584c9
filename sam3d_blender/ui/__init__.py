"""What the artist sees (bpy): the sidebar panels, the "Photo to scene" sub-panel and the
add-on preferences. Drawing only reads state; buttons call ``bpy.ops.sam3d.*``."""

from __future__ import annotations

from . import panels, prefs

#: Sub-panels after their parents (Blender registers a child only under a known parent).
classes = (*prefs.classes, *panels.classes)
