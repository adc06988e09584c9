"""Base-colour baking on the CPU (numpy + scipy): dense coloured mesh -> texture of the
simplified, UV-unwrapped mesh.

Method (all vectorised):

1. **UV rasterisation** (``rasterize_uv``): every texel whose centre lies inside a triangle in
   UV space, plus every texel whose centre lies within ``margin`` texels outside a triangle
   edge (a conservative border, so bilinear lookups at chart edges read true colours),
   gets that triangle and its barycentric coordinates (clamped onto the triangle for
   border texels).
2. **Surface points**: barycentric interpolation of the simplified mesh's vertices gives
   each texel's 3D point (object frame, metres) and interpolated normal.
3. **Colour transfer** (``DenseColorSource``): the nearest dense triangles (k-d tree on
   their centroids), the point projected onto each candidate's plane, barycentric
   coordinates clamped to the triangle; the candidate with the smallest distance (faces
   turned away from the texel's normal are penalised, so thin sheets don't bleed through)
   gives the colour by barycentric interpolation of its vertex colours.
4. **Gutter fill** (``fill_gutter``): every uncovered texel takes the colour of the
   nearest covered texel (exact Euclidean distance transform), so mip levels and
   bilinear filtering never mix in background colour across seams.

Colours are sRGB floats in [0, 1] throughout; the texture is sRGB-encoded uint8 (glTF
``baseColorTexture`` is sRGB). Texel/UV convention: see ``backend.finishing.uv``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

# Border texels: centres within this many texels outside a triangle still take its colour.
RASTER_MARGIN = 1.0
# Candidate dense triangles examined for hard points (thin sheets, far points).
DEFAULT_K = 8


@dataclass
class TexelSamples:
    """Texels covered by the conservative UV rasterisation.

    ``x``, ``y`` (N,) int64 texel column / row; ``face`` (N,) int64 triangle index;
    ``bary`` (N, 3) float32 barycentric coordinates summing to 1 (inside texels: in [0, 1];
    border texels: extrapolated, up to ~``margin`` texels outside the triangle);
    ``inside`` (N,) bool - the texel centre lies inside the triangle (not a border texel).
    """

    x: np.ndarray
    y: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    inside: np.ndarray


def _edge_coefficients(uv: np.ndarray, faces: np.ndarray, size: int):
    """Per-face edge functions in texel-centre coordinates (centre of texel (x, y) at (x, y)).

    Returns (an, bn, cn, scale, ok): for edge i (opposite corner i) the normalised edge
    function ``d_i(x, y) = an[:, i] * x + bn[:, i] * y + cn[:, i]`` is the signed distance in
    texels to the edge line, positive inside, for either winding; ``bary_i = d_i * scale_i``;
    ``ok`` marks faces with a non-zero UV area.
    """
    p = uv[faces].astype(np.float64) * size - 0.5
    area2 = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (
        p[:, 2, 0] - p[:, 0, 0]
    )
    ok = np.abs(area2) > 1e-9
    sign = np.where(area2 >= 0, 1.0, -1.0)[:, None]
    sp = p[:, [1, 2, 0]]
    ep = p[:, [2, 0, 1]]
    ex = ep[..., 0] - sp[..., 0]
    ey = ep[..., 1] - sp[..., 1]
    length = np.maximum(np.hypot(ex, ey), 1e-12)
    an = -ey * sign / length
    bn = ex * sign / length
    cn = sign * (ey * sp[..., 0] - ex * sp[..., 1]) / length
    scale = length / np.maximum(np.abs(area2), 1e-12)[:, None]
    return an, bn, cn, scale, ok, p


def _rasterize_inside(uv: np.ndarray, faces: np.ndarray, size: int):
    """Texels whose centres lie inside a triangle (scanline spans solved in closed form)."""
    an, bn, cn, scale, ok, p = _edge_coefficients(uv, faces, size)
    y0 = np.clip(np.ceil(p[:, :, 1].min(axis=1)), 0, size).astype(np.int64)
    y1 = np.clip(np.floor(p[:, :, 1].max(axis=1)), -1, size - 1).astype(np.int64)
    rows = np.where(ok, np.maximum(y1 - y0 + 1, 0), 0)
    n_rows = int(rows.sum())
    if n_rows == 0:
        return None
    rface = np.repeat(np.arange(len(faces)), rows)
    ry = np.arange(n_rows) - np.repeat(np.cumsum(rows) - rows, rows) + y0[rface]
    fy = ry.astype(np.float64)
    xl = np.zeros(n_rows)
    xr = np.full(n_rows, float(size - 1))
    row_const = bn[rface] * fy[:, None] + cn[rface]  # (rows, 3): d_i = a_i * x + row_const_i
    ra = an[rface]
    for i in range(3):
        a = ra[:, i]
        c = row_const[:, i]
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = -c / a
        xl = np.where(a > 1e-12, np.maximum(xl, bound), xl)
        xr = np.where(a < -1e-12, np.minimum(xr, bound), xr)
        xr = np.where((np.abs(a) <= 1e-12) & (c < 0), -1.0, xr)
    x0 = np.maximum(np.ceil(xl), 0).astype(np.int64)
    x1 = np.minimum(np.floor(xr), size - 1).astype(np.int64)
    spans = np.maximum(x1 - x0 + 1, 0)
    total = int(spans.sum())
    if total == 0:
        return None
    keep_rows = spans > 0
    spans, x0, ry, rface = spans[keep_rows], x0[keep_rows], ry[keep_rows], rface[keep_rows]
    ra, row_const = ra[keep_rows], row_const[keep_rows]
    local = np.arange(total) - np.repeat(np.cumsum(spans) - spans, spans)
    x = np.repeat(x0, spans) + local
    y = np.repeat(ry, spans)
    face = np.repeat(rface, spans)
    # Distances at the span start, stepped along x: contiguous repeats instead of gathers.
    d0 = (ra * x0[:, None] + row_const).astype(np.float32)
    d = np.repeat(d0, spans, axis=0)
    d += np.repeat(ra.astype(np.float32), spans, axis=0) * local[:, None].astype(np.float32)
    bary = d * scale[face].astype(np.float32)
    return x, y, face, bary, (an, bn, cn, scale, ok, p)


def rasterize_uv(
    uv: np.ndarray,
    faces: np.ndarray,
    size: int,
    margin: float = RASTER_MARGIN,
    pool: ThreadPoolExecutor | None = None,
) -> TexelSamples:
    """Conservatively rasterise triangles ``faces`` (m, 3) with texcoords ``uv`` (n, 2) in
    [0, 1] into a ``size`` x ``size`` grid.

    Pass 1 claims every texel whose centre lies inside a triangle (ties on shared edges go
    to either triangle). Pass 2 claims the uncovered texels within ``margin`` (Chebyshev,
    rounded up) of a covered one: each takes, among the triangles of its covered
    neighbours, the one its centre is closest to, with barycentrics EXTRAPOLATED (some
    negative, still summing to 1) so the texel's 3D point lies just past the chart edge.
    With ``pool``, pass 1 runs on two halves of the triangles in parallel.
    """
    empty = np.zeros(0, np.int64)
    nothing = TexelSamples(empty, empty, empty, np.zeros((0, 3), np.float32), np.zeros(0, bool))
    if pool is not None and len(faces) > 1000:
        half = len(faces) // 2
        parts = list(
            pool.map(lambda fs: _rasterize_inside(uv, fs, size), (faces[:half], faces[half:]))
        )
        if parts[0] is None or parts[1] is None:
            first = _rasterize_inside(uv, faces, size)
        else:
            (x0, y0, f0, b0, c0), (x1, y1, f1, b1, c1) = parts
            coeffs = tuple(np.concatenate([a, b]) for a, b in zip(c0, c1, strict=True))
            first = (
                np.concatenate([x0, x1]),
                np.concatenate([y0, y1]),
                np.concatenate([f0, f1 + half]),
                np.concatenate([b0, b1]),
                coeffs,
            )
    else:
        first = _rasterize_inside(uv, faces, size)
    if first is None:
        return nothing
    x, y, face, bary, (an, bn, cn, scale, ok, p) = first
    owner = np.full(size * size, -1, np.int64)
    texel = y * size + x
    owner[texel] = np.arange(len(texel))
    unique = owner[texel] == np.arange(len(texel))
    x, y, face, bary, texel = x[unique], y[unique], face[unique], bary[unique], texel[unique]
    owner_face = np.full(size * size, -1, np.int64)
    owner_face[texel] = face
    covered = (owner_face >= 0).reshape(size, size)
    reach = int(np.ceil(margin))
    border = ndimage.binary_dilation(covered, np.ones((3, 3), bool), iterations=reach) & ~covered
    by, bx = np.nonzero(border)
    best = np.full(len(bx), np.inf, np.float32)
    best_face = np.full(len(bx), -1, np.int64)
    owner_face_img = np.pad(owner_face.reshape(size, size), reach, constant_values=-1)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if dx == 0 and dy == 0:
                continue
            cand = owner_face_img[by + dy + reach, bx + dx + reach]
            sel_c = np.flatnonzero(cand >= 0)
            c = cand[sel_c]
            # Distance (texels) of this border texel's centre outside each edge line.
            px = bx[sel_c].astype(np.float64)
            py = by[sel_c].astype(np.float64)
            d_edges = an[c] * px[:, None] + bn[c] * py[:, None] + cn[c]
            dist = np.max(-d_edges, axis=1).astype(np.float32)
            better = dist < best[sel_c]
            upd = sel_c[better]
            best[upd] = dist[better]
            best_face[upd] = c[better]
    sel = (best_face >= 0) & (best <= margin)
    cand_t = by[sel] * size + bx[sel]
    cand_f = best_face[sel]
    cand_d = best[sel]
    # Orphans: triangles (slivers, tiny charts) that own no texel centre still claim the
    # uncovered texels within `margin` of them, so every chart gets colour.
    owned = np.zeros(len(faces), bool)
    owned[face] = True
    orphans = np.flatnonzero(~owned & ok)
    if len(orphans):
        lo = np.clip(np.floor(p[orphans].min(axis=1) - margin), 0, size - 1).astype(np.int64)
        hi = np.clip(np.ceil(p[orphans].max(axis=1) + margin), 0, size - 1).astype(np.int64)
        w = hi[:, 0] - lo[:, 0] + 1
        cnt = w * (hi[:, 1] - lo[:, 1] + 1)
        of = np.repeat(np.arange(len(orphans)), cnt)
        loc = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        ox = lo[of, 0] + loc % w[of]
        oy = lo[of, 1] + loc // w[of]
        gf = orphans[of]
        od = np.max(-(an[gf] * ox[:, None] + bn[gf] * oy[:, None] + cn[gf]), axis=1)
        ot = oy * size + ox
        keep = (od <= margin) & ~covered.ravel()[ot]
        cand_t = np.concatenate([cand_t, ot[keep]])
        cand_f = np.concatenate([cand_f, gf[keep]])
        cand_d = np.concatenate([cand_d, od[keep]])
    order = np.lexsort((cand_d, cand_t))
    ts = cand_t[order]
    firsts = order[np.r_[True, ts[1:] != ts[:-1]]] if len(ts) else order
    bt, bf = cand_t[firsts], cand_f[firsts]
    bx, by = bt % size, bt // size
    # Border texels keep their extrapolated barycentrics: the 3D point continues the
    # triangle's plane past the chart edge, so the colour looked up there is the colour
    # across the seam and bilinear filtering at the edge matches the other chart.
    bb = (an[bf] * bx[:, None] + bn[bf] * by[:, None] + cn[bf]) * scale[bf]
    np.clip(bary, 0.0, None, out=bary)
    bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-30)
    return TexelSamples(
        np.concatenate([x, bx]),
        np.concatenate([y, by]),
        np.concatenate([face, bf]),
        np.concatenate([bary, bb.astype(np.float32)]),
        np.concatenate([np.ones(len(x), bool), np.zeros(len(bx), bool)]),
    )


class DenseColorSource:
    """Colour lookup on the dense coloured mesh (the engine's output).

    ``vertices`` (n, 3) metres, object frame; ``faces`` (m, 3); ``colors`` (n, 3) sRGB [0, 1].
    Geometry is held in float32 relative to the mesh centre (sub-micrometre precision for
    objects of a few metres), which halves memory traffic in the per-texel arithmetic.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> None:
        v = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.colors = np.asarray(colors, np.float32)
        self.center = v.mean(axis=0) if len(v) else np.zeros(3)
        vc = (v - self.center).astype(np.float32)
        self._origin = vc[self.faces[:, 0]]
        self._e1 = vc[self.faces[:, 1]] - self._origin
        self._e2 = vc[self.faces[:, 2]] - self._origin
        centroids = self._origin + (self._e1 + self._e2) / np.float32(3.0)
        self._tree = cKDTree(centroids, leafsize=16, balanced_tree=False, compact_nodes=False)
        # Search radius for the bounded (fast) nearest query: points farther than this
        # from every centroid are queried again without a bound.
        edge = np.sqrt(np.einsum("ij,ij->i", self._e1, self._e1))
        self._radius = float(np.median(edge)) if len(edge) else np.inf

    def closest(
        self,
        points: np.ndarray,
        normals: np.ndarray | None = None,
        k: int = DEFAULT_K,
        workers: int = -1,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For points (N, 3) metres: (face index (N,), barycentrics (N, 3) float32, distance
        (N,) metres) of the dense triangle nearest to each point, measured to the point's
        projection clamped onto the triangle.

        Fast path: the triangle with the nearest centroid. Points where that triangle faces
        away from the given ``normals`` (a thin sheet's back side) or lies unusually far are
        re-examined among the ``k`` nearest centroids, preferring triangles facing the same
        way. ``workers``: k-d tree query threads (-1: all CPUs).
        """
        p64 = np.asarray(points, np.float64) - self.center
        pts = p64.astype(np.float32)
        nrm = None if normals is None else np.asarray(normals, np.float32)
        dist0, idx = self._tree.query(p64, k=1, workers=workers, distance_upper_bound=self._radius)
        miss = ~np.isfinite(dist0)
        if miss.any():
            _, idx[miss] = self._tree.query(p64[miss], k=1, workers=workers)
        face = idx.astype(np.int64)
        bary, dist, facing = self._project(pts, face, nrm)
        k = int(max(1, min(k, len(self.faces))))
        if k > 1:
            redo = dist > self._radius
            if facing is not None:
                redo |= facing < -0.2
            sel = np.flatnonzero(redo)
            if len(sel):
                f2, b2, d2 = self._best_of_k(
                    pts[sel], None if nrm is None else nrm[sel], k, workers
                )
                face[sel], bary[sel], dist[sel] = f2, b2, d2
        return face, bary, dist

    def _best_of_k(
        self, pts: np.ndarray, normals: np.ndarray | None, k: int, workers: int = -1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, idx = self._tree.query(pts, k=k, workers=workers)
        idx = idx.reshape(len(pts), k)
        best_face = idx[:, 0].astype(np.int64)
        best_bary = np.zeros((len(pts), 3), np.float32)
        best_cost = np.full(len(pts), np.inf)
        best_dist = np.full(len(pts), np.inf, np.float32)
        for j in range(k):
            fj = idx[:, j].astype(np.int64)
            bary, dist, facing = self._project(pts, fj, normals)
            cost = dist.astype(np.float64)
            if facing is not None:
                cost = cost + np.where(facing < -0.2, 1e3, 0.0)
            better = cost < best_cost
            best_face[better] = fj[better]
            best_bary[better] = bary[better]
            best_cost[better] = cost[better]
            best_dist[better] = dist[better]
        return best_face, best_bary, best_dist

    def _project(
        self, pts: np.ndarray, fj: np.ndarray, normals: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Barycentrics (N, 3) of ``pts`` projected on triangles ``fj`` and clamped onto
        them, the distance (N,) from each point to that clamped point, and (with
        ``normals``) the cosine between each triangle's normal and the given normal."""
        o = self._origin[fj]
        e1 = self._e1[fj]
        e2 = self._e2[fj]
        d = pts - o
        d11 = np.einsum("ij,ij->i", e1, e1)
        d12 = np.einsum("ij,ij->i", e1, e2)
        d22 = np.einsum("ij,ij->i", e2, e2)
        dp1 = np.einsum("ij,ij->i", d, e1)
        dp2 = np.einsum("ij,ij->i", d, e2)
        den = d11 * d22 - d12 * d12
        den = np.where(np.abs(den) > 1e-30, den, np.float32(1e-30))
        v = (d22 * dp1 - d12 * dp2) / den
        w = (d11 * dp2 - d12 * dp1) / den
        bary = np.stack([1.0 - v - w, v, w], axis=1)
        np.clip(bary, 0.0, None, out=bary)
        bary /= np.maximum(bary.sum(axis=1, keepdims=True), np.float32(1e-30))
        q = bary[:, 1:2] * e1
        q += bary[:, 2:3] * e2
        q -= d
        dist = np.sqrt(np.einsum("ij,ij->i", q, q))
        facing = None
        if normals is not None:
            n = np.cross(e1, e2)
            nn = np.sqrt(np.einsum("ij,ij->i", n, n) * np.einsum("ij,ij->i", normals, normals))
            facing = np.einsum("ij,ij->i", n, normals) / np.maximum(nn, np.float32(1e-30))
        return bary, dist, facing

    def distance(self, points: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
        """Distance (N,) in metres from each point to the surface: the best clamped
        projection among the ``k`` triangles with the nearest centroids (exact when the
        nearest triangle is among them; used for geometric error measurements)."""
        pts = (np.asarray(points, np.float64) - self.center).astype(np.float32)
        _, _, dist = self._best_of_k(pts, None, int(max(1, min(k, len(self.faces)))))
        return dist.astype(np.float64)

    def sample(
        self,
        points: np.ndarray,
        normals: np.ndarray | None = None,
        k: int = DEFAULT_K,
        workers: int = -1,
    ) -> np.ndarray:
        """sRGB colours (N, 3) float32 of the dense surface nearest to ``points`` (N, 3)."""
        face, bary, _ = self.closest(points, normals, k, workers)
        tri = self.faces[face]
        c = self.colors
        return (
            c[tri[:, 0]] * bary[:, 0:1] + c[tri[:, 1]] * bary[:, 1:2] + c[tri[:, 2]] * bary[:, 2:3]
        )


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (n, 3) float64; isolated vertices get +Y."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros((len(vertices), 3))
    for i in range(3):
        vn += np.stack(
            [np.bincount(faces[:, i], weights=fn[:, a], minlength=len(vertices)) for a in range(3)],
            axis=1,
        )
    norm = np.linalg.norm(vn, axis=1)
    ok = norm > 1e-30
    vn[ok] /= norm[ok, None]
    vn[~ok] = (0.0, 1.0, 0.0)
    return vn


def fill_gutter(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Fill uncovered texels by push-pull: coverage-weighted 2x2 sums down to one texel, then
    every uncovered texel takes the (normalised) value of its parent at the next coarser
    level that has coverage.

    Next to a chart the fill is the chart's border colour; farther out it is the average the
    mip chain would see anyway, so no mip level mixes in an arbitrary background colour.
    ``image`` (H, W, C) float32, ``covered`` (H, W) bool; square power-of-two sizes use
    push-pull, other sizes the nearest covered texel (exact distance transform).
    """
    if covered.all() or not covered.any():
        return image
    h, w_ = covered.shape
    if h != w_ or h & (h - 1):
        idx = ndimage.distance_transform_edt(~covered, return_distances=False, return_indices=True)
        return image[idx[0], idx[1]]
    w = covered.astype(np.float32)
    img = np.where(covered[..., None], image, np.float32(0.0))
    levels = []
    while img.shape[0] > 1:
        s_img = img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]
        s_w = w[0::2, 0::2] + w[1::2, 0::2] + w[0::2, 1::2] + w[1::2, 1::2]
        levels.append((s_img, s_w))
        img, w = s_img, s_w
    filled = levels[-1][0] / np.maximum(levels[-1][1], 1e-12)[..., None]
    for s_img, s_w in reversed(levels[:-1]):
        up = filled.repeat(2, axis=0).repeat(2, axis=1)
        avg = s_img / np.maximum(s_w, 1e-12)[..., None]
        filled = np.where((s_w > 0)[..., None], avg, up)
    up = filled.repeat(2, axis=0).repeat(2, axis=1)
    return np.where(covered[..., None], image, up).astype(np.float32, copy=False)


@dataclass
class BakeResult:
    """``image`` (S, S, 3) uint8 sRGB, row 0 = v 0 (top); ``covered`` (S, S) bool texels
    that lie on (or within the border margin of) a chart; ``coverage`` their fraction."""

    image: np.ndarray
    covered: np.ndarray
    coverage: float


def texel_points(
    vertices: np.ndarray,
    normals: np.ndarray,
    faces: np.ndarray,
    samples: TexelSamples,
    sl: slice | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """3D points (N, 3) float32 metres and interpolated (unnormalised) normals (N, 3) of
    rasterised texels (optionally the slice ``sl`` of them) on the mesh
    ``vertices``/``normals`` (n, 3), ``faces`` (m, 3)."""
    sl = sl if sl is not None else slice(None)
    tri = faces[samples.face[sl]]
    b = samples.bary[sl]
    v = np.asarray(vertices, np.float32)
    nn = np.asarray(normals, np.float32)
    pts = v[tri[:, 0]] * b[:, 0:1]
    pts += v[tri[:, 1]] * b[:, 1:2]
    pts += v[tri[:, 2]] * b[:, 2:3]
    nrm = nn[tri[:, 0]] * b[:, 0:1]
    nrm += nn[tri[:, 1]] * b[:, 1:2]
    nrm += nn[tri[:, 2]] * b[:, 2:3]
    return pts, nrm


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def bake_base_color(
    vertices: np.ndarray,
    normals: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    source: DenseColorSource | Callable[[], DenseColorSource],
    size: int = 1024,
    k: int = DEFAULT_K,
    threads: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> BakeResult:
    """Bake the dense source's colours into a ``size``² texture of the UV'd target mesh.

    ``vertices`` (n, 3) metres and ``normals`` (n, 3) unit vectors of the UV-split target;
    ``faces`` (m, 3); ``uv`` (n, 2) glTF texcoords. ``source`` may be a callable that
    builds the ``DenseColorSource``: it then runs in a thread while the UV rasterisation
    runs. Texels are looked up in chunks on ``threads`` threads (numpy and the k-d tree
    release the GIL; default: the CPUs this process may use). ``progress(fraction)`` is
    called as chunks finish.
    """
    n_threads = threads or _cpu_count()
    with ThreadPoolExecutor(max_workers=max(2, n_threads)) as pool:
        src_future = pool.submit(source) if not isinstance(source, DenseColorSource) else None
        samples = rasterize_uv(uv, faces, size, pool=pool if n_threads > 1 else None)
        src = src_future.result() if src_future is not None else source
        n = len(samples.face)
        colors = np.empty((n, 3), np.float32)
        v32 = np.asarray(vertices, np.float32)
        n32 = np.asarray(normals, np.float32)
        bounds = np.linspace(0, n, 2 * n_threads + 1).astype(np.int64)

        def work(i: int) -> int:
            s, e = int(bounds[i]), int(bounds[i + 1])
            if e > s:
                pts, nrm = texel_points(v32, n32, faces, samples, slice(s, e))
                colors[s:e] = src.sample(pts, nrm, k, workers=1)
            return e - s

        done = 0
        for count in pool.map(work, range(len(bounds) - 1)):
            done += count
            if progress is not None:
                progress(done / max(n, 1))
    img = np.zeros((size, size, 3), np.float32)
    covered = np.zeros((size, size), bool)
    img[samples.y, samples.x] = colors
    covered[samples.y, samples.x] = True
    img = fill_gutter(img, covered)
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return BakeResult(out, covered, float(covered.mean()))
