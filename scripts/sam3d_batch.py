"""Headless batch: photos + masks -> posed 3D objects in a .blend, GLBs and a JSON report.

Runs two ways, with the same arguments::

    blender --background --python scripts/sam3d_batch.py -- ARGS
    python scripts/sam3d_batch.py ARGS          # with the bpy module (pip install bpy)

ARGS (one of the input forms, plus --out)::

    --image PHOTO --mask MASK              one object
    --image PHOTO --masks DIR              one scene: DIR holds 0.png, 1.png, ...
    --manifest FILE.json | FILE.csv        many photos (see below)
    --out DIR                              where everything goes
    --engine auto|preview|sam3d  --target-faces N  --texture-size N  --no-bake
    --seed N  --quality fast|balanced|high  --timeout S  --retry-failed
    --backend-python PY | --backend-url URL  --cache-dir DIR  --blend NAME

Manifest: JSON ``{"defaults": {...options...}, "items": [{"id", "image", "mask" |
"masks"}, ...]}`` (or just the list), or CSV with columns ``id,image,mask,masks`` (plus
optional ``engine,seed,target_faces,texture_size,bake``). ``masks`` is a folder of
``0.png, 1.png, ...`` or a list of files (';'-separated in CSV). Relative paths are relative
to the manifest. A mask is the file's alpha when it has transparency, else its brightness.

It uses the add-on's own code paths: the add-on is enabled as Blender enables extensions
(an already enabled SAM 3D extension is used as it is; otherwise this checkout is
registered as a temporary extension repository), its managed backend is started once and
reused for every item, and every item goes through ``scene_ops.run_blocking`` - one scene
job per photo (the backend does the per-image work once), imported by ``scene_import``
into its own Blender scene: the objects posed under ONE camera matching the photo, with
the photo as the camera's background.

Outputs in --out::

    batch.blend                  every item as its own Blender scene (named by item id)
    items/<id>/scene.glb         the item's objects as separate nodes + the camera
    items/<id>/object_<i>.glb    one GLB per object (its own frame; pose in node extras)
    items/<id>/result.json       the backend's result (poses, intrinsics, stats, timings)
    report.json                  per item: status, error code, timings, face counts, IoU

Resuming: items already finished by an earlier run with the same inputs and options are
skipped (no backend call; an item missing from the .blend is re-imported from its saved
GLBs). Failures from bad input are kept as they are unless ``--retry-failed``; failures
that may pass on a second try (backend stopped, timeout, crash) are retried. A repeated
request the backend has finished before is answered from its cache.

Exit status: 0 every item succeeded (possibly with failed parts), 1 some item failed,
2 bad arguments or manifest.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXT_ID = "sam3d"
#: Module name of the temporary extension repository this script registers when needed.
BATCH_REPO_MODULE = "sam3d_batch_repo"
REPORT_NAME = "report.json"
REPORT_VERSION = 1
#: Failure codes that a second try may not repeat: always retried on a re-run.
TRANSIENT_CODES = frozenset(
    {
        "backend_unreachable",
        "backend_stopped",
        "backend_start_failed",
        "backend_start_timeout",
        "backend_died",
        "backend_not_installed",
        "timeout",
        "interrupted",
        "cancelled",
        "worker_crashed",
        "out_of_memory",
        "import_failed",
        "internal_error",
        "bad_response",
    }
)
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".exr")


class UsageError(Exception):
    """Bad arguments or manifest (exit status 2)."""


# -- arguments and items ---------------------------------------------------------------------


@dataclass
class Item:
    """One photo and its masks. ``masks``: mask files in object order (resolved from a
    folder when the item names one); ``options``: per-item overrides of the job options."""

    id: str
    image: Path
    masks: list[Path] = field(default_factory=list)
    mask_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
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
    p.add_argument("--engine", default="auto", help="auto | preview | sam3d (default auto)")
    p.add_argument("--target-faces", type=int, default=20000, help="triangles per object")
    p.add_argument("--texture-size", type=int, default=1024, help="texture edge in texels")
    p.add_argument("--no-bake", action="store_true", help="vertex colours instead of a texture")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", default="balanced", choices=["fast", "balanced", "high"])
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per item")
    p.add_argument("--retry-failed", action="store_true", help="redo items that failed before")
    p.add_argument("--blend", default="batch.blend", help="name of the .blend in --out")
    p.add_argument("--no-decimate", action="store_true", help="no Decimate modifier on objects")
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


def job_options(args: argparse.Namespace) -> dict[str, Any]:
    """The backend JobOptions every item starts from."""
    return {
        "engine": args.engine,
        "seed": int(args.seed),
        "quality": args.quality,
        "target_faces": int(args.target_faces) if args.target_faces > 0 else None,
        "texture_size": int(args.texture_size),
        "bake": not args.no_bake,
    }


def _mask_folder_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in MASK_SUFFIXES and p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def _resolve_masks(item: Item) -> None:
    """Fill ``item.masks`` from its folder; record a missing input as ``input_error``."""
    if not item.image.is_file():
        item.input_error = ("no_image", f"image file not found: {item.image}")
        return
    if item.mask_dir is not None:
        if not item.mask_dir.is_dir():
            item.input_error = ("no_mask", f"mask folder not found: {item.mask_dir}")
            return
        item.masks = _mask_folder_files(item.mask_dir)
    if not item.masks:
        where = item.mask_dir or "the item"
        item.input_error = ("no_mask", f"no mask files (0.png, 1.png, ...) in {where}")
        return
    for m in item.masks:
        if not m.is_file():
            item.input_error = ("no_mask", f"mask file not found: {m}")
            return


_OPTION_KEYS = {"engine": str, "seed": int, "target_faces": int, "texture_size": int}


def _item_options(row: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for key, cast in _OPTION_KEYS.items():
        value = row.get(key)
        if value not in (None, ""):
            opts[key] = cast(value)
    bake = row.get("bake")
    if bake not in (None, ""):
        opts["bake"] = bake if isinstance(bake, bool) else str(bake).lower() in ("1", "true", "yes")
    return opts


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
    item = Item(ident, image_path, options=_item_options(row))
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
    """Items and option defaults of a JSON or CSV manifest."""
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
            defaults = _item_options(data.get("defaults") or {})
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


def fingerprint(item: Item, options: dict[str, Any]) -> str:
    """SHA-256 of the item's input bytes and options: unchanged inputs -> same value."""
    h = hashlib.sha256()
    h.update(json.dumps(options, sort_keys=True).encode())
    for p in [item.image, *item.masks]:
        h.update(str(p.name).encode())
        try:
            h.update(hashlib.sha256(p.read_bytes()).digest())
        except OSError:
            h.update(b"<missing>")
    if item.input_error:
        h.update(item.input_error[0].encode())
    return h.hexdigest()


