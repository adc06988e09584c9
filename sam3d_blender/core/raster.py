"""Measuring how well objects match their masks: rasterising and IoU (no bpy, numpy).

Pixel coordinates: u right, v down, origin at the image's top-left corner, so pixel (i, j)
spans [i, i+1) x [j, j+1); masks are (height, width) bool, top row first. Pure numpy:
Blender's Python has no Pillow or OpenCV. Used by the batch report (each object's
reprojected silhouette against its mask, :mod:`..measure`), the tests and the benchmarks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mask_iou", "rasterize_triangles"]


def rasterize_triangles(px: np.ndarray, tris: np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width) bool, top row first: pixels whose CENTRE lies inside any triangle.

    ``px`` (n, 2) pixel coordinates (u right, v down, origin at the image's top-left
    corner, so pixel (i, j) spans [i, i+1) x [j, j+1)); ``tris`` (m, 3) vertex indices.
    Pure numpy (Blender's Python has no Pillow): triangles are tested in batches on the
    grid of their box size class (8 to 64 px), the few larger ones one by one.
    """
    out = np.zeros((height, width), dtype=bool)
    if len(tris) == 0:
        return out
    t = np.asarray(px, dtype=np.float64)[np.asarray(tris)]  # (m, 3, 2)
    lo = np.floor(t.min(axis=1) - 0.5).astype(np.int64) + 1  # first centre >= min
    hi = np.floor(t.max(axis=1) - 0.5).astype(np.int64)  # last centre <= max
    lo = np.maximum(lo, 0)
    hi[:, 0] = np.minimum(hi[:, 0], width - 1)
    hi[:, 1] = np.minimum(hi[:, 1], height - 1)
    span = hi - lo + 1
    keep = (span > 0).all(axis=1)
    t, lo, span = t[keep], lo[keep], span[keep]
    size = span.max(axis=1)
    done = np.zeros(len(t), dtype=bool)
    for k in _BOX_SIZES:  # triangles whose box fits k x k, tested together in chunks
        idx = np.nonzero(~done & (size <= k))[0]
        step = max(1, _CELLS_PER_CHUNK // (k * k))
        for first in range(0, len(idx), step):
            part = idx[first : first + step]
            _fill_boxes(out, t[part], lo[part], k)
        done[idx] = True
    for tri, l0, sp in zip(t[~done], lo[~done], span[~done], strict=True):  # the few huge ones
        cu = (l0[0] + np.arange(sp[0]) + 0.5)[None, None, :]
        cv = (l0[1] + np.arange(sp[1]) + 0.5)[None, :, None]
        inside = _inside(tri[None], cu, cv)[0]
        out[l0[1] : l0[1] + sp[1], l0[0] : l0[0] + sp[0]] |= inside
    return out


#: Box sizes (pixels) of the vectorised passes, and how many grid cells one pass tests at
#: most (bounds the temporaries: a few float64 arrays of this many cells, ~32 MiB each).
_BOX_SIZES = (8, 12, 16, 24, 32, 48, 64)
_CELLS_PER_CHUNK = 1 << 22


def _fill_boxes(out: np.ndarray, t: np.ndarray, lo: np.ndarray, k: int) -> None:
    """Set the pixels of ``out`` whose centre lies in one of the triangles ``t`` (s, 3, 2),
    testing each on the k x k grid of pixel centres from its box's corner ``lo`` (s, 2)."""
    height, width = out.shape
    g = np.arange(k)
    cu = lo[:, 0, None, None] + g[None, None, :] + 0.5  # (s, 1, k)
    cv = lo[:, 1, None, None] + g[None, :, None] + 0.5  # (s, k, 1)
    s_idx, gy, gx = np.nonzero(_inside(t, cu, cv))
    u = lo[s_idx, 0] + gx
    v = lo[s_idx, 1] + gy
    ok = (u < width) & (v < height)
    out[v[ok], u[ok]] = True


def _inside(t: np.ndarray, cu: np.ndarray, cv: np.ndarray) -> np.ndarray:
    """Point-in-triangle for triangles ``t`` (s, 3, 2) and grids of points (cu, cv)
    broadcast to (s, H, W); either winding; edges count as inside."""
    a, b, c = (t[:, i, None, None, :] for i in range(3))

    def edge(p, q):
        return (q[..., 0] - p[..., 0]) * (cv - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
            cu - p[..., 0]
        )

    e0, e1, e2 = edge(a, b), edge(b, c), edge(c, a)
    return ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two same-shaped bool masks (0.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
