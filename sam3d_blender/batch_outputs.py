"""What the batch leaves besides its own .blend: assets, an asset library, exports (bpy).

For each finished item (``batch.py``), as the arguments ask (``core/batch_items.py``):

* **Assets** (default on): the item's objects are assets - catalogued, tagged, described,
  previewed (``importing/asset.py``). A new job is marked on its way into the scene
  (``finish.deliver``, as the panel's jobs are); an item brought back from its saved GLBs,
  or whose asset settings changed, is marked here.
* **Asset library** (``--asset-library DIR``): the item's Blender scene is written as
  ``DIR/<id>.blend`` (``asset_library.py``), or all items into one ``--asset-blend`` file,
  and the catalogs go into ``DIR/blender_assets.cats.txt``. Registered in Blender's
  preferences, DIR shows every object, previewed, under its catalog.
* **Exports** (``--export usdc,fbx``): ``items/<id>/object_<i>.<format>`` per object,
  with its texture (``exports.py``).

A re-run leaves an item's files alone unless its job or these settings changed (its
"outputs fingerprint") or a file is missing; only then is the item's library file
rewritten, in place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import bpy

from .asset_library import LibraryError, item_blend_name, remove_blend, write_blend
from .core.asset_catalogs import CatalogError, CatalogFile
from .core.asset_metadata import AssetSettings
from .core.batch_items import Item, export_formats
from .exports import ExportError, export_object
from .importing.asset import MarkedAsset, mark_assets, settings_from_preferences

__all__ = ["Outputs", "item_objects"]


def item_objects(scene: bpy.types.Scene) -> dict[int, bpy.types.Object]:
    """The generated objects of an item's Blender scene, by part index."""
    objs = [o for o in scene.objects if o.type == "MESH" and "sam3d_part" in o]
    return {int(o["sam3d_part"]): o for o in sorted(objs, key=lambda o: int(o["sam3d_part"]))}


