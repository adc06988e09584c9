"""Degenerate inputs to mesh finishing: a clear ``degenerate_mesh`` error or a safe result."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gltf_validator import assert_valid  # noqa: E402

from backend.errors import BackendError  # noqa: E402
from backend.finishing import finish_to_glb  # noqa: E402
from backend.finishing.glb import read_object_glb  # noqa: E402
from backend.finishing.mesh_prep import (  # noqa: E402
    MeshData,
    edge_topology,
    fill_small_holes,
    remove_floaters,
    sanitize,
)
from backend.options import FinishOptions  # noqa: E402
from backend.reconstruction import Reconstruction  # noqa: E402
from tests.synthetic_meshes import icosphere, smooth_color  # noqa: E402


def recon_of(v, f, c=None) -> Reconstruction:
    v = np.asarray(v, np.float32).reshape(-1, 3)
    f = np.asarray(f, np.int64).reshape(-1, 3)
    c = smooth_color(np.nan_to_num(v)) if c is None else c
    return Reconstruction(vertices=v, faces=f, vertex_colors=c)


def assert_human_error(exc: BackendError, code: str = "degenerate_mesh") -> None:
    assert exc.code == code
    assert exc.message[0].isupper() and exc.message.rstrip().endswith(".")
    assert "Traceback" not in exc.message
    assert exc.details.get("stage") == "simplify"


def test_empty_mesh(tmp_path):
    with pytest.raises(BackendError) as e:
        finish_to_glb(
            recon_of(np.zeros((0, 3)), np.zeros((0, 3))), FinishOptions(), tmp_path / "x.glb"
        )
    assert_human_error(e.value)
    assert "empty" in e.value.message
    assert not (tmp_path / "x.glb").exists()


def test_vertices_without_faces(tmp_path):
    with pytest.raises(BackendError) as e:
        finish_to_glb(
            recon_of(np.random.rand(10, 3), np.zeros((0, 3))), FinishOptions(), tmp_path / "x.glb"
        )
    assert_human_error(e.value)


@pytest.mark.parametrize("bake", [True, False])
def test_single_triangle(tmp_path, bake):
    v = [[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]]
    out = tmp_path / "tri.glb"
    stats = finish_to_glb(recon_of(v, [[0, 1, 2]]), FinishOptions(bake=bake, texture_size=256), out)
    assert stats["faces"] == 1
    assert stats["watertight"] is False
    assert any("exceeds the source" in w for w in stats["warnings"])
    assert_valid(out)
    mesh = read_object_glb(out)
    assert len(mesh["faces"]) == 1
    # Open surface: the material is double-sided so it is visible from behind.
    assert mesh["gltf"]["materials"][0]["doubleSided"] is True
    if bake:
        # The whole texture is filled with the triangle's colours (no black gutter).
        assert mesh["texture"].min() > 30


def test_nan_vertices_are_dropped_with_a_warning(tmp_path):
    v, f = icosphere(4)
    v = v.copy()
    v[[5, 17, 80]] = np.nan
    out = tmp_path / "nan.glb"
    stats = finish_to_glb(recon_of(v, f), FinishOptions(target_faces=1000, texture_size=256), out)
    assert any("non-finite" in w for w in stats["warnings"])
    assert abs(stats["faces"] - 1000) <= 20
    assert_valid(out)
    assert np.isfinite(read_object_glb(out)["positions"]).all()


def test_all_nan_vertices(tmp_path):
    v = np.full((3, 3), np.nan)
    with pytest.raises(BackendError) as e:
        finish_to_glb(recon_of(v, [[0, 1, 2]]), FinishOptions(), tmp_path / "x.glb")
    assert_human_error(e.value)
    assert "NaN" in e.value.message


def test_zero_area_faces_are_dropped(tmp_path):
    v, f = icosphere(3)
    n = len(v)
    extra_v = np.array([[0, 0, 0], [0.1, 0, 0], [0.2, 0, 0]], np.float32)  # collinear
    v2 = np.vstack([v, extra_v])
    f2 = np.vstack(
        [f, [[n, n + 1, n + 2]], [[0, 0, 1]]]
    )  # a sliver of zero area, a repeated corner
    stats = finish_to_glb(
        recon_of(v2, f2), FinishOptions(target_faces=500, texture_size=256), tmp_path / "z.glb"
    )
    assert any("zero-area" in w for w in stats["warnings"])
    assert stats["watertight"]  # the sphere itself stays closed
    assert_valid(tmp_path / "z.glb")


def test_only_zero_area_faces(tmp_path):
    v = [[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]]
    with pytest.raises(BackendError) as e:
        finish_to_glb(recon_of(v, [[0, 1, 2], [1, 2, 3]]), FinishOptions(), tmp_path / "x.glb")
    assert_human_error(e.value)
    assert "zero area" in e.value.message


def test_out_of_range_indices(tmp_path):
    with pytest.raises(BackendError) as e:
        finish_to_glb(
            recon_of(np.random.rand(3, 3), [[0, 1, 7]]), FinishOptions(), tmp_path / "x.glb"
        )
    assert_human_error(e.value)


@pytest.mark.parametrize("bake", [True, False])
def test_non_manifold_geometry(tmp_path, bake):
    """Three triangles on one edge (a 'book'), two tetrahedra touching at one vertex, and
    inconsistent winding: finishing must not crash and must write a valid GLB."""
    v = np.array(
        [[0, 0, 0], [0, 0.2, 0], [0.2, 0.1, 0], [-0.2, 0.1, 0], [0, 0.1, 0.2],  # book
         [0.5, 0, 0], [0.7, 0, 0], [0.6, 0.2, 0], [0.6, 0.1, 0.2],  # tetra A
         [0.4, -0.2, -0.1], [0.4, -0.1, 0.1], [0.2, -0.2, 0.1]],  # tetra B shares vertex 5
        np.float32,
    )  # fmt: skip
    f = np.array(
        [[0, 1, 2], [1, 0, 3], [0, 1, 4],
         [5, 6, 7], [5, 8, 6], [6, 8, 7], [7, 8, 5],
         [5, 9, 10], [5, 10, 11], [9, 11, 10], [5, 11, 9],
         [6, 5, 7]],  # duplicate face with flipped winding
        np.int64,
    )  # fmt: skip
    out = tmp_path / "nm.glb"
    topo = edge_topology(f, len(v))
    assert topo.counts.max() >= 3  # really non-manifold
    stats = finish_to_glb(recon_of(v, f), FinishOptions(bake=bake, texture_size=256), out)
    assert stats["faces"] >= 10
    assert_valid(out)


def test_target_larger_than_source_keeps_all(tmp_path):
    v, f = icosphere(3)  # 1280 faces
    out = tmp_path / "big.glb"
    stats = finish_to_glb(recon_of(v, f), FinishOptions(target_faces=50_000, texture_size=256), out)
    assert stats["faces"] == 1280
    assert any("exceeds the source" in w for w in stats["warnings"])
    assert stats["watertight"]


def test_remove_floaters_and_fill_holes():
    v, f = icosphere(4, radius=0.3)
    c = smooth_color(v)
    # A tiny separate sphere (well below 1% of the area) is a floater.
    v_small, f_small = icosphere(1, radius=0.01)
    v_small = v_small + np.float32(1.0)
    vv = np.vstack([v, v_small]).astype(np.float64)
    ff = np.vstack([f, f_small + len(v)])
    cc = np.vstack([c, smooth_color(v_small)])
    mesh = remove_floaters(MeshData(vv, ff, cc))
    assert len(mesh.faces) == len(f)
    assert any("floating" in w for w in mesh.warnings)
    # Cut a small hole (the faces around one vertex) and fill it.
    ring = np.any(f == 0, axis=1)
    holed = MeshData(v.astype(np.float64), f[~ring], c)
    topo = edge_topology(holed.faces, len(holed.vertices))
    assert (topo.counts == 1).sum() == ring.sum()
    filled = fill_small_holes(holed)
    topo = edge_topology(filled.faces, len(filled.vertices))
    assert np.all(topo.counts == 2) and topo.consistent
    # A huge opening (half the sphere) is not a "small hole".
    half = MeshData(v.astype(np.float64), f[v[f].mean(axis=1)[:, 1] > 0], c)
    assert len(fill_small_holes(half).faces) == len(half.faces)


def test_sanitize_colours():
    v, f = icosphere(1)
    c = np.full(v.shape, np.nan, np.float32)
    m = sanitize(v, f, c)
    assert np.all((m.colors >= 0) & (m.colors <= 1))
    m2 = sanitize(v, f, np.full(v.shape, 3.0, np.float32))
    assert m2.colors.max() == 1.0
