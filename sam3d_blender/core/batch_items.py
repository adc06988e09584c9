"""The batch's inputs: arguments, manifests, items and their fingerprints (no bpy).

Arguments (one of the input forms, plus ``--out``)::

    --image PHOTO --mask MASK              one object
    --image PHOTO --masks DIR              one scene: DIR holds 0.png, 1.png, ...
    --manifest FILE.json | FILE.csv        many photos (see below)

Outputs besides ``--out`` (see ``batch.py``)::

    --asset-library DIR [--catalog PATH] [--asset-blend NAME]   an asset library
    --no-assets  --no-previews  --author NAME                   how objects become assets
    --export usdc,fbx                                           per-object files

Manifest: JSON ``{"defaults": {...options...}, "items": [{"id", "image", "mask" |
"masks", "catalog"}, ...]}`` (or just the list), or CSV with columns
``id,image,mask,masks`` (plus optional job options:
``engine,seed,quality,target_faces,texture_size,bake``, and ``catalog``). ``masks`` is a
folder of ``0.png, 1.png, ...`` (``core/masks.py``) or a list of files (';'-separated in
CSV). Relative paths are relative to the manifest. An item's ``catalog`` overrides
``--catalog``.

An item's fingerprint changes exactly when its input bytes or options do; the batch skips
an item whose fingerprint it has finished before (``core/batch_report.py``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .asset_catalogs import clean_catalog_path
from .asset_metadata import DEFAULT_CATALOG
from .masks import mask_files_in
from .messages import InputError
from .options import ENGINES, QUALITIES, JobOptions

__all__ = [
    "Item",
    "UsageError",
    "base_options",
    "EXPORT_FORMATS",
    "build_parser",
    "check_outputs",
    "export_formats",
    "fingerprint",
    "items_from_args",
    "load_manifest",
    "script_argv",
]


#: Formats ``--export`` takes (Blender's own exporters write them, ``exports.py``).
EXPORT_FORMATS: tuple[str, ...] = ("usdc", "fbx")


class UsageError(Exception):
    """Bad arguments or manifest (exit status 2)."""


@dataclass
class Item:
    """One photo and its masks. ``masks``: mask files in object order (resolved from a
    folder when the item names one); ``options``: per-item overrides of the job options;
    ``catalog``: the asset catalog of its objects (None: the run's ``--catalog``)."""

    id: str
    image: Path
    masks: list[Path] = field(default_factory=list)
    mask_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    catalog: str | None = None
    input_error: tuple[str, str] | None = None  # (code, message) found before any job


def script_argv(argv: list[str] | None = None) -> list[str]:
    """The script's own arguments: after ``--`` inside Blender, else ``sys.argv[1:]``."""
    argv = list(sys.argv if argv is None else argv)
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return argv[1:]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sam3d_batch.py",
        description="Photos + masks -> posed 3D objects (.blend, GLBs, JSON report).",
    )
    src = p.add_argument_group("input (one of)")
    src.add_argument("--image", help="the photo")
    src.add_argument("--mask", help="one mask for --image (one object)")
    src.add_argument("--masks", help="folder of masks 0.png, 1.png, ... for --image (a scene)")
    src.add_argument("--manifest", help="JSON or CSV list of photos and masks")
    p.add_argument("--out", required=True, help="output folder")
    d = JobOptions()
    p.add_argument("--engine", default=d.engine, help=f"{' | '.join(ENGINES)} (default {d.engine})")
    p.add_argument(
        "--target-faces", type=int, default=d.target_faces, help="triangles per object (0: all)"
    )
    p.add_argument(
        "--texture-size", type=int, default=d.texture_size, help="texture edge in texels"
    )
    p.add_argument("--no-bake", action="store_true", help="vertex colours instead of a texture")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--quality", default=d.quality, choices=list(QUALITIES))
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per item")
    p.add_argument("--retry-failed", action="store_true", help="redo items that failed before")
    p.add_argument("--blend", default="batch.blend", help="name of the .blend in --out")
    p.add_argument("--no-decimate", action="store_true", help="no Decimate modifier on objects")
    a = p.add_argument_group("assets (objects are marked as assets unless --no-assets)")
    a.add_argument(
        "--asset-library",
        metavar="DIR",
        help="also write each item as a .blend of assets into this asset library folder, "
        "with its catalog file (blender_assets.cats.txt)",
    )
    a.add_argument(
        "--catalog",
        default=None,
        help=f"asset catalog path, e.g. 'Props/Chairs' (default {DEFAULT_CATALOG!r}; a "
        "manifest item's 'catalog' wins)",
    )
    a.add_argument(
        "--asset-blend",
        metavar="NAME",
        help="one .blend for all items in --asset-library (default: one per item, <id>.blend)",
    )
    a.add_argument("--author", help="asset author (default: the add-on preferences')")
    a.add_argument("--no-assets", action="store_true", help="do not mark objects as assets")
    a.add_argument("--no-previews", action="store_true", help="assets without a rendered preview")
    p.add_argument(
        "--export",
        default="",
        metavar="FORMATS",
        help=f"also write each object as {' and '.join(EXPORT_FORMATS)} (comma-separated), "
        "with its texture, into items/<id>/",
    )
    be = p.add_argument_group("backend (default: the add-on's preferences)")
    be.add_argument("--backend-python", help="start the managed backend with this Python")
    be.add_argument("--backend-url", help="use a running backend at this URL")
    be.add_argument("--backend-token", help="token for --backend-url")
    be.add_argument(
        "--cache-dir",
        help="backend job store + downloads (default: the add-on's cache inside Blender; "
        "OUT/cache with the bpy module)",
    )
    return p


