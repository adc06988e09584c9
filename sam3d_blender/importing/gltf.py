"""Blender's glTF importer and what every imported object gets (bpy).

:func:`import_glb` runs Blender's own glTF importer, which converts glTF's Y-up to
Blender's Z-up (a +90 degree rotation about X, see ``core/placement.py``), packs the
embedded textures into the .blend and copies node ``extras`` into custom properties.
Objects go into the scene's "SAM 3D" collection, carry their provenance as ``sam3d_*``
custom properties and a non-destructive Decimate modifier.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bpy

from ..core.provenance import PROP_PREFIX
from .view import window_override

COLLECTION_NAME = "SAM 3D"
DECIMATE_NAME = "SAM 3D Simplify"


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


def import_glb(
    context: bpy.types.Context, path: str | Path, collection: bpy.types.Collection | None = None
) -> list[bpy.types.Object]:
    """Import one GLB with Blender's glTF importer; returns the new objects (roots first).

    The importer converts glTF's Y-up to Blender's Z-up (see ``core/placement.py``), packs the
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


def import_named(
    context: bpy.types.Context, path: str | Path, collection: bpy.types.Collection, name: str
) -> tuple[bpy.types.Object, list[bpy.types.Object]]:
    """Import one generated GLB into ``collection`` and name its object (and, when the
    object alone uses it, its mesh) ``name``. Returns (the object: the first mesh, else the
    first new object; every new object, roots first)."""
    new = import_glb(context, path, collection)
    meshes = [ob for ob in new if ob.type == "MESH"]
    obj = meshes[0] if meshes else new[0]
    obj.name = name
    if obj.type == "MESH" and obj.data.users == 1:
        obj.data.name = name
    return obj, new


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


def set_provenance(obj: bpy.types.Object, provenance: Mapping[str, Any]) -> None:
    """Store ``provenance`` as ``sam3d_<key>`` custom properties (dicts/lists as JSON)."""
    for key, value in provenance.items():
        if value is None:
            continue
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, sort_keys=True)
        obj[PROP_PREFIX + key] = value


def add_decimate(obj: bpy.types.Object, ratio: float = 1.0) -> bpy.types.Modifier:
    """A non-destructive Decimate (collapse) modifier the artist can lower."""
    mod = obj.modifiers.get(DECIMATE_NAME) or obj.modifiers.new(DECIMATE_NAME, "DECIMATE")
    mod.decimate_type = "COLLAPSE"
    mod.ratio = ratio
    return mod


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
