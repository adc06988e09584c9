"""Headless batch: photos + masks -> posed 3D objects in a .blend, GLBs and a JSON report.

Runs two ways, with the same arguments::

    blender --background --python scripts/sam3d_batch.py -- ARGS
    python scripts/sam3d_batch.py ARGS          # with the bpy module (pip install bpy)

ARGS (one of the input forms, plus --out)::

    --image PHOTO --mask MASK              one object
    --image PHOTO --masks DIR              one scene: DIR holds 0.png, 1.png, ...
    --manifest FILE.json | FILE.csv        many photos
    --out DIR                              where everything goes
    --engine auto|preview|sam3d  --target-faces N  --texture-size N  --no-bake
    --seed N  --quality fast|balanced|high  --timeout S  --retry-failed
    --backend-python PY | --backend-url URL  --cache-dir DIR  --blend NAME
    --asset-library DIR [--catalog PATH] [--asset-blend NAME]   objects as a Blender asset library
    --no-assets  --no-previews  --author NAME  --export usdc,fbx

This script only boots the batch: it gets ``bpy``, enables the SAM 3D add-on as Blender
enables extensions (an already enabled SAM 3D extension is used as it is; otherwise this
checkout is registered as a temporary extension repository), and runs the add-on's own
``sam3d_blender/batch.py``, where the batch, its manifest and its report are described.

Exit status: 0 every item succeeded, 1 some item failed, 2 bad arguments or manifest.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXT_ID = "sam3d"
#: Module name of the temporary extension repository this script registers when needed.
BATCH_REPO_MODULE = "sam3d_batch_repo"


class BootError(Exception):
    """No bpy, or the add-on cannot be enabled (exit status 2)."""


def import_bpy() -> Any:
    """``bpy``: Blender's own (inside Blender) or the bpy module. In module mode Blender's
    user folder is pointed at a temporary one (unless BLENDER_USER_RESOURCES is set), so
    the batch never edits the user's Blender configuration."""
    if "bpy" not in sys.modules and not os.environ.get("BLENDER_USER_RESOURCES"):
        os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="sam3d-batch-blender-")
    try:
        import bpy
    except ImportError:
        raise BootError(
            "bpy is not importable: run inside Blender (blender --background --python "
            "scripts/sam3d_batch.py -- ARGS) or install the bpy module (pip install bpy)"
        ) from None
    return bpy


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
        raise BootError(f"no enabled SAM 3D extension and no checkout at {REPO}")
    if not any(r.module == BATCH_REPO_MODULE for r in prefs.extensions.repos):
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
        raise BootError(f"could not enable the SAM 3D add-on ({name}): {errors[:1]}")
    return name


def main() -> int:
    try:
        bpy = import_bpy()
        addon = enable_addon(bpy)
    except BootError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    batch = importlib.import_module(f"{addon}.sam3d_blender.batch")
    try:
        return batch.main(sys.argv)
    except SystemExit as exc:  # argparse: --help, or bad arguments
        return exc.code if isinstance(exc.code, int) else 2


def _exit(rc: int) -> None:
    """Leave the process. With the bpy module, ``os._exit`` after flushing avoids bpy 4.5's
    hang at interpreter exit; inside Blender, ``sys.exit`` ends ``blender --background``."""
    sys.stdout.flush()
    sys.stderr.flush()
    bpy = sys.modules.get("bpy")
    if bpy is not None and not getattr(bpy.app, "binary_path", ""):
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    _exit(main())
