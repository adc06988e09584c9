"""Asset library files: Blender scenes written as the .blend files of an asset library (bpy).

An asset library is a folder of .blend files plus its catalog file
(``core/asset_catalogs.py``); Blender's Asset Browser lists every asset of every .blend in
it. The batch (``batch.py``) writes each item's Blender scene - its objects, marked as
assets with their previews, under the photo's camera - into the library
(:func:`write_blend`), one file per item or one for all, and never rewrites a file whose
content did not change.

The files are written with ``bpy.data.libraries.write``: the scenes and everything they use
(objects, meshes, materials, the packed textures and photo) go into a new .blend, while the
open file stays as it is. Each write goes to a hidden temporary file first, renamed over
the old one, so Blender never indexes a half-written file (it lists only ``*.blend``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

import bpy

__all__ = ["LibraryError", "item_blend_name", "remove_blend", "write_blend"]


class LibraryError(Exception):
    """The asset library folder or one of its files cannot be written."""


def item_blend_name(ident: str) -> str:
    """The library file of batch item ``ident``: ``<ident>.blend`` (a name any file
    system takes)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ident).strip("._") or "item"
    return f"{safe}.blend"


def write_blend(path: Path, scenes: Iterable[bpy.types.Scene]) -> int:
    """Write ``scenes`` (and every data-block they use) into the .blend at ``path``,
    replacing it atomically. Returns its size in bytes. Raises :class:`LibraryError`."""
    path = Path(path)
    blocks = set(scenes)
    if not blocks:
        raise ValueError("no scenes to write")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        bpy.data.libraries.write(str(tmp), blocks, path_remap="NONE", fake_user=False)
        os.replace(tmp, path)
        return path.stat().st_size
    except (OSError, RuntimeError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise LibraryError(f"cannot write {path}: {exc}") from None


def remove_blend(path: Path) -> bool:
    """Remove a library file (an item that failed on a re-run no longer has assets).
    Returns whether there was one."""
    try:
        Path(path).unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise LibraryError(f"cannot remove {path}: {exc}") from None
