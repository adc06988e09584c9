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

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

# Border texels: centres within this many texels outside a triangle still take its colour.
RASTER_MARGIN = 1.0
# Candidate dense triangles examined per query point.
DEFAULT_K = 3


@dataclass
class TexelSamples:
    """Texels covered by the conservative UV rasterisation.

    ``x``, ``y`` (N,) int64 texel column / row; ``face`` (N,) int64 triangle index;
    ``bary`` (N, 3) float64 barycentric coordinates (clamped onto the triangle);
    ``inside`` (N,) bool - the texel centre lies inside the triangle (not a border texel).
    """

    x: np.ndarray
    y: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    inside: np.ndarray


def rasterize_uv(
    uv: np.ndarray, faces: np.ndarray, size: int, margin: float = RASTER_MARGIN
) -> TexelSamples:
    """Conservatively rasterise triangles ``faces`` (m, 3) with texcoords ``uv`` (n, 2) in
    [0, 1] into a ``size`` x ``size`` grid; each texel is claimed by one triangle (an inside
    hit wins over a border hit; among border hits the closest triangle wins).

    Scanline form: for every triangle row the span of texel centres whose distance outside
    each edge line is at most ``margin`` is solved in closed form, so only the texels that
    are kept are ever enumerated.
    """
    empty = np.zeros(0, np.int64)
    nothing = TexelSamples(empty, empty, empty, np.zeros((0, 3)), np.zeros(0, bool))
    p = uv[faces].astype(np.float64) * size - 0.5  # texel centre (x, y) sits at (x, y)
    area2 = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (
        p[:, 2, 0] - p[:, 0, 0]
    )
    ok = np.abs(area2) > 1e-9
    sign = np.where(area2 >= 0, 1.0, -1.0)
    # Edge i runs from s_i to e_i (opposite corner i). Signed edge function, positive inside:
    #   f_i(x, y) = sign * (ex * (y - sy) - ey * (x - sx)) = A_i * x + B_i * y + C_i.
    s_idx = np.array([1, 2, 0])
    e_idx = np.array([2, 0, 1])
    sp = p[:, s_idx]
    ep = p[:, e_idx]
    ex = ep[..., 0] - sp[..., 0]
    ey = ep[..., 1] - sp[..., 1]
    A = -ey * sign[:, None]
    B = ex * sign[:, None]
    C = sign[:, None] * (ey * sp[..., 0] - ex * sp[..., 1])
    length = np.maximum(np.hypot(ex, ey), 1e-12)
    C_m = C + margin * length  # f_i + margin * |edge| >= 0  <=>  at most `margin` outside
    y0 = np.clip(np.ceil(p[:, :, 1].min(axis=1) - margin), 0, size - 1).astype(np.int64)
    y1 = np.clip(np.floor(p[:, :, 1].max(axis=1) + margin), 0, size - 1).astype(np.int64)
    rows = np.where(ok, y1 - y0 + 1, 0)
    rows = np.maximum(rows, 0)
    if rows.sum() == 0:
        return nothing
    rface = np.repeat(np.arange(len(faces)), rows)
    ry = (np.arange(rows.sum()) - np.repeat(np.cumsum(rows) - rows, rows) + y0[rface]).astype(
        np.float64
    )
    xl = np.zeros(len(rface))
    xr = np.full(len(rface), float(size - 1))
    for i in range(3):
        a = A[rface, i]
        rhs = -(B[rface, i] * ry + C_m[rface, i])  # a * x >= rhs
        pos = a > 1e-12
        neg = a < -1e-12
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = rhs / a
        xl = np.where(pos, np.maximum(xl, bound), xl)
        xr = np.where(neg, np.minimum(xr, bound), xr)
        flat_out = ~pos & ~neg & (rhs > 0)
        xr = np.where(flat_out, -1.0, xr)
    x0 = np.maximum(np.ceil(xl), 0).astype(np.int64)
    x1 = np.minimum(np.floor(xr), size - 1).astype(np.int64)
    spans = np.maximum(x1 - x0 + 1, 0)
    total = int(spans.sum())
    if total == 0:
        return nothing
    face = np.repeat(rface, spans)
    x = np.arange(total) - np.repeat(np.cumsum(spans) - spans, spans) + np.repeat(x0, spans)
    y = np.repeat(ry.astype(np.int64), spans)
    px = x.astype(np.float64)
    py = y.astype(np.float64)
    fvals = A[face] * px[:, None] + B[face] * py[:, None] + C[face]  # (N, 3)
    outside = np.max(-fvals / length[face], axis=1)
    np.maximum(outside, 0.0, out=outside)
    inside = outside <= 0.0
    # Resolve texels claimed several times: inside hits first, then the nearest border hit.
    key = (y * size + x).astype(np.float64) + np.minimum(outside, margin) / (margin + 1.0) * 0.999
    order = np.argsort(key, kind="stable")
    texel_sorted = (y * size + x)[order]
    first = np.r_[True, texel_sorted[1:] != texel_sorted[:-1]]
    sel = order[first]
    bary = fvals[sel] / np.abs(area2)[face[sel], None]
    np.clip(bary, 0.0, None, out=bary)
    bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-30)
    return TexelSamples(x[sel], y[sel], face[sel], bary, inside[sel])


