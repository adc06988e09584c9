"""Input checks and light repairs of the dense mesh before simplification.

All arrays are in the OBJECT frame (glTF: +Y up, metres); see ``backend.reconstruction``.
Colours are sRGB floats in [0, 1]. Nothing here imports ``bpy`` or non-commercial code.

* ``sanitize`` turns whatever an engine produced into a clean indexed triangle mesh
  (finite vertices, no repeated corners, no zero-area faces, no unused vertices) or raises
  ``BackendError("degenerate_mesh")`` with a sentence a person can act on.
* ``remove_floaters`` drops small disconnected pieces (by surface area).
* ``fill_small_holes`` closes small boundary loops with a fan around their centroid.
* ``edge_topology`` / ``is_watertight`` answer "is every edge shared by exactly two faces".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from backend.errors import BackendError

# A piece whose area is below this fraction of the whole surface is a floater.
FLOATER_AREA_FRACTION = 0.01
# A boundary loop is a "small hole" when it has at most this many edges ...
HOLE_MAX_EDGES = 64
# ... and its perimeter is at most this fraction of the bounding-box diagonal.
HOLE_MAX_PERIMETER_FRACTION = 0.15
# Faces with area below this * (bbox diagonal)^2 are degenerate (numerically a line).
ZERO_AREA_REL = 1e-14
# Vertices closer than this * bbox diagonal are welded first: an edge collapse, which turns
# iso-surface slivers (several vertices next to one grid corner) into nothing while keeping
# a closed surface closed. Deleting such slivers instead would open a hole for each one.
WELD_REL = 1e-5


@dataclass
class MeshData:
    """An indexed triangle mesh with per-vertex colours.

    vertices (n, 3) float64 metres, object frame; faces (m, 3) int64, counter-clockwise seen
    from outside; colors (n, 3) float32 sRGB in [0, 1].
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def n_faces(self) -> int:
        return int(len(self.faces))


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Triangle areas (m,) in square metres (in the vertices' dtype)."""
    v0 = vertices[faces[:, 0]]
    e1 = vertices[faces[:, 1]] - v0
    e2 = vertices[faces[:, 2]] - v0
    cx = e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1]
    cy = e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2]
    cz = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    return 0.5 * np.sqrt(cx * cx + cy * cy + cz * cz)


def bbox_diagonal(vertices: np.ndarray) -> float:
    """Length of the axis-aligned bounding box diagonal in metres (0 for < 2 vertices)."""
    if len(vertices) < 2:
        return 0.0
    return float(np.linalg.norm(vertices.max(0) - vertices.min(0)))


