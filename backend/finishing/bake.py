"""Base-colour baking on the CPU (numpy + scipy): dense coloured mesh -> texture of the
simplified, UV-unwrapped mesh.

Method (all vectorised):

1. **UV rasterisation** (``backend.finishing.uv_raster``): every texel whose centre lies
   inside a triangle in UV space, plus every texel whose centre lies within ``margin``
   texels outside a triangle edge (a conservative border, so bilinear lookups at chart
   edges read true colours), gets that triangle; border texels continue its plane.
2. **Surface points**: each texel's 3D point (object frame, metres) on the simplified mesh.
3. **Colour transfer** (``locate_texels`` with ``backend.finishing.dense_source``): the
   dense triangle under each texel's point, found by walking over the dense triangles'
   neighbours from a start near the answer - the answer of a texel one lattice level
   coarser in the same UV chart (1, 2, 4, ... texels away), or for the coarsest texels the
   dense triangle under their target face's centroid (k-d tree seeds, preferring
   triangles that face the same way, so thin sheets don't bleed through). The colour is
   the barycentric mix of that triangle's vertex colours at the point's projection.
   Charts are independent, so groups of whole charts run on separate threads.
4. **Gutter fill** (``texture_from_texels``): push-pull from the texels' own sums, so mip
   levels and bilinear filtering never mix in background colour across seams.

Colours are sRGB floats in [0, 1] throughout; the texture is sRGB-encoded uint8 (glTF
``baseColorTexture`` is sRGB). Texel/UV convention: see ``backend.finishing.uv``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from backend.finishing.dense_source import DenseColorSource
from backend.finishing.uv_raster import (
    RASTER_MARGIN,
    TexelSamples,
    rasterize_uv,
    texel_points,
)
from backend.memory import limit_heap_arenas
from backend.parallel import usable_cpus

__all__ = [
    "RASTER_MARGIN",
    "BakeResult",
    "DenseColorSource",
    "TexelSamples",
    "bake_base_color",
    "locate_texels",
    "rasterize_uv",
    "texel_points",
    "texture_from_texels",
    "uv_charts",
    "vertex_normals",
]

# Texel lattice levels of the walk's starts (see ``locate_texels``): 2**4 = 16 texels.
SEED_LEVELS = 4
# Texels walked at once (bounds the walk's temporaries to a few MB).
WALK_BLOCK = 1 << 16


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


def _to_u8(colors: np.ndarray) -> np.ndarray:
    """sRGB floats in [0, 1] -> uint8 (rounded to nearest)."""
    return np.clip(colors * 255.0 + 0.5, 0, 255).astype(np.uint8)


def texture_from_texels(
    x: np.ndarray, y: np.ndarray, colors: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``size``² texture (uint8 sRGB (S, S, 3), covered (S, S) bool) holding ``colors``
    (N, 3) sRGB floats at texels (``x``, ``y``) (N,), each texel at most once, with the
    gutter filled.

    Gutter fill by push-pull: coverage-weighted 2x2 sums down to one texel, then every
    uncovered texel takes the (normalised) value of its parent at the next coarser level that
    has coverage. Next to a chart the fill is the chart's border colour; farther out it is
    the average the mip chain would see anyway, so no mip level mixes in an arbitrary
    background colour. Square power-of-two sizes use push-pull (from the first level's sums,
    taken straight from the texels), other sizes the nearest covered texel (exact distance
    transform). Without any texel the texture is black.
    """
    texel = y * size + x
    covered = np.zeros(size * size, bool)
    covered[texel] = True
    out = np.zeros((size * size, 3), np.uint8)
    if covered.all() or not covered.any():
        out[texel] = _to_u8(colors)
        return out.reshape(size, size, 3), covered.reshape(size, size)
    cov2d = covered.reshape(size, size)
    if size & (size - 1):
        img = np.zeros((size * size, 3), np.float32)
        img[texel] = colors
        idx = ndimage.distance_transform_edt(~cov2d, return_distances=False, return_indices=True)
        out = _to_u8(img.reshape(size, size, 3)[idx[0], idx[1]])
        return out, cov2d
    half = size // 2
    parent = (y // 2) * half + x // 2
    # Channel-major float32 planes: the 2x2 sums and up-sampling run on contiguous rows.
    s_w = np.bincount(parent, minlength=half * half).astype(np.float32).reshape(half, half)
    s_img = np.stack(
        [np.bincount(parent, weights=colors[:, ch], minlength=half * half) for ch in range(3)]
    ).astype(np.float32)
    s_img = s_img.reshape(3, half, half)
    levels = [(s_img, s_w)]
    while s_w.shape[0] > 1:
        s_img = (
            s_img[:, 0::2, 0::2]
            + s_img[:, 1::2, 0::2]
            + s_img[:, 0::2, 1::2]
            + s_img[:, 1::2, 1::2]
        )
        s_w = s_w[0::2, 0::2] + s_w[1::2, 0::2] + s_w[0::2, 1::2] + s_w[1::2, 1::2]
        levels.append((s_img, s_w))
    filled = levels[-1][0] / np.maximum(levels[-1][1], np.float32(1e-12))
    for s_img, s_w in reversed(levels[:-1]):
        up = filled.repeat(2, axis=1).repeat(2, axis=2)
        has = s_w > 0
        np.divide(s_img, np.maximum(s_w, np.float32(1e-12)), out=up, where=has)
        filled = up
    filled8 = _to_u8(filled.transpose(1, 2, 0))
    out = filled8.repeat(2, axis=0).repeat(2, axis=1)
    flat = out.reshape(-1)
    rgb = _to_u8(colors)
    for ch in range(3):  # one channel at a time: scalar scatters beat row scatters
        flat[texel * 3 + ch] = rgb[:, ch]
    return out, cov2d


@dataclass
class BakeResult:
    """``image`` (S, S, 3) uint8 sRGB, row 0 = v 0 (top); ``covered`` (S, S) bool texels
    that lie on (or within the border margin of) a chart; ``coverage`` their fraction."""

    image: np.ndarray
    covered: np.ndarray
    coverage: float


def uv_charts(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Chart id (m,) int64 of each face of a UV-split mesh ``faces`` (m, 3): faces sharing a
    (split) vertex belong to one chart."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = len(faces)
    if m == 0:
        return np.zeros(0, np.int64)
    f = np.asarray(faces, np.int64)
    a = np.concatenate([f[:, 0], f[:, 1]])
    b = np.concatenate([f[:, 1], f[:, 2]])
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n_vertices, n_vertices))
    _, label = connected_components(graph, directed=False)
    return label[f[:, 0]].astype(np.int64)


