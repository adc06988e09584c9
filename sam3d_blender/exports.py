"""Per-object exports through Blender's own exporters: USD (.usdc) and FBX (bpy).

Pipelines that do not read .blend or glTF files ask for these. Each object is written on
its own, with its texture, standing on the origin: the bottom centre of its bounding box
at (0, 0, 0), its rotation and its real-world size (metres) as imported. Both exporters
convert Blender's Z-up metres into their format's conventions themselves.

* **USD** (``.usdc``, binary crate): ``wm.usd_export`` with a UsdPreviewSurface material;
  the texture is written into ``textures/`` next to the file and referenced by a relative
  path. Only Blender builds with USD have it (official builds do; Debian's Blender 4.3 does
  not): :func:`missing_formats` tells before any work is done.
* **FBX** (``.fbx``, binary): the bundled FBX add-on, the texture embedded in the file.

The object is exported from a temporary scene holding only it, so the artist's scenes,
selection and active object are untouched; its placement is put back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import bpy

from .importing.placing import place_on_point

__all__ = ["FORMATS", "ExportError", "export_object", "missing_formats"]

#: Export format -> (bpy.ops module, operator name): the formats a batch may ask for.
FORMATS: dict[str, tuple[str, str]] = {
    "usdc": ("wm", "usd_export"),
    "fbx": ("export_scene", "fbx"),
}


class ExportError(Exception):
    """An object could not be exported (the exporter's reason in the message)."""


def _operator(fmt: str):
    module, name = FORMATS[fmt]
    return getattr(getattr(bpy.ops, module), name)


def _available(fmt: str) -> bool:
    try:
        _operator(fmt).get_rna_type()
    except (KeyError, AttributeError):
        return False
    return True


def missing_formats(formats: Iterable[str]) -> list[str]:
    """Which of ``formats`` this Blender cannot write (built without USD; the FBX add-on
    disabled)."""
    if "fbx" in formats and not _available("fbx"):
        import addon_utils

        addon_utils.enable("io_scene_fbx", default_set=False)
    return [f for f in formats if not _available(f)]


def _usd_options() -> dict[str, object]:
    props = _operator("usdc").get_rna_type().properties.keys()
    opts: dict[str, object] = {
        "selected_objects_only": False,
        "export_materials": True,
        "generate_preview_surface": True,
        "export_uvmaps": True,
        "relative_paths": True,
    }
    if "export_textures_mode" in props:  # Blender 4.4+
        opts["export_textures_mode"] = "NEW"
    elif "export_textures" in props:
        opts["export_textures"] = True
    if "overwrite_textures" in props:
        opts["overwrite_textures"] = True
    return {k: v for k, v in opts.items() if k in props}


def _fbx_options() -> dict[str, object]:
    return {
        "use_selection": False,
        "object_types": {"MESH"},
        "use_mesh_modifiers": True,
        "path_mode": "COPY",
        "embed_textures": True,
        "use_custom_props": True,
        "bake_anim": False,
    }


def export_object(obj: bpy.types.Object, path: Path, fmt: str) -> Path:
    """Write ``obj`` (a mesh object, with its modifiers and texture) to ``path`` in format
    ``fmt`` (a key of :data:`FORMATS`), standing on the origin (see the module doc).
    Returns ``path``. Raises :class:`ExportError`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scene = bpy.data.scenes.new(f"SAM 3D export {obj.name}")
    saved = obj.matrix_world.copy()
    try:
        scene.collection.objects.link(obj)
        place_on_point(obj, (0.0, 0.0, 0.0))
        options = _usd_options() if fmt == "usdc" else _fbx_options()
        with bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
            result = _operator(fmt)(filepath=str(path), **options)
        if "FINISHED" not in result or not path.is_file():
            raise ExportError(f"Blender's {fmt} exporter returned {sorted(result)}")
    except RuntimeError as exc:
        raise ExportError(f"Blender's {fmt} exporter failed: {exc}") from None
    finally:
        obj.matrix_world = saved
        bpy.data.scenes.remove(scene)
    return path
