"""Test data: synthetic coloured meshes whose colour is a known function of position, and
a texture lookup to compare a baked result with them.

Used by the finishing tests, the GPU bake test and ``bench/bench_finishing.py`` to measure
colour error against ground truth. Shapes are in the object frame (glTF +Y up, metres),
faces counter-clockwise seen from outside; colours sRGB floats in [0, 1].
"""

from __future__ import annotations

import numpy as np


def torus(
    n_major: int,
    n_minor: int,
    major_radius: float = 0.3,
    minor_radius: float = 0.1,
    bumps: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Closed torus around the +Y axis: vertices (n_major * n_minor, 3) float32 metres,
    faces (2 * n_major * n_minor, 3) int64 with outward normals.

    ``bumps`` > 0 modulates the tube radius by ``1 + bumps * sin(9u) sin(4v)`` so that
    decimation has curvature detail to keep (0.1 gives +-1 cm bumps)."""
    u = np.linspace(0.0, 2 * np.pi, n_major, endpoint=False)
    v = np.linspace(0.0, 2 * np.pi, n_minor, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    r = minor_radius * (1.0 + bumps * np.sin(9 * uu) * np.sin(4 * vv))
    ring = major_radius + r * np.cos(vv)
    pts = np.stack([ring * np.cos(uu), r * np.sin(vv), -ring * np.sin(uu)], axis=-1)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    a = i * n_minor + j
    b = ((i + 1) % n_major) * n_minor + j
    c = ((i + 1) % n_major) * n_minor + (j + 1) % n_minor
    d = i * n_minor + (j + 1) % n_minor
    faces = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    verts = pts.reshape(-1, 3).astype(np.float32)
    return verts, _outward(verts, faces, major_radius)


def _outward(verts: np.ndarray, faces: np.ndarray, major_radius: float) -> np.ndarray:
    """A torus's faces (m, 3) wound so their normals point out of the tube: one face is
    checked against the direction from the tube's centre line."""
    tri = verts[faces[0]].astype(np.float64)
    n = np.cross(tri[1] - tri[0], tri[2] - tri[0])
    centre = tri.mean(0)
    tube = centre.copy()
    tube[1] = 0.0
    tube *= major_radius / np.linalg.norm(tube)
    if np.dot(n, centre - tube) < 0:
        faces = faces[:, ::-1]
    return np.ascontiguousarray(faces, np.int64)


def torus_faces_for(target_faces: int) -> tuple[int, int]:
    """(n_major, n_minor) giving about ``target_faces`` triangles with near-square quads
    for the default radii (major : minor circumference = 3 : 1 on the outer ring)."""
    n_minor = max(3, int(round(np.sqrt(target_faces / 2 / 2.0))))
    n_major = max(3, int(round(target_faces / 2 / n_minor)))
    return n_major, n_minor


def icosphere(subdivisions: int, radius: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Closed sphere (20 * 4**subdivisions faces): vertices float32 metres, faces int64."""
    t = (1.0 + 5**0.5) / 2.0
    v = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
        np.float64,
    )  # fmt: skip
    f = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
         [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
         [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        np.int64,
    )  # fmt: skip
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(subdivisions):
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        uniq, inv = np.unique(edges, axis=0, return_inverse=True)
        mids = v[uniq].mean(axis=1)
        mids /= np.linalg.norm(mids, axis=1, keepdims=True)
        m = inv.reshape(3, -1).T + len(v)  # (faces, 3): midpoint of edge 01, 12, 20
        v = np.vstack([v, mids])
        a, b, c = f[:, 0], f[:, 1], f[:, 2]
        ab, bc, ca = m[:, 0], m[:, 1], m[:, 2]
        f = np.concatenate(
            [np.stack(x, 1) for x in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))]
        )
    return (v * radius).astype(np.float32), f


def smooth_color(points: np.ndarray) -> np.ndarray:
    """Smooth colour field, sRGB in [0.15, 0.95]: slow sines of position (wavelength ~0.3 m).

    Gradient magnitude at most 0.4 * 23 ~ 9.2 colour units per metre per channel.
    """
    p = np.asarray(points, np.float64)
    freq = np.array([20.0, 23.0, 17.0])
    phase = np.array([0.3, 1.1, 2.0])
    return (0.55 + 0.4 * np.sin(p * freq + phase)).astype(np.float32)


def checker_color(points: np.ndarray, cell: float = 0.05) -> np.ndarray:
    """3D checker of ``cell``-metre cubes: sRGB (0.9, 0.75, 0.2) or (0.15, 0.3, 0.8)."""
    p = np.asarray(points, np.float64)
    parity = np.floor(p / cell).astype(np.int64).sum(axis=1) % 2
    a = np.array([0.9, 0.75, 0.2], np.float32)
    b = np.array([0.15, 0.3, 0.8], np.float32)
    return np.where(parity[:, None] == 0, a, b).astype(np.float32)


def parametric_torus_uv(
    n_major: int,
    n_minor: int,
    major_radius: float = 0.3,
    minor_radius: float = 0.1,
    gutter: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A UV-unwrapped torus without xatlas: the (u, v) parameter grid as one chart.

    Returns vertices ((n_major + 1) * (n_minor + 1), 3) float32 metres (seam vertices
    duplicated), faces (2 * n_major * n_minor, 3) int64, uv (n, 2) float32 in
    [gutter, 1 - gutter]. Used where only numpy is available (the GPU machine).
    """
    u = np.linspace(0.0, 2 * np.pi, n_major + 1)
    v = np.linspace(0.0, 2 * np.pi, n_minor + 1)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    ring = major_radius + minor_radius * np.cos(vv)
    pts = np.stack([ring * np.cos(uu), minor_radius * np.sin(vv), -ring * np.sin(uu)], axis=-1)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    w = n_minor + 1
    a = i * w + j
    b = (i + 1) * w + j
    c = (i + 1) * w + j + 1
    d = i * w + j + 1
    faces = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    span = 1.0 - 2 * gutter
    uv = np.stack([gutter + span * uu / (2 * np.pi), gutter + span * vv / (2 * np.pi)], axis=-1)
    verts = pts.reshape(-1, 3).astype(np.float32)
    faces = _outward(verts, faces, major_radius)
    return verts, faces, uv.reshape(-1, 2).astype(np.float32)


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear, clamp-to-edge lookup of ``texture`` (H, W, C) uint8 at glTF texcoords
    ``uv`` (N, 2) ((0, 0) = top-left): colours (N, C) float in [0, 1]."""
    h, w = texture.shape[:2]
    x = np.asarray(uv[:, 0], np.float64) * w - 0.5
    y = np.asarray(uv[:, 1], np.float64) * h - 0.5
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    tex = texture.astype(np.float64) / 255.0

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return tex[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy
