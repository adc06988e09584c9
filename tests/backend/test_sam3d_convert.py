"""Frames of the SAM 3D adapter, on upstream-shaped arrays built here (no torch, no weights).

The upstream side of every check is written out independently in the test, the way upstream
computes it (PyTorch3D row vectors, OpenCV projection, ``to_glb``'s row matrix), so a sign or
transpose slip in ``backend.engines.sam3d_convert`` shows up as a pixel mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.engines.sam3d_convert import (
    SH_C0,
    convert_output,
    gaussians_from_upstream,
    intrinsics_from_pointmap,
    local_to_object,
    pose_from_upstream,
    pose_to_upstream,
)
from backend.reconstruction import Intrinsics, quat_wxyz_to_matrix

rng = np.random.default_rng(1234)


def random_quat() -> np.ndarray:
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def p3d_pose_apply(points_local: np.ndarray, q: np.ndarray, t: np.ndarray, s: float) -> np.ndarray:
    """Upstream: Transform3d().scale(s).rotate(quaternion_to_matrix(q)).translate(t), row vectors."""
    r = quat_wxyz_to_matrix(q)
    return (points_local * s) @ r + t


def opencv_project(p_p3d: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """PyTorch3D camera -> OpenCV camera (X right, Y down, Z forward) -> pixels."""
    x, y, z = -p_p3d[:, 0], -p_p3d[:, 1], p_p3d[:, 2]
    return np.stack([fx * x / z + cx, fy * y / z + cy], axis=1)


def upstream_output(verts_l: np.ndarray, faces: np.ndarray, q, t, s) -> dict:
    """The keys of upstream's run() output this adapter reads, shaped like upstream's tensors."""
    colors = rng.uniform(size=(len(verts_l), 6)).astype(np.float32)  # vertex_attrs: rgb + extra
    return {
        "rotation": np.asarray(q, np.float32).reshape(1, 4),
        "translation": np.asarray(t, np.float32).reshape(1, 3),
        "scale": np.full((1, 3), s, np.float32),
        "mesh": [{"vertices": verts_l.astype(np.float32), "faces": faces, "vertex_attrs": colors}],
    }


def tetra(outward: bool = True) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[0, 0, 0], [0.4, 0, 0], [0, 0.4, 0], [0, 0, 0.4]], float) - 0.1
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64)
    return v, (f if outward else f[:, ::-1].copy())


def test_object_frame_is_upstream_glb_frame_times_scale():
    pts = rng.uniform(-0.5, 0.5, size=(50, 3))
    glb_rows = pts @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)  # upstream to_glb
    np.testing.assert_allclose(local_to_object(pts, np.ones(3)), glb_rows, atol=1e-12)
    np.testing.assert_allclose(local_to_object(pts, np.full(3, 2.5)), 2.5 * glb_rows, atol=1e-12)
    # Z up in upstream's local frame is +Y up in ours.
    np.testing.assert_allclose(local_to_object(np.array([[0, 0, 1.0]]), np.ones(3)), [[0, 1, 0]])


@pytest.mark.parametrize("trial", range(5))
def test_known_points_land_where_the_camera_sees_them(trial):
    q = random_quat()
    s = float(rng.uniform(0.3, 2.0))
    t = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(2.5, 5.0)])
    verts, faces = tetra()
    verts = np.vstack([verts, rng.uniform(-0.5, 0.5, size=(30, 3))])
    fx, fy, cx, cy, w, h = 900.0, 880.0, 512.0, 380.0, 1024, 768

    expected_uv = opencv_project(p3d_pose_apply(verts, q, t, s), fx, fy, cx, cy)

    rec = convert_output(
        upstream_output(verts, faces, q, t, s), w, h, Intrinsics(fx, fy, cx, cy, w, h)
    )
    cam = rec.pose.apply(rec.vertices.astype(np.float64))
    assert (cam[:, 2] < 0).all(), "points in front of the camera must have negative z (OpenGL)"
    np.testing.assert_allclose(rec.intrinsics.project(cam), expected_uv, atol=2e-3)
    np.testing.assert_allclose(rec.pose.scale, 1.0)
    assert rec.meta["upstream_pose"]["scale"] == pytest.approx([s] * 3, rel=1e-6)


def test_axes_left_right_up_down():
    """Identity rotation: upstream P has X left; a point at +X_P must appear LEFT of centre."""
    q, t, s = np.array([1.0, 0, 0, 0]), np.array([0.0, 0.0, 3.0]), 1.0
    intr = Intrinsics.from_fov(640, 480, 60.0)
    pose, s_obj = pose_from_upstream(q, t, s)
    centre = pose.apply(local_to_object(np.zeros((1, 3)), s_obj))
    np.testing.assert_allclose(centre, [[0, 0, -3]], atol=1e-12)
    np.testing.assert_allclose(intr.project(centre), [[320, 240]], atol=1e-9)
    x_left = pose.apply(local_to_object(np.array([[0.5, 0, 0]]), s_obj))
    y_up = pose.apply(local_to_object(np.array([[0, 0.5, 0]]), s_obj))  # P's +Y is up
    assert intr.project(x_left)[0, 0] < 320
    assert intr.project(y_up)[0, 1] < 240  # v grows downwards


def test_pose_round_trip():
    for _ in range(20):
        q, t, s = random_quat(), rng.normal(size=3), float(rng.uniform(0.1, 3))
        pose, s_obj = pose_from_upstream(q, t, s)
        q2, t2, s2 = pose_to_upstream(pose, s_obj)
        assert min(np.abs(q2 - q).max(), np.abs(q2 + q).max()) < 1e-9
        np.testing.assert_allclose(t2, t, atol=1e-12)
        np.testing.assert_allclose(s2, s, atol=1e-12)


def test_winding_is_outward_and_kept_by_the_frame_change():
    v, f_out = tetra(outward=True)
    out = upstream_output(v, f_out, [1, 0, 0, 0], [0, 0, 3], 1.0)
    rec = convert_output(out, 64, 64)
    np.testing.assert_array_equal(rec.faces, f_out)  # a proper rotation keeps winding
    assert rec.meta["faces_flipped"] is False
    _, f_in = tetra(outward=False)
    rec2 = convert_output(upstream_output(v, f_in, [1, 0, 0, 0], [0, 0, 3], 1.0), 64, 64)
    assert rec2.meta["faces_flipped"] is True
    tri = rec2.vertices[rec2.faces].astype(np.float64)
    vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert vol > 0


def _cov(rot_wxyz: np.ndarray, scales: np.ndarray) -> np.ndarray:
    r = np.stack([quat_wxyz_to_matrix(q) for q in rot_wxyz])
    return r @ (np.eye(3)[None] * scales[:, None, :] ** 2) @ np.transpose(r, (0, 2, 1))


def test_gaussians_follow_the_mesh_and_keep_their_shape():
    n = 40
    xyz = rng.uniform(-0.5, 0.5, size=(n, 3))
    rot = np.stack([random_quat() for _ in range(n)])
    scaling = rng.uniform(0.001, 0.02, size=(n, 3))
    dc = rng.normal(scale=0.5, size=(n, 1, 3))
    opacity = rng.uniform(size=(n, 1))
    gs = {
        "get_xyz": xyz,
        "get_scaling": scaling,
        "get_rotation": rot,
        "get_opacity": opacity,
        "_features_dc": dc,
    }
    q, t, s = random_quat(), np.array([0.1, -0.2, 3.0]), 1.7
    out = upstream_output(xyz, np.zeros((0, 3), np.int64), q, t, s)
    out["gaussian"] = [gs]
    rec = convert_output(out, 640, 480, Intrinsics.from_fov(640, 480, 50))
    g = rec.gaussians
    assert g is not None and len(g) == n
    # centres transform exactly like mesh vertices
    np.testing.assert_allclose(g.positions, rec.vertices, atol=1e-6)
    # covariance: Sigma_O = s^2 M Sigma_L M^T
    m = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)
    want = s**2 * (m @ _cov(rot, scaling) @ m.T)
    np.testing.assert_allclose(
        _cov(g.rotations.astype(float), g.scales.astype(float)), want, rtol=1e-4, atol=1e-10
    )
    np.testing.assert_allclose(g.colors, np.clip(0.5 + SH_C0 * dc[:, 0], 0, 1), atol=1e-6)
    np.testing.assert_allclose(g.opacities, opacity[:, 0], atol=1e-6)
    assert (g.rotations[:, 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(g.rotations, axis=1), 1.0, atol=1e-5)


def test_gaussians_from_object_with_upstream_attribute_names():
    class UpstreamGaussianShaped:  # the attribute names upstream's Gaussian exposes
        def __init__(self, n: int):
            self.get_xyz = rng.uniform(-0.5, 0.5, size=(n, 3)).astype(np.float32)
            self.get_scaling = np.full((n, 3), 0.01, np.float32)
            self.get_rotation = np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1))
            self.get_opacity = np.full((n, 1), 0.9, np.float32)
            self._features_dc = np.zeros((n, 1, 3), np.float32)

    g = gaussians_from_upstream(UpstreamGaussianShaped(7), np.full(3, 2.0))
    np.testing.assert_allclose(g.scales, 0.02, rtol=1e-6)
    np.testing.assert_allclose(g.colors, 0.5)
    # identity orientation in L becomes M's rotation in O: -90 degrees about X (Z up -> Y up)
    np.testing.assert_allclose(
        g.rotations[0], [np.cos(np.pi / 4), -np.sin(np.pi / 4), 0, 0], atol=1e-6
    )


def test_intrinsics_fitted_from_an_upstream_pointmap():
    w, h, fx, fy, cx, cy = 1200, 800, 1000.0, 990.0, 610.0, 395.0
    ph, pw = 200, 300  # upstream downsamples the pointmap it returns
    jj, ii = np.meshgrid(np.arange(pw), np.arange(ph))
    u, v = (jj + 0.5) * w / pw, (ii + 0.5) * h / ph
    z = rng.uniform(1.0, 6.0, size=(ph, pw))
    x_cv, y_cv = (u - cx) / fx * z, (v - cy) / fy * z
    pm = np.stack([-x_cv, -y_cv, z], axis=-1)  # OpenCV -> PyTorch3D camera
    pm[:10, :10] = np.nan  # invalid depth, as MoGe marks it
    got = intrinsics_from_pointmap(pm, w, h)
    assert got is not None
    assert got.fx == pytest.approx(fx, rel=1e-6) and got.fy == pytest.approx(fy, rel=1e-6)
    assert got.cx == pytest.approx(cx, abs=1e-4) and got.cy == pytest.approx(cy, abs=1e-4)
    # channels-first layout (3, h, w) is accepted too
    got2 = intrinsics_from_pointmap(np.moveaxis(pm, -1, 0), w, h)
    assert got2 is not None and got2.fx == pytest.approx(fx, rel=1e-6)
    # and a pointmap in the output feeds the reconstruction's intrinsics
    verts, faces = tetra()
    out = upstream_output(verts, faces, [1, 0, 0, 0], [0, 0, 3], 1.0)
    out["pointmap"] = pm
    assert convert_output(out, w, h).intrinsics.fx == pytest.approx(fx, rel=1e-6)


def test_missing_keys_are_reported():
    verts, faces = tetra()
    out = upstream_output(verts, faces, [1, 0, 0, 0], [0, 0, 3], 1.0)
    del out["rotation"]
    with pytest.raises(ValueError, match="rotation"):
        convert_output(out, 10, 10)


def test_bf16_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    verts, faces = tetra()
    out = upstream_output(verts, faces, [1, 0, 0, 0], [0, 0, 3], 1.0)
    out = {
        "rotation": torch.tensor(out["rotation"]),
        "translation": torch.tensor(out["translation"], dtype=torch.bfloat16),
        "scale": torch.tensor(out["scale"]),
        "mesh": [
            {
                "vertices": torch.tensor(verts, dtype=torch.float32),
                "faces": torch.tensor(faces),
                "vertex_attrs": torch.rand(len(verts), 6),
            }
        ],
    }
    rec = convert_output(out, 32, 32)
    assert rec.vertices.dtype == np.float32 and rec.faces.dtype == np.int64
    np.testing.assert_allclose(rec.pose.translation, [0, 0, -3])