# -- Blender ---------------------------------------------------------------------------------


def import_bpy() -> Any:
    """``bpy``: Blender's own (inside Blender) or the bpy module. In module mode Blender's
    user folder is pointed at a temporary one (unless BLENDER_USER_RESOURCES is set), so
    the batch never edits the user's Blender configuration."""
    if "bpy" not in sys.modules and not os.environ.get("BLENDER_USER_RESOURCES"):
        os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="sam3d-batch-blender-")
    try:
        import bpy
    except ImportError:
        raise UsageError(
            "bpy is not importable: run inside Blender (blender --background --python "
            "scripts/sam3d_batch.py -- ARGS) or install the bpy module (pip install bpy)"
        ) from None
    return bpy


def module_mode(bpy: Any) -> bool:
    """True under ``python`` with the bpy module, False inside a Blender executable."""
    return not getattr(bpy.app, "binary_path", "")


def enable_addon(bpy: Any) -> str:
    """Enable the SAM 3D add-on as Blender does; returns its module name.

    An enabled SAM 3D extension is used as it is. Otherwise this checkout is registered as a
    user extension repository (a folder holding a link named ``sam3d`` to the checkout, or a
    copy where links are not allowed) and enabled from there.
    """
    import addon_utils

    prefs = bpy.context.preferences
    for name in prefs.addons.keys():
        if name.startswith("bl_ext.") and name.rsplit(".", 1)[-1] == EXT_ID:
            if f"{name}.sam3d_blender" in sys.modules:
                return name
    if not (REPO / "blender_manifest.toml").is_file():
        raise UsageError(f"no enabled SAM 3D extension and no checkout at {REPO}")
    repo = next((r for r in prefs.extensions.repos if r.module == BATCH_REPO_MODULE), None)
    if repo is None:
        parent = Path(tempfile.mkdtemp(prefix="sam3d-batch-ext-"))
        try:
            (parent / EXT_ID).symlink_to(REPO, target_is_directory=True)
        except OSError:
            dest = parent / EXT_ID
            dest.mkdir()
            for part in ("__init__.py", "blender_manifest.toml"):
                shutil.copy2(REPO / part, dest / part)
            for part in ("sam3d_blender", "backend"):
                shutil.copytree(
                    REPO / part, dest / part, ignore=shutil.ignore_patterns("__pycache__")
                )
        prefs.extensions.repos.new(
            name=BATCH_REPO_MODULE,
            module=BATCH_REPO_MODULE,
            custom_directory=str(parent),
            source="USER",
        )
    name = f"bl_ext.{BATCH_REPO_MODULE}.{EXT_ID}"
    errors: list[BaseException] = []
    mod = addon_utils.enable(name, default_set=True, handle_error=errors.append)
    if mod is None or errors:
        raise UsageError(f"could not enable the SAM 3D add-on ({name}): {errors[:1]}")
    return name