def locate_texels(
    src: DenseColorSource,
    pts: np.ndarray,
    samples: TexelSamples,
    vertices: np.ndarray,
    faces: np.ndarray,
    size: int,
    chart: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The dense triangle under every texel: (face (N,) intp, barycentrics (N, 3) float32).

    ``pts`` (N, 3) are the texels' points centred on the source (``src.centered``);
    ``vertices`` (n, 3) metres and ``faces`` (m, 3) the UV-split target mesh; ``chart`` (N,)
    the texels' UV chart ids (``uv_charts`` of their faces; computed when not given).
    Walks start near their answer (``DenseColorSource`` explains the walk): the centroid
    of each target face with texels is located from the seed tree, and the texels are then
    visited coarse to fine on a lattice - texels whose x and y are multiples of
    ``2**SEED_LEVELS`` first, from their face's centroid, then each finer level from the
    texel of the next coarser level at its lower-left (at most ``2**(level + 1)`` texels
    away) when that texel lies in the same chart - so most walks take a step or two.
    ``samples`` may hold any subset of a rasterisation that keeps whole charts.
    """
    n = len(pts)
    face_out = np.zeros(n, np.intp)
    if n == 0:
        return face_out, np.zeros((0, 3), np.float32)
    if chart is None:
        chart = uv_charts(faces, len(vertices))[samples.face]
    # Target faces are located (centroid -> seed tree -> walk) only when a texel needs
    # its face's start: texels of the coarsest lattice and those without a parent in
    # their chart - a third of the faces or so.
    face_seed = np.full(len(faces), -1, np.intp)
    vertices = np.asarray(vertices, np.float64)

    def seeds_for(target_faces: np.ndarray) -> np.ndarray:
        todo = np.unique(target_faces[face_seed[target_faces] < 0])
        if len(todo):
            tri = vertices[faces[todo]]
            centroids = src.centered(tri.mean(axis=1))
            normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            face_seed[todo] = src.walk(centroids, src.seeds(centroids, normals))
        return face_seed[target_faces]

    owner = np.full(size * size, -1, np.int32 if n < 2**31 else np.intp)
    owner[samples.y * size + samples.x] = np.arange(n)
    xy = samples.x | samples.y
    level = np.zeros(n, np.int8)
    for lv in range(1, SEED_LEVELS + 1):
        level += (xy & ((1 << lv) - 1)) == 0
    for lv in range(SEED_LEVELS, -1, -1):
        sel = np.flatnonzero(level == lv)
        if len(sel) == 0:
            continue
        if lv == SEED_LEVELS:
            start = seeds_for(samples.face[sel])
        else:
            cell = ~np.int64((1 << (lv + 1)) - 1)
            parent = owner[(samples.y[sel] & cell) * size + (samples.x[sel] & cell)]
            ok = parent >= 0
            ok[ok] = chart[parent[ok]] == chart[sel[ok]]
            start = face_out[np.maximum(parent, 0)]
            orphan = np.flatnonzero(~ok)
            if len(orphan):
                start[orphan] = seeds_for(samples.face[sel[orphan]])
        for lo in range(0, len(sel), WALK_BLOCK):
            block = sel[lo : lo + WALK_BLOCK]
            face_out[block] = src.walk(pts[block], start[lo : lo + WALK_BLOCK])
    bary, dist = src.answer(pts, face_out)
    src.rewalk_far(pts, face_out, bary, dist)
    return face_out, bary


def _chart_groups(chart: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Texel indices split into ``n_groups`` sets of whole charts with about equal texel
    counts (chart ids (N,) per texel)."""
    counts = np.bincount(chart)
    cut = np.cumsum(counts) * n_groups // max(len(chart), 1)
    group = np.minimum(cut - (counts > 0) * 0, n_groups - 1)[chart]
    return [np.flatnonzero(group == g) for g in range(n_groups)]


def bake_base_color(
    vertices: np.ndarray,
    normals: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    source: DenseColorSource | Callable[[], DenseColorSource],
    size: int = 1024,
    threads: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> BakeResult:
    """Bake the dense source's colours into a ``size``² texture of the UV'd target mesh.

    ``vertices`` (n, 3) metres and ``normals`` (n, 3) unit vectors of the UV-split target
    (the normals are not needed by the walk, which starts from each face's own normal);
    ``faces`` (m, 3); ``uv`` (n, 2) glTF texcoords. ``source`` may be a callable that
    builds the ``DenseColorSource``: it then runs in a thread while the UV rasterisation
    runs. Walks and colour lookups run on ``threads`` threads (numpy releases the GIL;
    default: the CPUs this process may use). ``progress(fraction)`` is called as texels
    are located.
    """
    n_threads = threads or usable_cpus()
    faces = np.asarray(faces, np.intp)
    limit_heap_arenas()
    with ThreadPoolExecutor(max_workers=max(2, n_threads)) as pool:
        src_future = pool.submit(source) if not isinstance(source, DenseColorSource) else None
        # While the source is indexed on the other core, the UV layout is rasterised here.
        samples = rasterize_uv(uv, faces, size, pool=pool if src_future is None else None)
        chart = uv_charts(faces, len(vertices))[samples.face]
        if progress is not None:
            progress(0.2)
        src = src_future.result() if src_future is not None else source
        colors = np.empty((len(samples.face), 3), np.float32)

        def locate(texels: np.ndarray) -> None:
            part = TexelSamples(
                samples.x[texels],
                samples.y[texels],
                samples.face[texels],
                samples.inside[texels],
                samples.frame,
            )
            pts, _ = texel_points(vertices, None, faces, part)
            pts -= src.center.astype(np.float32)
            face, bary = locate_texels(src, pts, part, vertices, faces, size, chart[texels])
            colors[texels] = src.colors_at(face, bary)

        # Charts are independent (walks start within their chart): whole charts per thread.
        n = len(samples.face)
        groups = _chart_groups(chart, n_threads) if n > 20_000 else [np.arange(n)]
        list(pool.map(locate, groups))
    if progress is not None:
        progress(0.9)
    out, covered = texture_from_texels(samples.x, samples.y, colors, size)
    if progress is not None:
        progress(1.0)
    return BakeResult(out, covered, float(covered.mean()))
