"""What the sam3d engine adds around upstream: kaolin's check_tensor, MoGe's invalid pixels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.engines.sam3d_compat import check_tensor, pointmap_cv_to_p3d
from backend.install.plan import ENGINE_MODULES

REPO = Path(__file__).resolve().parents[2]


def test_check_tensor_matches_kaolins_contract():
    t = np.zeros((5, 3), dtype=np.float32)
    assert check_tensor(t, (None, 3), throw=False)
    assert check_tensor(t, (5, 3), dtype=np.float32)
    assert not check_tensor(t, (None, 4), throw=False)
    assert not check_tensor(t, (5,), throw=False)
    assert not check_tensor(t, (None, 3), dtype=np.float64, throw=False)
    with pytest.raises(ValueError, match=r"\(5, 3\), should be \(None, 8\)"):
        check_tensor(t, (None, 8))


def test_kaolin_check_tensor_is_provided_when_kaolin_is_absent():
    code = (
        "from backend.engines.sam3d_compat import provide_kaolin_check_tensor, check_tensor\n"
        "assert provide_kaolin_check_tensor() is True\n"
        "from kaolin.utils.testing import check_tensor as ct\n"  # upstream's own import line
        "assert ct is check_tensor\n"
        "assert provide_kaolin_check_tensor() is False\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_invalid_moge_pixels_become_nan_and_keep_the_scene_scale():
    """Half the object's pixels are sky (+inf in MoGe's output): upstream's transform turns them
    into NaN and its scale is a nanmedian; an element-wise flip would keep inf and move it."""
    h, w = 8, 10
    z = np.full((h, w), 2.0)
    z[:, w // 2 :] = 4.0
    pts = np.stack([np.ones((h, w)), np.full((h, w), 0.5), z], axis=-1)
    pts[: h // 2] = np.inf  # the top half cannot be placed
    p3d = pointmap_cv_to_p3d(pts)
    assert np.isnan(p3d[: h // 2]).all()
    assert np.array_equal(p3d[h // 2 :], pts[h // 2 :] * [-1.0, -1.0, 1.0])
    mask = np.ones((h, w), dtype=bool)
    scale = np.nanmedian(np.abs(p3d[mask][:, 2]))
    assert scale == pytest.approx(3.0)  # the placed pixels' median depth
    flipped = pts * [-1.0, -1.0, 1.0]
    assert np.nanmedian(np.abs(flipped[mask][:, 2])) == np.inf  # what the old flip gave


def test_engine_modules_cover_upstreams_import_time_packages():
    """Every third-party package upstream's pipeline imports when it is imported (read from its
    import graph), so 'available' never says yes to a venv that then fails at import."""
    for name in (
        "spconv", "pytorch3d", "hydra", "omegaconf", "loguru", "easydict", "optree", "astor",
        "lightning", "timm", "trimesh", "open3d", "xatlas", "pyvista", "pymeshfix", "igraph",
        "gsplat", "utils3d", "moge", "cv2", "matplotlib", "plyfile", "scipy", "safetensors",
    ):  # fmt: skip
        assert name in ENGINE_MODULES
    assert "kaolin" not in ENGINE_MODULES  # provided by sam3d_compat when absent
