"""The batch report's reprojection IoU, measured on a coarse grid where it is cheap (bpy).

Each object's silhouette, projected through the scene camera (:mod:`.measure`), is
compared with the mask file it came from. The mask is usually larger than the scene's
render resolution (the backend works on at most 16 MP, a photo may have 27), and reading a
27 MP mask as Blender's float pixels costs 0.4 GB and most of a second. So both are
sampled on one coarse grid over the mask's frame: Blender's ``imbuf`` loads the mask and
samples it down to the grid nearest-neighbour (in C; about 0.2 s for 27 MP), the
silhouette is rasterised at the grid's pixel centres. With at least ``MIN_OBJECT_CELLS``
cells across the object, point sampling estimates both areas without bias and the IoU
agrees with the full-resolution one within 0.01 (``tests/e2e/test_batch_iou.py`` computes
both).

Pixels: u right, v down, origin at the frame's top-left corner.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import bpy
import imbuf
import numpy as np

from . import blender_images, measure
from .core.raster import mask_iou, rasterize_triangles

__all__ = ["MAX_GRID_SIDE", "MIN_OBJECT_CELLS", "iou_grid", "object_iou"]

#: The grid's long side at most, in cells (about 0.8 MP for a 4:3 photo).
MAX_GRID_SIDE = 1024
#: Cells across the object's longer side at least (the grid is finer for small objects).
MIN_OBJECT_CELLS = 128


def iou_grid(mask_size: tuple[int, int], object_extent: float) -> tuple[int, int]:
    """The grid (width, height) in cells for a mask of ``mask_size`` (width, height) pixels
    and an object whose silhouette spans ``object_extent`` mask pixels along its longer
    side: one cell per ``k`` x ``k`` mask pixels, ``k`` the largest integer keeping the
    grid's long side over ``MAX_GRID_SIDE`` or ``MIN_OBJECT_CELLS`` across the object,
    whichever is finer (``k`` = 1: the mask's own pixels)."""
    w, h = mask_size
    k = max(1, min(math.ceil(max(w, h) / MAX_GRID_SIDE), int(object_extent // MIN_OBJECT_CELLS)))
    return max(1, round(w / k)), max(1, round(h / k))


def object_iou(
    context: bpy.types.Context, obj: bpy.types.Object, camera: bpy.types.Object, mask_path: Path
) -> float | None:
    """IoU of ``obj``'s silhouette through ``camera`` with the mask in ``mask_path`` (read
    as the backend reads masks: alpha when not opaque, else brightness > 50%), on the grid
    of :func:`iou_grid` over the mask's frame, which is the render's (the backend accepted
    the mask for this photo, so their aspects agree). None when the mask has no pixels."""
    px, tris, depth = measure.project_object(context, obj, camera)
    tris = tris[(depth[tris] > 0).all(axis=1)]  # triangles wholly in front of the camera
    r = context.scene.render
    rw = int(r.resolution_x * r.resolution_percentage / 100)
    rh = int(r.resolution_y * r.resolution_percentage / 100)
    ibuf = imbuf.load(str(mask_path))
    try:
        mw, mh = ibuf.size
        if not mw or not mh:
            return None
        used = px[np.unique(tris)] if len(tris) else np.zeros((1, 2))
        span = used.max(axis=0) - used.min(axis=0)
        extent = max(span[0] * mw / rw, span[1] * mh / rh)
        gw, gh = iou_grid((mw, mh), extent)
        if (gw, gh) != (mw, mh):
            ibuf.resize((gw, gh), method="FAST")  # nearest-neighbour
        mask = _mask_of(ibuf)
    finally:
        ibuf.free()
    sil = rasterize_triangles(px * np.array([gw / rw, gh / rh]), tris, gw, gh)
    return round(mask_iou(sil, mask), 4)


def _mask_of(ibuf: imbuf.types.ImBuf) -> np.ndarray:
    """(H, W) bool, top row first, of a small image buffer (``imbuf`` has no pixel access:
    it is written as a PNG and read back as a Blender image)."""
    fd, name = tempfile.mkstemp(suffix=".png", prefix="sam3d_iou_")
    os.close(fd)
    image = None
    try:
        imbuf.write(ibuf, filepath=name)
        image = bpy.data.images.load(name, check_existing=False)
        # Blender stores the bottom row first
        return blender_images.mask_from_pixels(blender_images.pixels(image))[::-1]
    finally:
        if image is not None:
            bpy.data.images.remove(image)
        Path(name).unlink(missing_ok=True)
