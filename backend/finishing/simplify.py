"""Quadric-error decimation to an absolute triangle count (fast-simplification, MIT).

Counts are ABSOLUTE numbers of triangles to KEEP (upstream's ``simplify=0.95`` means
"remove 95 %", i.e. keep 5 %: ``target_faces = 0.05 * source_faces``). Vertices stay in the
object frame (metres); the decimator only moves vertices to quadric-optimal positions.
"""

from __future__ import annotations

import numpy as np

from backend.finishing.mesh_prep import compact, face_areas

# The result must land within this relative distance of the target count.
FACE_COUNT_TOLERANCE = 0.02
# Aggressiveness of fast-simplification's schedule (lower: slower and a little more accurate).
DEFAULT_AGG = 5.0


def resolve_target(source_faces: int, target_faces: int | None, target_ratio: float | None) -> int:
    """Triangles to keep: ``target_faces`` if set, else ``ratio * source`` (ratio = fraction KEPT).

    Never more than the source has; ``None`` for both keeps everything.
    """
    if target_faces is not None:
        return int(min(max(int(target_faces), 1), source_faces))
    if target_ratio is not None:
        return int(min(max(round(source_faces * float(target_ratio)), 1), source_faces))
    return int(source_faces)


def _clean(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = faces
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    f = f[keep]
    if len(f):
        areas = face_areas(vertices, f)
        f = f[areas > 0]
    m = compact(vertices, f, np.zeros((len(vertices), 3), np.float32))
    return m.vertices, m.faces


def simplify_mesh(
    vertices: np.ndarray, faces: np.ndarray, target_faces: int, agg: float = DEFAULT_AGG
) -> tuple[np.ndarray, np.ndarray]:
    """Decimate to about ``target_faces`` triangles (within ``FACE_COUNT_TOLERANCE`` when the
    mesh allows it). Returns (vertices (n, 3) float64 metres, faces (m, 3) int64).

    A target at or above the source count returns the mesh unchanged.
    """
    import fast_simplification

    v = np.ascontiguousarray(vertices, np.float32)
    f = np.ascontiguousarray(faces, np.int64)
    if target_faces >= len(f):
        return np.asarray(vertices, np.float64), f
    ask = int(target_faces)
    best: tuple[np.ndarray, np.ndarray] | None = None
    for _ in range(3):
        ask = int(min(max(ask, 1), len(f) - 1))
        pts, tris = fast_simplification.simplify(v, f, target_count=ask, agg=agg)
        pts, tris = _clean(np.asarray(pts, np.float64), np.asarray(tris, np.int64))
        if best is None or abs(len(tris) - target_faces) < abs(len(best[1]) - target_faces):
            best = (pts, tris)
        if abs(len(tris) - target_faces) <= FACE_COUNT_TOLERANCE * target_faces:
            break
        # The decimator may stop early (or clean-up may remove faces): ask again, corrected.
        ask = int(round(ask * target_faces / max(len(tris), 1)))
    assert best is not None
    return best