class DenseColorSource:
    """Colour lookup on the dense coloured mesh (the engine's output).

    ``vertices`` (n, 3) metres, object frame; ``faces`` (m, 3); ``colors`` (n, 3) sRGB [0, 1].
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> None:
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.colors = np.asarray(colors, np.float32)
        tri = self.vertices[self.faces]
        self._origin = tri[:, 0]
        self._e1 = tri[:, 1] - tri[:, 0]
        self._e2 = tri[:, 2] - tri[:, 0]
        n = np.cross(self._e1, self._e2)
        self._normal = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
        self._tree = cKDTree(
            tri.mean(axis=1), leafsize=16, balanced_tree=False, compact_nodes=False
        )

    def closest(
        self, points: np.ndarray, normals: np.ndarray | None = None, k: int = DEFAULT_K
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For points (N, 3): (face index (N,), barycentrics (N, 3), distance (N,) metres)
        of the best of the ``k`` triangles with the nearest centroids."""
        pts = np.asarray(points, np.float64)
        k = int(max(1, min(k, len(self.faces))))
        _, idx = self._tree.query(pts, k=k, workers=-1)
        idx = idx.reshape(len(pts), k)
        best_face = idx[:, 0].copy()
        best_bary = np.zeros((len(pts), 3))
        best_cost = np.full(len(pts), np.inf)
        best_dist = np.full(len(pts), np.inf)
        for j in range(k):
            fj = idx[:, j]
            bary, dist = self._project(pts, fj)
            cost = dist
            if normals is not None:
                facing = np.einsum("ij,ij->i", self._normal[fj], normals)
                cost = dist + np.where(facing < -0.2, 1e3, 0.0)
            better = cost < best_cost
            best_face[better] = fj[better]
            best_bary[better] = bary[better]
            best_cost[better] = cost[better]
            best_dist[better] = dist[better]
        return best_face, best_bary, best_dist

    def _project(self, pts: np.ndarray, fj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        den = np.where(np.abs(den) > 1e-30, den, 1e-30)
        v = (d22 * dp1 - d12 * dp2) / den
        w = (d11 * dp2 - d12 * dp1) / den
        bary = np.stack([1.0 - v - w, v, w], axis=1)
        np.clip(bary, 0.0, None, out=bary)
        bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-30)
        q = o + bary[:, 1:2] * e1 + bary[:, 2:3] * e2
        return bary, np.linalg.norm(pts - q, axis=1)

    def sample(
        self, points: np.ndarray, normals: np.ndarray | None = None, k: int = DEFAULT_K
    ) -> np.ndarray:
        """sRGB colours (N, 3) float32 of the dense surface nearest to ``points`` (N, 3)."""
        face, bary, _ = self.closest(points, normals, k)
        cols = self.colors[self.faces[face]]  # (N, 3 corners, 3 rgb)
        return np.einsum("ij,ijk->ik", bary.astype(np.float32), cols)


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
    """Copy into every uncovered texel the colour of the nearest covered texel (in place)."""
    if covered.all() or not covered.any():
        return image
    idx = ndimage.distance_transform_edt(~covered, return_distances=False, return_indices=True)
    return image[idx[0], idx[1]]


@dataclass
class BakeResult:
    """``image`` (S, S, 3) uint8 sRGB, row 0 = v 0 (top); ``covered`` (S, S) bool texels
    that lie on (or within the border margin of) a chart; ``coverage`` their fraction."""

    image: np.ndarray
    covered: np.ndarray
    coverage: float


def bake_base_color(
    vertices: np.ndarray,
    normals: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    source: DenseColorSource,
    size: int = 1024,
    k: int = DEFAULT_K,
    chunk: int = 1 << 18,
    progress=None,
) -> BakeResult:
    """Bake the dense source's colours into a ``size``² texture of the UV'd target mesh.

    ``vertices`` (n, 3) metres and ``normals`` (n, 3) unit vectors of the UV-split target;
    ``faces`` (m, 3); ``uv`` (n, 2) glTF texcoords. ``progress(fraction)`` is called between
    chunks of texels when given.
    """
    samples = rasterize_uv(uv, faces, size)
    n = len(samples.face)
    colors = np.zeros((n, 3), np.float32)
    tri_v = faces[samples.face]
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        bw = samples.bary[s:e, :, None]
        tv = tri_v[s:e]
        pts = (vertices[tv] * bw).sum(axis=1)
        nrm = (normals[tv] * bw).sum(axis=1)
        colors[s:e] = source.sample(pts, nrm, k)
        if progress is not None:
            progress(e / max(n, 1))
    img = np.zeros((size, size, 3), np.float32)
    covered = np.zeros((size, size), bool)
    img[samples.y, samples.x] = colors
    covered[samples.y, samples.x] = True
    img = fill_gutter(img, covered)
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return BakeResult(out, covered, float(covered.mean()))
