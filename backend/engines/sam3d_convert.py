"""Upstream SAM 3D Objects output -> the engine-neutral ``Reconstruction`` (frames handled here, once).

Works on numpy arrays and on torch tensors alike (tensors are converted with
``.detach().float().cpu().numpy()`` by duck typing; this module never imports torch), so the
frame conversions are tested without torch.

Upstream frames (facts from upstream's code and issues #56, #91, #100, #103, #121)
---------------------------------------------------------------------------------
* **Local frame L** - the frame of the decoded mesh vertices and Gaussian centres, Z up,
  inside the unit cube ``[-0.5, 0.5]^3`` (normalised units).
* **GLB frame** - upstream's ``to_glb`` rotates L to Y up with the row-vector product
  ``v @ [[1,0,0],[0,0,-1],[0,1,0]]``, i.e. ``(x, y, z)_L -> (x, z, -y)``. Its pose does NOT
  apply to the GLB's vertices: it applies to L.
* **Camera frame P** - PyTorch3D's camera: +X left, +Y up, +Z forward (into the scene). The
  pointmap (``out["pointmap"]``, H x W x 3) is in P too.
* **Pose** - ``rotation`` (quaternion wxyz), ``translation`` (3), ``scale`` (3, isotropic),
  composed as a PyTorch3D ``Transform3d().scale(s).rotate(R).translate(t)`` with
  ``R = quaternion_to_matrix(q)``. PyTorch3D multiplies row vectors on the right, so a point
  maps as ``p_P = (s * p_L) @ R + t``, i.e. in column form ``p_P = R^T (s * p_L) + t``: the
  rotation that acts on points is the INVERSE of ``q`` (upstream's notebook rotates Gaussian
  orientations by ``quaternion_invert(q)`` for the same reason).

Our frames (``backend.reconstruction``)
---------------------------------------
* **Object frame O** = upstream's GLB frame (Y up) with the pose's scale baked in, so vertex
  coordinates are in the scene's units: ``p_O = s * M @ p_L`` with ``M = [[1,0,0],[0,0,1],
  [0,-1,0]]`` (column form of upstream's GLB rotation). Upstream's depth (MoGe) is only
  defined up to scale, so "metres" are nominal.
* **Camera frame C** - OpenGL: +X right, +Y up, looking down -Z: ``p_C = D @ p_P`` with
  ``D = diag(-1, 1, -1)`` (a 180-degree turn about Y).
* Hence ``Pose(rotation=R_O, translation=D @ t, scale=1)`` with ``R_O = D @ R^T @ M^T``, and
  ``p_C = R_O @ p_O + t_C`` equals ``D @ (R^T (s p_L) + t)`` exactly.

Gaussians get the same treatment: centres and scales times ``s`` in O, orientation
quaternions pre-multiplied by M's quaternion; colours from the SH DC term
(``0.5 + C0 * dc``, clipped to [0, 1]); opacities after upstream's sigmoid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.reconstruction import (
    Gaussians,
    Intrinsics,
    Pose,
    Reconstruction,
    matrix_to_quat_wxyz,
    quat_wxyz_to_matrix,
)

#: p_O_unscaled = Z_UP_TO_Y_UP @ p_L  (column form of upstream's GLB rotation).
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
#: Upstream's row-vector matrix in ``to_glb``: ``v_glb = v_L @ UPSTREAM_GLB_ROW_MATRIX``.
UPSTREAM_GLB_ROW_MATRIX = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: p_C (OpenGL camera) = P3D_TO_GL @ p_P (PyTorch3D camera).
P3D_TO_GL = np.diag([-1.0, 1.0, -1.0])
#: p_P (PyTorch3D camera) = CV_TO_P3D @ p_cv (OpenCV camera: X right, Y down, Z forward).
CV_TO_P3D = np.diag([-1.0, -1.0, 1.0])
#: Zeroth spherical-harmonics basis constant (SH DC term -> colour).
SH_C0 = 0.28209479177387814


def to_numpy(x: Any, dtype: Any = np.float64) -> np.ndarray:
    """numpy array from a numpy array, a torch tensor (any device/dtype), or a list."""
    if hasattr(x, "detach"):
        x = x.detach()
        if hasattr(x, "float") and str(getattr(x, "dtype", "")).endswith(("bfloat16", "float16")):
            x = x.float()
        x = x.cpu().numpy()
    arr = np.asarray(x)
    return arr.astype(dtype) if dtype is not None else arr


def quat_multiply_wxyz(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of quaternions (..., 4) in wxyz order (rotation b, then a)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


#: Quaternion (wxyz) of Z_UP_TO_Y_UP: -90 degrees about X (takes +Z to +Y).
Q_Z_UP_TO_Y_UP = matrix_to_quat_wxyz(Z_UP_TO_Y_UP)


def upstream_pose_parts(
    rotation: Any, translation: Any, scale: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upstream pose tensors ((1,4)/(4,), (1,3)/(3,), (1,3)/(3,)/scalar) -> flat float64 arrays."""
    q = to_numpy(rotation).reshape(-1)[:4]
    t = to_numpy(translation).reshape(-1)[:3]
    s = to_numpy(scale).reshape(-1)
    s = np.repeat(s[:1], 3) if s.size == 1 else s[:3]
    return q, t, s


