"""Asset scenarios in the real Blender (``blender --background``).

    scripts/blender.sh --background --python-exit-code 3 --python assets.py -- \
        --scenario library|generate --result R.json [inputs]

* ``library`` - a FRESH Blender (no add-on needed) with ``--library DIR`` registered as an
  asset library in its preferences, the way an artist adds one: every .blend in DIR is
  opened with ``bpy.data.libraries.load(path, assets_only=True)``; each asset is linked to
  read what the Asset Browser shows (catalog, tags, description, preview pixels, size),
  the catalog UUIDs are looked up in DIR's catalog file (read here, not by the add-on);
  then ``--append NAME`` is appended into the scene as an artist drags it in, and checked
  for its texture and size. ``--fbx FILE``: an exported FBX imported back (texture, size).
* ``generate`` - ``sam3d.generate(mark_asset=True)`` in the default file: the object is one
  of the current file's assets, with its preview, catalog, tags and metadata; the file is
  saved into ``--save-dir`` (its catalog file appears there) and its assets load from it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Facts, addon, parse_args, run_background, world_bbox  # noqa: E402

FAST = {"engine": "preview", "target_faces": 3000, "texture_size": 256}


def _args():
    def extra(p):
        p.add_argument("--scenario", required=True)
        p.add_argument("--library")
        p.add_argument("--append")
        p.add_argument("--fbx")
        p.add_argument("--photo")
        p.add_argument("--mask")
        p.add_argument("--catalog")
        p.add_argument("--save-dir")

    return parse_args(extra)


def read_catalogs(folder: Path) -> dict[str, str]:
    """UUID -> catalog path, from ``folder/blender_assets.cats.txt`` (Blender's format)."""
    out: dict[str, str] = {}
    lines = (folder / "blender_assets.cats.txt").read_text().splitlines()
    body = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    assert body[0] == "VERSION 1", body[:1]
    for line in body[1:]:
        ident, path, _simple = line.split(":", 2)
        out[ident] = path
    return out


def preview_facts(idb: bpy.types.ID) -> dict:
    """Size of ``idb``'s preview image and what its pixels hold: how many are opaque, and
    how much the colour varies (a blank or flat icon has none)."""
    pv = idb.preview
    if pv is None:
        return {"size": [0, 0], "opaque": 0, "colour_spread": 0.0, "mean": [0.0] * 3}
    w, h = pv.image_size
    px = [0.0] * (w * h * 4)
    if w and h:
        pv.image_pixels_float.foreach_get(px)
    alpha = px[3::4]
    opaque = [i for i, a in enumerate(alpha) if a > 0.5]
    values = [px[4 * i + c] for i in opaque for c in range(3)]
    mean = sum(values) / len(values) if values else 0.0
    spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5 if values else 0.0
    rgb = [sum(px[4 * i + c] for i in opaque) / max(len(opaque), 1) for c in range(3)]
    return {
        "size": [w, h],
        "opaque": len(opaque),
        "colour_spread": round(spread, 4),
        "mean": [round(v, 4) for v in rgb],
    }


def textured(obj: bpy.types.Object) -> dict:
    """The image feeding the Base Color of ``obj``'s material (read here, not by the
    add-on): its size, whether its pixels are in the file, and whether any are not black."""
    for slot in obj.material_slots:
        mat = slot.material
        if mat is None or not mat.use_nodes:
            continue
        for node in mat.node_tree.nodes:
            if node.type != "BSDF_PRINCIPLED" or not node.inputs["Base Color"].is_linked:
                continue
            src = node.inputs["Base Color"].links[0].from_node
            if src.type == "TEX_IMAGE" and src.image is not None:
                img = src.image
                px = [0.0] * (img.size[0] * img.size[1] * img.channels)
                img.pixels.foreach_get(px)
                return {
                    "image": img.name,
                    "size": list(img.size),
                    "packed": img.packed_file is not None,
                    "has_colour": any(v > 0.05 for i, v in enumerate(px) if i % 4 != 3),
                }
    return {"image": None}


def bbox_size(obj: bpy.types.Object) -> list[float]:
    box = world_bbox(obj)
    return [box["max"][i] - box["min"][i] for i in range(3)]


def asset_facts(obj: bpy.types.Object, catalogs: dict[str, str]) -> dict:
    data = obj.asset_data
    return {
        "name": obj.name,
        "catalog_id": data.catalog_id,
        "catalog": catalogs.get(data.catalog_id),
        "tags": [t.name for t in data.tags],
        "description": data.description,
        "author": data.author,
        "size_m": list(data.get("sam3d_size_m", [])),
        "preview": preview_facts(obj),
    }


def scenario_library(facts: Facts, args) -> None:
    library = Path(args.library)
    prefs = bpy.context.preferences
    lib = prefs.filepaths.asset_libraries.new(name="SAM 3D test", directory=str(library))
    facts["registered"] = [(x.name, x.path) for x in prefs.filepaths.asset_libraries]
    facts["library_path"] = lib.path
    catalogs = read_catalogs(library)
    facts["catalogs"] = catalogs
    facts["files"] = {}
    for blend in sorted(library.rglob("*.blend")):
        bpy.ops.wm.read_homefile(use_empty=True)
        with bpy.data.libraries.load(str(blend), assets_only=True) as (src, _dst):
            listed = {"objects": list(src.objects), "meshes": list(src.meshes)}
        with bpy.data.libraries.load(str(blend), assets_only=True, link=True) as (src, dst):
            dst.objects = list(src.objects)
        linked = [o for o in dst.objects if o is not None]
        facts["files"][blend.name] = {
            "assets_only_listing": listed,
            "assets": [asset_facts(o, catalogs) for o in linked],
        }
    if args.append:
        bpy.ops.wm.read_homefile(use_empty=True)
        blend = next(
            b
            for b, f in facts["files"].items()
            if args.append in f["assets_only_listing"]["objects"]
        )
        with bpy.data.libraries.load(str(library / blend), assets_only=True) as (src, dst):
            dst.objects = [args.append]
        obj = dst.objects[0]
        bpy.context.scene.collection.objects.link(obj)
        bpy.context.view_layer.update()
        facts["appended"] = {
            "name": obj.name,
            "in_scene": obj.name in bpy.context.scene.objects,
            "library": obj.library is not None,
            "is_asset": obj.asset_data is not None,
            "texture": textured(obj),
            "size": bbox_size(obj),
            "asset_size": list(obj.asset_data.get("sam3d_size_m", [])),
            "faces": len(obj.data.polygons),
        }
    if args.fbx:
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.import_scene.fbx(filepath=args.fbx)
        meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
        bpy.context.view_layer.update()
        facts["fbx"] = [{"texture": textured(o), "size": bbox_size(o)} for o in meshes]
        facts["fbx_lowest_z"] = min(world_bbox(o)["min"][2] for o in meshes)


def scenario_generate(facts: Facts, args) -> None:
    scene = bpy.context.scene
    result = bpy.ops.sam3d.generate(
        image_path=args.photo,
        mask_path=args.mask,
        mark_asset=True,
        asset_catalog=args.catalog,
        **FAST,
    )
    facts["result"] = sorted(result)
    objs = [o for o in scene.objects if o.type == "MESH" and "sam3d_job_id" in o]
    facts["current_file_assets"] = sorted(o.name for o in bpy.data.objects if o.asset_data)
    save_dir = Path(args.save_dir)
    facts["cats_before_save"] = (save_dir / "blender_assets.cats.txt").is_file()
    facts["object"] = {
        "name": objs[0].name,
        "size": bbox_size(objs[0]),
        "preview": preview_facts(objs[0]),
        "tags": [t.name for t in objs[0].asset_data.tags],
        "description": objs[0].asset_data.description,
        "catalog_id": objs[0].asset_data.catalog_id,
        "size_m": list(objs[0].asset_data.get("sam3d_size_m", [])),
    }
    blend = save_dir / "generated.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    catalogs = read_catalogs(save_dir)
    facts["catalog"] = catalogs.get(objs[0].asset_data.catalog_id)
    facts["catalogs"] = catalogs
    with bpy.data.libraries.load(str(blend), assets_only=True) as (src, _dst):
        facts["assets_in_saved_file"] = list(src.objects)


SCENARIOS = {"library": scenario_library, "generate": scenario_generate}


def main() -> None:
    args = _args()
    facts = Facts(args.result)
    facts["scenario"] = args.scenario
    run_background(lambda f: SCENARIOS[args.scenario](f, args), facts)
    if args.scenario == "generate":
        addon("session").reset()  # stop the backend before Blender exits


main()
