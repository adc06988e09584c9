"""``core.raster``: the batched rasteriser against a per-pixel reference, every size class."""

from __future__ import annotations

import numpy as np

from sam3d_blender.core.raster import mask_iou, rasterize_triangles


def _reference(px: np.ndarray, tris: np.ndarray, width: int, height: int) -> np.ndarray:
    """Every pixel centre tested against every triangle (slow, obviously right)."""
    v, u = np.mgrid[0:height, 0:width] + 0.5
    out = np.zeros((height, width), dtype=bool)
    for a, b, c in px[tris]:
        e = [
            (q[0] - p[0]) * (v - p[1]) - (q[1] - p[1]) * (u - p[0])
            for p, q in ((a, b), (b, c), (c, a))
        ]
        out |= ((e[0] >= 0) & (e[1] >= 0) & (e[2] >= 0)) | ((e[0] <= 0) & (e[1] <= 0) & (e[2] <= 0))
    return out


def test_every_size_class_matches_the_reference():
    rng = np.random.default_rng(7)
    width, height = 160, 120
    tris, pts = [], []
    for size in (2, 6, 10, 14, 20, 30, 40, 60, 90, 200):  # 8..64 px classes and beyond
        for _ in range(6):
            centre = rng.uniform(-20, [width + 20, height + 20])  # some cross the edges
            corners = centre + rng.uniform(-size / 2, size / 2, (3, 2))
            tris.append([len(pts), len(pts) + 1, len(pts) + 2])
            pts.extend(corners)
    px, tris = np.asarray(pts), np.asarray(tris)
    got = rasterize_triangles(px, tris, width, height)
    want = _reference(px, tris, width, height)
    assert got.sum() > 1000
    assert np.array_equal(got, want)
    assert mask_iou(got, want) == 1.0
