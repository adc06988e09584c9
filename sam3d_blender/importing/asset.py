"""Generated objects as Blender assets: marked, catalogued, tagged, described, previewed (bpy).

:func:`mark_asset` turns one imported object into an asset the Asset Browser shows:

* ``asset_mark()`` (Blender then keeps the object in the file, as it does for every
  asset);
* its catalog (``asset_data.catalog_id``): the catalog is added to the catalog file of the
  asset library the assets belong to (``core/asset_catalogs.py``) when missing. A file that
  was never saved has no library yet: the catalog is then written when the file is first
  saved (:func:`on_save_pre`), into the library it is saved into;
* tags, description and author (``core/asset_metadata.py``), built from the object's
  ``sam3d_*`` provenance, and its size as imported (world bounding box, metres) as the
  asset's ``sam3d_size_m`` property (and the object's);
* a preview: a small Cycles render of the textured object (``asset_preview.py``).

Marking again (a batch re-run with other asset settings) updates all of it in place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
from mathutils import Vector

from ..core.asset_catalogs import CatalogError, CatalogFile, catalog_uuid, library_root_for
from ..core.asset_metadata import (
    DEFAULT_CATALOG,
    AssetSettings,
    asset_description,
    asset_tags,
    size_m,
)
from ..core.messages import ErrorInfo
from ..core.provenance import PROP_PREFIX
from ..paths import addon_preferences
from .asset_preview import PreviewError, render_preview
from .placing import world_bounds

__all__ = [
    "PROP_CATALOG",
    "PROP_SIZE",
    "MarkedAsset",
    "asset_library_dirs",
    "mark_asset",
    "mark_assets",
    "register_handlers",
    "settings_from_preferences",
    "unregister_handlers",
    "world_size",
]

#: Custom property (on the asset metadata) holding the catalog path the asset was put in.
PROP_CATALOG = PROP_PREFIX + "catalog"
#: Custom property (asset metadata and object) holding the size as imported, metres X Y Z.
PROP_SIZE = PROP_PREFIX + "size_m"
#: ``asset_data.catalog_id`` of an asset in no catalog.
NIL_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass
class MarkedAsset:
    """What :func:`mark_asset` did to one object. ``catalog_file``: the catalog file that
    lists its catalog (None: no catalog, or the file is written at the first save).
    ``preview_s``: seconds the preview took (None: no preview). ``warnings``: what could
    not be done (the object is an asset all the same): a code (``asset_catalog_failed``,
    ``preview_failed``) and a sentence each."""

    name: str
    catalog: str
    catalog_id: str
    catalog_file: Path | None
    tags: list[str]
    size_m: list[float]
    preview_s: float | None = None
    warnings: list[ErrorInfo] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "catalog": self.catalog,
            "catalog_id": self.catalog_id,
            "catalog_file": str(self.catalog_file) if self.catalog_file else None,
            "tags": self.tags,
            "size_m": self.size_m,
            "preview_s": None if self.preview_s is None else round(self.preview_s, 3),
            "warnings": [{"code": w.code, "message": w.message} for w in self.warnings],
        }


def asset_library_dirs(context: bpy.types.Context | None = None) -> list[str]:
    """The folders of Blender's asset libraries (preferences), in their order."""
    ctx = context or bpy.context
    return [lib.path for lib in ctx.preferences.filepaths.asset_libraries if lib.path]


def settings_from_preferences(catalog: str | None = None, library: str = "") -> AssetSettings:
    """Asset settings from the add-on preferences (author, previews, default catalog);
    ``catalog``: another catalog path (None or "": the preferences'), ``library``: the
    asset library folder whose catalog file gets it ("": the .blend's own)."""
    prefs = addon_preferences()
    default = str(getattr(prefs, "asset_catalog", DEFAULT_CATALOG))
    return AssetSettings(
        catalog=catalog or default,
        author=str(getattr(prefs, "asset_author", "")),
        library=library,
        preview=bool(getattr(prefs, "asset_preview", True)),
    )


def _library_root(settings: AssetSettings, blend_path: str) -> Path | None:
    """The library whose catalog file gets the catalogs (None: a file never saved)."""
    if settings.library:
        return Path(bpy.path.abspath(settings.library))
    if blend_path:
        return library_root_for(blend_path, asset_library_dirs())
    return None


def _provenance(obj: bpy.types.Object) -> dict[str, Any]:
    """The object's ``sam3d_*`` custom properties, without the prefix (options parsed)."""
    prov = {k[len(PROP_PREFIX) :]: obj[k] for k in obj.keys() if k.startswith(PROP_PREFIX)}
    if isinstance(prov.get("options"), str):
        try:
            prov["options"] = json.loads(prov["options"])
        except ValueError:
            prov["options"] = {}
    return prov