def compact(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> MeshData:
    """Drop vertices no face uses and renumber faces (arrays as in ``MeshData``)."""
    used = np.zeros(len(vertices), bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    return MeshData(vertices[used], remap[faces].astype(np.int64), colors[used])


def sanitize(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None) -> MeshData:
    """Validate and clean an engine's mesh; raise ``degenerate_mesh`` if nothing usable is left.

    Removes faces that reference non-finite vertices, faces with a repeated corner and faces
    of (near) zero area; clips colours to [0, 1] (non-finite colours become mid grey).
    """
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise BackendError(
            "degenerate_mesh", f"The mesh's vertices must be an (n, 3) array, got shape {v.shape}."
        )
    if f.size == 0 or len(v) == 0:
        raise BackendError(
            "degenerate_mesh",
            "The reconstruction produced an empty mesh (no triangles); try a larger or "
            "clearer mask.",
            faces=int(f.shape[0]) if f.ndim == 2 else 0,
        )
    if f.ndim != 2 or f.shape[1] != 3:
        raise BackendError(
            "degenerate_mesh", f"The mesh's faces must be an (m, 3) array, got shape {f.shape}."
        )
    if not np.issubdtype(f.dtype, np.integer):
        raise BackendError("degenerate_mesh", "The mesh's face indices are not integers.")
    f = f.astype(np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise BackendError(
            "degenerate_mesh",
            f"The mesh's faces index vertices out of range (0..{len(v) - 1}).",
        )
    v = v.astype(np.float64)
    if colors is None or np.asarray(colors).shape != v.shape:
        c = np.full(v.shape, 0.8, np.float32)
    else:
        c = np.asarray(colors, dtype=np.float32)
        c = np.where(np.isfinite(c), c, 0.5).clip(0.0, 1.0).astype(np.float32)

    warnings: list[str] = []
    finite = np.isfinite(v).all(axis=1)
    keep = finite[f].all(axis=1)
    if not finite.all():
        warnings.append(
            f"Dropped {int((~keep).sum())} faces touching {int((~finite).sum())} "
            "non-finite (NaN/inf) vertices."
        )
    keep &= (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    if not keep.all():
        f = f[keep]
    if len(f) == 0:
        raise BackendError(
            "degenerate_mesh",
            "The mesh has no usable triangle: every face touches an invalid (NaN) vertex or "
            "repeats a corner.",
        )
    v_safe = np.where(finite[:, None], v, 0.0) if not finite.all() else v
    used = np.zeros(len(v), bool)
    used[f.ravel()] = True
    v_used = v_safe if used.all() else v_safe[used]
    diag = bbox_diagonal(v_used)
    f, n_collapsed = weld_close_vertices(v_safe, f, WELD_REL * diag)
    if n_collapsed:
        used = np.zeros(len(v), bool)
        used[f.ravel()] = True
    if len(f) == 0:
        raise BackendError(
            "degenerate_mesh",
            "The mesh collapses to a point: all its vertices lie within a hair of each other.",
        )
    # float32 is ample for a zero-area test at this relative threshold (and twice as fast).
    areas = face_areas((v_safe - v_used.mean(axis=0)).astype(np.float32), f)
    good = areas > max(ZERO_AREA_REL * diag * diag, 1e-30)
    if not good.all():
        warnings.append(f"Dropped {int((~good).sum())} zero-area faces.")
    if not good.all():
        f = f[good]
    if len(f) == 0:
        raise BackendError(
            "degenerate_mesh",
            "Every triangle of the mesh has zero area (the surface is flat to a line or a "
            "point), so there is nothing to texture.",
        )
    if good.all() and used.all():
        mesh = MeshData(v_safe, f, c)
    else:
        mesh = compact(v_safe, f, c)
    mesh.warnings = warnings
    return mesh


def weld_close_vertices(
    vertices: np.ndarray, faces: np.ndarray, eps: float
) -> tuple[np.ndarray, int]:
    """Merge vertices within ``eps`` metres (grid-snapped) and drop faces that collapse.

    Returns (faces (m', 3) int64 re-pointed at the surviving vertex of each group, number of
    faces removed). Colours and positions of survivors are untouched; ``compact`` later drops
    the merged-away vertices.
    """
    if eps <= 0 or len(faces) == 0:
        return faces, 0
    cells = np.floor((vertices - vertices.min(axis=0)) / eps).astype(np.int64)
    dims = cells.max(axis=0) + 1
    if float(dims[0]) * float(dims[1]) * float(dims[2]) < 2.0**62:
        # one int64 per cell: a 1-D unique is ~10x faster than unique over rows
        keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
    rep = first[inverse.reshape(-1)]
    if (rep == np.arange(len(vertices))).all():
        return faces, 0
    f = rep[faces]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    return f[ok], int((~ok).sum())


@dataclass
class EdgeTopology:
    """Undirected-edge statistics of a face array.

    ``counts`` (k,) how many faces use each undirected edge; ``boundary_directed`` (b, 2) directed boundary edges as
    they appear in their single face; ``consistent`` whether every interior edge is used
    once in each direction (and no edge by more than two faces); ``neighbours`` (m, 3) int32:
    the face across the edge opposite each corner (edge ``(c[k+1], c[k+2])`` for corner
    ``k``), -1 where that edge is a boundary or shared by more than two faces.
    """

    counts: np.ndarray
    boundary_directed: np.ndarray
    consistent: bool
    neighbours: np.ndarray


def edge_topology(faces: np.ndarray, n_vertices: int) -> EdgeTopology:
    """Edge counts, boundary edges and face neighbours of ``faces`` (m, 3) over
    ``n_vertices`` vertices.

    A closed, consistently wound manifold (every directed edge once, and its reverse too -
    what the engines produce) is recognised in linear time from a sparse directed-edge
    matrix that equals its own transpose in pattern; anything else takes the general path,
    a sort of the undirected edges.
    """
    f = np.asarray(faces, np.int64)
    m = len(f)
    # Directed edge 3 i + k runs (f[i, k+1], f[i, k+2]): the edge opposite corner k.
    small = np.int32 if n_vertices < 2**31 else np.int64
    a = np.empty((m, 3), small)
    b = np.empty((m, 3), small)
    a[:, 0], a[:, 1], a[:, 2] = f[:, 1], f[:, 2], f[:, 0]
    b[:, 0], b[:, 1], b[:, 2] = f[:, 2], f[:, 0], f[:, 1]
    a, b = a.ravel(), b.ravel()
    across = _closed_manifold_neighbours(a, b, n_vertices)
    if across is not None:
        return EdgeTopology(
            np.full(len(across) // 2, 2, np.int64),
            np.zeros((0, 2), np.int64),
            True,
            across.reshape(m, 3),
        )
    a, b = a.astype(np.int64), b.astype(np.int64)
    und = np.minimum(a, b) * n_vertices + np.maximum(a, b)
    order = np.argsort(und)
    s = und[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    counts = np.diff(np.r_[starts, len(s)])
    directed = np.stack([a, b], axis=1)
    boundary = directed[order[starts[counts == 1]]]
    pairs = starts[counts == 2]
    e1, e2 = order[pairs], order[pairs + 1]
    # Consistent winding: the two uses of an interior edge run in opposite directions.
    consistent = bool(np.all(a[e1] == b[e2])) and not bool(np.any(counts > 2))
    neighbours = np.full(3 * m, -1, np.int32)
    neighbours[e1] = e2 // 3
    neighbours[e2] = e1 // 3
    return EdgeTopology(counts, boundary, consistent, neighbours.reshape(m, 3))


def _closed_manifold_neighbours(a: np.ndarray, b: np.ndarray, n_vertices: int) -> np.ndarray | None:
    """For the directed edges ``a[e] -> b[e]`` (edge e of face e // 3) of a closed,
    consistently wound manifold: (e,) int32, the face holding each edge's reverse; None when
    some directed edge repeats, is a loop, or lacks its reverse."""
    from scipy.sparse import coo_matrix

    e = len(a)
    if e == 0 or e >= 2**31 - 1 or bool(np.any(a == b)):
        return None
    ids = np.arange(1, e + 1, dtype=np.int32)
    # CSR construction is a counting sort by row: linear time, no comparison sort.
    fwd = coo_matrix((ids, (a, b)), shape=(n_vertices, n_vertices)).tocsr()
    if fwd.nnz != e:  # repeated directed edges were summed: not consistently wound
        return None
    fwd.sort_indices()
    rev = fwd.T.tocsr()
    rev.sort_indices()
    if not (np.array_equal(fwd.indptr, rev.indptr) and np.array_equal(fwd.indices, rev.indices)):
        return None
    across = np.empty(e, np.int32)
    across[fwd.data - 1] = (rev.data - 1) // 3
    return across


def is_watertight(faces: np.ndarray, n_vertices: int, topo: EdgeTopology | None = None) -> bool:
    """True when every undirected edge is shared by exactly two faces (a closed surface)."""
    if len(faces) == 0:
        return False
    topo = topo if topo is not None else edge_topology(faces, n_vertices)
    return bool(np.all(topo.counts == 2))


def remove_floaters(mesh: MeshData, area_fraction: float = FLOATER_AREA_FRACTION) -> MeshData:
    """Drop connected pieces whose area is below ``area_fraction`` of the total (keeps the largest)."""
    v, f = mesh.vertices, mesh.faces
    n = len(v)
    rows = np.concatenate([f[:, 0], f[:, 1]])
    cols = np.concatenate([f[:, 1], f[:, 2]])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    n_comp, label = connected_components(graph, directed=False)
    if n_comp <= 1:
        return mesh
    face_label = label[f[:, 0]]
    areas = face_areas(v, f)
    comp_area = np.bincount(face_label, weights=areas, minlength=n_comp)
    total = comp_area.sum()
    keep_comp = comp_area >= area_fraction * total
    keep_comp[np.argmax(comp_area)] = True
    keep_face = keep_comp[face_label]
    dropped = int(np.count_nonzero(~keep_comp[np.unique(face_label)]))
    if keep_face.all():
        return mesh
    out = compact(v, f[keep_face], mesh.colors)
    out.warnings = mesh.warnings + [
        f"Removed {dropped} small floating pieces ({int((~keep_face).sum())} faces)."
    ]
    return out


def _boundary_loops(boundary: np.ndarray) -> list[np.ndarray]:
    """Closed loops of directed boundary edges (b, 2); skips vertices with several exits."""
    if len(boundary) == 0:
        return []
    starts, counts = np.unique(boundary[:, 0], return_counts=True)
    ambiguous = set(starts[counts > 1].tolist())
    nxt: dict[int, int] = {int(a): int(b) for a, b in boundary if int(a) not in ambiguous}
    loops: list[np.ndarray] = []
    visited: set[int] = set()
    for start in list(nxt):
        if start in visited:
            continue
        loop = [start]
        visited.add(start)
        cur = nxt.get(start)
        ok = True
        while cur is not None and cur != start:
            if cur in visited or len(loop) > HOLE_MAX_EDGES:
                ok = False
                break
            loop.append(cur)
            visited.add(cur)
            cur = nxt.get(cur)
        if ok and cur == start and len(loop) >= 3:
            loops.append(np.asarray(loop, np.int64))
    return loops


def fill_small_holes(
    mesh: MeshData,
    max_edges: int = HOLE_MAX_EDGES,
    max_perimeter_fraction: float = HOLE_MAX_PERIMETER_FRACTION,
    topo: EdgeTopology | None = None,
) -> MeshData:
    """Close boundary loops with at most ``max_edges`` edges and a short perimeter.

    Each hole gets one new vertex at the loop's centroid (colour: the loop's mean) and a fan
    of triangles wound opposite to the loop's edges, so orientation stays consistent.
    ``topo`` may pass a precomputed ``edge_topology(mesh.faces, len(mesh.vertices))``.
    """
    v, f, c = mesh.vertices, mesh.faces, mesh.colors
    topo = topo if topo is not None else edge_topology(f, len(v))
    if len(topo.boundary_directed) == 0:
        return mesh
    diag = bbox_diagonal(v)
    new_v: list[np.ndarray] = []
    new_c: list[np.ndarray] = []
    new_f: list[np.ndarray] = []
    next_index = len(v)
    for loop in _boundary_loops(topo.boundary_directed):
        if len(loop) > max_edges:
            continue
        pts = v[loop]
        perimeter = float(np.linalg.norm(pts - np.roll(pts, -1, axis=0), axis=1).sum())
        if perimeter > max_perimeter_fraction * diag:
            continue
        a = loop
        b = np.roll(loop, -1)
        if len(loop) == 3:
            new_f.append(np.array([[loop[2], loop[1], loop[0]]]))
            continue
        new_v.append(pts.mean(axis=0))
        new_c.append(c[loop].mean(axis=0))
        centre = np.full(len(loop), next_index)
        new_f.append(np.stack([b, a, centre], axis=1))
        next_index += 1
    if not new_f:
        return mesh
    v2 = np.vstack([v] + [x[None] for x in new_v]) if new_v else v
    c2 = np.vstack([c] + [x[None] for x in new_c]).astype(np.float32) if new_c else c
    f2 = np.vstack([f] + new_f)
    out = MeshData(v2, f2, c2, mesh.warnings + [f"Filled {len(new_f)} small holes."])
    return out