def upstream_point_to_p3d_camera(
    points_local: np.ndarray, rotation: Any, translation: Any, scale: Any
) -> np.ndarray:
    """Upstream's own mapping L -> P, written the PyTorch3D way (row vectors): ``(s*p) @ R + t``."""
    q, t, s = upstream_pose_parts(rotation, translation, scale)
    r = quat_wxyz_to_matrix(q)
    return (np.asarray(points_local, dtype=np.float64) * s) @ r + t


def pose_from_upstream(rotation: Any, translation: Any, scale: Any) -> tuple[Pose, np.ndarray]:
    """Upstream pose -> (our ``Pose`` with scale 1, the per-axis scale to bake into O).

    The returned scale vector is expressed along O's axes (for the isotropic scales upstream
    produces it is simply ``s`` three times). See the module doc for the derivation.
    """
    q, t, s = upstream_pose_parts(rotation, translation, scale)
    r = quat_wxyz_to_matrix(q)
    r_obj = P3D_TO_GL @ r.T @ Z_UP_TO_Y_UP.T
    s_obj = np.abs(Z_UP_TO_Y_UP) @ s  # (sx, sz, sy): M is a signed permutation
    pose = Pose(rotation=matrix_to_quat_wxyz(r_obj), translation=P3D_TO_GL @ t, scale=np.ones(3))
    return pose, s_obj


def local_to_object(points_local: np.ndarray, scale_obj: np.ndarray) -> np.ndarray:
    """Points (n, 3) in upstream's Z-up local frame L -> our object frame O (scale baked in)."""
    p = np.asarray(points_local, dtype=np.float64).reshape(-1, 3)
    return (p @ Z_UP_TO_Y_UP.T) * np.asarray(scale_obj, dtype=np.float64).reshape(1, 3)


def _orient_outward(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, bool]:
    """Flip every face when the mesh's signed volume is negative (inward-facing winding)."""
    if len(faces) == 0:
        return faces, False
    v = vertices[faces]
    signed = np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0
    if signed < 0:
        return faces[:, ::-1].copy(), True
    return faces, False


