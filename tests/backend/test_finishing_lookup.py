"""The colour lookup behind the bake: face neighbours, the walk to the dense triangle under a
point, the texel lattice, the gutter fill - each against a direct computation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from backend.finishing.bake import (
    DenseColorSource,
    bake_base_color,
    rasterize_uv,
    texel_points,
    texture_from_texels,
    vertex_normals,
)
from backend.finishing.mesh_prep import edge_topology
from tests.synthetic_meshes import (
    checker_color,
    icosphere,
    parametric_torus_uv,
    smooth_color,
    torus,
)

RNG = np.random.default_rng(11)


def point_triangle_distance(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Exact distance from points p (N, 3) to triangles tri (N, 3, 3) (Ericson's regions)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    bp, cp = p - b, p - c
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    den = np.where(np.abs(va + vb + vc) > 1e-300, va + vb + vc, 1e-300)
    q = a + ab * (vb / den)[:, None] + ac * (vc / den)[:, None]  # inside the face
    with np.errstate(divide="ignore", invalid="ignore"):
        cands = [
            (d1 <= 0) & (d2 <= 0),
            (d3 >= 0) & (d4 <= d3),
            (d6 >= 0) & (d5 <= d6),
            (vc <= 0) & (d1 >= 0) & (d3 <= 0),
            (vb <= 0) & (d2 >= 0) & (d6 <= 0),
            (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0),
        ]
        pts = [
            a,
            b,
            c,
            a + ab * (d1 / (d1 - d3))[:, None],
            a + ac * (d2 / (d2 - d6))[:, None],
            b + (c - b) * ((d4 - d3) / ((d4 - d3) + (d5 - d6)))[:, None],
        ]
    for cond, pt in reversed(list(zip(cands, pts, strict=True))):
        q = np.where(cond[:, None], pt, q)
    return np.linalg.norm(p - q, axis=1)


def brute_force_distance(v: np.ndarray, f: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Distance from each point to the mesh, by testing every triangle (small meshes)."""
    tri = v[f].astype(np.float64)
    best = np.full(len(p), np.inf)
    for i in range(len(p)):
        best[i] = point_triangle_distance(np.repeat(p[i : i + 1], len(f), 0), tri).min()
    return best


def test_closed_mesh_neighbours_match_the_general_path():
    """The linear-time path for closed, consistently wound meshes gives the same counts and
    neighbours as the sort of undirected edges; every neighbour shares that edge."""
    import backend.finishing.mesh_prep as mesh_prep

    v, f = torus(60, 30)
    fast = edge_topology(f, len(v))
    general = mesh_prep._closed_manifold_neighbours
    try:
        mesh_prep._closed_manifold_neighbours = lambda *a: None
        slow = edge_topology(f, len(v))
    finally:
        mesh_prep._closed_manifold_neighbours = general
    assert fast.consistent and slow.consistent
    np.testing.assert_array_equal(fast.counts, slow.counts)
    np.testing.assert_array_equal(fast.neighbours, slow.neighbours)
    for k in range(3):
        other = f[fast.neighbours[:, k]]
        for corner in ((k + 1) % 3, (k + 2) % 3):
            assert np.all((other == f[:, corner, None]).any(axis=1))
    # An open mesh goes the general way: its boundary edges have no neighbour.
    open_topo = edge_topology(f[10:], len(v))
    assert (open_topo.neighbours < 0).sum() == (open_topo.counts == 1).sum()


@pytest.mark.parametrize("offset_mm", [0.0, 0.3, 3.0])
def test_walk_finds_the_closest_point_on_the_surface(offset_mm):
    """Points near a curved closed surface: the walk's distance equals the exact distance to
    the nearest triangle (brute force over all triangles)."""
    v, f = icosphere(3, radius=0.25)  # 1,280 faces
    src = DenseColorSource(v, f, smooth_color(v))
    face = RNG.integers(0, len(f), 400)
    bary = RNG.dirichlet((1, 1, 1), 400)
    on = np.einsum("ij,ijk->ik", bary, v[f[face]].astype(np.float64))
    normal = on / np.linalg.norm(on, axis=1, keepdims=True)
    p = on + normal * RNG.uniform(-1, 1, (400, 1)) * offset_mm * 1e-3
    _, _, dist = src.closest(p, normal)
    exact = brute_force_distance(v, f, p)
    np.testing.assert_allclose(dist, exact, atol=2e-6)