def configure_backend(bpy: Any, addon: str, args: argparse.Namespace, out: Path) -> dict:
    """Point the add-on at the backend to use (environment variables win over the
    preferences, see ``sam3d_blender/settings.py``) and at the cache folder. Returns the
    preference values changed, to put back at the end."""
    if args.backend_url:
        os.environ["SAM3D_BACKEND_URL"] = args.backend_url
        if args.backend_token:
            os.environ["SAM3D_BACKEND_TOKEN"] = args.backend_token
    elif args.backend_python:
        # Absolute, but never resolved: a venv's python is a symlink to the base
        # interpreter, and only the link itself runs inside the venv (with its packages).
        os.environ["SAM3D_BACKEND_PYTHON"] = os.path.abspath(args.backend_python)
    elif module_mode(bpy) and not os.environ.get("SAM3D_BACKEND_PYTHON"):
        # python + bpy module: this interpreter can run the backend when its deps are here.
        if all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "scipy")):
            os.environ["SAM3D_BACKEND_PYTHON"] = sys.executable
    prefs = bpy.context.preferences.addons[addon].preferences
    saved = {"cache_dir": prefs.cache_dir}
    cache = args.cache_dir or (str(out / "cache") if module_mode(bpy) else "")
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
        prefs.cache_dir = str(Path(cache).resolve())
    return saved


