"""Bringing a generated GLB into the scene: import, name, collect, place, record provenance.

Everything here runs on Blender's main thread (from an operator). Placement math lives in
the bpy-free :mod:`.placement`; this module only applies it to Blender objects.

Building blocks meant for reuse (e.g. a multi-object "photo to scene" import):
:func:`import_glb` (one GLB -> its new objects), :func:`place_by_pose` (object + pose +
camera), :func:`ensure_camera` / :func:`apply_intrinsics` (a camera matching the photo).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix, Vector

from . import placement

COLLECTION_NAME = "SAM 3D"
DECIMATE_NAME = "SAM 3D Simplify"
CAMERA_NAME = "SAM 3D Camera"
#: Custom-property prefix for provenance on imported objects.
PROP_PREFIX = "sam3d_"


def ensure_collection(scene: bpy.types.Scene, name: str = COLLECTION_NAME) -> bpy.types.Collection:
    """Where SAM 3D objects of ``scene`` go: its "SAM 3D" collection, created and linked
    under the scene when missing. When a collection of that name already belongs to
    ANOTHER scene (one scene per photo in a batch file), linking it would show every
    scene's objects in every scene: then the scene's master collection."""
    coll = scene.collection.children.get(name)
    if coll is not None:
        return coll
    coll = bpy.data.collections.get(name)
    if coll is not None and coll.library is None:
        if any(coll in sc.collection.children_recursive for sc in bpy.data.scenes):
            return scene.collection
        scene.collection.children.link(coll)  # an unlinked one of ours: adopt it
        return coll
    coll = bpy.data.collections.new(name)
    scene.collection.children.link(coll)
    return coll


def window_override(context: bpy.types.Context) -> dict[str, Any]:
    """A context override with a window, for operators run from timers (no window there)."""
    if context.window is not None:
        return {}
    wm = context.window_manager
    if wm is not None and wm.windows:
        win = wm.windows[0]
        return {"window": win, "screen": win.screen}
    return {}


def import_glb(
    context: bpy.types.Context, path: str | Path, collection: bpy.types.Collection | None = None
) -> list[bpy.types.Object]:
    """Import one GLB with Blender's glTF importer; returns the new objects (roots first).

    The importer converts glTF's Y-up to Blender's Z-up (see :mod:`.placement`), packs the
    embedded textures into the .blend, and copies node ``extras`` into custom properties.
    With ``collection``, the new objects are moved into it (out of the active collection).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(str(path))
    before = set(bpy.data.objects)
    with context.temp_override(**window_override(context)):
        if context.object is not None and context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        result = bpy.ops.import_scene.gltf(filepath=str(path))
    if "FINISHED" not in result:
        raise RuntimeError(f"glTF import of {path.name} returned {result}")
    new = [ob for ob in bpy.data.objects if ob not in before]
    if not new:
        raise RuntimeError(f"glTF import of {path.name} created no objects")
    if collection is not None:
        for ob in new:
            for c in list(ob.users_collection):
                c.objects.unlink(ob)
            collection.objects.link(ob)
    new.sort(key=lambda ob: ob.parent is not None)
    return new


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


def place_on_point(obj: bpy.types.Object, point: Any) -> None:
    """Move ``obj`` so its bounding box's bottom centre rests on ``point`` (world, metres)."""
    mw = np.array(obj.matrix_world, dtype=np.float64)
    corners = np.array([tuple(c) for c in obj.bound_box], dtype=np.float64)
    world = corners @ mw[:3, :3].T + mw[:3, 3]
    shift = placement.floor_at_point(world, tuple(point))
    mw[:3, 3] += shift
    obj.matrix_world = Matrix(mw.tolist())


def apply_intrinsics(
    camera: bpy.types.Object, intrinsics: Mapping[str, Any], scene: bpy.types.Scene | None = None
) -> None:
    """Make ``camera`` see like the photo's pinhole ``intrinsics`` (lens, sensor, shift);
    with ``scene``, also set its render resolution and pixel aspect to the photo's."""
    params = placement.camera_params_from_intrinsics(intrinsics)
    cam = camera.data
    cam.type = "PERSP"
    cam.sensor_fit = params["sensor_fit"]
    cam.sensor_width = params["sensor_width"]
    cam.sensor_height = params["sensor_height"]
    cam.lens = params["lens"]
    cam.shift_x = params["shift_x"]
    cam.shift_y = params["shift_y"]
    if scene is not None:
        r = scene.render
        r.resolution_x = params["resolution_x"]
        r.resolution_y = params["resolution_y"]
        r.resolution_percentage = 100
        r.pixel_aspect_x = params["pixel_aspect_x"]
        r.pixel_aspect_y = params["pixel_aspect_y"]