def test_walk_stays_on_the_side_it_faces():
    """Two parallel sheets 1 mm apart (a thin object): points on the upper sheet with upward
    normals take the upper sheet's colour, whatever the seed tree finds nearest."""
    n = 40
    g = np.linspace(0.0, 0.2, n)
    xx, zz = np.meshgrid(g, g, indexing="ij")
    top = np.stack([xx.ravel(), np.full(n * n, 0.001), zz.ravel()], 1)
    bottom = np.stack([xx.ravel(), np.zeros(n * n), zz.ravel()], 1)
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a = (i * n + j).ravel()
    quads = np.stack([a, a + 1, a + n + 1, a + n], 1)
    up = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])  # +Y normals
    down = up[:, ::-1] + n * n
    v = np.vstack([top, bottom])
    f = np.vstack([up, down])
    c = np.vstack([np.tile([0.9, 0.1, 0.1], (n * n, 1)), np.tile([0.1, 0.1, 0.9], (n * n, 1))])
    src = DenseColorSource(v, f, c)
    p = np.stack(
        [RNG.uniform(0.01, 0.19, 500), np.full(500, 0.0006), RNG.uniform(0.01, 0.19, 500)], 1
    )
    got = src.sample(p, np.tile([0.0, 1.0, 0.0], (500, 1)))
    np.testing.assert_allclose(got, np.tile([0.9, 0.1, 0.1], (500, 1)), atol=1e-5)
    got = src.sample(p - [0, 0.0002, 0], np.tile([0.0, -1.0, 0.0], (500, 1)))
    np.testing.assert_allclose(got, np.tile([0.1, 0.1, 0.9], (500, 1)), atol=1e-5)


def bake_inputs():
    dense_v, dense_f = torus(200, 100)
    tv, tf, tuv = parametric_torus_uv(60, 30)
    tn = vertex_normals(tv.astype(np.float64), tf)
    return dense_v, dense_f, tv, tn, tf, tuv


def test_texels_are_located_on_the_nearest_triangle():
    """Every inside texel of a bake lands on the dense triangle closest to its point (the
    exact distance, checked on a sample against all triangles)."""
    from backend.finishing.bake import locate_texels

    dense_v, dense_f, tv, tn, tf, tuv = bake_inputs()
    src = DenseColorSource(dense_v, dense_f, smooth_color(dense_v))
    samples = rasterize_uv(tuv, tf, 256)
    pts, _ = texel_points(tv, None, tf, samples)
    face, bary = locate_texels(src, src.centered(pts), samples, tv, tf, 256)
    pick = RNG.choice(np.flatnonzero(samples.inside), 200, replace=False)
    on = np.einsum("ij,ijk->ik", bary[pick], dense_v[dense_f[face[pick]]].astype(np.float64))
    got = np.linalg.norm(on - pts[pick], axis=1)
    exact = brute_force_distance(dense_v, dense_f, pts[pick].astype(np.float64))
    np.testing.assert_allclose(got, exact, atol=2e-6)


def test_bake_is_the_same_on_one_thread_and_on_two():
    """Charts are split between threads; the texture does not depend on how."""
    dense_v, dense_f, tv, tn, tf, tuv = bake_inputs()
    src = DenseColorSource(dense_v, dense_f, checker_color(dense_v, cell=0.03))
    one = bake_base_color(tv, tn, tf, tuv, src, 512, threads=1)
    two = bake_base_color(tv, tn, tf, tuv, lambda: src, 512, threads=2)
    np.testing.assert_array_equal(one.image, two.image)
    np.testing.assert_array_equal(one.covered, two.covered)


