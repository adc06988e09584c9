"""The batch report's reprojection IoU, measured on a coarse grid where it is cheap (bpy).

Each object's silhouette, projected through the scene camera (:mod:`.measure`), is
compared with the mask file it came from. The mask is usually larger than the scene's
render resolution (the backend works on at most 16 MP, a photo may have 27), and reading a
27 MP mask as Blender's float pixels costs 0.4 GB and most of a second. So both are
sampled on one coarse grid over the mask's frame: Blender's ``imbuf`` loads the mask and
samples it down to the grid nearest-neighbour (in C; about 0.25 s for 27 MP, nearly all of
it the PNG decode), the silhouette is rasterised at the grid's pixel centres. With at least
``MIN_OBJECT_CELLS`` cells across the object, point sampling estimates both areas without
bias and the IoU agrees with the full-resolution one within 0.01
(``tests/e2e/test_batch_iou.py`` computes both).

The mask's side needs no object: :func:`mask_grid` samples a mask on its grid (chosen by
the mask's own extent), so the batch prepares an item's masks (:class:`MaskGrids`) while
the backend still works on the job, and after the import only the silhouettes are left to
rasterise (:func:`object_iou`).

Pixels: u right, v down, origin at the frame's top-left corner.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bpy
import imbuf
import numpy as np

from . import blender_images, measure
from .core.raster import mask_iou, rasterize_triangles

__all__ = [
    "MAX_GRID_SIDE",
    "MIN_OBJECT_CELLS",
    "MaskGrid",
    "MaskGrids",
    "iou_grid",
    "mask_grid",
    "object_iou",
]

#: The grid's long side at most, in cells (about 0.8 MP for a 4:3 photo).
MAX_GRID_SIDE = 1024
#: Cells across the object's longer side at least (the grid is finer for small objects).
MIN_OBJECT_CELLS = 128


def iou_grid(mask_size: tuple[int, int], object_extent: float) -> tuple[int, int]:
    """The grid (width, height) in cells for a mask of ``mask_size`` (width, height) pixels
    and an object spanning ``object_extent`` mask pixels along its longer side: one cell per ``k`` x ``k`` mask pixels, ``k`` the largest integer keeping the
    grid's long side over ``MAX_GRID_SIDE`` or ``MIN_OBJECT_CELLS`` across the object,
    whichever is finer (``k`` = 1: the mask's own pixels)."""
    w, h = mask_size
    k = max(1, min(math.ceil(max(w, h) / MAX_GRID_SIDE), int(object_extent // MIN_OBJECT_CELLS)))
    return max(1, round(w / k)), max(1, round(h / k))


@dataclass(frozen=True)
class MaskGrid:
    """A mask sampled on its IoU grid: ``cells`` (rows, columns) bool, top row first,
    True = object; the grid spans the mask's whole frame."""

    cells: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in cells."""
        return int(self.cells.shape[1]), int(self.cells.shape[0])


def mask_grid(mask_path: Path) -> MaskGrid | None:
    """The mask in ``mask_path`` (read as the backend reads masks: alpha when not opaque,
    else brightness > 50%) sampled on the grid of :func:`iou_grid` for the mask's own
    extent (its pixels' bounding box, measured on the coarsest grid; a mask whose object
    needs a finer grid is read again). None when the file has no pixels or Blender cannot
    read it (then the report's IoU is None)."""
    coarse = _sampled(mask_path, None)
    if coarse is None:
        return None
    size, cells = coarse
    rows, cols = np.flatnonzero(cells.any(axis=1)), np.flatnonzero(cells.any(axis=0))
    if not len(rows):  # nothing on the coarsest grid: a finer one costs more, says no more
        return MaskGrid(cells)
    extent = max(
        (cols[-1] - cols[0] + 1) * size[0] / cells.shape[1],
        (rows[-1] - rows[0] + 1) * size[1] / cells.shape[0],
    )
    grid = iou_grid(size, extent)
    if grid == (cells.shape[1], cells.shape[0]):
        return MaskGrid(cells)
    fine = _sampled(mask_path, grid)
    return MaskGrid(fine[1]) if fine is not None else None


def _sampled(
    mask_path: Path, grid: tuple[int, int] | None
) -> tuple[tuple[int, int], np.ndarray] | None:
    """The mask file's size (width, height) and its mask sampled nearest-neighbour on
    ``grid`` (width, height; None: the coarsest grid, ``iou_grid`` for an object as large
    as the frame). None when the file has no pixels or Blender cannot read it."""
    try:
        ibuf = imbuf.load(str(mask_path))
    except (OSError, ValueError):  # gone, or a format this Blender cannot read
        return None
    try:
        mw, mh = ibuf.size
        if not mw or not mh:
            return None
        gw, gh = grid or iou_grid((mw, mh), max(mw, mh))
        if (gw, gh) != (mw, mh):
            ibuf.resize((gw, gh), method="FAST")  # nearest-neighbour
        return (mw, mh), _mask_of(ibuf)
    finally:
        ibuf.free()


class MaskGrids:
    """The masks of one item (part index -> file), each sampled on its grid once: ahead of
    time, one per call of :meth:`prepare_next` (the batch calls it while it waits for the
    job), or when :meth:`get` first asks for it."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self._grids: dict[int, MaskGrid | None] = {}

    def prepare_next(self) -> bool:
        """Sample the next mask not yet sampled; False when none was left."""
        todo = next((i for i in range(len(self.paths)) if i not in self._grids), None)
        if todo is None:
            return False
        self.get(todo)
        return True

    def get(self, index: int) -> MaskGrid | None:
        """Mask ``index`` on its grid (None: no such mask, or see :func:`mask_grid`)."""
        if index not in self._grids:
            ok = 0 <= index < len(self.paths)
            self._grids[index] = mask_grid(self.paths[index]) if ok else None
        return self._grids[index]


def object_iou(
    context: bpy.types.Context,
    obj: bpy.types.Object,
    camera: bpy.types.Object,
    mask: MaskGrid | Path | None,
) -> float | None:
    """IoU of ``obj``'s silhouette through ``camera`` with ``mask`` (sampled on its grid, or
    a mask file sampled now by :func:`mask_grid`), the silhouette rasterised at the grid's
    cell centres over the mask's frame, which is the render's (the backend accepted the
    mask for this photo, so their aspects agree). None when the mask has no pixels."""
    if isinstance(mask, Path):
        mask = mask_grid(mask)
    if mask is None:
        return None
    px, tris, depth = measure.project_object(context, obj, camera)
    tris = tris[(depth[tris] > 0).all(axis=1)]  # triangles wholly in front of the camera
    r = context.scene.render
    rw = int(r.resolution_x * r.resolution_percentage / 100)
    rh = int(r.resolution_y * r.resolution_percentage / 100)
    gw, gh = mask.size
    sil = rasterize_triangles(px * np.array([gw / rw, gh / rh]), tris, gw, gh)
    return round(mask_iou(sil, mask.cells), 4)


def _mask_of(ibuf: imbuf.types.ImBuf) -> np.ndarray:
    """(H, W) bool, top row first, of a small image buffer (``imbuf`` has no pixel access:
    it is written as a PNG and read back as a Blender image)."""
    fd, name = tempfile.mkstemp(suffix=".png", prefix="sam3d_iou_")
    os.close(fd)
    try:
        imbuf.write(ibuf, filepath=name)
        with blender_images.loaded_image(name) as image:
            # Blender stores the bottom row first
            return blender_images.mask_from_pixels(blender_images.pixels(image))[::-1]
    finally:
        Path(name).unlink(missing_ok=True)
