"""Base-colour baking with torch on a CUDA device (same inputs and outputs as
``backend.finishing.bake.bake_base_color``; no custom kernels, no non-commercial code).

Differences from the numpy path, all on the device:

* Rasterisation enumerates every texel in each triangle's bounding box grown by ``margin``
  (millions of candidates are cheap on a GPU) and keeps those whose centre is inside or
  within ``margin`` texels of the triangle; each texel goes to the triangle it is inside
  (or nearest to) through one ``scatter_reduce(amin)`` on a packed (distance, face) key.
  Border texels keep extrapolated barycentrics, as on the CPU.
* The nearest dense triangle comes from a uniform grid over the dense triangles'
  centroids (cell ~1.5 median edge): every triangle listed in the 27 cells around a texel's
  point is projected (clamped barycentrics) and the closest one that does not face away
  from the texel's normal wins; points with no candidate fall back to a brute-force search.
* Gutter fill is the same push-pull as on the CPU.

Frames and units as in ``backend.finishing.bake``: object frame, metres, sRGB colours.
"""

from __future__ import annotations

import numpy as np

from backend.finishing.bake import RASTER_MARGIN, BakeResult

# Grid cell edge in units of the dense mesh's median edge length.
GRID_CELL_EDGES = 1.5
# Penalty (metres) added to triangles facing away from the texel normal (thin sheets).
BACKFACE_PENALTY = 1e3


def cuda_available() -> bool:
    """True when torch imports and sees a CUDA device."""
    try:
        import torch
    except Exception:
        return False
    return bool(torch.cuda.is_available())