def ensure_camera(
    context: bpy.types.Context,
    intrinsics: Mapping[str, Any] | None,
    collection: bpy.types.Collection | None = None,
) -> bpy.types.Object:
    """The scene's camera; when there is none, a new "SAM 3D Camera" at the origin looking
    along +Y (Blender's front view), matched to ``intrinsics``, made the scene camera."""
    scene = context.scene
    if scene.camera is not None:
        return scene.camera
    data = bpy.data.cameras.new(CAMERA_NAME)
    cam = bpy.data.objects.new(CAMERA_NAME, data)
    cam.rotation_euler = (math.radians(90.0), 0.0, 0.0)
    (collection or scene.collection).objects.link(cam)
    if intrinsics:
        apply_intrinsics(cam, intrinsics, scene)
    scene.camera = cam
    context.view_layer.update()
    return cam


def add_decimate(obj: bpy.types.Object, ratio: float = 1.0) -> bpy.types.Modifier:
    """A non-destructive Decimate (collapse) modifier the artist can lower."""
    mod = obj.modifiers.get(DECIMATE_NAME) or obj.modifiers.new(DECIMATE_NAME, "DECIMATE")
    mod.decimate_type = "COLLAPSE"
    mod.ratio = ratio
    return mod


def set_provenance(obj: bpy.types.Object, provenance: Mapping[str, Any]) -> None:
    """Store ``provenance`` as ``sam3d_<key>`` custom properties (dicts/lists as JSON)."""
    for key, value in provenance.items():
        if value is None:
            continue
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, sort_keys=True)
        obj[PROP_PREFIX + key] = value


def textured_image(obj: bpy.types.Object) -> bpy.types.Image | None:
    """The image feeding the Base Color of ``obj``'s first material, if any."""
    for slot in obj.material_slots:
        mat = slot.material
        if mat is None or not mat.use_nodes:
            continue
        for node in mat.node_tree.nodes:
            if node.type == "BSDF_PRINCIPLED":
                sock = node.inputs.get("Base Color")
                if sock is not None and sock.is_linked:
                    src = sock.links[0].from_node
                    if src.type == "TEX_IMAGE":
                        return src.image
    return None


def import_generated(
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
    in the 3D Viewports (:func:`show_new_objects`).

    ``result``: the job's result.json (pose, intrinsics) - when absent the pose is read
    from the GLB node's ``extras["sam3d"]``. ``placement_mode``: "CURSOR" (stand on the 3D
    cursor - on top of the object the cursor is inside, if any: :func:`standing_point`;
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
    new = import_glb(context, glb_path, coll)
    meshes = [ob for ob in new if ob.type == "MESH"]
    obj = meshes[0] if meshes else new[0]
    obj.name = label
    if obj.type == "MESH" and obj.data.users == 1:
        obj.data.name = label
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
            placed = f"cursor:on top of {lifted_from.name}"
    if decimate and obj.type == "MESH":
        add_decimate(obj)
    prov = dict(provenance or {})
    prov["placement"] = placed
    if pose:
        prov.setdefault("pose", pose)
    set_provenance(obj, prov)
    show_new_objects(context, [obj])
    return obj


def placement_note(obj: bpy.types.Object) -> str:
    """' on top of "Cube" (the 3D cursor is inside it)' when the import lifted ``obj`` out
    of the object the cursor was in (see :func:`standing_point`); else ''."""
    placed = str(obj.get(PROP_PREFIX + "placement", ""))
    prefix = "cursor:on top of "
    if not placed.startswith(prefix):
        return ""
    return f" on top of '{placed[len(prefix) :]}' (the 3D cursor is inside it)"


def extras_of(obj: bpy.types.Object) -> dict[str, Any]:
    """The ``sam3d`` node extras (pose, intrinsics, stats, engine) that Blender's glTF
    importer stored on the object as a custom property; {} when absent."""
    value = obj.get("sam3d")
    if value is None:
        return {}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


_extras_of = extras_of  # older name, used by scene_import
