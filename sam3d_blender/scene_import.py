"""Photo to scene, Blender side: a finished scene job -> N posed objects under ONE camera.

A scene job (several masks of one photo, see ``docs/API.md``) yields one GLB per part
(``GET /jobs/{id}/parts/{i}/result``, each in its own glTF object frame with its pose in
the node extras) plus ``result.json`` whose ``"camera"`` holds the photo's pinhole
intrinsics and whose ``"parts"`` hold each part's state, error, pose and stats. This
module turns that into Blender data:

* ONE camera (``<label> Camera``) with the photo's intrinsics (lens, sensor, shift, the
  scene's render resolution: :func:`.importer.apply_intrinsics`) and the photo as its
  background image (packed into the .blend).
* Every done part imported with Blender's glTF importer (:func:`.importer.import_glb`) and
  posed in that camera's frame (:func:`.importer.place_by_pose`). All parts of one job share
  the camera and the engine's single scale, so relative sizes and depths stay consistent.
* Failed parts are recorded (code + message) on the scene's collection; they cost nothing
  else.

Frames and units: Blender world is Z-up, metres. The camera is placed level, looking along
world +Y, at ``(0, 0, camera_height)``. For the preview engine ``camera_height`` defaults to
its stated assumption (:data:`PREVIEW_CAMERA_HEIGHT_M` = 1.2 m above a ground plane), so the
world's z = 0 plane is that ground and the objects stand on it; for other engines the
camera sits at the origin. Poses map glTF object-frame points into the OpenGL camera frame
(= the Blender camera object's local frame), see :mod:`.placement`.

Everything here runs on Blender's main thread. Downloads (:func:`fetch_part_glbs`) are
plain blocking HTTP through the add-on's client; they touch no bpy data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from . import importer

#: The preview engine's camera height above the ground plane (metres). Kept equal to
#: ``backend/engines/preview.py:CAMERA_HEIGHT_M`` (Blender never imports the backend; a test
#: checks the two agree).
PREVIEW_CAMERA_HEIGHT_M = 1.2
#: Field of view (degrees, horizontal) assumed when a result carries no intrinsics at all;
#: the preview engine's stated value.
FALLBACK_FOV_X_DEG = 55.0
#: Custom properties written on the scene's collection and camera.
PROP_JOB = importer.PROP_PREFIX + "job_id"
PROP_FAILED = importer.PROP_PREFIX + "failed_parts"
PROP_INTRINSICS = importer.PROP_PREFIX + "intrinsics"
PROP_PART = importer.PROP_PREFIX + "part"


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


# -- reading a scene result (no bpy data touched) ----------------------------------------


def scene_parts(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The parts of a scene result.json, sorted by index, each with at least ``index``,
    ``state`` and ``error`` (None unless failed)."""
    parts = []
    for p in result.get("parts") or []:
        d = dict(p)
        d.setdefault("state", "failed" if d.get("error") else "done")
        d.setdefault("error", None)
        parts.append(d)
    parts.sort(key=lambda p: int(p["index"]))
    return parts


