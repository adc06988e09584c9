"""``serve --gpus``: one worker pinned to each GPU, through the real server and workers.

The machine running the suite has no GPU, so ``nvidia-smi`` is a stand-in script
(``SAM3D_NVIDIA_SMI``) listing two GPUs; what is checked is ours: which GPU each worker is
given (its real environment, read from /proc), that two jobs run at once on different GPUs,
that a third waits for a free one, that a worker killed mid-job costs only its job, and
what ``status.json`` / ``result.json`` record. The run on a real two-GPU machine is
``bench/bench_two_gpus.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.errors import BackendError
from backend.gpu.assignment import resolve_gpus
from backend.gpu.probe import GpuProbe, parse_nvidia_smi_csv
from tests.backend.conftest import REPO, disk_scene, png_bytes, start_backend

TWO_GPUS = (
    "0, NVIDIA H200, 143771, 143000, 9.0, 570.86.15\n1, NVIDIA H200, 143771, 143000, 9.0, 570.86.15"
)
FAST = {"texture_size": 256, "target_faces": 2000}


def _smi(tmp_path: Path, csv: str) -> Path:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{csv}\nEOF\n")
    script.chmod(0o755)
    return script


def _probe(csv: str) -> GpuProbe:
    return GpuProbe(gpus=parse_nvidia_smi_csv(csv))


def test_resolve_gpus_names_what_the_machine_has():
    assert resolve_gpus("all", _probe(TWO_GPUS)) == [0, 1]
    assert resolve_gpus("1", _probe(TWO_GPUS)) == [1]
    assert resolve_gpus(" 1,0 ", _probe(TWO_GPUS)) == [1, 0]
    with pytest.raises(BackendError) as e:
        resolve_gpus("0,2", _probe(TWO_GPUS))
    assert e.value.code == "gpu_not_found"
    assert "no GPU 2" in e.value.message and "0 (NVIDIA H200), 1 (NVIDIA H200)" in e.value.message
    for bad in ("zero", "0,0", ","):
        with pytest.raises(BackendError) as e:
            resolve_gpus(bad, _probe(TWO_GPUS))
        assert e.value.code == "bad_gpus"
    with pytest.raises(BackendError) as e:
        resolve_gpus("all", GpuProbe(error="nvidia-smi not on PATH"))
    assert e.value.code == "gpu_not_found" and "nvidia-smi not on PATH" in e.value.message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("all", "no NVIDIA GPU was found"), ("3", "no GPU 3"), ("a,b", "[bad_gpus]")],
)
def test_serve_refuses_gpus_it_does_not_have(tmp_path, spec, expected):
    env = {"SAM3D_NVIDIA_SMI": str(tmp_path / "no-nvidia-smi"), "SAM3D_BACKEND_TOKEN": "t"}
    if spec == "3":
        env["SAM3D_NVIDIA_SMI"] = str(_smi(tmp_path, TWO_GPUS))
    proc = subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--port", "0", "--gpus", spec],
        cwd=REPO,
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert proc.stdout == ""  # no ready line: nothing was started


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _submit(b, seed: int, variant: int) -> str:
    img, mask = disk_scene(seed=variant)
    resp = b.submit(
        png_bytes(img),
        png_bytes(mask.astype(np.uint8) * 255),
        engine="crashtest",
        seed=seed,
        **FAST,
    )
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_one_worker_per_gpu_runs_jobs_side_by_side(tmp_path):
    smi = _smi(tmp_path, TWO_GPUS)
    b = start_backend(
        tmp_path / "data", extra_args=["--gpus", "all"], env={"SAM3D_NVIDIA_SMI": str(smi)}
    )
    try:
        info = b.get("/info").json()
        assert info["workers"] == 2
        deadline = time.monotonic() + 60
        while any(s["pid"] is None for s in b.get("/info").json()["slots"]):
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        slots = b.get("/info").json()["slots"]
        assert [s["gpu"] for s in slots] == [0, 1]
        for s in slots:
            env = _environ(s["pid"])
            assert env["CUDA_VISIBLE_DEVICES"] == str(s["gpu"])
            assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"

        # three 6-second jobs: two run at once, one per GPU; the third waits for a free GPU
        ids = [_submit(b, 3, variant) for variant in (11, 12, 13)]
        sts = [b.wait(i, timeout=120) for i in ids]
        assert [s["state"] for s in sts] == ["done"] * 3
        first, second, third = sts
        assert {first["worker"]["gpu"], second["worker"]["gpu"]} == {0, 1}
        assert first["started"] < second["finished"] and second["started"] < first["finished"]
        assert third["started"] >= min(first["finished"], second["finished"]) - 0.5
        for st in sts:
            result = b.get(f"/jobs/{st['id']}/result.json").json()
            assert result["worker"] == {"pid": st["worker"]["pid"], "gpu": st["worker"]["gpu"]}

        # a worker killed mid-job costs that job only; the other GPU's job finishes
        crash, steady = _submit(b, 1, 21), _submit(b, 3, 22)
        crashed, finished = b.wait(crash, timeout=60), b.wait(steady, timeout=120)
        assert crashed["state"] == "failed" and crashed["error"]["code"] == "worker_crashed"
        assert finished["state"] == "done"
        assert finished["worker"]["gpu"] != crashed["worker"]["gpu"]
        # the replacement worker is pinned to the GPU its predecessor had
        again = b.wait(_submit(b, 0, 23), timeout=60)
        assert again["state"] == "done"
        deadline = time.monotonic() + 60
        while any(s["pid"] is None for s in b.get("/info").json()["slots"]):
            assert time.monotonic() < deadline, "the crashed worker was not replaced"
            time.sleep(0.2)
        for s in b.get("/info").json()["slots"]:
            assert _environ(s["pid"])["CUDA_VISIBLE_DEVICES"] == str(s["gpu"])
    finally:
        b.stop()
