"""What counts as a mask folder (no bpy).

A folder of masks holds one file per object, named by its index: ``0.png, 1.png, ...``
(the layout of upstream's examples), in any image format Blender and the backend read.
The panel, the operators and the batch all find masks through :func:`mask_files_in`.
A mask is the file's alpha when it has transparency, else its brightness (white = object).
"""

from __future__ import annotations

from pathlib import Path

from .messages import InputError

__all__ = ["MASK_SUFFIXES", "mask_files_in"]

#: File types accepted as masks in a folder. ``python -m backend generate --masks`` takes the
#: same (``backend/jobs/intake.py``; a test holds the two lists together).
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".exr")


def mask_files_in(folder: str | Path) -> list[Path]:
    """The mask files of ``folder`` in object order (numeric names, sorted as numbers).
    Raises :class:`InputError` ``no_mask`` when the folder is missing or holds none."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError("no_mask", f"mask folder not found: {d}")
    files = [p for p in d.iterdir() if p.suffix.lower() in MASK_SUFFIXES and p.stem.isdigit()]
    if not files:
        raise InputError("no_mask", f"no mask files named 0.png, 1.png, ... in {d}")
    return sorted(files, key=lambda p: int(p.stem))