def test_bake_colour_error_against_the_known_function():
    """Exact UVs (no packing): the texture matches the colour function at every inside
    texel to 8-bit quantisation plus the surface offset between the two tori."""
    dense_v, dense_f, tv, tn, tf, tuv = bake_inputs()
    src = DenseColorSource(dense_v, dense_f, smooth_color(dense_v))
    res = bake_base_color(tv, tn, tf, tuv, src, 512)
    samples = rasterize_uv(tuv, tf, 512)
    pts, _ = texel_points(tv, None, tf, samples)
    inside = samples.inside
    err = np.abs(
        res.image[samples.y[inside], samples.x[inside]] / 255.0 - smooth_color(pts[inside])
    )
    assert err.mean() < 0.004, err.mean()
    assert np.percentile(err, 99) < 0.015


def push_pull_reference(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """The gutter fill written out on full images: coverage-weighted 2x2 sums to one texel,
    then each uncovered texel takes its nearest coarser level with coverage."""
    w = covered.astype(np.float64)
    img = np.where(covered[..., None], image, 0.0)
    levels = []
    while img.shape[0] > 1:
        img = img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]
        w = w[0::2, 0::2] + w[1::2, 0::2] + w[0::2, 1::2] + w[1::2, 1::2]
        levels.append((img, w))
    filled = levels[-1][0] / np.maximum(levels[-1][1], 1e-12)[..., None]
    for s_img, s_w in reversed(levels[:-1]):
        up = filled.repeat(2, axis=0).repeat(2, axis=1)
        filled = np.where((s_w > 0)[..., None], s_img / np.maximum(s_w, 1e-12)[..., None], up)
    up = filled.repeat(2, axis=0).repeat(2, axis=1)
    return np.where(covered[..., None], image, up)


@pytest.mark.parametrize("size", [64, 60])
def test_gutter_fill_matches_push_pull(size):
    """Square power-of-two textures: the push-pull fill to within rounding; other sizes: the
    nearest covered texel. Covered texels keep their colours."""
    yy, xx = np.mgrid[:size, :size]
    covered = ((xx - size * 0.3) ** 2 + (yy - size * 0.4) ** 2 < (size * 0.2) ** 2) | (
        (xx > size * 0.6) & (yy > size * 0.7)
    )
    y, x = np.nonzero(covered)
    colors = RNG.random((len(x), 3)).astype(np.float32)
    image, cov = texture_from_texels(x, y, colors, size)
    np.testing.assert_array_equal(cov, covered)
    expect = np.clip(colors * 255.0 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(image[y, x], expect)
    if size & (size - 1) == 0:
        full = np.zeros((size, size, 3))
        full[y, x] = colors
        ref = np.clip(push_pull_reference(full, covered) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        assert np.abs(image.astype(int) - ref.astype(int)).max() <= 1
    else:
        from scipy import ndimage

        _, idx = ndimage.distance_transform_edt(~covered, return_indices=True)
        full = np.zeros((size, size, 3), np.float32)
        full[y, x] = colors
        ref = np.clip(full[idx[0], idx[1]] * 255.0 + 0.5, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(image, ref)


def test_decimation_forks_while_other_threads_run():
    """The worker keeps a thread reading its stdin; the decimation still runs in a forked
    child then, and returns what the in-process call returns."""
    from backend.finishing.simplify import SimplifyJob, simplify_mesh

    stop = threading.Event()
    waiter = threading.Thread(target=stop.wait, daemon=True)
    waiter.start()
    try:
        v, f = torus(120, 60)
        job = SimplifyJob(v.astype(np.float64), f, 1000)
        assert job._pid is not None
        jv, jf = job.result()
    finally:
        stop.set()
    ev, ef = simplify_mesh(v.astype(np.float64), f, 1000)
    np.testing.assert_array_equal(jf, ef)
    np.testing.assert_allclose(jv, ev)


def test_cancelled_decimation_leaves_no_child():
    import os

    from backend.finishing.simplify import SimplifyJob

    v, f = torus(200, 100)
    job = SimplifyJob(v.astype(np.float64), f, 500)
    pid = job._pid
    assert pid is not None
    job.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
