"""Putting imported objects where they belong (bpy); the frame math is ``core/placement.py``.

Frames and units: the GLB's mesh is in the glTF object frame (Y-up, metres); Blender's
importer turns it Z-up (``C`` = +90 degrees about X). A pose maps glTF object points into
the camera frame (OpenGL convention = a Blender camera's local frame), so
``matrix_world = camera.matrix_world @ pose @ C^-1 @ matrix_world_after_import``.
On the 3D cursor, an object keeps the imported orientation and its bounding box's bottom
centre goes on the cursor (world, metres, Blender Z-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix, Vector

from ..core import placement


def place_by_pose(obj: bpy.types.Object, pose: Mapping[str, Any], camera: bpy.types.Object) -> None:
    """Put ``obj`` (just imported, glTF object frame) where the photo shows it, seen from
    ``camera``: ``matrix_world = camera.matrix_world @ pose @ glTF->Blender^-1 @ imported``.

    ``pose``: ``{"rotation_wxyz","translation","scale"}`` mapping glTF object-frame points
    into the OpenGL camera frame (= a Blender camera's local frame), metres.
    """
    cam_world = np.array(camera.matrix_world, dtype=np.float64)
    imported = np.array(obj.matrix_world, dtype=np.float64)
    obj.matrix_world = Matrix(placement.camera_aligned_world(cam_world, pose, imported).tolist())


#: How many solids stacked on the 3D cursor :func:`standing_point` climbs out of, at most.
MAX_LIFTS = 16
#: Metres: how far above a surface the next upward ray starts (so it does not hit it again).
RAY_EPSILON_M = 1e-5


def standing_point(
    context: bpy.types.Context, point: Any
) -> tuple[tuple[float, float, float], bpy.types.Object | None]:
    """Where an object meant to stand on ``point`` (world, metres, Blender Z-up) can stand
    without being buried: ``point`` itself, unless it lies inside a solid object of the
    scene - a ray cast straight up from it then first meets a face from behind (the face's
    normal points up, away from the point) - in which case the top of that object right
    above ``point`` (repeated for solids stacked there).

    This is the default file's case: the 3D cursor at the origin, inside the default cube,
    where a generated object (often a few centimetres to a metre) would be hidden.
    Returns the point and the object it was lifted out of (the last one), or None.
    """
    depsgraph = context.evaluated_depsgraph_get()
    up = Vector((0.0, 0.0, 1.0))
    p = Vector(tuple(point))
    origin = p
    lifted_from = None
    for _ in range(MAX_LIFTS):
        hit, location, normal, _index, ob, _matrix = context.scene.ray_cast(depsgraph, origin, up)
        if not hit or normal.dot(up) <= 0.0:
            break  # nothing above, or the underside of something: ``p`` is in the open
        lifted_from = ob
        p = Vector((p.x, p.y, location.z))
        origin = p + up * RAY_EPSILON_M  # go on above this face: a solid may sit on it
    return (p.x, p.y, p.z), lifted_from


def world_bounds(obj: bpy.types.Object) -> tuple[Vector, Vector]:
    """The lowest and highest corners (world, metres) of ``obj``'s box as it is placed."""
    pts = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    lo = Vector(tuple(min(p[i] for p in pts) for i in range(3)))
    hi = Vector(tuple(max(p[i] for p in pts) for i in range(3)))
    return lo, hi


def place_on_point(obj: bpy.types.Object, point: Any) -> None:
    """Move ``obj`` so its bounding box's bottom centre rests on ``point`` (world, metres)."""
    mw = np.array(obj.matrix_world, dtype=np.float64)
    corners = np.array([tuple(c) for c in obj.bound_box], dtype=np.float64)
    world = corners @ mw[:3, :3].T + mw[:3, 3]
    shift = placement.floor_at_point(world, tuple(point))
    mw[:3, 3] += shift
    obj.matrix_world = Matrix(mw.tolist())
