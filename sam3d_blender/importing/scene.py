"""Photo to scene: a finished scene job -> N posed objects under ONE camera (bpy).

A scene job yields one GLB per part (each in its own glTF object frame, its pose in the
node extras) plus ``result.json`` (the photo's intrinsics as ``"camera"``, each part's
state, error, pose and stats; read by ``core/scene_result.py``). This module turns that
into Blender data:

* ONE camera (``<label> Camera``) with the photo's intrinsics and the photo as its
  background image (packed into the .blend; turned upright by the photo's EXIF
  orientation, ``result.json``'s ``input`` > ``orientation``), level at the camera
  height (metres above z = 0, see ``core/scene_result.py``), looking along world +Y.
* Every done part imported with Blender's glTF importer and posed in that camera's frame.
  All parts of one job share the camera and the engine's single scale, so relative sizes
  and depths stay consistent.
* Failed parts are recorded (code + message) on the scene's collection; they cost nothing
  else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from ..core.orientation import swaps_axes
from ..core.provenance import PROP_PREFIX
from ..core.scene_result import (
    FALLBACK_FOV_X_DEG,
    default_camera_height,
    fallback_intrinsics,
    photo_orientation,
    scene_intrinsics,
    scene_parts,
)
from .cameras import create_scene_camera, load_photo, set_background_image
from .gltf import add_decimate, ensure_collection, extras_of, import_named, set_provenance
from .placing import place_by_pose
from .view import show_new_objects

#: Custom properties written on the scene's collection, camera and objects.
PROP_JOB = PROP_PREFIX + "job_id"
PROP_FAILED = PROP_PREFIX + "failed_parts"
PROP_PART = PROP_PREFIX + "part"


@dataclass
class ImportedScene:
    """What :func:`import_scene` made.

    ``objects``: part index -> the imported (mesh) object, in part order. ``failed``: part
    index -> ``{"code", "message"}`` of parts the backend could not build. ``warnings``:
    sentences for the artist (e.g. intrinsics guessed).
    """

    label: str
    collection: bpy.types.Collection
    camera: bpy.types.Object
    objects: dict[int, bpy.types.Object] = field(default_factory=dict)
    failed: dict[int, dict[str, Any]] = field(default_factory=dict)
    background: bpy.types.Image | None = None
    warnings: list[str] = field(default_factory=list)


def new_scene_collection(name: str, parent: bpy.types.Collection) -> bpy.types.Collection:
    """A new collection named ``name`` (Blender adds .001 on a clash) under ``parent``."""
    coll = bpy.data.collections.new(name)
    parent.children.link(coll)
    return coll


def import_scene(
    context: bpy.types.Context,
    result: Mapping[str, Any],
    part_glbs: Mapping[int, Path],
    *,
    label: str,
    photo: bpy.types.Image | str | Path | None = None,
    names: Sequence[str] | None = None,
    camera_height: float | None = None,
    parent_collection: bpy.types.Collection | None = None,
    make_scene_camera: bool = True,
    decimate: bool = True,
    provenance: Mapping[str, Any] | None = None,
) -> ImportedScene:
    """Build the scene of one finished scene job in ``context.scene``; the new objects are
    left selected and framed in the 3D Viewports (:func:`.view.show_new_objects`).

    ``result``: the job's result.json (``camera``, ``parts``). ``part_glbs``: part index ->
    local GLB (``core/results.py: ResultFiles.part_glb``). ``photo``: the photo (a Blender image, or a
    file that is loaded and packed) for the camera's background. ``names``: object name per
    part index (default ``"<label> <index>"``). ``camera_height``: metres (default
    ``core/scene_result.py: default_camera_height``). ``parent_collection``: where the scene's own collection
    goes (default the scene's "SAM 3D" collection). ``provenance``: extra ``sam3d_*``
    properties for every object (job id, options, source image).
    """
    scene = context.scene
    # The scene's "SAM 3D" collection, or its master collection where one of that name
    # belongs to another Blender scene (one scene per photo in a batch file).
    parent = parent_collection or ensure_collection(scene)
    coll = new_scene_collection(label, parent)
    warnings: list[str] = []
    orientation = photo_orientation(result)
    intr = scene_intrinsics(result)
    if intr is None:
        w, h = _photo_size(photo)  # as stored; the camera sees the photo upright
        if swaps_axes(orientation):
            w, h = h, w
        if not (w and h):
            raise ValueError("the result has no camera intrinsics and no photo to size them")
        intr = fallback_intrinsics(w, h)
        warnings.append(
            f"The engine reported no camera; a {FALLBACK_FOV_X_DEG:g} degree horizontal field "
            "of view was assumed."
        )
    height = default_camera_height(result) if camera_height is None else float(camera_height)
    cam = create_scene_camera(
        context,
        intr,
        coll,
        name=f"{label} Camera",
        height=height,
        make_scene_camera=make_scene_camera,
    )
    background = None
    if photo is not None:
        background = photo if isinstance(photo, bpy.types.Image) else load_photo(photo)
        set_background_image(cam, background, orientation)
    imported = ImportedScene(label, coll, cam, background=background, warnings=warnings)
    base = dict(provenance or {})
    for part in scene_parts(result):
        i = int(part["index"])
        if part.get("state") != "done":
            imported.failed[i] = dict(part.get("error") or {"code": "internal_error"})
            continue
        glb = part_glbs.get(i)
        if glb is None:
            imported.failed[i] = {"code": "no_result", "message": f"part {i} has no GLB"}
            continue
        name = names[i] if names is not None and i < len(names) and names[i] else f"{label} {i}"
        imported.objects[i] = _import_part(
            context, glb, part, cam, coll, name, decimate, {**base, "part": i}
        )
    coll[PROP_FAILED] = json.dumps({str(k): v for k, v in imported.failed.items()}, sort_keys=True)
    if base.get("job_id"):
        coll[PROP_JOB] = str(base["job_id"])
        cam[PROP_JOB] = str(base["job_id"])
    context.view_layer.update()
    show_new_objects(context, list(imported.objects.values()))
    return imported


def _import_part(
    context: bpy.types.Context,
    glb: Path,
    part: Mapping[str, Any],
    camera: bpy.types.Object,
    collection: bpy.types.Collection,
    name: str,
    decimate: bool,
    provenance: Mapping[str, Any],
) -> bpy.types.Object:
    """One part: import its GLB into ``collection``, pose it in ``camera``'s frame."""
    obj, new = import_named(context, glb, collection, name)
    pose = part.get("pose") or extras_of(obj).get("pose")
    context.view_layer.update()  # matrix_world of the fresh import
    if pose:
        for ob in new:
            if ob.parent is None:
                place_by_pose(ob, pose, camera)
    if decimate and obj.type == "MESH":
        add_decimate(obj)
    prov = dict(provenance)
    prov["placement"] = f"camera:{camera.name}"
    if pose:
        prov["pose"] = pose
    stats = part.get("stats") or {}
    if stats.get("faces") is not None:
        prov["faces"] = int(stats["faces"])
    if part.get("engine"):
        prov.setdefault("engine", part["engine"])
    set_provenance(obj, prov)
    return obj


def _photo_size(photo: bpy.types.Image | str | Path | None) -> tuple[int, int]:
    if photo is None:
        return (0, 0)
    if isinstance(photo, bpy.types.Image):
        return (int(photo.size[0]), int(photo.size[1]))
    img = load_photo(photo, pack=False)
    return (int(img.size[0]), int(img.size[1]))