def mesh_from_upstream(
    mesh: Any, scale_obj: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Upstream ``MeshExtractResult`` (or a dict with vertices/faces/vertex_attrs) -> O frame.

    Returns vertices (n, 3) float32, faces (m, 3) int64 (outward), vertex colours (n, 3)
    float32 in [0, 1] (upstream's ``vertex_attrs[:, :3]``; mid-grey when absent), and
    whether the winding was flipped.
    """
    get = mesh.get if isinstance(mesh, dict) else (lambda k, d=None: getattr(mesh, k, d))
    verts_l = to_numpy(get("vertices")).reshape(-1, 3)
    faces = to_numpy(get("faces"), dtype=np.int64).reshape(-1, 3)
    attrs = get("vertex_attrs")
    if attrs is not None:
        colors = np.clip(to_numpy(attrs)[:, :3], 0.0, 1.0)
    else:
        colors = np.full((len(verts_l), 3), 0.5)
    verts = local_to_object(verts_l, scale_obj)
    faces, flipped = _orient_outward(verts, faces)
    return verts.astype(np.float32), faces, colors.astype(np.float32), flipped


def gaussians_from_upstream(gs: Any, scale_obj: np.ndarray) -> Gaussians:
    """Upstream ``Gaussian`` (``get_xyz``, ``get_scaling``, ``get_rotation``, ``get_opacity``,
    ``_features_dc``) or a dict with those keys -> ``Gaussians`` in our object frame O.

    Scales: upstream's activated per-axis standard deviations times the isotropic pose scale
    (the geometric mean when a scale is anisotropic, which upstream never produces).
    """

    def get(key: str) -> Any:
        return gs[key] if isinstance(gs, dict) else getattr(gs, key)

    xyz = to_numpy(get("get_xyz")).reshape(-1, 3)
    scaling = to_numpy(get("get_scaling")).reshape(-1, 3)
    rot = to_numpy(get("get_rotation")).reshape(-1, 4)
    opacity = to_numpy(get("get_opacity")).reshape(-1)
    dc_key = "_features_dc"
    if isinstance(gs, dict):
        dc = gs.get(dc_key, gs.get("features_dc"))
    else:
        dc = getattr(gs, dc_key, None)
        if dc is None:
            dc = gs.get_features
    dc = to_numpy(dc)
    dc = dc.reshape(len(xyz), -1, 3)[:, 0, :] if dc.ndim == 3 else dc.reshape(len(xyz), 3)
    s_iso = float(np.prod(np.abs(scale_obj)) ** (1.0 / 3.0))
    rot = rot / np.linalg.norm(rot, axis=1, keepdims=True).clip(1e-12)
    rot_o = quat_multiply_wxyz(Q_Z_UP_TO_Y_UP[None, :], rot)
    rot_o *= np.where(rot_o[:, :1] < 0, -1.0, 1.0)
    return Gaussians(
        positions=local_to_object(xyz, scale_obj).astype(np.float32),
        scales=(scaling * s_iso).astype(np.float32),
        rotations=rot_o.astype(np.float32),
        opacities=np.clip(opacity, 0.0, 1.0).astype(np.float32),
        colors=np.clip(0.5 + SH_C0 * dc, 0.0, 1.0).astype(np.float32),
    )


def intrinsics_from_pointmap(pointmap_p3d: Any, width: int, height: int) -> Intrinsics | None:
    """Pinhole intrinsics (pixels of the original ``width`` x ``height`` image) fitted to a
    pointmap (h, w, 3) in PyTorch3D camera coordinates; None when it has too few valid points.

    Pixel (i, j) of the (possibly downsampled) pointmap covers the original image's pixel
    centre ``u = (j + 0.5) * width / w``, ``v = (i + 0.5) * height / h``. In OpenCV terms
    ``x = -X_P, y = -Y_P, z = Z_P`` and ``u = fx x / z + cx``, ``v = fy y / z + cy``.
    """
    pm = to_numpy(pointmap_p3d)
    if pm.ndim != 3:
        return None
    if pm.shape[0] == 3 and pm.shape[-1] != 3:
        pm = np.moveaxis(pm, 0, -1)
    h, w, _ = pm.shape
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    u = (jj + 0.5) * (width / w)
    v = (ii + 0.5) * (height / h)
    x, y, z = -pm[..., 0], -pm[..., 1], pm[..., 2]
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z) & (z > 1e-6)
    if ok.sum() < 16:
        return None
    a, b = x[ok] / z[ok], y[ok] / z[ok]
    uu, vv = u[ok], v[ok]

    def fit(p: np.ndarray, target: np.ndarray) -> tuple[float, float]:
        design = np.stack([p, np.ones_like(p)], axis=1)
        sol, *_ = np.linalg.lstsq(design, target, rcond=None)
        resid = np.abs(design @ sol - target)
        keep = resid <= max(np.percentile(resid, 90), 1e-9)
        if keep.sum() >= 8:
            sol, *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
        return float(sol[0]), float(sol[1])

    fx, cx = fit(a, uu)
    fy, cy = fit(b, vv)
    if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
        return None
    return Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=int(width), height=int(height))


def convert_output(
    out: dict[str, Any],
    width: int,
    height: int,
    intrinsics: Intrinsics | None = None,
) -> Reconstruction:
    """One upstream ``run()`` output dict -> ``Reconstruction`` (see the module doc for frames).

    Needs ``rotation``, ``translation``, ``scale`` and ``mesh`` (a list whose first item is
    the mesh, as upstream returns it, or the mesh itself); uses ``gaussian``/``gs`` and
    ``pointmap`` when present. ``intrinsics`` (of the ``width`` x ``height`` photo) wins over
    the ones fitted to the pointmap.
    """
    for key in ("rotation", "translation", "scale", "mesh"):
        if key not in out or out[key] is None:
            raise ValueError(f"upstream output lacks {key!r}")
    q, t, s = upstream_pose_parts(out["rotation"], out["translation"], out["scale"])
    pose, s_obj = pose_from_upstream(q, t, s)
    mesh = out["mesh"][0] if isinstance(out["mesh"], (list, tuple)) else out["mesh"]
    verts, faces, colors, flipped = mesh_from_upstream(mesh, s_obj)
    gs_src = out.get("gs")
    if gs_src is None and out.get("gaussian") is not None:
        gs_src = (
            out["gaussian"][0] if isinstance(out["gaussian"], (list, tuple)) else out["gaussian"]
        )
    gaussians = gaussians_from_upstream(gs_src, s_obj) if gs_src is not None else None
    if intrinsics is None and out.get("pointmap") is not None:
        intrinsics = intrinsics_from_pointmap(out["pointmap"], width, height)
    meta: dict[str, Any] = {
        "engine": "sam3d",
        "frames": "object frame = upstream GLB frame (Y up) x pose scale; pose in the OpenGL camera frame",
        "upstream_pose": {
            "rotation_wxyz": [float(v) for v in q],
            "translation": [float(v) for v in t],
            "scale": [float(v) for v in s],
            "convention": "PyTorch3D camera (X left, Y up, Z forward); p = (s * p_local_zup) @ R(q) + t",
        },
        "faces_flipped": bool(flipped),
    }
    if out.get("iou") is not None:
        try:
            meta["layout_iou"] = float(to_numpy(out["iou"]).reshape(-1)[0])
        except (TypeError, ValueError, IndexError):
            pass
    rec = Reconstruction(
        vertices=verts,
        faces=faces,
        vertex_colors=colors,
        pose=pose,
        intrinsics=intrinsics,
        gaussians=gaussians,
        meta=meta,
    )
    rec.validate()
    return rec


def pose_to_upstream(
    pose: Pose, scale_obj: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of ``pose_from_upstream``: our pose + baked scale -> upstream (q wxyz, t, s)."""
    r_obj = quat_wxyz_to_matrix(pose.rotation)
    r = (P3D_TO_GL.T @ r_obj @ Z_UP_TO_Y_UP).T
    t = P3D_TO_GL.T @ np.asarray(pose.translation, float).reshape(3)
    s = np.abs(Z_UP_TO_Y_UP).T @ (
        np.asarray(scale_obj, float).reshape(3) * np.asarray(pose.scale, float).reshape(3)
    )
    return matrix_to_quat_wxyz(r), t, s