class Outputs:
    """The run's output settings, and what they leave for each item (module docstring)."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.out = out
        self.assets = not args.no_assets
        self.library = Path(args.asset_library).resolve() if args.asset_library else None
        self.one_file = args.asset_blend or ""
        self.exports = export_formats(args.export)
        self.catalog: str | None = args.catalog
        self.author: str | None = args.author
        self.previews = not args.no_previews
        #: one-file library: some item changed, so the file is written at the end
        self.library_dirty = False

    def settings(self, item: Item) -> AssetSettings | None:
        """How ``item``'s objects become assets (None: they don't)."""
        if not self.assets:
            return None
        s = settings_from_preferences(library=str(self.library or ""))
        catalog = item.catalog if item.catalog is not None else self.catalog
        if catalog is not None:
            s = replace(s, catalog=catalog)
        if self.author is not None:
            s = replace(s, author=self.author)
        return replace(s, preview=self.previews)

    def fingerprint(self, item: Item) -> str:
        """Changes exactly when what this run leaves for ``item`` besides its job does."""
        s = self.settings(item)
        key = {
            "assets": s.fingerprint() if s is not None else None,
            "library": str(self.library or ""),
            "one_file": self.one_file,
            "exports": self.exports,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def library_file(self, ident: str) -> Path | None:
        """The library file that holds item ``ident``'s assets (None: no library)."""
        if self.library is None:
            return None
        return self.library / (self.one_file or item_blend_name(ident))

    def stale(self, item: Item, rec: dict[str, Any]) -> bool:
        """Whether a finished item from an earlier run needs its outputs done again: other
        settings, or a file of them gone."""
        if rec.get("outputs_fp") != self.fingerprint(item):
            return True
        lib = self.library_file(item.id)
        if lib is not None and not lib.is_file():
            return True
        for o in rec.get("objects", []):
            for path in (o.get("exports") or {}).values():
                if path and not (self.out / path).is_file():
                    return True
        return False

    def deliver(
        self,
        item: Item,
        scene: bpy.types.Scene,
        rec: dict[str, Any],
        marked: list[MarkedAsset] | None = None,
    ) -> None:
        """Leave ``item``'s outputs (see the module docstring) and record them in ``rec``.
        ``marked``: what marking its objects on import did; None: mark them now."""
        t0 = time.perf_counter()
        objects = item_objects(scene)
        settings = self.settings(item)
        errors: list[dict[str, Any]] = []
        if settings is not None:
            if marked is None:
                with bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
                    marked = mark_assets(objects.values(), settings, view_from=_camera(scene))
            by_name = {m.name: m for m in marked}
            for o in rec.get("objects", []):
                m = by_name.get(o.get("name", ""))
                if m is not None:
                    o["asset"] = m.to_json()
                    errors += [{"code": w.code, "message": w.message} for w in m.warnings]
            rec["catalog"] = settings.catalog
        else:  # --no-assets after a run that made them: they are plain objects again
            for obj in objects.values():
                if obj.asset_data is not None:
                    obj.asset_clear()
            for o in rec.get("objects", []):
                o.pop("asset", None)
            rec.pop("catalog", None)
        rec["timings"]["asset_s"] = round(time.perf_counter() - t0, 3)
        t1 = time.perf_counter()
        errors += self._write_library(item, scene, rec, settings)
        errors += self._export(item, objects, rec)
        rec["timings"]["outputs_s"] = round(time.perf_counter() - t1, 3)
        rec["outputs_fp"] = self.fingerprint(item)
        rec["output_errors"] = errors

    def _write_library(
        self,
        item: Item,
        scene: bpy.types.Scene,
        rec: dict[str, Any],
        settings: AssetSettings | None,
    ) -> list[dict[str, Any]]:
        path = self.library_file(item.id)
        if path is None:
            return []
        rec["asset_file"] = str(path)
        try:
            if settings is not None and settings.catalog:
                CatalogFile(self.library).ensure(settings.catalog)  # even with no objects
            if self.one_file:
                self.library_dirty = True
            else:
                write_blend(path, [scene])
        except CatalogError as exc:
            return [{"code": exc.code, "message": exc.message}]
        except LibraryError as exc:
            return [{"code": "asset_library_unwritable", "message": str(exc)}]
        return []

    def _export(
        self, item: Item, objects: dict[int, bpy.types.Object], rec: dict[str, Any]
    ) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        if not self.exports:
            return errors
        folder = self.out / "items" / item.id
        for o in rec.get("objects", []):
            obj = objects.get(int(o["index"]))
            if obj is None:
                continue
            o["exports"] = {}
            for fmt in self.exports:
                path = folder / f"object_{o['index']}.{fmt}"
                try:
                    export_object(obj, path, fmt)
                    o["exports"][fmt] = str(path.relative_to(self.out))
                except ExportError as exc:
                    o["exports"][fmt] = None
                    errors.append({"code": "export_failed", "message": f"{obj.name}: {exc}"})
        return errors

    def drop(self, ident: str) -> None:
        """Item ``ident`` failed: its per-item library file (from an earlier run) goes, so
        the library shows no stale assets; a one-file library is rewritten without it."""
        path = self.library_file(ident)
        if path is None:
            return
        if self.one_file:
            self.library_dirty = True
            return
        try:
            remove_blend(path)
        except LibraryError as exc:
            print(f"warning: {exc}")

    def finish(self, scenes: list[bpy.types.Scene]) -> str | None:
        """End of the run: a one-file library is written when an item changed (or the file
        is gone); ``scenes``: every finished item's scene. Returns an error sentence."""
        if self.library is None or not self.one_file:
            return None
        path = self.library / self.one_file
        if not (self.library_dirty or not path.is_file()) or not scenes:
            return None
        try:
            write_blend(path, scenes)
        except LibraryError as exc:
            return str(exc)
        self.library_dirty = False
        return None


def _camera(scene: bpy.types.Scene):
    cam = scene.camera
    return cam.matrix_world.translation.copy() if cam is not None else None
