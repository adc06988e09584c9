"""Frame conversions for placing generated objects, bpy-free (numpy, 4x4 float64).

Frames (see ``backend/reconstruction.py``):

* **glTF object frame** - the GLB's mesh: right-handed, +Y up, +Z toward the camera, metres.
* **Blender import frame** - Blender's glTF importer turns glTF Y-up into Blender Z-up:
  a glTF point ``p`` becomes ``GLTF_TO_BLENDER @ p`` = (x, -z, y), i.e. a +90 degree
  rotation about X. After import, an object's ``matrix_world`` maps its mesh data into
  these converted coordinates.
* **Camera frame** - OpenGL convention (+X right, +Y up, looking down -Z), which is exactly
  a Blender camera object's local frame. The backend's pose maps glTF object-frame points
  into it: ``p_cam = R @ (s * p_obj) + t`` (metres).

So a vertex that the importer put at world ``w_imp = M_imp @ v`` (``v`` = mesh data) sits,
in glTF terms, at ``GLTF_TO_BLENDER^-1 @ w_imp``; the pose takes that into the camera
frame, and the camera's world matrix into the Blender world::

    M_world = camera.matrix_world @ P @ GLTF_TO_BLENDER^-1 @ M_imp
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: glTF (Y-up) -> Blender (Z-up): rotation of +90 degrees about X, as Blender's importer does.
GLTF_TO_BLENDER = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
BLENDER_TO_GLTF = GLTF_TO_BLENDER.T


def quat_wxyz_to_matrix(q: Sequence[float]) -> np.ndarray:
    """(3, 3) rotation from a quaternion (w, x, y, z), normalised first."""
    w, x, y, z = np.asarray(q, dtype=np.float64).reshape(4) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def pose_matrix(pose: Mapping[str, Any]) -> np.ndarray:
    """4x4 object(glTF)->camera(OpenGL) transform from ``{"rotation_wxyz","translation",
    "scale"}`` (translation in metres; scale one value or three)."""
    rot = quat_wxyz_to_matrix(pose.get("rotation_wxyz", (1.0, 0.0, 0.0, 0.0)))
    scale = np.broadcast_to(np.asarray(pose.get("scale", 1.0), dtype=np.float64), (3,))
    m = np.eye(4)
    m[:3, :3] = rot * scale  # R @ diag(s)
    m[:3, 3] = np.asarray(pose.get("translation", (0.0, 0.0, 0.0)), dtype=np.float64).reshape(3)
    return m


def camera_aligned_world(
    camera_world: np.ndarray, pose: Mapping[str, Any], imported_world: np.ndarray | None = None
) -> np.ndarray:
    """The object's new ``matrix_world`` (4x4) so it sits where the photo shows it.

    ``camera_world``: the camera's ``matrix_world``; ``imported_world``: the object's
    ``matrix_world`` right after the glTF import (identity for our GLBs).
    """
    imported = np.eye(4) if imported_world is None else np.asarray(imported_world, float)
    return np.asarray(camera_world, float) @ pose_matrix(pose) @ BLENDER_TO_GLTF @ imported


def floor_at_point(bbox_world: np.ndarray, point: Sequence[float]) -> np.ndarray:
    """Translation (3,) that puts a bounding box's bottom centre on ``point``.

    ``bbox_world``: (8, 3) corners in world coordinates (Blender Z-up, metres).
    """
    corners = np.asarray(bbox_world, float)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    bottom_centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return np.asarray(point, float) - bottom_centre


def camera_params_from_intrinsics(
    intrinsics: Mapping[str, Any], sensor_width_mm: float = 36.0
) -> dict[str, Any]:
    """Blender camera settings that reproduce pinhole ``intrinsics`` (pixels, origin at the
    image's top-left, v down).

    Returns ``lens`` (mm), ``sensor_width``/``sensor_height`` (mm), ``sensor_fit``,
    ``shift_x``/``shift_y`` (fractions of the image width, Blender's convention for a
    HORIZONTAL fit), ``resolution_x``/``resolution_y`` (pixels) and
    ``pixel_aspect_x``/``pixel_aspect_y``.

    Blender's camera (``BKE_camera_params_compute_viewplane``) with a HORIZONTAL fit spans
    the sensor width over the image width: fx = lens / sensor * w, and with pixel aspect
    ``ycor = aspect_y / aspect_x``, fy = fx / ycor; a vertical shift moves the frame by
    ``shift_y * w / ycor`` pixels. The fit is set explicitly: AUTO would switch to a
    vertical fit for portrait images (or when the pixel aspect makes them so).
    """
    w, h = int(intrinsics["width"]), int(intrinsics["height"])
    fx, fy = float(intrinsics["fx"]), float(intrinsics["fy"])
    cx, cy = float(intrinsics["cx"]), float(intrinsics["cy"])
    lens = fx * sensor_width_mm / w
    # fx != fy -> non-square pixels; Blender expresses it as pixel aspect (x/y), both >= 1.
    aspect_x, aspect_y = (1.0, 1.0)
    if abs(fx - fy) > 1e-6 * max(fx, fy):
        if fx > fy:
            aspect_y = fx / fy
        else:
            aspect_x = fy / fx
    ycor = aspect_y / aspect_x  # == fx / fy
    return {
        "lens": lens,
        "sensor_width": sensor_width_mm,
        "sensor_height": sensor_width_mm,
        "sensor_fit": "HORIZONTAL",
        "shift_x": (w / 2.0 - cx) / w,
        "shift_y": (cy - h / 2.0) * ycor / w,
        "resolution_x": w,
        "resolution_y": h,
        "pixel_aspect_x": aspect_x,
        "pixel_aspect_y": aspect_y,
    }
