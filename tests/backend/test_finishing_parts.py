"""A scene's parts finished two at a time: the same GLBs as one at a time, each failure in
its own slot, progress that only goes forward, cancellation that stops the rest."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from backend.errors import BackendError
from backend.finishing import finish_to_glb
from backend.finishing.parts import finish_parts
from backend.job_context import Cancelled, JobContext
from backend.options import FinishOptions
from backend.reconstruction import Reconstruction
from tests.synthetic_meshes import icosphere, smooth_color, torus

OPTIONS = FinishOptions(target_faces=2000, texture_size=256)


def glb_binary(path: Path) -> bytes:
    """The BIN chunk of a GLB: vertices, indices, UVs and the texture PNG (the JSON chunk
    also holds timings, which differ from run to run)."""
    data = path.read_bytes()
    json_len = struct.unpack_from("<I", data, 12)[0]
    bin_len = struct.unpack_from("<I", data, 20 + json_len)[0]
    return data[28 + json_len : 28 + json_len + bin_len]


def parts() -> list[Reconstruction | Exception]:
    import numpy as np

    v1, f1 = torus(120, 60)
    v2, f2 = icosphere(4)
    nan = np.full((3, 3), np.nan, np.float32)
    return [
        Reconstruction(v1, f1, smooth_color(v1)),
        Reconstruction(v2, f2, smooth_color(v2)),
        Reconstruction(nan, np.array([[0, 1, 2]]), np.zeros((3, 3), np.float32)),  # degenerate
        BackendError("empty_mask", "The mask 3 holds only specks."),  # the engine's failure
        Reconstruction(v2 * 1.5, f2, smooth_color(v2)),
    ]


def test_parts_side_by_side_equal_one_at_a_time(tmp_path):
    recons = parts()
    paths = [tmp_path / f"p{i}.glb" for i in range(len(recons))]
    updates: list[float] = []
    order: list[int] = []
    ctx = JobContext(on_update=lambda stage, f: updates.append(f), stages={"finish": 1.0})
    ctx.stage("finish")
    out = finish_parts(recons, OPTIONS, paths, ctx, on_part=lambda i, r: order.append(i))
    assert order == [0, 1, 2, 3, 4]
    assert isinstance(out[2], BackendError) and out[2].code == "degenerate_mesh"
    assert out[3] is recons[3]
    for i in (0, 1, 4):
        json.dumps(out[i])
        alone = finish_to_glb(recons[i], OPTIONS, tmp_path / f"alone{i}.glb")
        assert out[i]["faces"] == alone["faces"] and out[i]["textured"]
        assert glb_binary(paths[i]) == glb_binary(tmp_path / f"alone{i}.glb")
    assert updates == sorted(updates) and updates[-1] == pytest.approx(1.0)


def test_cancel_stops_the_parts_not_started(tmp_path):
    recons = [r for r in parts() if isinstance(r, Reconstruction)][:2] * 3
    paths = [tmp_path / f"p{i}.glb" for i in range(len(recons))]
    finished: list[int] = []

    def on_part(i, result):
        finished.append(i)

    ctx = JobContext(is_cancelled=lambda: len(finished) >= 1, stages={"finish": 1.0})
    with pytest.raises(Cancelled):
        finish_parts(recons, OPTIONS, paths, ctx, on_part=on_part)
    assert not paths[-1].exists()
