"""Mesh finishing: quality of simplify -> UV -> bake -> GLB against known colour functions.

The dense sources are synthetic shapes whose colour is a known function of position
(``tests/synthetic_meshes.py``), so every check compares results with ground truth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gltf_validator import assert_valid  # noqa: E402

from backend.errors import BackendError  # noqa: E402
from backend.finishing import finish_to_glb  # noqa: E402
from backend.finishing.bake import DenseColorSource, rasterize_uv  # noqa: E402
from backend.finishing.glb import read_object_glb  # noqa: E402
from backend.finishing.mesh_prep import edge_topology  # noqa: E402
from backend.finishing.uv import unwrap  # noqa: E402
from backend.job_context import JobContext  # noqa: E402
from backend.options import FinishOptions  # noqa: E402
from backend.reconstruction import Intrinsics, Pose, Reconstruction  # noqa: E402
from tests.synthetic_meshes import (  # noqa: E402
    checker_color,
    icosphere,
    sample_texture,
    smooth_color,
    torus,
)

RNG = np.random.default_rng(7)


def make_recon(shape: str = "torus", color: str = "smooth") -> Reconstruction:
    if shape == "torus":
        v, f = torus(260, 130)  # 67,600 faces
    else:
        v, f = icosphere(6)  # 81,920 faces
    fn = smooth_color if color == "smooth" else checker_color
    return Reconstruction(
        vertices=v,
        faces=f,
        vertex_colors=fn(v),
        pose=Pose(
            rotation=np.array([0.9238795, 0.0, 0.3826834, 0.0]),
            translation=np.array([0.1, -0.05, -1.5]),
            scale=np.array([1.2, 1.2, 1.2]),
        ),
        intrinsics=Intrinsics.from_fov(640, 480, 55.0),
        meta={"engine": "synthetic", "name": "Torus"},
    )


def surface_samples(mesh: dict, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random points on the GLB mesh: (points (n, 3), uv (n, 2), face index (n,))."""
    pos, faces, uv = mesh["positions"].astype(np.float64), mesh["faces"], mesh["uv"]
    tri = pos[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = RNG.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = RNG.random(n), RNG.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    pts = np.einsum("ij,ijk->ik", bary, tri[face])
    uvs = np.einsum("ij,ijk->ik", bary, uv[faces[face]].astype(np.float64))
    return pts, uvs, face


def merged_faces(positions: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, int]:
    """Faces re-indexed after merging vertices with identical positions (UV-seam splits)."""
    _, first, inverse = np.unique(positions, axis=0, return_index=True, return_inverse=True)
    return inverse.reshape(-1)[faces], len(first)


@pytest.fixture(scope="module")
def smooth_torus_result(tmp_path_factory):
    recon = make_recon("torus", "smooth")
    out = tmp_path_factory.mktemp("fin") / "torus.glb"
    updates: list[tuple[str, float]] = []
    ctx = JobContext(on_update=lambda s, f: updates.append((s, f)))
    stats = finish_to_glb(recon, FinishOptions(target_faces=5000, texture_size=512), out, ctx)
    return recon, out, stats, updates


def test_stats_and_progress(smooth_torus_result):
    recon, out, stats, updates = smooth_torus_result
    json.dumps(stats)  # JSON-serialisable
    assert stats["textured"] is True and stats["texture_size"] == 512
    assert stats["source_faces"] == len(recon.faces)
    assert set(stats["stage_seconds"]) == {"simplify", "uv", "bake", "export"}
    assert all(t > 0 for t in stats["stage_seconds"].values())
    assert abs(stats["faces"] - 5000) <= 0.02 * 5000
    stages = [s for s, _ in updates]
    firsts = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert firsts == ["simplify", "uv", "bake", "export"]
    assert all(0.0 <= f <= 1.0 for _, f in updates)


def test_glb_layout_pose_and_validator(smooth_torus_result):
    recon, out, stats, _ = smooth_torus_result
    assert_valid(out)
    mesh = read_object_glb(out)
    g = mesh["gltf"]
    assert len(g["nodes"]) == 1 and len(g["meshes"]) == 1 and len(g["materials"]) == 1
    mat = g["materials"][0]
    assert mat["name"] == "SAM3D_Material"
    pbr = mat["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0 and pbr["roughnessFactor"] == 1.0
    assert pbr["baseColorTexture"]["index"] == 0
    assert mesh["texture"].shape == (512, 512, 3)
    # Object frame, pose not baked in: the bounding box is the source's.
    lo, hi = mesh["positions"].min(0), mesh["positions"].max(0)
    np.testing.assert_allclose(lo, recon.vertices.min(0), atol=5e-3)
    np.testing.assert_allclose(hi, recon.vertices.max(0), atol=5e-3)
    assert "translation" not in g["nodes"][0] and "rotation" not in g["nodes"][0]
    sam = mesh["extras"]["sam3d"]
    assert sam["pose"] == recon.pose.to_dict()
    assert sam["intrinsics"] == recon.intrinsics.to_dict()
    assert sam["engine"] == "synthetic"
    assert sam["stats"]["faces"] == stats["faces"]
    # Normals are unit length and point outward (away from the tube's centre line).
    n = mesh["normals"].astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-4)
    p = mesh["positions"].astype(np.float64)
    tube = p.copy()
    tube[:, 1] = 0
    tube *= 0.3 / np.linalg.norm(tube, axis=1, keepdims=True)
    assert np.mean(np.einsum("ij,ij->i", n, p - tube) > 0) > 0.99


def test_face_count_uv_range_and_watertight(smooth_torus_result):
    recon, out, stats, _ = smooth_torus_result
    mesh = read_object_glb(out)
    assert abs(len(mesh["faces"]) - 5000) <= 100
    assert mesh["uv"].min() >= 0.0 and mesh["uv"].max() <= 1.0
    assert stats["source_watertight"] and stats["watertight"]
    f, nv = merged_faces(mesh["positions"], mesh["faces"])
    topo = edge_topology(f, nv)
    assert np.all(topo.counts == 2) and topo.consistent


def test_smooth_colour_error(smooth_torus_result):
    """Texture sampled at random surface points vs the colour function there.

    Threshold: the GLB surface lies within ~1 mm of the dense one (5k-face torus,
    measured below), the field's gradient is <= 9.2 /m, so transfer error <= ~0.01;
    8-bit quantisation adds 0.002 and bilinear filtering of a 512² texture (texel ~2.5 mm)
    much less. Mean absolute error must stay below 0.01, the 99th percentile below 0.04.
    """
    recon, out, _, _ = smooth_torus_result
    mesh = read_object_glb(out)
    pts, uvs, _ = surface_samples(mesh, 20000)
    got = sample_texture(mesh["texture"], uvs)
    src = DenseColorSource(recon.vertices, recon.faces, recon.vertex_colors)
    _, _, dist = src.closest(pts)
    assert np.percentile(dist, 99) < 2e-3
    err = np.abs(got - smooth_color(pts))
    assert err.mean() < 0.01, err.mean()
    assert np.percentile(err, 99) < 0.04


def test_no_black_texels_and_seamless(smooth_torus_result):
    """Every texel (charts and gutter) has a plausible colour; across each UV seam the two
    sides' texture lookups agree."""
    recon, out, _, _ = smooth_torus_result
    mesh = read_object_glb(out)
    tex = mesh["texture"]
    # The colour function never goes below 0.15 in any channel (0.15 * 255 = 38).
    samples = rasterize_uv(mesh["uv"], mesh["faces"], tex.shape[0])
    inside = tex[samples.y, samples.x]
    assert inside.min() >= 30
    assert tex.min() >= 30  # the gutter fill is also free of black
    # Seams: edges whose two faces use different UV coordinates for the same 3D edge.
    pos = mesh["positions"]
    faces, uv = mesh["faces"], mesh["uv"].astype(np.float64)
    f_merged, nv = merged_faces(pos, faces)
    directed = f_merged[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    corner = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    key = np.minimum(directed[:, 0], directed[:, 1]) * nv + np.maximum(
        directed[:, 0], directed[:, 1]
    )
    order = np.argsort(key)
    ks = key[order]
    pairs = np.flatnonzero(ks[1:] == ks[:-1])
    ea, eb = order[pairs], order[pairs + 1]
    # Match endpoints: edge a goes p->q; edge b goes q->p in a consistently wound mesh.
    a0, a1 = corner[ea, 0], corner[ea, 1]
    b0, b1 = corner[eb, 1], corner[eb, 0]
    seam = np.any(uv[a0] != uv[b0], axis=1) | np.any(uv[a1] != uv[b1], axis=1)
    assert seam.sum() > 50  # the torus has seams to test
    t = np.linspace(0.1, 0.9, 5)[:, None, None]
    ua = (1 - t) * uv[a0[seam]] + t * uv[a1[seam]]
    ub = (1 - t) * uv[b0[seam]] + t * uv[b1[seam]]
    ca = sample_texture(tex, ua.reshape(-1, 2))
    cb = sample_texture(tex, ub.reshape(-1, 2))
    diff = np.abs(ca - cb).max(axis=1)
    # Same 3D point, two charts: differences come only from texel-scale interpolation.
    assert diff.mean() < 0.01, diff.mean()
    assert np.percentile(diff, 99) < 0.05


def test_checker_sphere_colour_error(tmp_path):
    """A discontinuous 3D checker: away from cell borders colours must be exact."""
    recon = make_recon("sphere", "checker")
    out = tmp_path / "checker.glb"
    stats = finish_to_glb(recon, FinishOptions(target_faces=8000, texture_size=1024), out)
    assert stats["textured"] and stats["watertight"]
    assert_valid(out)
    mesh = read_object_glb(out)
    pts, uvs, _ = surface_samples(mesh, 20000)
    got = sample_texture(mesh["texture"], uvs)
    # Distance of each sample to the nearest checker plane: skip points within 4 mm (the
    # texture can't be sharper than a texel, ~1 mm here, plus surface offset).
    cell = 0.05
    frac = pts / cell - np.floor(pts / cell)
    border = np.min(np.minimum(frac, 1 - frac), axis=1) * cell
    far = border > 4e-3
    err = np.abs(got - checker_color(pts)).max(axis=1)
    assert far.mean() > 0.6
    assert np.mean(err[far] > 0.1) < 0.005
    assert np.mean(err[far]) < 0.01


def test_vertex_colour_mode(tmp_path):
    recon = make_recon("torus", "smooth")
    out = tmp_path / "vc.glb"
    stats = finish_to_glb(recon, FinishOptions(target_faces=3000, bake=False), out)
    assert stats["textured"] is False and stats["texture_size"] is None
    assert stats["stage_seconds"]["uv"] == 0.0 and stats["stage_seconds"]["bake"] == 0.0
    assert_valid(out)
    mesh = read_object_glb(out)
    assert mesh["texture"] is None and mesh["uv"] is None
    g = mesh["gltf"]
    assert "baseColorTexture" not in g["materials"][0]["pbrMetallicRoughness"]
    from backend.finishing.glb import linear_to_srgb

    srgb = linear_to_srgb(mesh["colors_linear"])
    err = np.abs(srgb - smooth_color(mesh["positions"]))
    assert err.mean() < 0.01
    assert abs(len(mesh["faces"]) - 3000) <= 60


def test_target_ratio_keeps_that_fraction(tmp_path):
    recon = make_recon("torus", "smooth")
    stats = finish_to_glb(
        recon, FinishOptions(target_faces=None, target_ratio=0.05, bake=False), tmp_path / "r.glb"
    )
    want = round(0.05 * len(recon.faces))
    assert abs(stats["faces"] - want) <= 0.02 * want
    assert stats["target_faces"] == want


@pytest.mark.parametrize("target", [2000, 20000])
def test_face_count_within_two_percent(target):
    from backend.finishing.simplify import simplify_mesh

    v, f = torus(400, 200)
    v2, f2 = simplify_mesh(v, f, target)
    assert abs(len(f2) - target) <= 0.02 * target
    topo = edge_topology(f2, len(v2))
    assert np.all(topo.counts == 2)


@pytest.mark.parametrize("shape", ["torus", "sphere"])
def test_fast_uv_charts_do_not_overlap_or_flip(shape):
    from backend.finishing.simplify import simplify_mesh

    v, f = torus(200, 100) if shape == "torus" else icosphere(5)
    v, f = simplify_mesh(v, f, 4000)
    uvm = unwrap(v, f, 1024, padding=4)
    assert uvm.uv.min() >= 0 and uvm.uv.max() <= 1
    np.testing.assert_array_equal(v[uvm.vmap][uvm.faces], v[f])  # same triangles, same order
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nf = len(uvm.faces)
    rows = np.repeat(np.arange(nf), 3)
    g = coo_matrix((np.ones(3 * nf), (rows, uvm.faces.ravel())), shape=(nf, len(uvm.uv)))
    n_charts, chart_of_face = connected_components((g @ g.T).tocoo(), directed=False)
    assert n_charts == uvm.charts
    p = uvm.uv[uvm.faces].astype(np.float64)
    signed = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (
        p[:, 2, 0] - p[:, 0, 0]
    )
    # Within each chart all triangles keep one orientation (none flipped; xatlas may mirror
    # whole charts, which is harmless without normal maps).
    pos = np.bincount(chart_of_face, weights=signed > 0, minlength=n_charts)
    size = np.bincount(chart_of_face, minlength=n_charts)
    assert np.all((pos == 0) | (pos == size))
    assert np.all(signed != 0)
    # No chart of a single triangle (tiny charts are merged into neighbours).
    assert size.min() >= 2
    # No texel centre is inside two triangles (overlaps), except exact ties on shared edges.
    from backend.finishing.uv_raster import (
        TexelSamples,
        _edge_coefficients,
        _rasterize_inside,
        _texel_frames,
    )

    an, bn, cn, ok, corners = _edge_coefficients(uvm.uv, uvm.faces, 1024)
    x, y, face = _rasterize_inside(an, bn, cn, ok, corners, 1024)  # before de-duplication
    b1, b2 = TexelSamples(x, y, face, np.ones(len(x), bool), _texel_frames(corners, ok)).local()
    bary = np.stack([1.0 - b1 - b2, b1, b2], axis=1)
    texel = y * 1024 + x
    strictly = np.all(bary > 1e-3, axis=1)
    counts = np.bincount(texel[strictly], minlength=1024 * 1024)
    assert counts.max() <= 1
    # Padding: texels of different charts are never 8-neighbours.
    img = np.full((1024, 1024), -1)
    img[y, x] = chart_of_face[face]
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = img[max(0, -dy) : 1024 - max(0, dy), max(0, -dx) : 1024 - max(0, dx)]
        b = (
            img[max(0, dy) :, max(0, dx) :][: a.shape[0], : a.shape[1]]
            if dx >= 0
            else img[dy:, : 1024 + dx]
        )
        both = (a >= 0) & (b >= 0)
        assert np.all(a[both] == b[both])


def test_untextured_fallback_when_uv_library_fails(tmp_path, monkeypatch):
    """A native-library failure in UV/bake still delivers the mesh with vertex colours."""
    import xatlas

    class BrokenAtlas:
        def add_mesh(self, *a, **k):
            pass

        def generate(self, *a, **k):
            raise RuntimeError("simulated xatlas failure")

    monkeypatch.setattr(xatlas, "Atlas", BrokenAtlas)
    recon = make_recon("torus", "smooth")
    out = tmp_path / "fallback.glb"
    stats = finish_to_glb(recon, FinishOptions(target_faces=2000), out)
    assert stats["textured"] is False
    assert stats["bake_error"]["details"]["stage"] == "uv"
    assert any("vertex colours" in w for w in stats["warnings"])
    assert_valid(out)
    assert read_object_glb(out)["colors_linear"] is not None
    with pytest.raises(BackendError) as exc:
        finish_to_glb(recon, FinishOptions(target_faces=2000, untextured_fallback=False), out)
    assert exc.value.code == "stage_failed"
    assert exc.value.details["stage"] == "uv"
    assert "uv stage" in exc.value.message


def test_trimesh_reads_textured_glb(smooth_torus_result):
    import trimesh

    _, out, stats, _ = smooth_torus_result
    scene = trimesh.load(out)
    geom = list(scene.geometry.values())
    assert len(geom) == 1
    m = geom[0]
    assert len(m.faces) == stats["faces"]
    assert m.visual.uv is not None and m.visual.uv.shape == (len(m.vertices), 2)
    tex = m.visual.material.baseColorTexture
    assert tex is not None and tex.size == (512, 512)


@pytest.mark.parametrize("fork", ["1", "0"])
def test_simplify_job_matches_in_process(monkeypatch, fork):
    """The forked decimation returns exactly what the in-process call returns."""
    from backend.finishing.simplify import SimplifyJob, simplify_mesh

    monkeypatch.setenv("SAM3D_FINISH_FORK", fork)
    v, f = torus(120, 60)
    job = SimplifyJob(v.astype(np.float64), f, 1000)
    assert (job._pid is not None) == (fork == "1")
    jv, jf = job.result()
    ev, ef = simplify_mesh(v.astype(np.float64), f, 1000)
    np.testing.assert_array_equal(jf, ef)
    np.testing.assert_allclose(jv, ev)


def test_parallel_rasterisation_equals_serial():
    from concurrent.futures import ThreadPoolExecutor

    from backend.finishing.simplify import simplify_mesh

    v, f = torus(200, 100)
    v, f = simplify_mesh(v.astype(np.float64), f, 3000)
    uvm = unwrap(v, f, 512)
    serial = rasterize_uv(uvm.uv, uvm.faces, 512)
    with ThreadPoolExecutor(2) as pool:
        par = rasterize_uv(uvm.uv, uvm.faces, 512, pool=pool)
    a = np.lexsort((serial.x, serial.y))
    b = np.lexsort((par.x, par.y))
    np.testing.assert_array_equal(serial.x[a], par.x[b])
    np.testing.assert_array_equal(serial.y[a], par.y[b])
    np.testing.assert_array_equal(serial.inside[a], par.inside[b])
    same_face = serial.face[a] == par.face[b]
    assert same_face.mean() > 0.999  # only exact ties on shared edges may differ


@pytest.mark.parametrize("target", [2000, 20000])
def test_iso_surface_slivers_are_welded_not_punched_out(tmp_path, target):
    """A marching-cubes mesh (the preview engine's) has many near-zero-area slivers. They
    must collapse (weld) - deleting them would open a hole per sliver - and a large
    reduction must still reach the target count."""
    from backend.engines.preview import PreviewEngine
    from backend.job_context import JobContext
    from backend.options import JobOptions

    img = np.full((300, 400, 3), 120, np.uint8)
    yy, xx = np.mgrid[:300, :400]
    mask = (xx - 200) ** 2 + (yy - 170) ** 2 < 110**2
    rec = PreviewEngine().reconstruct(img, mask, 0, JobOptions(), JobContext())
    stats = finish_to_glb(
        rec, FinishOptions(target_faces=target, texture_size=256), tmp_path / "o.glb"
    )
    assert stats["source_watertight"] and stats["watertight"]
    assert abs(stats["faces"] - target) <= 0.02 * target
    assert not any("hole" in w or "zero-area" in w for w in stats["warnings"])
