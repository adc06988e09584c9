"""The engine-neutral reconstruction: what every engine returns and finishing consumes.

Frames and units (stated once, used everywhere):

* **Object frame** - the frame of ``Reconstruction.vertices`` and ``Gaussians.positions``.
  glTF convention: right-handed, +Y up, +Z toward the camera that took the photo (the
  object's front), units in metres (for the preview engine: metres under its stated
  monocular assumption; for SAM 3D: the model's normalised units times the pose scale).
* **Camera frame** - glTF/OpenGL/Blender camera convention: +X right, +Y up, the camera
  looks down -Z. A point in front of the camera has negative z.
* **Pose** - maps object-frame points into the camera frame:
  ``p_cam = R(rotation) @ (scale * p_obj) + translation``.
* **Intrinsics** - pinhole, pixels, origin at the image's top-left corner, v down. A
  camera-frame point (x, y, z) with z < 0 projects to
  ``u = cx + fx * x / -z``, ``v = cy - fy * y / -z``.

Colours are sRGB-encoded floats in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) float64 from a quaternion (w, x, y, z); normalised first."""
    q = np.asarray(q, dtype=np.float64).reshape(4)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n == 0:
        raise ValueError("quaternion must be finite and non-zero")
    w, x, y, z = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat_wxyz(m: np.ndarray) -> np.ndarray:
    """Quaternion (4,) float64, w >= 0, from a rotation matrix (3, 3)."""
    m = np.asarray(m, dtype=np.float64)
    t = np.trace(m)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


@dataclass
class Pose:
    """Object frame -> camera frame: ``p_cam = R @ (scale * p_obj) + translation``.

    ``rotation`` (4,) quaternion wxyz; ``translation`` (3,) metres in the camera frame;
    ``scale`` (3,) unitless (isotropic engines repeat one value).
    """

    rotation: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: np.ndarray = field(default_factory=lambda: np.ones(3))

    def matrix(self) -> np.ndarray:
        """4x4 float64 homogeneous object->camera transform."""
        m = np.eye(4)
        m[:3, :3] = quat_wxyz_to_matrix(self.rotation) * np.asarray(self.scale, float).reshape(3)
        m[:3, 3] = np.asarray(self.translation, float).reshape(3)
        return m

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Object-frame points (n, 3) -> camera-frame points (n, 3) float64."""
        m = self.matrix()
        return np.asarray(points, float) @ m[:3, :3].T + m[:3, 3]

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "rotation_wxyz": [float(x) for x in np.asarray(self.rotation).reshape(4)],
            "translation": [float(x) for x in np.asarray(self.translation).reshape(3)],
            "scale": [float(x) for x in np.asarray(self.scale).reshape(3)],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pose:
        return cls(
            rotation=np.asarray(d["rotation_wxyz"], float),
            translation=np.asarray(d["translation"], float),
            scale=np.asarray(d["scale"], float),
        )


@dataclass
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height`` (see module doc)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, width: int, height: int, fov_x_deg: float) -> Intrinsics:
        """Square pixels, principal point at the centre, horizontal field of view in degrees."""
        f = 0.5 * width / np.tan(np.radians(fov_x_deg) / 2)
        return cls(float(f), float(f), width / 2.0, height / 2.0, int(width), int(height))

    @property
    def fov_x_deg(self) -> float:
        return float(np.degrees(2 * np.arctan(0.5 * self.width / self.fx)))

    @property
    def fov_y_deg(self) -> float:
        return float(np.degrees(2 * np.arctan(0.5 * self.height / self.fy)))

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points (n, 3), z < 0 in front -> pixel coordinates (n, 2) (u, v)."""
        p = np.asarray(points_cam, float)
        depth = -p[:, 2]
        u = self.cx + self.fx * p[:, 0] / depth
        v = self.cy - self.fy * p[:, 1] / depth
        return np.stack([u, v], axis=1)

    def to_dict(self) -> dict[str, float]:
        return {
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "width": self.width,
            "height": self.height,
            "fov_x_deg": self.fov_x_deg,
            "fov_y_deg": self.fov_y_deg,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intrinsics:
        return cls(
            float(d["fx"]),
            float(d["fy"]),
            float(d["cx"]),
            float(d["cy"]),
            int(d["width"]),
            int(d["height"]),
        )


@dataclass
class Gaussians:
    """3D Gaussians in the object frame.

    positions (n, 3) float32 metres; scales (n, 3) float32 metres (std-dev per axis);
    rotations (n, 4) float32 quaternion wxyz; opacities (n,) float32 in [0, 1];
    colors (n, 3) float32 sRGB in [0, 1] (the SH DC term already converted).
    """

    positions: np.ndarray
    scales: np.ndarray
    rotations: np.ndarray
    opacities: np.ndarray
    colors: np.ndarray

    def __len__(self) -> int:
        return int(self.positions.shape[0])


@dataclass
class Reconstruction:
    """One object as an engine produced it, before finishing.

    vertices (n, 3) float32, object frame (see module doc); faces (m, 3) int32/int64,
    counter-clockwise seen from outside (outward normals); vertex_colors (n, 3) float32
    sRGB in [0, 1]; gaussians optional; pose object->camera; intrinsics of the photo when
    known; ``meta`` is free-form, JSON-serialisable (engine name, assumptions, timings).
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray
    pose: Pose = field(default_factory=Pose)
    intrinsics: Intrinsics | None = None
    gaussians: Gaussians | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError when array shapes or dtypes are inconsistent."""
        v, f, c = self.vertices, self.faces, self.vertex_colors
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"vertices must be (n, 3), got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"faces must be (m, 3), got {f.shape}")
        if c.shape != v.shape:
            raise ValueError(f"vertex_colors must be {v.shape}, got {c.shape}")
        if len(f) and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError("faces index vertices out of range")
