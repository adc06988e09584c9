"""The sam3d engine where it cannot run: every reason named, the right error codes, no torch.

GPUs are described by a stand-in ``nvidia-smi`` script (an external program, selected with
``SAM3D_NVIDIA_SMI``) printing what the real one prints for the query the probe makes.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_sam3d_config import make_checkpoints

from backend.engines.sam3d import Sam3DEngine, choose_attention_backend
from backend.errors import BackendError
from backend.gpu import probe as gpu_probe
from backend.job_context import JobContext
from backend.options import JobOptions

REPO = Path(__file__).resolve().parents[2]


def fake_smi(
    tmp_path: Path, csv_with_cc: str | None, *, fail: str | None = None, old_driver: bool = False
) -> Path:
    """An nvidia-smi stand-in: prints ``csv_with_cc`` for the query with compute_cap."""
    script = tmp_path / "nvidia-smi"
    lines = ["#!/bin/sh"]
    if fail:
        lines += ["cat <<'EOF'", fail, "EOF", "exit 9"]
    elif old_driver:
        no_cc = ",".join(p for i, p in enumerate(csv_with_cc.split(",")) if i != 4)
        lines += [
            'case "$1" in *compute_cap*) echo \'Field "compute_cap" is not a valid field to query.\'; exit 2;; esac',
            f"echo '{no_cc}'",
        ]
    else:
        lines += [f"echo '{csv_with_cc}'"]
    script.write_text("\n".join(lines) + "\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("SAM3D_NVIDIA_SMI", str(tmp_path / "no-such-nvidia-smi"))
    monkeypatch.setenv("SAM3D_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setattr(gpu_probe, "CACHE_S", 0.0)


def test_this_machine_lists_every_reason(tmp_path):
    av = Sam3DEngine().availability()
    assert not av.available
    ckpt = (tmp_path / "ckpt").resolve()
    reason = av.reason
    assert f"package sam3d_objects is not installed in {sys.executable}" in reason
    assert "(run: python -m backend install --profile cuda)" in reason
    assert "no NVIDIA GPU found (nvidia-smi not on PATH" in reason
    assert (
        f"weights missing at {ckpt / 'pipeline.yaml'} (run: python -m backend weights download --dest {ckpt})"
        in reason
    )
    assert (
        av.details["missing_packages"][0] == "torch"
        or "sam3d_objects" in av.details["missing_packages"]
    )


def test_old_small_gpu_is_explained(tmp_path, monkeypatch):
    smi = fake_smi(tmp_path, "0, NVIDIA GeForce GTX 1060 6GB, 6144, 5900, 6.1, 535.104.05")
    monkeypatch.setenv("SAM3D_NVIDIA_SMI", str(smi))
    reason = Sam3DEngine().availability().reason
    assert "compute capability 6.1; SAM 3D needs 7.0 or newer" in reason
    assert "6144 MiB of memory; SAM 3D needs at least 9600 MiB" in reason
    assert "nvidia-smi not on PATH" not in reason


def test_broken_driver_is_explained(tmp_path, monkeypatch):
    smi = fake_smi(
        tmp_path,
        None,
        fail="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    )
    monkeypatch.setenv("SAM3D_NVIDIA_SMI", str(smi))
    reason = Sam3DEngine().availability().reason
    assert (
        "nvidia-smi failed (NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.)"
        in reason
    )


def test_good_gpu_and_weights_leave_only_the_packages(tmp_path, monkeypatch):
    smi = fake_smi(
        tmp_path, "0, NVIDIA GeForce RTX 4090, 24564, 23000, 8.9, 550.54.14", old_driver=True
    )
    monkeypatch.setenv("SAM3D_NVIDIA_SMI", str(smi))
    make_checkpoints(tmp_path / "ckpt")
    av = Sam3DEngine().availability()
    assert av.details["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090"
    assert av.details["gpus"][0]["compute_capability"] is None  # old driver: unknown, not refused
    assert av.details["missing_files"] == []
    assert "weights" not in av.reason and "GPU" not in av.reason
    assert "sam3d_objects is not installed" in av.reason


def test_incomplete_weights_name_the_files(tmp_path):
    make_checkpoints(tmp_path / "ckpt", skip=("slat_generator.ckpt",), with_assets=False)
    reason = Sam3DEngine().availability().reason
    assert (
        "weights incomplete in" in reason
        and "slat_generator.ckpt" in reason
        and "model.pt" in reason
        and "hubconf.py" in reason
    )


def _job():
    image = np.zeros((32, 48, 3), np.uint8)
    mask = np.zeros((32, 48), bool)
    mask[8:20, 10:30] = True
    return image, mask


def test_reconstruct_without_weights_is_weights_missing(tmp_path):
    image, mask = _job()
    with pytest.raises(BackendError) as info:
        Sam3DEngine(checkpoints=tmp_path / "empty").reconstruct(
            image, mask, 0, JobOptions(), JobContext()
        )
    assert info.value.code == "weights_missing"
    assert str((tmp_path / "empty" / "pipeline.yaml").resolve()) in info.value.message
    assert "weights download --dest" in info.value.message


def test_reconstruct_without_packages_is_engine_unavailable(tmp_path):
    image, mask = _job()
    eng = Sam3DEngine(checkpoints=make_checkpoints(tmp_path / "ckpt"))
    with pytest.raises(BackendError) as info:
        eng.reconstruct_many(image, [mask], 0, JobOptions(), JobContext())
    assert info.value.code == "engine_unavailable"
    assert "sam3d_objects" in info.value.details["missing_packages"]


def test_inputs_are_checked_before_any_loading(tmp_path):
    image, mask = _job()
    eng = Sam3DEngine(checkpoints=tmp_path / "empty")
    with pytest.raises(BackendError) as info:
        eng.reconstruct(image, mask[:, :-1], 0, JobOptions(), JobContext())
    assert info.value.code == "mask_size_mismatch"
    with pytest.raises(BackendError) as info:
        eng.reconstruct(image, np.zeros_like(mask), 0, JobOptions(), JobContext())
    assert info.value.code == "empty_mask"


def test_attention_backend_choice():
    assert choose_attention_backend((9, 0), True, True) == "flash_attn"
    assert choose_attention_backend((7, 5), True, True) == "xformers"
    assert choose_attention_backend((8, 6), False, True) == "xformers"
    assert choose_attention_backend((8, 6), False, False) == "sdpa"
    assert choose_attention_backend(None, True, False) == "sdpa"


def test_availability_imports_nothing_heavy(tmp_path):
    code = (
        "import sys, json\n"
        "from backend.engines.sam3d import Sam3DEngine\n"
        "Sam3DEngine().availability()\n"
        "print(json.dumps(sorted(m for m in ('torch', 'sam3d_objects', 'hydra', 'omegaconf', 'huggingface_hub')"
        " if m in sys.modules)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_doctor_explains_why(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "backend", "doctor"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert "sam3d" in text
    assert "sam3d_objects is not installed" in text
    assert "nvidia-smi not on PATH" in text
    assert f"weights missing at {(tmp_path / 'ckpt').resolve() / 'pipeline.yaml'}" in text


def test_decode_working_memory_covers_what_the_gpu_run_measured():
    """bench/bench_sam3d_gpu.py on an H200 (docs/SAM3D_ENGINE.md): decode's working memory
    beyond the resident weights was 5235 MiB at 16k voxels, 5632 at 22k, 8596 at the 42k cap.
    The estimate covers each, by less than 1 GiB, and is sized from the decoder's input."""
    from types import SimpleNamespace

    from backend.engines.sam3d import (
        MAX_VOXELS,
        STAGE_HEADROOM_MB,
        _decode_headroom,
        decode_headroom_mb,
    )

    for voxels, measured in ((16000, 5235), (22000, 5632), (42000, 8596)):
        assert measured < decode_headroom_mb(voxels) < measured + 1024
    assert STAGE_HEADROOM_MB["decode"] == decode_headroom_mb(MAX_VOXELS)
    sparse = SimpleNamespace(coords=np.zeros((16000, 4), np.int32))
    assert _decode_headroom((sparse,)) == decode_headroom_mb(16000)
    assert _decode_headroom((np.zeros((2, 3)),)) is None
    assert _decode_headroom(()) is None
