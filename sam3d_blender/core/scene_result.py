"""Reading a scene job's ``result.json`` and the camera it implies (no bpy).

A scene job (several masks of one photo, see ``docs/API.md``) reports one part per mask:
``{"index", "state", "error", "pose", "stats", "intrinsics", "engine"}``, and the photo's
pinhole intrinsics as ``"camera"`` (pixels, origin at the image's top-left, v down).

Frames and units: the camera the add-on makes for a scene stands level, looking along
Blender's world +Y, ``camera_height`` metres above the world's z = 0 plane. For the preview
engine that height is its stated assumption (:data:`PREVIEW_CAMERA_HEIGHT_M` above a flat
ground), so z = 0 is that ground and the objects stand on it; for other engines the camera
sits at the origin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .orientation import normalized

__all__ = [
    "FALLBACK_FOV_X_DEG",
    "PREVIEW_CAMERA_HEIGHT_M",
    "default_camera_height",
    "done_part_indices",
    "fallback_intrinsics",
    "photo_orientation",
    "scene_intrinsics",
    "scene_parts",
]

#: The preview engine's camera height above the ground plane (metres). Kept equal to
#: ``backend/engines/preview.py: CAMERA_HEIGHT_M`` (Blender never imports the backend; a
#: test checks the two agree).
PREVIEW_CAMERA_HEIGHT_M = 1.2
#: Horizontal field of view (degrees) assumed when a result carries no intrinsics at all;
#: the preview engine's stated value.
FALLBACK_FOV_X_DEG = 55.0


def scene_parts(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The parts of a scene result, sorted by index, each with at least ``index``,
    ``state`` ("done" or "failed") and ``error`` (None unless failed). A single-object
    result has none."""
    parts = []
    for p in result.get("parts") or []:
        d = dict(p)
        d["state"] = d.get("state") or ("failed" if d.get("error") else "done")
        d.setdefault("error", None)
        parts.append(d)
    parts.sort(key=lambda p: int(p["index"]))
    return parts


def done_part_indices(result: Mapping[str, Any]) -> list[int]:
    """Indices of the parts that finished (none for a single-object result)."""
    return [int(p["index"]) for p in scene_parts(result) if p["state"] == "done"]


def scene_intrinsics(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The photo's pinhole intrinsics (pixels): the scene's ``camera``, else the first
    done part's ``intrinsics``, else None."""
    cam = result.get("camera")
    if cam:
        return dict(cam)
    for p in scene_parts(result):
        if p["state"] == "done" and p.get("intrinsics"):
            return dict(p["intrinsics"])
    return None


def photo_orientation(result: Mapping[str, Any]) -> int:
    """The photo's EXIF orientation (1..8) as the backend recorded it (``input`` >
    ``orientation``); 1 for a result from a backend that did not record it, whose camera
    background then shows the photo as stored."""
    facts = result.get("input")
    return normalized(facts.get("orientation")) if isinstance(facts, Mapping) else 1


def fallback_intrinsics(width: int, height: int) -> dict[str, Any]:
    """Pinhole intrinsics (pixels) for a ``width`` x ``height`` photo with the assumed
    :data:`FALLBACK_FOV_X_DEG` horizontal field of view, principal point at the centre."""
    f = 0.5 * width / math.tan(math.radians(FALLBACK_FOV_X_DEG) / 2)
    return {"fx": f, "fy": f, "cx": width / 2, "cy": height / 2, "width": width, "height": height}


def default_camera_height(result: Mapping[str, Any]) -> float:
    """Metres above the world's ground plane (z = 0) to put the camera at: the preview
    engine's stated assumption for its results, 0 (the origin) for any other engine."""
    engine = str(result.get("engine") or "")
    if not engine:
        engine = next((str(p.get("engine")) for p in scene_parts(result) if p.get("engine")), "")
    return PREVIEW_CAMERA_HEIGHT_M if engine == "preview" else 0.0