def _rasterize(torch, uv, faces, size: int, margin: float):
    """Returns (texel index (N,), face (N,), bary (N, 3) float32, inside (N,) bool)."""
    m = faces.shape[0]
    p = uv[faces].double() * size - 0.5  # (m, 3, 2), texel centre (x, y) at (x, y)
    area2 = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (
        p[:, 2, 0] - p[:, 0, 0]
    )
    ok = area2.abs() > 1e-9
    sign = torch.where(area2 >= 0, torch.ones_like(area2), -torch.ones_like(area2))[:, None]
    sp = p[:, [1, 2, 0]]
    ep = p[:, [2, 0, 1]]
    ex = ep[..., 0] - sp[..., 0]
    ey = ep[..., 1] - sp[..., 1]
    length = torch.sqrt(ex * ex + ey * ey).clamp_min(1e-12)
    an = -ey * sign / length
    bn = ex * sign / length
    cn = sign * (ey * sp[..., 0] - ex * sp[..., 1]) / length
    scale = length / area2.abs().clamp_min(1e-12)[:, None]
    lo = torch.floor(p.amin(dim=1) - margin).clamp(0, size - 1).long()
    hi = torch.ceil(p.amax(dim=1) + margin).clamp(0, size - 1).long()
    w = hi[:, 0] - lo[:, 0] + 1
    h = hi[:, 1] - lo[:, 1] + 1
    cnt = torch.where(ok, w * h, torch.zeros_like(w))
    total = int(cnt.sum())
    dev = uv.device
    if total == 0:
        e = torch.zeros(0, dtype=torch.long, device=dev)
        return e, e, torch.zeros((0, 3), device=dev), torch.zeros(0, dtype=torch.bool, device=dev)
    face = torch.repeat_interleave(torch.arange(m, device=dev), cnt)
    start = torch.cumsum(cnt, 0) - cnt
    local = torch.arange(total, device=dev) - torch.repeat_interleave(start, cnt)
    wf = w[face]
    x = lo[face, 0] + local % wf
    y = lo[face, 1] + torch.div(local, wf, rounding_mode="floor")
    del local, wf, start
    d = an[face] * x[:, None] + bn[face] * y[:, None] + cn[face]
    outside = (-d).amax(dim=1).clamp_min(0.0)
    del d
    keep = outside <= margin
    face, x, y, outside = face[keep], x[keep], y[keep], outside[keep]
    q = torch.round(outside * 1024.0).long()  # 1/1024-texel steps; 0 = inside
    key = q * m + face
    texel = y * size + x
    big = torch.iinfo(torch.long).max
    best = torch.full((size * size,), big, dtype=torch.long, device=dev)
    best.scatter_reduce_(0, texel, key, reduce="amin", include_self=True)
    tex_ids = torch.nonzero(best < big).squeeze(1)
    wkey = best[tex_ids]
    wface = wkey % m
    inside = (wkey // m) == 0
    tx = (tex_ids % size).double()
    ty = torch.div(tex_ids, size, rounding_mode="floor").double()
    bary = (an[wface] * tx[:, None] + bn[wface] * ty[:, None] + cn[wface]) * scale[wface]
    clamped = bary.clamp_min(0.0)
    clamped = clamped / clamped.sum(dim=1, keepdim=True).clamp_min(1e-30)
    bary = torch.where(inside[:, None], clamped, bary)
    return tex_ids, wface, bary.float(), inside


class _TriangleGrid:
    """Dense triangles bucketed by centroid in a uniform grid (device tensors, float32)."""

    def __init__(self, torch, vertices, faces, colors) -> None:
        self.torch = torch
        self.faces = faces
        self.colors = colors
        self.o = vertices[faces[:, 0]]
        self.e1 = vertices[faces[:, 1]] - self.o
        self.e2 = vertices[faces[:, 2]] - self.o
        n = torch.linalg.cross(self.e1, self.e2)
        self.normal = n / n.norm(dim=1, keepdim=True).clamp_min(1e-30)
        centroids = self.o + (self.e1 + self.e2) / 3.0
        self.centroids = centroids
        edge = torch.cat([self.e1.norm(dim=1), self.e2.norm(dim=1)])
        self.cell = float(GRID_CELL_EDGES * edge.median().clamp_min(1e-9))
        self.origin = centroids.amin(dim=0) - self.cell
        ijk = torch.floor((centroids - self.origin) / self.cell).long()
        self.dims = (ijk.amax(dim=0) + 2).tolist()
        key = self._key(ijk)
        self.sorted_keys, self.order = torch.sort(key)

    def _key(self, ijk):
        return (ijk[:, 0] * self.dims[1] + ijk[:, 1]) * self.dims[2] + ijk[:, 2]

    def project(self, pts, f):
        """Clamped barycentrics (N, 3) and distances (N,) of ``pts`` on triangles ``f``."""
        o, e1, e2 = self.o[f], self.e1[f], self.e2[f]
        d = pts - o
        d11 = (e1 * e1).sum(1)
        d12 = (e1 * e2).sum(1)
        d22 = (e2 * e2).sum(1)
        dp1 = (d * e1).sum(1)
        dp2 = (d * e2).sum(1)
        den = d11 * d22 - d12 * d12
        den = torch_where_small(self.torch, den)
        v = (d22 * dp1 - d12 * dp2) / den
        w = (d11 * dp2 - d12 * dp1) / den
        bary = self.torch.stack([1.0 - v - w, v, w], dim=1).clamp_min(0.0)
        bary = bary / bary.sum(dim=1, keepdim=True).clamp_min(1e-30)
        q = bary[:, 1:2] * e1 + bary[:, 2:3] * e2 - d
        return bary, q.norm(dim=1)

    def closest(self, pts, nrm, method: str = "flat", chunk: int = 131072):
        """(face (N,), bary (N, 3)) of the best dense triangle for each point.

        ``flat``: all (point, candidate) pairs of a chunk of points evaluated at once, the
        best per point found with two ``scatter_reduce`` calls; ``loop``: one pass per
        (cell offset, slot), fewer bytes but many small kernels.
        """
        if method == "loop":
            return self._closest_loop(pts, nrm)
        torch = self.torch
        n = pts.shape[0]
        dev = pts.device
        face_out = torch.full((n,), -1, dtype=torch.long, device=dev)
        bary_out = torch.zeros((n, 3), device=dev)
        dims = torch.tensor(self.dims, device=dev)
        offsets = torch.tensor(
            [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], device=dev
        )
        for s in range(0, n, chunk):
            p = pts[s : s + chunk]
            q = p.shape[0]
            base = torch.floor((p - self.origin) / self.cell).long()
            cells = (base[:, None, :] + offsets[None]).reshape(-1, 3)  # (q * 27, 3)
            valid = ((cells >= 0) & (cells < dims)).all(dim=1)
            key = self._key(cells.clamp_min(0))
            start = torch.searchsorted(self.sorted_keys, key)
            end = torch.searchsorted(self.sorted_keys, key, right=True)
            count = torch.where(valid, end - start, torch.zeros_like(start))
            total = int(count.sum())
            if total == 0:
                continue
            owner = torch.repeat_interleave(torch.arange(q * 27, device=dev) // 27, count)
            first = torch.cumsum(count, 0) - count
            slot = torch.repeat_interleave(start - first, count) + torch.arange(total, device=dev)
            f = self.order[slot]
            bary, dist = self.project(p[owner], f)
            facing = (self.normal[f] * nrm[s : s + chunk][owner]).sum(1)
            cost = dist + (facing < -0.2).float() * BACKFACE_PENALTY
            best = torch.full((q,), float("inf"), device=dev)
            best.scatter_reduce_(0, owner, cost, reduce="amin", include_self=True)
            cand = torch.where(cost == best[owner], torch.arange(total, device=dev), -1)
            pick = torch.full((q,), -1, dtype=torch.long, device=dev)
            pick.scatter_reduce_(0, owner, cand, reduce="amax", include_self=True)
            ok = pick >= 0
            idx = torch.nonzero(ok).squeeze(1)
            face_out[s + idx] = f[pick[idx]]
            bary_out[s + idx] = bary[pick[idx]]
        return self._fill_missing(pts, face_out, bary_out)

    def _fill_missing(self, pts, best_face, best_bary):
        torch = self.torch
        missing = torch.nonzero(best_face < 0).squeeze(1)
        for s in range(0, missing.numel(), 256):
            sel = missing[s : s + 256]
            f = torch.cdist(pts[sel], self.centroids).argmin(dim=1)
            bary, _ = self.project(pts[sel], f)
            best_face[sel] = f
            best_bary[sel] = bary
        return best_face, best_bary

    def _closest_loop(self, pts, nrm):
        torch = self.torch
        n = pts.shape[0]
        dev = pts.device
        best_cost = torch.full((n,), float("inf"), device=dev)
        best_face = torch.full((n,), -1, dtype=torch.long, device=dev)
        best_bary = torch.zeros((n, 3), device=dev)
        base = torch.floor((pts - self.origin) / self.cell).long()
        dims = torch.tensor(self.dims, device=dev)
        m = self.order.shape[0]
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dz in (-1, 0, 1):
                    c = base + torch.tensor([dx, dy, dz], device=dev)
                    valid = ((c >= 0) & (c < dims)).all(dim=1)
                    key = self._key(c.clamp_min(0))
                    start = torch.searchsorted(self.sorted_keys, key)
                    end = torch.searchsorted(self.sorted_keys, key, right=True)
                    count = torch.where(valid, end - start, torch.zeros_like(start))
                    active = torch.nonzero(count > 0).squeeze(1)
                    j = 0
                    while active.numel():
                        slot = (start[active] + j).clamp_max(m - 1)
                        f = self.order[slot]
                        p = pts[active]
                        bary, dist = self.project(p, f)
                        facing = (self.normal[f] * nrm[active]).sum(1)
                        cost = dist + (facing < -0.2).float() * BACKFACE_PENALTY
                        better = cost < best_cost[active]
                        idx = active[better]
                        best_cost[idx] = cost[better]
                        best_face[idx] = f[better]
                        best_bary[idx] = bary[better]
                        j += 1
                        active = active[count[active] > j]
        return self._fill_missing(pts, best_face, best_bary)

    def sample(self, pts, nrm, method: str = "flat"):
        face, bary = self.closest(pts, nrm, method)
        tri = self.faces[face]
        c = self.colors
        return (
            c[tri[:, 0]] * bary[:, 0:1] + c[tri[:, 1]] * bary[:, 1:2] + c[tri[:, 2]] * bary[:, 2:3]
        )


def torch_where_small(torch, den):
    return torch.where(den.abs() > 1e-30, den, torch.full_like(den, 1e-30))


def _push_pull(torch, image, covered):
    """Torch version of ``bake.fill_gutter`` for square power-of-two images."""
    w = covered.float()
    img = image * w[..., None]
    levels = []
    while img.shape[0] > 1:
        s_img = img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]
        s_w = w[0::2, 0::2] + w[1::2, 0::2] + w[0::2, 1::2] + w[1::2, 1::2]
        levels.append((s_img, s_w))
        img, w = s_img, s_w
    filled = levels[-1][0] / levels[-1][1].clamp_min(1e-12)[..., None]
    for s_img, s_w in reversed(levels[:-1]):
        up = filled.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)
        avg = s_img / s_w.clamp_min(1e-12)[..., None]
        filled = torch.where((s_w > 0)[..., None], avg, up)
    out = filled.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)
    return torch.where(covered[..., None], image, out)