def export_formats(value: str) -> list[str]:
    """The formats of ``--export`` ("usdc,fbx"), in order, without repeats."""
    out: list[str] = []
    for f in (v.strip().lower().lstrip(".") for v in value.split(",")):
        if not f:
            continue
        if f not in EXPORT_FORMATS:
            raise UsageError(f"--export: unknown format {f!r}; use {', '.join(EXPORT_FORMATS)}")
        if f not in out:
            out.append(f)
    return out


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse combinations of output arguments that cannot work, before any work."""
    if args.asset_library:
        if args.no_assets:
            raise UsageError("--asset-library needs assets; drop --no-assets")
        lib = Path(args.asset_library).resolve()
        out = Path(args.out).resolve()
        if out == lib or lib in out.parents:
            raise UsageError(
                "--out must not be inside --asset-library: Blender would list every asset "
                "twice (the batch's own .blend holds them too)"
            )
    elif args.asset_blend:
        raise UsageError("--asset-blend names a file in --asset-library; give that too")
    if args.asset_blend and not args.asset_blend.endswith(".blend"):
        raise UsageError("--asset-blend must name a .blend file, e.g. library.blend")
    if args.catalog is not None and not clean_catalog_path(args.catalog) and args.catalog:
        raise UsageError(f"--catalog {args.catalog!r} names no catalog")
    export_formats(args.export)


def base_options(args: argparse.Namespace) -> JobOptions:
    """The job options every item starts from (the arguments')."""
    return JobOptions.from_mapping(
        {
            "engine": args.engine,
            "seed": args.seed,
            "quality": args.quality,
            "target_faces": args.target_faces,
            "texture_size": args.texture_size,
            "bake": not args.no_bake,
        }
    )


def _options(row: dict[str, Any], where: str) -> dict[str, Any]:
    """The job options a manifest row (or its ``defaults``) sets, as given."""
    try:
        JobOptions.from_mapping(row)  # refuses what is not an option value
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: a job option is not valid ({exc})") from None
    return {k: v for k, v in row.items() if k in JobOptions.__dataclass_fields__}


def _resolve_masks(item: Item) -> None:
    """Fill ``item.masks`` from its folder; record a missing input as ``input_error``."""
    if not item.image.is_file():
        item.input_error = ("no_image", f"image file not found: {item.image}")
        return
    if item.mask_dir is not None:
        try:
            item.masks = mask_files_in(item.mask_dir)
        except InputError as exc:
            item.input_error = (exc.code, exc.message)
            return
    if not item.masks:
        item.input_error = ("no_mask", "the item names no mask files")
        return
    for m in item.masks:
        if not m.is_file():
            item.input_error = ("no_mask", f"mask file not found: {m}")
            return


def _item_from_row(row: dict[str, Any], base: Path, n: int, seen: set[str]) -> Item:
    image = row.get("image")
    if not image:
        raise UsageError(f"manifest item {n + 1} has no 'image'")
    image_path = (base / str(image)).resolve()
    ident = str(row.get("id") or "").strip() or image_path.stem
    ident = "".join(c if c.isalnum() or c in "-_." else "_" for c in ident)[:60]
    if ident in seen:
        raise UsageError(f"manifest item id {ident!r} is used twice; give each item an 'id'")
    seen.add(ident)
    item = Item(ident, image_path, options=_options(row, f"manifest item {ident!r}"))
    if str(row.get("catalog") or "").strip():
        item.catalog = str(row["catalog"])
    mask, masks = row.get("mask"), row.get("masks")
    if mask and masks:
        raise UsageError(f"manifest item {ident!r}: give 'mask' or 'masks', not both")
    if mask:
        item.masks = [(base / str(mask)).resolve()]
    elif isinstance(masks, list):
        item.masks = [(base / str(m)).resolve() for m in masks]
    elif isinstance(masks, str) and masks.strip():
        parts = [m.strip() for m in masks.split(";") if m.strip()]
        if len(parts) == 1 and not Path(parts[0]).suffix:
            item.mask_dir = (base / parts[0]).resolve()
        elif len(parts) == 1 and (base / parts[0]).is_dir():
            item.mask_dir = (base / parts[0]).resolve()
        else:
            item.masks = [(base / m).resolve() for m in parts]
    else:
        raise UsageError(f"manifest item {ident!r} has no 'mask' or 'masks'")
    _resolve_masks(item)
    return item


def load_manifest(path: Path) -> tuple[list[Item], dict[str, Any]]:
    """Items and option defaults (what the manifest's ``defaults`` set) of a JSON or CSV
    manifest."""
    if not path.is_file():
        raise UsageError(f"manifest not found: {path}")
    base = path.parent
    defaults: dict[str, Any] = {}
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UsageError(f"manifest {path} is not valid JSON: {exc}") from None
        if isinstance(data, dict):
            defaults = _options(data.get("defaults") or {}, "the manifest's defaults")
            rows = data.get("items") or []
        else:
            rows = data
        if not isinstance(rows, list):
            raise UsageError("the manifest's 'items' must be a list")
    seen: set[str] = set()
    items = [_item_from_row(dict(r), base, n, seen) for n, r in enumerate(rows)]
    if not items:
        raise UsageError(f"manifest {path} lists no items")
    return items, defaults


def items_from_args(args: argparse.Namespace) -> tuple[list[Item], dict[str, Any]]:
    if args.manifest:
        if args.image or args.mask or args.masks:
            raise UsageError("give --manifest or --image with --mask/--masks, not both")
        return load_manifest(Path(args.manifest).resolve())
    if not args.image:
        raise UsageError("give --image (with --mask or --masks) or --manifest")
    if bool(args.mask) == bool(args.masks):
        raise UsageError("give exactly one of --mask or --masks with --image")
    row: dict[str, Any] = {"image": args.image}
    row["mask" if args.mask else "masks"] = args.mask or args.masks
    if args.masks:
        row["masks"] = str(Path(args.masks).resolve())
    return [_item_from_row(row, Path.cwd(), 0, set())], {}


def fingerprint(item: Item, options: JobOptions) -> str:
    """SHA-256 of the item's input bytes and options: unchanged inputs -> same value."""
    h = hashlib.sha256()
    h.update(json.dumps(options.to_json(), sort_keys=True).encode())
    for p in [item.image, *item.masks]:
        h.update(str(p.name).encode())
        try:
            h.update(hashlib.sha256(p.read_bytes()).digest())
        except OSError:
            h.update(b"<missing>")
    if item.input_error:
        h.update(item.input_error[0].encode())
    return h.hexdigest()
