"""Conservative rasterisation of a UV layout into texels, and the texels' points on the mesh.

Texel/UV convention: see ``backend.finishing.uv`` (the centre of texel (x, y) of an S x S
image lies at u = (x + 0.5) / S, v = (y + 0.5) / S). Points are in the mesh's frame and
units (the object frame, metres, in the finishing stage).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

# Border texels: centres within this many texels outside a triangle still take its colour.
RASTER_MARGIN = 1.0
# Texels per block in texel_points (bounds its temporaries to a few MB).
POINT_BLOCK = 1 << 16
# Triangles per block of the rasteriser's first pass (same reason).
RASTER_BLOCK = 4096


@dataclass
class TexelSamples:
    """Texels covered by the conservative UV rasterisation.

    ``x``, ``y`` (N,) intp texel column / row; ``face`` (N,) intp triangle index;
    ``inside`` (N,) bool - the texel centre lies inside the triangle (not a border texel);
    ``frame`` (6, m) float64, per triangle: its corner 0 in texel coordinates ``(x0, y0)``
    and the inverse ``(i00, i01, i10, i11)`` of its edge matrix ``[[x1 - x0, x2 - x0],
    [y1 - y0, y2 - y0]]``, so a texel's barycentrics (1 - b1 - b2, b1, b2) are
    ``(b1, b2) = inverse @ (x - x0, y - y0)`` - in [0, 1] for inside texels, extrapolated
    (up to ~``margin`` texels past an edge) for border texels.
    """

    x: np.ndarray
    y: np.ndarray
    face: np.ndarray
    inside: np.ndarray
    frame: np.ndarray

    def local(self, sl: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(b1, b2), each (N,) float64: barycentrics of corners 1 and 2 of each texel
        (optionally the slice ``sl`` of the texels)."""
        sl = sl if sl is not None else slice(None)
        face = self.face[sl]
        fr = [self.frame[i].take(face, mode="clip") for i in range(6)]
        dx = self.x[sl] - fr[0]
        dy = self.y[sl] - fr[1]
        return fr[2] * dx + fr[3] * dy, fr[4] * dx + fr[5] * dy

    @property
    def bary(self) -> np.ndarray:
        """(N, 3) float32 barycentrics summing to 1 (inside texels clamped to [0, 1],
        border texels extrapolated past the edge)."""
        b1, b2 = self.local()
        bary = np.stack([1.0 - b1 - b2, b1, b2], axis=1).astype(np.float32)
        inner = bary[self.inside]
        np.clip(inner, 0.0, None, out=inner)
        inner /= np.maximum(inner.sum(axis=1, keepdims=True), 1e-30)
        bary[self.inside] = inner
        return bary


def _edge_coefficients(uv: np.ndarray, faces: np.ndarray, size: int):
    """Per-face edge functions in texel-centre coordinates (centre of texel (x, y) at (x, y)).

    Returns (an, bn, cn, ok, p): for edge i (opposite corner i) the normalised edge function
    ``d_i(x, y) = an[:, i] * x + bn[:, i] * y + cn[:, i]`` is the signed distance in texels
    to the edge line, positive inside, for either winding; ``ok`` marks faces with a
    non-zero UV area; ``p`` (m, 3, 2) the corners in texel coordinates.
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
    return an, bn, cn, ok, p


def _texel_frames(p: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(6, m) float64 ``TexelSamples.frame`` of triangles with texel-space corners ``p``."""
    e1 = p[:, 1] - p[:, 0]
    e2 = p[:, 2] - p[:, 0]
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    return np.stack(
        [p[:, 0, 0], p[:, 0, 1], e2[:, 1] * inv, -e2[:, 0] * inv, -e1[:, 1] * inv, e1[:, 0] * inv]
    )


