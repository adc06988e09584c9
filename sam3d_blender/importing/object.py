"""One generated object: GLB -> named, collected, placed, decimated, with provenance (bpy)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bpy

from ..core.provenance import ON_TOP_OF
from .cameras import ensure_camera
from .gltf import add_decimate, ensure_collection, extras_of, import_named, set_provenance
from .placing import place_by_pose, place_on_point, standing_point
from .view import show_new_objects


def import_object(
    context: bpy.types.Context,
    glb_path: str | Path,
    *,
    label: str,
    result: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    placement_mode: str = "CURSOR",
    camera: bpy.types.Object | None = None,
    decimate: bool = True,
) -> bpy.types.Object:
    """The whole import of one generated object; returns it, selected, active and framed
    in the 3D Viewports (:func:`.view.show_new_objects`).

    ``result``: the job's result.json (pose, intrinsics) - when absent the pose is read
    from the GLB node's ``extras["sam3d"]``. ``placement_mode``: "CURSOR" (stand on the 3D
    cursor - on top of the object the cursor is inside, if any:
    :func:`.placing.standing_point`;
    provenance ``placement`` then says ``"cursor:on top of <name>"``) or "CAMERA"
    (camera-aligned by the pose; ``camera`` or the scene camera, created from the
    intrinsics when the scene has none).
    """
    scene = context.scene
    coll = ensure_collection(scene)
    # Where the object will stand on the cursor, found before the import (the new object
    # must not count as something to climb out of).
    context.view_layer.update()
    stand, lifted_from = standing_point(context, scene.cursor.location)
    obj, new = import_named(context, glb_path, coll, label)
    extras = extras_of(obj)
    pose = (result or {}).get("pose") or extras.get("pose")
    intrinsics = (result or {}).get("intrinsics") or extras.get("intrinsics")
    placed = "cursor"
    if placement_mode == "CAMERA" and pose:
        cam = camera or ensure_camera(context, intrinsics, coll)
        context.view_layer.update()
        for ob in new:
            if ob.parent is None:
                place_by_pose(ob, pose, cam)
        placed = f"camera:{cam.name}"
    else:
        context.view_layer.update()
        place_on_point(obj, stand)
        if lifted_from is not None:
            placed = f"{ON_TOP_OF}{lifted_from.name}"
    if decimate and obj.type == "MESH":
        add_decimate(obj)
    prov = dict(provenance or {})
    prov["placement"] = placed
    if pose:
        prov.setdefault("pose", pose)
    set_provenance(obj, prov)
    show_new_objects(context, [obj])
    return obj