class Batch:
    """One run over the items (see the module doc)."""

    def __init__(self, bpy: Any, addon: str, args: argparse.Namespace, out: Path) -> None:
        self.bpy = bpy
        self.addon = addon
        self.args = args
        self.out = out
        self.blend = out / args.blend
        self.report_path = out / REPORT_NAME
        self.scene_ops = sys.modules[f"{addon}.sam3d_blender.scene_ops"]
        self.scene_import = sys.modules[f"{addon}.sam3d_blender.scene_import"]
        self.runtime = sys.modules[f"{addon}.sam3d_blender.runtime"]
        self.report = self._load_report()
        self.dirty = False

    # report
    def _load_report(self) -> dict[str, Any]:
        if self.report_path.is_file():
            try:
                data = json.loads(self.report_path.read_text(encoding="utf-8"))
                if data.get("version") == REPORT_VERSION:
                    data.setdefault("items", {})
                    data.setdefault("runs", [])
                    return data
            except (OSError, json.JSONDecodeError):
                pass
        return {"tool": "sam3d_batch", "version": REPORT_VERSION, "runs": [], "items": {}}

    def save_report(self) -> None:
        tmp = self.report_path.with_name(self.report_path.name + ".tmp")
        tmp.write_text(json.dumps(self.report, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.report_path)

    def save_blend(self) -> None:
        self.bpy.ops.wm.save_as_mainfile(filepath=str(self.blend))
        self.dirty = False

    # Blender file
    def open_file(self) -> None:
        """Continue the .blend of an earlier run, or start an empty file."""
        bpy = self.bpy
        if self.blend.is_file():
            bpy.ops.wm.open_mainfile(filepath=str(self.blend))
        else:
            bpy.ops.wm.read_homefile(use_empty=True)

    def item_scene(self, ident: str) -> Any:
        """The Blender scene of item ``ident``, emptied (a redo replaces its content)."""
        bpy = self.bpy
        scene = bpy.data.scenes.get(ident)
        if scene is None:
            fresh = [s for s in bpy.data.scenes if s.name == "Scene" and not s.objects]
            if fresh and len(bpy.data.scenes) == 1:
                scene = fresh[0]
                scene.name = ident
            else:
                scene = bpy.data.scenes.new(ident)
        for obj in list(scene.objects):
            bpy.data.objects.remove(obj, do_unlink=True)
        for child in list(scene.collection.children):
            scene.collection.children.unlink(child)
            if child.users == 0:
                bpy.data.collections.remove(child)
        bpy.data.orphans_purge(do_recursive=True)
        return scene

    def drop_scene(self, ident: str) -> None:
        """Remove a failed item's Blender scene (the file's last scene is emptied and
        renamed back to "Scene" instead: a file needs one)."""
        bpy = self.bpy
        scene = bpy.data.scenes.get(ident)
        if scene is None:
            return
        if len(bpy.data.scenes) > 1:
            for obj in list(scene.objects):
                bpy.data.objects.remove(obj, do_unlink=True)
            bpy.data.scenes.remove(scene)
            bpy.data.orphans_purge(do_recursive=True)
        else:
            self.item_scene(ident).name = "Scene"
        self.dirty = True

    def start_backend(self) -> float:
        """Start (or reach) the backend the add-on is configured for, before the first item
        that needs it, so its start-up is timed apart from the items. Returns seconds. A
        backend that cannot start is reported by each item's job (with its code)."""
        bp = sys.modules[f"{self.addon}.sam3d_blender.backend_process"]
        t0 = time.perf_counter()
        backend = self.runtime.get().current_backend()
        backend.ensure_started()
        self.runtime.wait_for(lambda: backend.poll() != bp.BackendState.STARTING, timeout=300)
        seconds = time.perf_counter() - t0
        print(f"backend: {backend.poll().value} after {seconds:.1f} s", flush=True)
        return round(seconds, 3)

    # items
    def should_skip(self, item: Item, fp: str) -> dict[str, Any] | None:
        prev = self.report["items"].get(item.id)
        if not prev or prev.get("fingerprint") != fp:
            return None
        status = prev.get("status")
        if status in ("done", "partial"):
            return prev
        if status == "failed":
            code = (prev.get("error") or {}).get("code", "")
            if self.args.retry_failed or code in TRANSIENT_CODES:
                return None
            return prev
        return None

    def run_item(self, item: Item, options: dict[str, Any]) -> dict[str, Any]:
        """Generate, import and save one item; returns its report record."""
        bpy = self.bpy
        t0 = time.perf_counter()
        rec: dict[str, Any] = {
            "id": item.id,
            "image": str(item.image),
            "masks": [str(m) for m in item.masks],
            "options": options,
            "status": "failed",
            "error": None,
            "objects": [],
            "timings": {},
        }
        if item.input_error:
            code, msg = item.input_error
            rec["error"] = {"code": code, "message": msg}
            self.drop_scene(item.id)
            return rec
        so = self.scene_ops
        try:
            inputs = so.inputs_from_files(item.image, item.masks, label=item.id)
        except so.SceneInputError as exc:
            rec["error"] = {"code": exc.code, "message": exc.message}
            self.drop_scene(item.id)
            return rec
        scene = self.item_scene(item.id)
        self.dirty = True
        with bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
            outcome = so.run_blocking(
                bpy.context,
                inputs,
                options,
                timeout=self.args.timeout,
                decimate=not self.args.no_decimate,
            )
            rec["job_id"] = outcome.job.backend_id
            rec["cached"] = bool(outcome.job.cached)
            rec["engine"] = outcome.result.get("engine")
            if outcome.imported is not None:
                self._record_objects(rec, item, outcome, scene)
        rec["timings"] = {
            "job_s": round(outcome.seconds.get("job", 0.0), 3),
            "import_s": round(outcome.seconds.get("import", 0.0), 3),
            "total_s": round(time.perf_counter() - t0, 3),
        }
        n_ok = sum(1 for o in rec["objects"] if o["state"] == "done")
        if n_ok:
            rec["timings"]["per_object_s"] = round(rec["timings"]["total_s"] / n_ok, 3)
        if outcome.error is not None and not n_ok:
            rec["error"] = {"code": outcome.error.code, "message": outcome.error.message}
            if outcome.error.code == "cancelled" and rec["timings"]["job_s"] >= self.args.timeout:
                rec["error"] = {
                    "code": "timeout",
                    "message": f"the item took longer than --timeout {self.args.timeout:g} s",
                }
            self.drop_scene(item.id)
        else:
            rec["status"] = "done" if n_ok == len(rec["objects"]) else "partial"
            self._copy_outputs(rec, item, outcome)
        return rec

    def _record_objects(self, rec, item, outcome, scene) -> None:
        imp = outcome.imported
        ctx = self.bpy.context
        for part in outcome.parts:
            i = int(part["index"])
            o: dict[str, Any] = {"index": i, "state": part.get("state"), "error": None}
            obj = imp.objects.get(i)
            if obj is None:
                o["state"] = "failed"
                o["error"] = imp.failed.get(i) or part.get("error")
            else:
                o["name"] = obj.name
                o["faces"] = len(obj.data.polygons)
                o["backend_faces"] = (part.get("stats") or {}).get("faces")
                o["iou"] = self._iou(ctx, obj, imp.camera, item.masks[i], scene)
                o["depth_m"] = round(_camera_depth(obj, imp.camera), 4)
            rec["objects"].append(o)
        rec["camera"] = imp.camera.name
        rec["blender_scene"] = scene.name

    def _iou(self, ctx, obj, camera, mask_path: Path, scene) -> float | None:
        """Reprojected silhouette vs the mask the object came from (None when the mask's
        size differs from the photo's)."""
        si = self.scene_import
        image_io = sys.modules[f"{self.addon}.sam3d_blender.image_io"]
        sil = si.reprojected_silhouette(ctx, obj, camera)
        with image_io.loaded_image(mask_path) as img:
            px = image_io.pixels(img)
        mask = image_io.mask_from_pixels(px)[::-1]  # Blender stores the bottom row first
        if mask.shape != sil.shape:
            return None
        return round(si.mask_iou(sil, mask), 4)

    def _copy_outputs(self, rec, item: Item, outcome) -> None:
        d = self.out / "items" / item.id
        d.mkdir(parents=True, exist_ok=True)
        if outcome.scene_glb is not None:
            shutil.copyfile(outcome.scene_glb, d / "scene.glb")
            rec["scene_glb"] = str((d / "scene.glb").relative_to(self.out))
        for o in rec["objects"]:
            src = outcome.part_glbs.get(o["index"])
            if src is not None and o["state"] == "done":
                dest = d / f"object_{o['index']}.glb"
                shutil.copyfile(src, dest)
                o["glb"] = str(dest.relative_to(self.out))
        (d / "result.json").write_text(json.dumps(outcome.result, indent=1, sort_keys=True))

    def reimport_local(self, item: Item, prev: dict[str, Any]) -> bool:
        """A finished item missing from the .blend: import it again from its saved GLBs
        (no backend involved). Returns False when the saved files are gone."""
        d = self.out / "items" / item.id
        result_path = d / "result.json"
        if not result_path.is_file():
            return False
        result = json.loads(result_path.read_text())
        glbs = {
            int(o["index"]): self.out / o["glb"]
            for o in prev.get("objects", [])
            if o.get("glb") and (self.out / o["glb"]).is_file()
        }
        if not glbs:
            return False
        scene = self.item_scene(item.id)
        with self.bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
            self.scene_import.import_scene(
                self.bpy.context,
                result,
                glbs,
                label=item.id,
                photo=str(item.image) if item.image.is_file() else None,
                decimate=not self.args.no_decimate,
                provenance={"job_id": prev.get("job_id") or "", "scene": item.id},
            )
        self.dirty = True
        return True


def _camera_depth(obj: Any, camera: Any) -> float:
    """Distance (metres) of the object's bounding-box centre along the camera's view axis."""
    from mathutils import Vector

    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    centre = sum(corners, Vector()) / 8.0
    return -(camera.matrix_world.inverted() @ centre).z


# -- output ----------------------------------------------------------------------------------


def progress_line(n: int, total: int, rec: dict[str, Any], skipped: bool, note: str = "") -> str:
    """One line per item: what happened, timings, faces, the worst reprojection IoU."""
    objs = rec.get("objects", [])
    ok = sum(1 for o in objs if o.get("state") == "done")
    head = f"[{n:>{len(str(total))}}/{total}] {rec['id']:<20.20}"
    if skipped:
        return f"{head} skipped  ({rec['status']} in an earlier run{note})"
    t = rec.get("timings", {})
    if rec["status"] == "failed":
        err = rec.get("error") or {}
        return f"{head} FAILED   [{err.get('code')}] {str(err.get('message', ''))[:90]}"
    faces = sum(int(o.get("faces") or 0) for o in objs)
    ious = [o["iou"] for o in objs if o.get("iou") is not None]
    iou = f"  IoU min {min(ious):.3f}" if ious else ""
    cached = " (cached)" if rec.get("cached") else ""
    return (
        f"{head} {rec['status']:<8} {ok}/{len(objs)} objects  {t.get('total_s', 0):6.2f} s  "
        f"({t.get('per_object_s', 0):.2f} s/object)  {faces} faces{iou}{cached}"
    )


def summary_table(
    records: list[dict[str, Any]], skipped: set[str], wall: float, backend_s: float | None = None
) -> str:
    """The end-of-run table: one row per item, then the totals of this run."""
    rows = [("item", "status", "objects", "faces", "job s", "import s", "total s", "s/obj", "code")]
    n_obj = 0
    for r in records:
        objs = r.get("objects", [])
        ok = sum(1 for o in objs if o.get("state") == "done")
        n_obj += ok if r["id"] not in skipped else 0
        t = r.get("timings", {})
        status = r["status"] + (" (skip)" if r["id"] in skipped else "")
        codes = sorted(
            {str((o.get("error") or {}).get("code")) for o in objs if o.get("error")}
            | ({str(r["error"]["code"])} if r.get("error") else set())
        )
        rows.append(
            (
                r["id"][:24],
                status,
                f"{ok}/{len(objs)}" if objs else "-",
                str(sum(int(o.get("faces") or 0) for o in objs)),
                f"{t.get('job_s', 0):.2f}",
                f"{t.get('import_s', 0):.2f}",
                f"{t.get('total_s', 0):.2f}",
                f"{t['per_object_s']:.2f}" if "per_object_s" in t else "-",
                ",".join(codes) or "-",
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    by = {s: sum(1 for r in records if r["status"] == s) for s in ("done", "partial", "failed")}
    worked = len(records) - len(skipped)
    per_obj = f", {wall / n_obj:.2f} s per object overall" if n_obj else ""
    start = f" (backend start {backend_s:.1f} s)" if backend_s is not None else ""
    lines.append(
        f"{len(records)} items: {by['done']} done, {by['partial']} partial, {by['failed']} "
        f"failed; {len(skipped)} skipped (finished earlier), {worked} run now; "
        f"{n_obj} objects made in {wall:.1f} s{start}{per_obj}"
    )
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(script_argv(argv))
    try:
        items, defaults = items_from_args(args)
        bpy = import_bpy()
        addon = enable_addon(bpy)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    saved = configure_backend(bpy, addon, args, out)
    batch = Batch(bpy, addon, args, out)
    base_options = {**job_options(args), **defaults}
    records: list[dict[str, Any]] = []
    skipped: set[str] = set()
    run = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "items": len(items)}
    try:
        batch.open_file()
        for n, item in enumerate(items, 1):
            options = {**base_options, **item.options}
            fp = fingerprint(item, options)
            prev = batch.should_skip(item, fp)
            note = ""
            if prev is not None:
                if prev["status"] in ("done", "partial") and bpy.data.scenes.get(item.id) is None:
                    if batch.reimport_local(item, prev):
                        note = "; re-imported from its saved GLBs"
                    else:
                        prev = None  # the saved files are gone: do it again
                if prev is not None:
                    skipped.add(item.id)
                    records.append(prev)
                    print(progress_line(n, len(items), prev, True, note), flush=True)
                    continue
            if "backend_start_s" not in run and item.input_error is None:
                run["backend_start_s"] = batch.start_backend()
            rec = batch.run_item(item, options)
            rec["fingerprint"] = fp
            rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            records.append(rec)
            batch.report["items"][item.id] = rec
            batch.save_report()
            if batch.dirty:
                batch.save_blend()
            print(progress_line(n, len(items), rec, False), flush=True)
        if batch.dirty or not batch.blend.is_file():
            batch.save_blend()
    finally:
        wall = time.perf_counter() - t_start
        run["wall_s"] = round(wall, 3)
        run["skipped"] = len(skipped)
        batch.report["runs"].append(run)
        batch.report["summary"] = {
            "items": len(records),
            "done": sum(1 for r in records if r["status"] == "done"),
            "partial": sum(1 for r in records if r["status"] == "partial"),
            "failed": sum(1 for r in records if r["status"] == "failed"),
            "skipped": len(skipped),
            "wall_s": round(wall, 3),
            "blend": str(batch.blend),
        }
        batch.save_report()
        prefs = bpy.context.preferences.addons[addon].preferences
        for key, value in saved.items():
            setattr(prefs, key, value)
        batch.runtime.reset()  # stops the managed backend this run started
    print(summary_table(records, skipped, wall, run.get("backend_start_s")), flush=True)
    return 1 if any(r["status"] == "failed" for r in records) else 0


def _exit(rc: int) -> None:
    """Leave the process. With the bpy module, ``os._exit`` after flushing avoids bpy 4.5's
    hang at interpreter exit; inside Blender, ``sys.exit`` ends ``blender --background``."""
    sys.stdout.flush()
    sys.stderr.flush()
    bpy = sys.modules.get("bpy")
    if bpy is not None and module_mode(bpy):
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    _exit(main())
