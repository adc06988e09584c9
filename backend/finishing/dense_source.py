"""The dense coloured mesh as a colour source: for 3D points, the dense triangle under them.

Point location walks over triangle neighbours (numpy, vectorised over all points at once):

1. **Seed**: a k-d tree over the centroids of a subset of the dense triangles (every
   ``stride``-th, about ``SEED_POINTS`` of them) gives the nearest ``SEED_K`` candidates;
   the nearest one that does not face away from the point's normal (a thin sheet's back
   side) is the start, or the caller passes starts it already knows (a neighbouring
   texel's answer).
2. **Walk**: project the point onto the current triangle's plane; when a barycentric
   coordinate is negative, step to the neighbour across the edge opposite that corner
   (the most negative one). A point stops inside a triangle, at a boundary or
   non-manifold edge, on a ridge (the step would go straight back), or after
   ``MAX_WALK_STEPS``.
3. **Answer**: inside a triangle, its barycentrics (the point's projection along that
   triangle's normal); elsewhere the projection clamped onto the triangle. Points that end
   farther than the typical edge length from their triangle (a walk that ended on the wrong
   fold) are walked again from each of their ``SEED_K`` seeds, keeping the closest answer.

The walk finds the triangle whose normal prism holds the point - on a smooth surface the
closest triangle, more often than the triangle with the nearest centroid does - at a few
projections per point when the start is near, instead of a k-d query per point.

Geometry is held in float32 relative to the mesh centre (sub-micrometre precision for
objects of a few metres), which halves memory traffic in the per-point arithmetic. Frames:
the object frame of ``backend.reconstruction`` (metres); colours sRGB floats in [0, 1].
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.spatial import cKDTree

# Seed tree size: centroids of about this many triangles (every stride-th one).
SEED_POINTS = 50_000
# Seed candidates examined per point (nearest first; the first one facing the point wins).
SEED_K = 8
# Walk steps before a point is answered by clamping onto the triangle it reached.
MAX_WALK_STEPS = 64
# A barycentric coordinate above -BARY_TOLERANCE counts as inside (float32 round-off).
BARY_TOLERANCE = np.float32(1e-5)
# Cosine below which a triangle faces away from the point's normal.
FACING_MIN = -0.2
# Points answered at once (keeps the gathered rows in cache).
ANSWER_BLOCK = 1 << 14


class DenseColorSource:
    """Colour lookup on the dense coloured mesh (the engine's output).

    ``vertices`` (n, 3) metres, object frame; ``faces`` (m, 3); ``colors`` (n, 3) sRGB [0, 1];
    ``neighbours`` optionally the (m, 3) face neighbours of ``edge_topology`` (computed here
    when not given).
    """

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        colors: np.ndarray,
        neighbours: np.ndarray | None = None,
    ) -> None:
        from backend.finishing.mesh_prep import edge_topology

        v = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.colors = np.asarray(colors, np.float32)
        self.center = v.mean(axis=0) if len(v) else np.zeros(3)
        m = len(self.faces)
        if m >= 2**31:
            raise ValueError("meshes of 2**31 triangles or more are not supported")
        topology = None
        if neighbours is None:  # on another core while the rows are computed here
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="topology")
            topology = pool.submit(edge_topology, self.faces, len(v))
            pool.shutdown(wait=False)
        # Coordinates, corners and colours one contiguous array per component: every
        # per-triangle quantity below is a gather by index of a 1-D array.
        vt = np.ascontiguousarray((v - self.center).T, np.float32)
        self._vt = vt
        self._corners = np.ascontiguousarray(self.faces.T, np.intp)
        self._colors_t = np.ascontiguousarray(self.colors.T)
        c0, c1, c2 = self._corners
        # One 64-byte row per triangle (a walk step reads one cache line): origin o (0-2),
        # barycentric rows rv (3-5) and rw (6-8) with (v, w) = (rv . (p - o), rw . (p - o))
        # and u = 1 - v - w, unit normal (9-11), and as int32 the neighbours across the
        # edges opposite corners 0, 1, 2 (12-14; -1 for none).
        rows = np.empty((12, m), np.float32)
        o = rows[0:3]
        for ax in range(3):
            vt[ax].take(c0, out=o[ax], mode="clip")
        e1 = np.stack([vt[ax].take(c1, mode="clip") - o[ax] for ax in range(3)])
        e2 = np.stack([vt[ax].take(c2, mode="clip") - o[ax] for ax in range(3)])
        d11 = _dot(e1, e1)
        d12 = _dot(e1, e2)
        d22 = _dot(e2, e2)
        den = d11 * d22 - d12 * d12
        inv = np.float32(1.0) / np.where(np.abs(den) > 1e-30, den, np.float32(1e-30))
        a11, a12, a22 = d11 * inv, d12 * inv, d22 * inv
        for ax in range(3):
            np.subtract(a22 * e1[ax], a12 * e2[ax], out=rows[3 + ax])
            np.subtract(a11 * e2[ax], a12 * e1[ax], out=rows[6 + ax])
        n = rows[9:12]
        np.subtract(e1[1] * e2[2], e1[2] * e2[1], out=n[0])
        np.subtract(e1[2] * e2[0], e1[0] * e2[2], out=n[1])
        np.subtract(e1[0] * e2[1], e1[1] * e2[0], out=n[2])
        n /= np.maximum(np.sqrt(_dot(n, n)), np.float32(1e-30))
        table = np.empty((m, 16), np.float32)
        table[:, :12] = rows.T
        table[:, 15] = 0.0
        self._table = table
        self._stride = max(1, m // SEED_POINTS)
        st = self._stride
        centroids = np.stack(
            [o[ax, ::st] + (e1[ax, ::st] + e2[ax, ::st]) / np.float32(3.0) for ax in range(3)],
            axis=1,
        )
        self._seed_tree = cKDTree(centroids, leafsize=16, balanced_tree=False, compact_nodes=False)
        if topology is not None:
            neighbours = topology.result().neighbours
        table.view(np.int32)[:, 12:15] = np.asarray(neighbours).reshape(m, 3)
        # Points that end farther than this from their triangle are walked again.
        self._radius = float(np.median(np.sqrt(d11[:: max(1, m // 65536)]))) if m else np.inf

    @property
    def _normals(self) -> np.ndarray:
        """(m, 3) float32 unit triangle normals (a view)."""
        return self._table[:, 9:12]

    def centered(self, points: np.ndarray) -> np.ndarray:
        """``points`` (N, 3) metres, object frame -> float32 relative to the mesh centre."""
        return (np.asarray(points, np.float64) - self.center).astype(np.float32)

    # -- point location ---------------------------------------------------------------
    def seeds(
        self, pts: np.ndarray, normals: np.ndarray | None = None, k: int = SEED_K
    ) -> np.ndarray:
        """Start triangles (N,) intp for centred points ``pts`` (N, 3): the seed triangle
        with the nearest centroid, or - where that one faces away from ``normals`` (N, 3,
        any length) - the nearest of the ``k`` nearest that does not (else the nearest)."""
        _, idx = self._seed_tree.query(pts, k=1)
        faces = np.asarray(idx, np.intp) * self._stride
        k = int(max(1, min(k, self._seed_tree.n)))
        if normals is None or k == 1 or len(pts) == 0:
            return faces
        nrm = np.asarray(normals, np.float32)
        limit = FACING_MIN * np.linalg.norm(nrm, axis=1)
        away = np.flatnonzero(np.einsum("ij,ij->i", self._normals[faces], nrm) < limit)
        if len(away):
            _, idx = self._seed_tree.query(pts[away], k=k)
            cand = np.asarray(idx, np.intp).reshape(len(away), k) * self._stride
            facing = np.einsum("ijk,ik->ij", self._normals[cand], nrm[away])
            first = np.argmax(facing >= limit[away, None], axis=1)
            faces[away] = cand[np.arange(len(away)), first]
        return faces

    def walk(
        self, pts: np.ndarray, start: np.ndarray, max_steps: int = MAX_WALK_STEPS
    ) -> np.ndarray:
        """Walk centred points ``pts`` (N, 3) float32 from triangles ``start`` (N,) to the
        triangle under them; returns that triangle (N,) intp (``answer`` gives the rest)."""
        face = np.asarray(start, np.intp).copy()
        if len(face) == 0:
            return face
        idx = np.arange(len(face))
        cur = face.copy()
        prev = np.full(len(face), -1, np.intp)
        px, py, pz = (np.ascontiguousarray(pts[:, i], np.float32) for i in range(3))
        for _ in range(max_steps):
            row = self._table.take(cur, axis=0, mode="clip")
            bu, bv, bw = _barycentrics(row, px, py, pz)
            low = np.minimum(bu, bv)
            ok = np.minimum(low, bw) >= -BARY_TOLERANCE
            # Leave across the edge opposite the most negative coordinate.
            nbr = row.view(np.int32)
            nxt = np.where(bv < bu, nbr[:, 13], nbr[:, 12])
            np.copyto(nxt, nbr[:, 14], where=bw < low)
            move = nxt != prev
            move &= nxt >= 0
            move &= ~ok
            go = np.flatnonzero(move)
            if len(go) == 0:
                break
            idx = idx.take(go, mode="clip")
            prev = cur.take(go, mode="clip")
            cur = nxt.take(go, mode="clip").astype(np.intp)
            np.put(face, idx, cur, mode="clip")
            px, py, pz = (c.take(go, mode="clip") for c in (px, py, pz))
        return face

    def answer(self, pts: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Barycentrics (N, 3) float32 in [0, 1] of centred ``pts`` on triangles ``face``
        (the projection along the triangle's normal where it falls inside, else clamped
        onto the triangle) and the distance (N,) float32 metres to that point."""
        n = len(face)
        bary = np.empty((n, 3), np.float32)
        dist = np.empty(n, np.float32)
        outside = []
        for lo in range(0, n, ANSWER_BLOCK):
            hi = min(lo + ANSWER_BLOCK, n)
            row = self._table.take(face[lo:hi], axis=0, mode="clip")
            d = pts[lo:hi] - row[:, 0:3]
            bv = np.einsum("ij,ij->i", d, row[:, 3:6])
            bw = np.einsum("ij,ij->i", d, row[:, 6:9])
            bu = np.float32(1.0) - bv - bw
            block = bary[lo:hi]
            block[:, 0], block[:, 1], block[:, 2] = bu, bv, bw
            dist[lo:hi] = np.abs(np.einsum("ij,ij->i", d, row[:, 9:12]))
            low = np.minimum(np.minimum(bu, bv), bw)
            outside.append(np.flatnonzero(low < -BARY_TOLERANCE) + lo)
        out = np.concatenate(outside) if outside else np.zeros(0, np.intp)
        if len(out):
            bary[out], dist[out] = self._project(pts[out], face[out])
        np.clip(bary, 0.0, 1.0, out=bary)
        return bary, dist

    def rewalk_far(
        self,
        pts: np.ndarray,
        face: np.ndarray,
        bary: np.ndarray,
        dist: np.ndarray,
        k: int = SEED_K,
    ) -> None:
        """Points that ended farther than the typical edge length from their triangle are
        walked again from each of their ``k`` nearest seeds; the closest answer wins (in
        place)."""
        far = np.flatnonzero(dist > self._radius)
        if len(far) == 0:
            return
        p = pts[far]
        k = int(max(1, min(k, self._seed_tree.n)))
        _, idx = self._seed_tree.query(p, k=k)
        idx = np.asarray(idx, np.intp).reshape(len(far), k) * self._stride
        for j in range(k):
            fj = self.walk(p, idx[:, j])
            bj, dj = self.answer(p, fj)
            better = dj < dist[far]
            sel = far[better]
            face[sel], bary[sel], dist[sel] = fj[better], bj[better], dj[better]

    def closest(
        self, points: np.ndarray, normals: np.ndarray | None = None, k: int = SEED_K
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For points (N, 3) metres: (face index (N,) int64, barycentrics (N, 3) float32,
        distance (N,) float32 metres) of the dense triangle under each point (module doc),
        starting on triangles that face the same way as ``normals`` (N, 3)."""
        pts = self.centered(points)
        face = self.walk(pts, self.seeds(pts, normals, k))
        bary, dist = self.answer(pts, face)
        self.rewalk_far(pts, face, bary, dist, k)
        return face.astype(np.int64), bary, dist

    def _project(self, pts: np.ndarray, fj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Barycentrics (N, 3) of centred ``pts`` projected on triangles ``fj`` and clamped
        onto them, and the distance (N,) from each point to that clamped point."""
        vc = self._vt.T
        tri = self.faces[fj]
        o = vc[tri[:, 0]]
        e1 = vc[tri[:, 1]] - o
        e2 = vc[tri[:, 2]] - o
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
        bary = np.stack([1.0 - v - w, v, w], axis=1).astype(np.float32)
        np.clip(bary, 0.0, None, out=bary)
        bary /= np.maximum(bary.sum(axis=1, keepdims=True), np.float32(1e-30))
        q = bary[:, 1:2] * e1
        q += bary[:, 2:3] * e2
        q -= d
        return bary, np.sqrt(np.einsum("ij,ij->i", q, q))

    # -- colours and distances ----------------------------------------------------------
    def colors_at(self, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """sRGB colours (N, 3) float32: vertex colours of ``face`` (N,) mixed by ``bary``."""
        out = np.empty((len(face), 3), np.float32)
        corners = [self._corners[i].take(face, mode="clip") for i in range(3)]
        weights = [np.ascontiguousarray(bary[:, i]) for i in range(3)]
        for ch in range(3):
            col = self._colors_t[ch]
            acc = col.take(corners[0], mode="clip") * weights[0]
            acc += col.take(corners[1], mode="clip") * weights[1]
            acc += col.take(corners[2], mode="clip") * weights[2]
            out[:, ch] = acc
        return out

    def sample(
        self, points: np.ndarray, normals: np.ndarray | None = None, k: int = SEED_K
    ) -> np.ndarray:
        """sRGB colours (N, 3) float32 of the dense surface under ``points`` (N, 3)."""
        face, bary, _ = self.closest(points, normals, k)
        return self.colors_at(face, bary)

    def distance(self, points: np.ndarray, k: int = SEED_K) -> np.ndarray:
        """Distance (N,) in metres from each point to the dense surface (used for geometric
        error measurements): the walk's answer, or the best walk from ``k`` seeds for points
        that end far from their triangle."""
        _, _, dist = self.closest(points, None, k)
        return dist.astype(np.float64)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of component arrays ``a``, ``b`` (3, N) -> (N,)."""
    out = a[0] * b[0]
    out += a[1] * b[1]
    out += a[2] * b[2]
    return out


def _barycentrics(
    row: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unclamped barycentrics (u, v, w), each (N,) float32, of points (px, py, pz) projected
    on the planes of the triangles whose ``DenseColorSource`` rows are ``row`` (N, 16)."""
    dx = px - row[:, 0]
    dy = py - row[:, 1]
    dz = pz - row[:, 2]
    bv = row[:, 3] * dx
    bv += row[:, 4] * dy
    bv += row[:, 5] * dz
    bw = row[:, 6] * dx
    bw += row[:, 7] * dy
    bw += row[:, 8] * dz
    bu = np.float32(1.0) - bv
    bu -= bw
    return bu, bv, bw