def _rasterize_inside(
    an: np.ndarray, bn: np.ndarray, cn: np.ndarray, ok: np.ndarray, p: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, face) of texels whose centres lie inside a triangle (scanline spans solved in
    closed form from the edge functions)."""
    m = len(p)
    y0 = np.clip(np.ceil(p[:, :, 1].min(axis=1)), 0, size).astype(np.intp)
    y1 = np.clip(np.floor(p[:, :, 1].max(axis=1)), -1, size - 1).astype(np.intp)
    rows = np.where(ok, np.maximum(y1 - y0 + 1, 0), 0)
    n_rows = int(rows.sum())
    empty = np.zeros(0, np.intp)
    if n_rows == 0:
        return empty, empty, empty
    rface = np.repeat(np.arange(m), rows)
    ry = np.arange(n_rows) - np.repeat(np.cumsum(rows) - rows, rows) + y0[rface]
    fy = ry.astype(np.float64)
    xl = np.zeros(n_rows)
    xr = np.full(n_rows, float(size - 1))
    for i in range(3):
        a = an[:, i].take(rface)
        c = bn[:, i].take(rface) * fy + cn[:, i].take(rface)  # d_i = a * x + c along the row
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = -c / a
        xl = np.where(a > 1e-12, np.maximum(xl, bound), xl)
        xr = np.where(a < -1e-12, np.minimum(xr, bound), xr)
        xr = np.where((np.abs(a) <= 1e-12) & (c < 0), -1.0, xr)
    x0 = np.maximum(np.ceil(xl), 0).astype(np.intp)
    x1 = np.minimum(np.floor(xr), size - 1).astype(np.intp)
    spans = np.maximum(x1 - x0 + 1, 0)
    total = int(spans.sum())
    if total == 0:
        return empty, empty, empty
    keep = spans > 0
    spans, x0, ry, rface = spans[keep], x0[keep], ry[keep], rface[keep]
    start = np.cumsum(spans) - spans
    x = np.arange(total) - np.repeat(start - x0, spans)
    return x, np.repeat(ry, spans), np.repeat(rface, spans)


def _dilate(mask: np.ndarray, reach: int) -> np.ndarray:
    """``mask`` (H, W) bool grown by ``reach`` texels in the 8-neighbourhood (Chebyshev)."""
    out = mask.copy()
    for _ in range(reach):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        rows = grown.copy()
        rows[:, 1:] |= grown[:, :-1]
        rows[:, :-1] |= grown[:, 1:]
        out = rows
    return out


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
    neighbours, the one its centre is closest to; its barycentrics are EXTRAPOLATED (some
    negative, still summing to 1) so the texel's point lies just past the chart edge.
    Triangles too thin to own a texel centre (slivers, tiny charts) claim the uncovered
    texels within ``margin`` of them. With ``pool``, pass 1 runs on the pool's threads.
    """
    faces = np.asarray(faces, np.intp)
    an, bn, cn, ok, p = _edge_coefficients(uv, faces, size)
    frame = _texel_frames(p, ok)
    empty = np.zeros(0, np.intp)
    # Pass 1 in blocks of triangles: the per-row temporaries stay small (and on two
    # threads with ``pool``).
    blocks = [slice(lo, lo + RASTER_BLOCK) for lo in range(0, len(faces), RASTER_BLOCK)]

    def inside(s: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bx_, by_, bf_ = _rasterize_inside(an[s], bn[s], cn[s], ok[s], p[s], size)
        return bx_, by_, bf_ + s.start

    parts = list(pool.map(inside, blocks)) if pool is not None else [inside(b) for b in blocks]
    x, y, face = (np.concatenate([pt[i] for pt in parts]) if parts else empty for i in range(3))
    del parts
    if len(x) == 0:
        return TexelSamples(empty, empty, empty, np.zeros(0, bool), frame)
    # Texels claimed twice (centres exactly on a shared edge) keep the last claim.
    texel = y * size + x
    owner_face = np.full(size * size, -1, np.int32)
    owner_face[texel] = face
    unique = owner_face.take(texel) == face
    if not unique.all():
        x, y, face, texel = x[unique], y[unique], face[unique], texel[unique]
    covered = (owner_face >= 0).reshape(size, size)
    reach = int(np.ceil(margin))
    border = _dilate(covered, reach)
    border &= ~covered
    by, bx = np.nonzero(border)
    best = np.full(len(bx), np.inf)
    best_face = np.full(len(bx), -1, np.int32)
    owner_img = np.pad(owner_face.reshape(size, size), reach, constant_values=-1)
    coef = [np.ascontiguousarray(k[:, i]) for i in range(3) for k in (an, bn, cn)]
    fbx, fby = bx.astype(np.float64), by.astype(np.float64)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if dx == 0 and dy == 0:
                continue
            cand = owner_img[by + dy + reach, bx + dx + reach]
            # Neighbours usually share a triangle: only new candidates are measured.
            sel_c = np.flatnonzero((cand >= 0) & (cand != best_face))
            c = cand[sel_c].astype(np.intp)
            # Distance (texels) of this border texel's centre outside each edge line.
            px, py = fbx[sel_c], fby[sel_c]
            dist = np.full(len(c), -np.inf)
            for i in range(3):
                a, b, k = (t.take(c, mode="clip") for t in coef[3 * i : 3 * i + 3])
                np.maximum(dist, -(a * px + b * py + k), out=dist)
            better = dist < best[sel_c]
            upd = sel_c[better]
            best[upd] = dist[better]
            best_face[upd] = c[better]
    sel = np.flatnonzero((best_face >= 0) & (best <= margin))
    bt = by[sel] * size + bx[sel]
    bf = best_face[sel].astype(np.intp)
    # Orphans: triangles (slivers, tiny charts) that own no texel centre still claim the
    # uncovered texels within `margin` of them, so every chart gets colour.
    owned = np.zeros(len(faces), bool)
    owned[face] = True
    orphans = np.flatnonzero(~owned & ok)
    if len(orphans):
        lo = np.clip(np.floor(p[orphans].min(axis=1) - margin), 0, size - 1).astype(np.intp)
        hi = np.clip(np.ceil(p[orphans].max(axis=1) + margin), 0, size - 1).astype(np.intp)
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
        ot, gf, od = ot[keep], gf[keep], od[keep]
        # Each texel goes to its nearest claimant (orphans claim few texels; ``bt`` is
        # ascending, as np.nonzero returns it).
        order = np.lexsort((od, ot))
        first = order[np.r_[True, ot[order][1:] != ot[order][:-1]]] if len(ot) else order
        ot, gf, od = ot[first], gf[first], od[first]
        j = np.minimum(np.searchsorted(bt, ot), max(len(bt) - 1, 0))
        claimed = (bt[j] == ot) if len(bt) else np.zeros(len(ot), bool)
        closer = claimed & (od < best[sel][j] if len(bt) else claimed)
        bf = bf.copy()
        bf[j[closer]] = gf[closer]
        new = ~claimed
        merged = np.concatenate([bt, ot[new]])
        order = np.argsort(merged, kind="stable")
        bt, bf = merged[order], np.concatenate([bf, gf[new]])[order]
    return TexelSamples(
        np.concatenate([x, bt % size]),
        np.concatenate([y, bt // size]),
        np.concatenate([face, bf]),
        np.concatenate([np.ones(len(x), bool), np.zeros(len(bt), bool)]),
        frame,
    )


def texel_points(
    vertices: np.ndarray,
    normals: np.ndarray | None,
    faces: np.ndarray,
    samples: TexelSamples,
    sl: slice | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """3D points (N, 3) float32 and interpolated (unnormalised) normals (N, 3) of
    rasterised texels (optionally the slice ``sl`` of them) on the mesh
    ``vertices``/``normals`` (n, 3), ``faces`` (m, 3) the texels were rasterised from;
    normals None when ``normals`` is. Border texels continue their triangle's plane."""
    start, stop, _ = (sl if sl is not None else slice(None)).indices(len(samples.face))
    f = np.asarray(faces, np.intp)

    def tables(values: np.ndarray) -> list[np.ndarray]:
        # Corner 0 and the two edges from it, one contiguous row per axis: gathers by face
        # stay cache-friendly.
        vals = np.asarray(values, np.float32)
        corner0 = vals[f[:, 0]]
        return [
            np.ascontiguousarray(t.T)
            for t in (corner0, vals[f[:, 1]] - corner0, vals[f[:, 2]] - corner0)
        ]

    wanted = [tables(vertices)] + ([] if normals is None else [tables(normals)])
    outs = [np.empty((max(stop - start, 0), 3), np.float32) for _ in wanted]
    for lo in range(start, stop, POINT_BLOCK):
        block = slice(lo, min(lo + POINT_BLOCK, stop))
        face = samples.face[block]
        b1, b2 = (b.astype(np.float32) for b in samples.local(block))
        for (c0, e1, e2), out in zip(wanted, outs, strict=True):
            for axis in range(3):
                col = e1[axis].take(face, mode="clip") * b1
                col += e2[axis].take(face, mode="clip") * b2
                col += c0[axis].take(face, mode="clip")
                out[lo - start : block.stop - start, axis] = col
    return outs[0], outs[1] if normals is not None else None
