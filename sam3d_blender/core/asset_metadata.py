"""What a generated object carries as a Blender asset (no bpy).

:class:`AssetSettings` says whether and how imported objects become assets (the panel's
"Mark as asset", the operators' ``mark_asset``, the batch's default); the Blender side
(``importing/asset.py``) applies it. Everything an asset shows in the Asset Browser is
built here from the object's provenance (``core/provenance.py``) and its size:

* tags (:func:`asset_tags`): "SAM 3D", the engine, the source photo's name;
* the description (:func:`asset_description`): the photo, mask, engine, seed and options,
  the size as imported, the job;
* the size (:func:`size_m`): the world-space bounding box's extent in metres, X x Y x Z
  (Blender world: Z up), as imported - what an append brings back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any

from .asset_catalogs import clean_catalog_path

__all__ = [
    "DEFAULT_CATALOG",
    "PREVIEW_SIZE",
    "PRODUCT_TAG",
    "AssetSettings",
    "asset_description",
    "asset_tags",
    "photo_name",
    "size_m",
]

#: The catalog generated objects go to unless the panel, preferences or batch say otherwise.
DEFAULT_CATALOG = "SAM 3D"
#: Every generated asset carries this tag (find them all with one search).
PRODUCT_TAG = "SAM 3D"
#: Edge of the rendered preview in pixels (Blender's large previews are 256 px).
PREVIEW_SIZE = 256


@dataclass(frozen=True)
class AssetSettings:
    """How imported objects are marked as assets (``ImportSettings.asset``; None there
    means "not marked").

    ``catalog``: catalog path ("Props/Chairs"; "" = no catalog, Blender's "Unassigned").
    ``author``: the asset's author (preferences). ``library``: the asset library folder
    whose catalog file gets the catalog; "" = the library the .blend belongs to (Blender's
    own rule, ``core/asset_catalogs.py: library_root_for``), or, for a file never saved,
    the one it is first saved into. ``preview``: render a preview of the object
    (``preview_size`` pixels square); off, the asset has no preview image.
    """

    catalog: str = DEFAULT_CATALOG
    author: str = ""
    library: str = ""
    preview: bool = True
    preview_size: int = PREVIEW_SIZE

    def __post_init__(self) -> None:
        object.__setattr__(self, "catalog", clean_catalog_path(self.catalog))

    def fingerprint(self) -> str:
        """Changes exactly when what the assets would carry changes (the batch redoes an
        item's assets, not its job, when it does)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def photo_name(source: str) -> str:
    """The source photo's name without folder and extension (a Blender image name such
    as "chair.png" too): "/data/chair.png" -> "chair"."""
    name = PurePath(source.replace("\\", "/")).name if source else ""
    stem = PurePath(name).stem if "." in name else name
    return stem or name


def asset_tags(provenance: Mapping[str, Any]) -> list[str]:
    """The asset's tags: :data:`PRODUCT_TAG`, the engine, the source photo's name (no
    duplicates, no empty ones)."""
    tags = [PRODUCT_TAG, str(provenance.get("engine") or ""), photo_name(_source(provenance))]
    out: list[str] = []
    for t in tags:
        t = t.strip()[:63]  # Blender keeps tag names of up to 63 bytes
        if t and t not in out:
            out.append(t)
    return out


def size_m(lo: Sequence[float], hi: Sequence[float]) -> list[float]:
    """Extent (metres, X, Y, Z) of a bounding box from its ``lo`` and ``hi`` corners,
    rounded to 0.1 mm."""
    return [round(float(b) - float(a), 4) for a, b in zip(lo, hi, strict=True)]


def _source(provenance: Mapping[str, Any]) -> str:
    return str(provenance.get("source_image") or "")


def _options_text(options: Mapping[str, Any]) -> str:
    parts = []
    if options.get("quality"):
        parts.append(f"quality {options['quality']}")
    faces = options.get("target_faces")
    parts.append(f"{faces} faces" if faces else "all faces")
    if options.get("bake", True):
        parts.append(f"{options.get('texture_size', '?')} px baked texture")
    else:
        parts.append("vertex colours")
    return ", ".join(parts)


def asset_description(provenance: Mapping[str, Any], size: Sequence[float] | None) -> str:
    """The asset's description, one line (the Asset Browser shows it in a one-line field):
    where it came from (photo, mask, engine, seed, options), its size as imported
    (metres) and its job."""
    options = provenance.get("options") or {}
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            options = {}
    source = PurePath(_source(provenance).replace("\\", "/")).name or "an image"
    part = provenance.get("part")
    mask = f", mask {part}" if part is not None else ""
    lines = [
        f"Made by SAM 3D from the photo '{source}'{mask}.",
        f"Engine {provenance.get('engine') or '?'}, seed {provenance.get('seed', 0)}; "
        f"{_options_text(options)}.",
    ]
    if size is not None:
        x, y, z = (float(v) for v in size)
        lines.append(f"Size as imported: {x:.3f} x {y:.3f} x {z:.3f} m (X x Y x Z, Z up).")
    if provenance.get("job_id"):
        lines.append(f"Job {provenance['job_id']}.")
    return " ".join(lines)