def bake_base_color_torch(
    vertices: np.ndarray,
    normals: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    src_vertices: np.ndarray,
    src_faces: np.ndarray,
    src_colors: np.ndarray,
    size: int = 1024,
    device: str = "cuda",
    margin: float = RASTER_MARGIN,
    method: str = "flat",
) -> BakeResult:
    """Bake the dense source (``src_*``: (n, 3) metres, (m, 3), (n, 3) sRGB) into a ``size``²
    texture of the UV'd target (``vertices``/``normals`` (k, 3), ``faces`` (f, 3), ``uv``
    (k, 2) glTF texcoords) on ``device``. Returns numpy arrays like the CPU bake.
    ``method``: nearest-triangle search variant (``"flat"`` or ``"loop"``, same result)."""
    import torch

    dev = torch.device(device)
    centre = np.asarray(src_vertices, np.float64).mean(axis=0)

    def t(a, dtype):
        return torch.as_tensor(np.ascontiguousarray(a), device=dev).to(dtype)

    with torch.no_grad():
        sv = t(np.asarray(src_vertices, np.float64) - centre, torch.float32)
        grid = _TriangleGrid(torch, sv, t(src_faces, torch.long), t(src_colors, torch.float32))
        tv = t(np.asarray(vertices, np.float64) - centre, torch.float32)
        tn = t(normals, torch.float32)
        tf = t(faces, torch.long)
        tex_ids, face, bary, _inside = _rasterize(torch, t(uv, torch.float32), tf, size, margin)
        tri = tf[face]
        pts = (
            tv[tri[:, 0]] * bary[:, 0:1]
            + tv[tri[:, 1]] * bary[:, 1:2]
            + tv[tri[:, 2]] * bary[:, 2:3]
        )
        nrm = (
            tn[tri[:, 0]] * bary[:, 0:1]
            + tn[tri[:, 1]] * bary[:, 1:2]
            + tn[tri[:, 2]] * bary[:, 2:3]
        )
        colors = grid.sample(pts, nrm, method)
        img = torch.zeros((size * size, 3), device=dev)
        img[tex_ids] = colors
        covered = torch.zeros(size * size, dtype=torch.bool, device=dev)
        covered[tex_ids] = True
        img = img.view(size, size, 3)
        covered = covered.view(size, size)
        if size & (size - 1) == 0 and bool(covered.any()) and not bool(covered.all()):
            img = _push_pull(torch, img, covered)
        out = (img * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        cov = covered.cpu().numpy()
    return BakeResult(out, cov, float(cov.mean()))