def scene_intrinsics(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The photo's pinhole intrinsics (pixels, see ``backend/reconstruction.py``): the scene's
    ``camera``, else the first done part's ``intrinsics``, else None."""
    cam = result.get("camera")
    if cam:
        return dict(cam)
    for p in scene_parts(result):
        if p.get("state") == "done" and p.get("intrinsics"):
            return dict(p["intrinsics"])
    return None


def default_camera_height(result: Mapping[str, Any]) -> float:
    """Metres above the world's ground plane (z = 0) to put the camera at: the preview
    engine's stated assumption for its results, 0 (the origin) for any other engine."""
    engine = str(result.get("engine") or "")
    if not engine:
        engine = next((str(p.get("engine")) for p in scene_parts(result) if p.get("engine")), "")
    return PREVIEW_CAMERA_HEIGHT_M if engine == "preview" else 0.0


def part_glb_path(folder: Path, index: int) -> Path:
    """Where part ``index``'s GLB is kept locally: ``<folder>/parts/<index>/result.glb``
    (the backend's own layout)."""
    return Path(folder) / "parts" / str(int(index)) / "result.glb"


def fetch_part_glbs(
    client: Any, job_id: str, result: Mapping[str, Any], folder: Path
) -> dict[int, Path]:
    """Download every done part's GLB of scene job ``job_id`` into ``folder`` (blocking,
    through the add-on's :class:`~.client.BackendClient`). A file already there is kept,
    so a re-import does no transfer. Returns part index -> local GLB path."""
    out: dict[int, Path] = {}
    for p in scene_parts(result):
        if p.get("state") != "done":
            continue
        i = int(p["index"])
        dest = part_glb_path(folder, i)
        if not (dest.is_file() and dest.stat().st_size > 0):
            client.download_result(job_id, dest, part=i)
        out[i] = dest
    return out


def local_part_glbs(result: Mapping[str, Any], folder: Path) -> dict[int, Path]:
    """Part index -> GLB path for the done parts whose GLB already lies in ``folder``."""
    out = {}
    for p in scene_parts(result):
        path = part_glb_path(folder, int(p["index"]))
        if p.get("state") == "done" and path.is_file():
            out[int(p["index"])] = path
    return out


# -- Blender data ------------------------------------------------------------------------


def camera_world_matrix(height: float) -> Matrix:
    """A level camera at ``(0, 0, height)`` looking along world +Y (Blender's front view):
    its local -Z (the viewing direction) is world +Y, its local +Y is world +Z."""
    return Matrix.Translation((0.0, 0.0, float(height))) @ Matrix.Rotation(
        math.radians(90.0), 4, "X"
    )


def create_scene_camera(
    context: bpy.types.Context,
    intrinsics: Mapping[str, Any],
    collection: bpy.types.Collection,
    *,
    name: str,
    height: float = 0.0,
    make_scene_camera: bool = True,
) -> bpy.types.Object:
    """A new camera object matching the photo's pinhole ``intrinsics`` (pixels), level at
    ``height`` metres, linked into ``collection``; with ``make_scene_camera`` it becomes
    the scene's camera and the scene's render resolution becomes the photo's."""
    data = bpy.data.cameras.new(name)
    cam = bpy.data.objects.new(name, data)
    collection.objects.link(cam)
    cam.matrix_world = camera_world_matrix(height)
    scene = context.scene
    importer.apply_intrinsics(cam, intrinsics, scene if make_scene_camera else None)
    data.clip_start = 0.01
    data.clip_end = max(data.clip_end, 1000.0)
    cam[PROP_INTRINSICS] = json.dumps(dict(intrinsics), sort_keys=True)
    if make_scene_camera:
        scene.camera = cam
    return cam


def load_photo(path: str | Path, *, pack: bool = True) -> bpy.types.Image:
    """The photo file as a Blender image (an already loaded one is reused); packed into the
    .blend with ``pack`` so the file stays complete when the photo moves."""
    img = bpy.data.images.load(str(path), check_existing=True)
    if pack and img.packed_file is None:
        img.pack()
    return img


def set_background_image(camera: bpy.types.Object, image: bpy.types.Image) -> None:
    """Show ``image`` behind the scene in ``camera``'s view, fitted to the camera frame
    (the photo and the frame have the same aspect, so it lines up pixel for pixel)."""
    data = camera.data
    bg = next((b for b in data.background_images if b.image == image), None)
    if bg is None:
        bg = data.background_images.new()
    bg.source = "IMAGE"
    bg.image = image
    bg.alpha = 1.0
    bg.display_depth = "BACK"
    bg.frame_method = "FIT"
    bg.show_background_image = True
    data.show_background_images = True


def new_scene_collection(name: str, parent: bpy.types.Collection) -> bpy.types.Collection:
    """A new collection named ``name`` (Blender adds .001 on a clash) under ``parent``."""
    coll = bpy.data.collections.new(name)
    parent.children.link(coll)
    return coll


def default_parent_collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    """The scene's "SAM 3D" collection - unless a collection of that name already belongs
    to ANOTHER Blender scene (e.g. one scene per photo in a batch file), where linking it
    would show every photo's objects in every scene: then the scene's master collection."""
    return importer.ensure_collection(scene)


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
    left selected and framed in the 3D Viewports (:func:`.importer.show_new_objects`).

    ``result``: the job's result.json (``camera``, ``parts``). ``part_glbs``: part index ->
    local GLB (see :func:`fetch_part_glbs`). ``photo``: the photo (a Blender image, or a
    file that is loaded and packed) for the camera's background. ``names``: object name per
    part index (default ``"<label> <index>"``). ``camera_height``: metres (default
    :func:`default_camera_height`). ``parent_collection``: where the scene's own collection
    goes (default the scene's "SAM 3D" collection). ``provenance``: extra ``sam3d_*``
    properties for every object (job id, options, source image).
    """
    scene = context.scene
    parent = parent_collection or default_parent_collection(scene)
    coll = new_scene_collection(label, parent)
    warnings: list[str] = []
    intr = scene_intrinsics(result)
    if intr is None:
        w, h = _photo_size(photo)
        if not (w and h):
            raise ValueError("the result has no camera intrinsics and no photo to size them")
        f = 0.5 * w / math.tan(math.radians(FALLBACK_FOV_X_DEG) / 2)
        intr = {"fx": f, "fy": f, "cx": w / 2, "cy": h / 2, "width": w, "height": h}
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
        set_background_image(cam, background)
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
    importer.show_new_objects(context, list(imported.objects.values()))
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
    new = importer.import_glb(context, glb, collection)
    meshes = [ob for ob in new if ob.type == "MESH"]
    obj = meshes[0] if meshes else new[0]
    obj.name = name
    if obj.type == "MESH" and obj.data.users == 1:
        obj.data.name = name
    pose = part.get("pose") or (importer._extras_of(obj).get("pose"))
    context.view_layer.update()  # matrix_world of the fresh import
    if pose:
        for ob in new:
            if ob.parent is None:
                importer.place_by_pose(ob, pose, camera)
    if decimate and obj.type == "MESH":
        importer.add_decimate(obj)
    prov = dict(provenance)
    prov["placement"] = f"camera:{camera.name}"
    if pose:
        prov["pose"] = pose
    stats = part.get("stats") or {}
    if stats.get("faces") is not None:
        prov["faces"] = int(stats["faces"])
    if part.get("engine"):
        prov.setdefault("engine", part["engine"])
    importer.set_provenance(obj, prov)
    return obj


def _photo_size(photo: bpy.types.Image | str | Path | None) -> tuple[int, int]:
    if photo is None:
        return (0, 0)
    if isinstance(photo, bpy.types.Image):
        return (int(photo.size[0]), int(photo.size[1]))
    img = load_photo(photo, pack=False)
    return (int(img.size[0]), int(img.size[1]))


# -- measuring (used by tests and benchmarks; handy for artists' scripts too) -------------


def camera_projection(
    context: bpy.types.Context, camera: bpy.types.Object
) -> tuple[np.ndarray, int, int]:
    """The 4x4 world -> clip matrix Blender itself uses for ``camera`` at the scene's render
    resolution, and that resolution (width, height) in pixels."""
    scene = context.scene
    r = scene.render
    w = int(r.resolution_x * r.resolution_percentage / 100)
    h = int(r.resolution_y * r.resolution_percentage / 100)
    depsgraph = context.evaluated_depsgraph_get()
    proj = camera.calc_matrix_camera(
        depsgraph, x=w, y=h, scale_x=r.pixel_aspect_x, scale_y=r.pixel_aspect_y
    )
    view = camera.matrix_world.inverted()
    return np.array(proj @ view, dtype=np.float64), w, h


def project_object(
    context: bpy.types.Context, obj: bpy.types.Object, camera: bpy.types.Object
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project ``obj``'s evaluated mesh (modifiers applied) through ``camera``.

    Returns (pixels (n, 2) float64 (u right, v down, origin at the image's top-left corner),
    triangles (m, 3) int64 vertex indices, depth (n,) metres along the camera's view axis).
    """
    depsgraph = context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(depsgraph)
    mesh = ev.to_mesh()
    try:
        mesh.calc_loop_triangles()
        n = len(mesh.vertices)
        co = np.empty(n * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", co)
        tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
    finally:
        ev.to_mesh_clear()
    co = co.reshape(n, 3)
    world = co @ np.array(obj.matrix_world, dtype=np.float64)[:3, :3].T + np.array(
        obj.matrix_world.translation
    )
    m, w, h = camera_projection(context, camera)
    hom = np.c_[world, np.ones(n)] @ m.T
    ndc = hom[:, :2] / hom[:, 3:4]
    px = np.stack([(ndc[:, 0] + 1) * 0.5 * w, (1 - ndc[:, 1]) * 0.5 * h], axis=1)
    view = np.array(camera.matrix_world.inverted(), dtype=np.float64)
    depth = -(np.c_[world, np.ones(n)] @ view.T)[:, 2]
    return px, tris.reshape(-1, 3), depth


def rasterize_triangles(px: np.ndarray, tris: np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width) bool, top row first: pixels whose CENTRE lies inside any triangle.

    ``px`` (n, 2) pixel coordinates (u right, v down, origin at the image's top-left
    corner, so pixel (i, j) spans [i, i+1) x [j, j+1)); ``tris`` (m, 3) vertex indices.
    Pure numpy (Blender's Python has no Pillow): small triangles are tested all at once on
    a padded grid, the few large ones one by one.
    """
    out = np.zeros((height, width), dtype=bool)
    if len(tris) == 0:
        return out
    t = np.asarray(px, dtype=np.float64)[np.asarray(tris)]  # (m, 3, 2)
    lo = np.floor(t.min(axis=1) - 0.5).astype(np.int64) + 1  # first centre >= min
    hi = np.floor(t.max(axis=1) - 0.5).astype(np.int64)  # last centre <= max
    lo = np.maximum(lo, 0)
    hi[:, 0] = np.minimum(hi[:, 0], width - 1)
    hi[:, 1] = np.minimum(hi[:, 1], height - 1)
    span = hi - lo + 1
    keep = (span > 0).all(axis=1)
    t, lo, span = t[keep], lo[keep], span[keep]
    k = 8
    small = (span <= k).all(axis=1)
    if small.any():
        ts, ls = t[small], lo[small]
        g = np.arange(k)
        cu = ls[:, 0, None, None] + g[None, None, :] + 0.5  # (s, 1, k)
        cv = ls[:, 1, None, None] + g[None, :, None] + 0.5  # (s, k, 1)
        inside = _inside(ts, cu, cv)
        s_idx, gy, gx = np.nonzero(inside)
        u = ls[s_idx, 0] + gx
        v = ls[s_idx, 1] + gy
        ok = (u < width) & (v < height)
        out[v[ok], u[ok]] = True
    for tri, l0, sp in zip(t[~small], lo[~small], span[~small], strict=True):
        cu = (l0[0] + np.arange(sp[0]) + 0.5)[None, None, :]
        cv = (l0[1] + np.arange(sp[1]) + 0.5)[None, :, None]
        inside = _inside(tri[None], cu, cv)[0]
        out[l0[1] : l0[1] + sp[1], l0[0] : l0[0] + sp[0]] |= inside
    return out


def _inside(t: np.ndarray, cu: np.ndarray, cv: np.ndarray) -> np.ndarray:
    """Point-in-triangle for triangles ``t`` (s, 3, 2) and grids of points (cu, cv)
    broadcast to (s, H, W); either winding; edges count as inside."""
    a, b, c = (t[:, i, None, None, :] for i in range(3))

    def edge(p, q):
        return (q[..., 0] - p[..., 0]) * (cv - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
            cu - p[..., 0]
        )

    e0, e1, e2 = edge(a, b), edge(b, c), edge(c, a)
    return ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))


def reprojected_silhouette(
    context: bpy.types.Context, obj: bpy.types.Object, camera: bpy.types.Object
) -> np.ndarray:
    """(H, W) bool, top row first, at the scene's render resolution: the pixels ``obj``
    covers seen through ``camera`` (its evaluated mesh, rasterised at pixel centres)."""
    px, tris, depth = project_object(context, obj, camera)
    r = context.scene.render
    w = int(r.resolution_x * r.resolution_percentage / 100)
    h = int(r.resolution_y * r.resolution_percentage / 100)
    front = (depth[tris] > 0).all(axis=1)  # triangles wholly in front of the camera
    return rasterize_triangles(px, tris[front], w, h)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two same-shaped bool masks (0.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