def world_size(obj: bpy.types.Object) -> list[float]:
    """Extent (metres, world X, Y, Z) of ``obj``'s bounding box as it is placed."""
    return size_m(*world_bounds(obj))


def _set_catalog(obj: bpy.types.Object, settings: AssetSettings, marked: MarkedAsset) -> None:
    data = obj.asset_data
    if not settings.catalog:
        data.catalog_id = NIL_UUID
        data[PROP_CATALOG] = ""
        return
    data[PROP_CATALOG] = settings.catalog
    root = _library_root(settings, bpy.data.filepath)
    ident = catalog_uuid(settings.catalog)
    if root is not None:
        try:
            cats = CatalogFile(root)
            ident = cats.ensure(settings.catalog).uuid
            marked.catalog_file = cats.path
        except CatalogError as exc:
            text = f"The catalog '{settings.catalog}' could not be added: {exc.message}."
            marked.warnings.append(ErrorInfo(exc.code, text))
            ident = NIL_UUID  # "Unassigned" in the Asset Browser, where the artist finds it
    data.catalog_id = ident
    marked.catalog_id = ident


def mark_asset(
    obj: bpy.types.Object, settings: AssetSettings, *, view_from: Vector | None = None
) -> MarkedAsset:
    """Make ``obj`` (an imported object with its ``sam3d_*`` provenance) an asset as
    ``settings`` say; see the module docstring. ``view_from``: where its preview is seen
    from (world point, metres; e.g. the photo's camera), default the front (-Y)."""
    if obj.asset_data is None:
        obj.asset_mark()
    data = obj.asset_data
    prov = _provenance(obj)
    size = world_size(obj)
    tags = asset_tags(prov)
    for tag in tags:
        data.tags.new(tag, skip_if_exists=True)
    data.description = asset_description(prov, size)
    if settings.author:
        data.author = settings.author
    data[PROP_SIZE] = size
    obj[PROP_SIZE] = size
    marked = MarkedAsset(obj.name, settings.catalog, NIL_UUID, None, tags, size)
    _set_catalog(obj, settings, marked)
    if settings.preview:
        try:
            marked.preview_s = render_preview(obj, settings.preview_size, view_from)
        except (PreviewError, RuntimeError, OSError) as exc:
            text = f"No preview was rendered for '{obj.name}': {exc}."
            marked.warnings.append(ErrorInfo("preview_failed", text))
    return marked


def mark_assets(
    objects: Iterable[bpy.types.Object],
    settings: AssetSettings,
    *,
    view_from: Vector | None = None,
) -> list[MarkedAsset]:
    """:func:`mark_asset` for each of ``objects`` (mesh objects only)."""
    return [mark_asset(o, settings, view_from=view_from) for o in objects if o.type == "MESH"]


# -- catalogs of a file that was never saved -------------------------------------------------


@bpy.app.handlers.persistent
def on_save_pre(filepath: str = "", *_args: Any) -> None:
    """Before a file is saved: every asset this add-on marked whose catalog is not yet in
    the catalog file of the library the file is saved into gets it there (a file that was
    never saved had no library when its objects were marked). An artist's own catalog of
    the same path keeps its UUID, and the asset is moved to it. Assets the artist has
    since moved to another catalog are left where they are."""
    if not isinstance(filepath, str) or not filepath:
        filepath = bpy.data.filepath
    if not filepath:
        return
    wanted: dict[str, list[bpy.types.ID]] = {}
    for obj in bpy.data.objects:
        data = obj.asset_data
        if data is None or obj.library is not None or not data.get(PROP_CATALOG):
            continue
        path = str(data[PROP_CATALOG])
        if data.catalog_id == catalog_uuid(path):  # still where the import put it
            wanted.setdefault(path, []).append(obj)
    if not wanted:
        return
    try:
        cats = CatalogFile(library_root_for(filepath, asset_library_dirs()))
        for path, objs in wanted.items():
            ident = cats.ensure(path).uuid
            for obj in objs:
                if obj.asset_data.catalog_id != ident:
                    obj.asset_data.catalog_id = ident
    except CatalogError as exc:
        print(f"SAM 3D: asset catalogs not written: {exc.message}")


def register_handlers() -> None:
    if on_save_pre not in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.append(on_save_pre)


def unregister_handlers() -> None:
    if on_save_pre in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.remove(on_save_pre)
