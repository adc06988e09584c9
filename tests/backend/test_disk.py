"""A full or read-only data folder, on the real server with real workers.

The data folder lives on a real 12 MB tmpfs (mounting needs root: elsewhere these tests
skip and say why). Filling it, or making it immutable (``chattr +i``), while a job runs must
end every job in a true, specific state, never hand one job's events to another, keep every
job cancellable, refuse new work with a code and leave no half-written job folders; once the
space returns, statuses are written back and the next jobs are correct.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.backend.conftest import REPO, disk_scene, png_bytes, start_backend

FAST = {"target_faces": 800, "texture_size": 256, "engine": "preview"}


@pytest.fixture
def small_disk(tmp_path: Path):
    """A fresh 12 MB tmpfs mounted under ``tmp_path`` (unmounted afterwards)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine; the disk tests mount a tmpfs")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(
            "cannot mount a 12 MB tmpfs on this machine "
            f"({(r.stderr or 'mount failed').strip()}); the disk tests need root"
        )
    yield mnt
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-R", "-i", str(mnt)], capture_output=True)
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (2**20, 2**16, 2**12, 2**9, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler


def _immutable(path: Path, on: bool) -> None:
    """``chattr -R +i`` (permission bits do not stop root, which these tests need)."""
    if shutil.which("chattr") is None:
        pytest.skip("no chattr command on this machine (e2fsprogs)")
    r = subprocess.run(
        ["chattr", "-R", "+i" if on else "-i", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"chattr is not supported here ({r.stderr.strip()})")


def _post(b, seed: int, **opts):
    img, mask = disk_scene(seed=seed)
    return b.submit(png_bytes(img), png_bytes(mask.astype(np.uint8) * 255), seed=seed, **opts)


def _job(b, seed: int, **opts) -> str:
    r = _post(b, seed, **{**FAST, **opts})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _slow(b, variant: int = 0) -> str:
    """A crashtest job that spends 6 s in reconstruct, checking for cancel as it goes."""
    return _job(b, 3, engine="crashtest", texture_size=256 * 2**variant)


def _on_disk(data: Path, job_id: str) -> dict:
    return json.loads((data / job_id / "status.json").read_text())


def _wait_on_disk(data: Path, ids_states: dict[str, str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_on_disk(data, i)["state"] == s for i, s in ids_states.items()):
            return
        time.sleep(0.1)
    raise AssertionError({i: _on_disk(data, i)["state"] for i in ids_states})


def _job_dirs(data: Path) -> set[str]:
    return {p.name for p in data.iterdir() if not p.name.startswith("_")}


def _assert_done_and_own(b, job_id: str) -> None:
    """Done, with a result that is this job's own (never another job's)."""
    st = b.wait(job_id, timeout=120)
    assert st["state"] == "done", st
    res = b.get(f"/jobs/{job_id}/result.json").json()
    assert res["id"] == job_id
    assert b.get(f"/jobs/{job_id}/result").content[:4] == b"glTF"


def test_a_disk_that_fills_mid_job_ends_every_job_truly(small_disk: Path):
    data = small_disk / "jobs"
    b = start_backend(data, workers=1, extra_args=["--min-free-mb", "0.5"])
    try:
        a = _slow(b)
        b.wait(a, states=("running",), timeout=60)
        queued = [_job(b, 10), _job(b, 11)]
        slow2 = _slow(b, 1)
        filler = _fill(small_disk)

        # new work is refused with a code, the folder and the space left; nothing is left
        before = _job_dirs(data)
        r = _post(b, 12, **FAST)
        assert r.status_code == 507, r.text
        err = r.json()
        assert err["code"] == "disk_full" and str(data) in err["message"]
        assert "MB free" in err["message"] and err["details"]["free_bytes"] is not None
        assert _job_dirs(data) == before

        # every job ends in a true state, each its own; all stay cancellable
        st = b.wait(a, timeout=60)
        assert st["state"] == "failed" and st["error"]["code"] == "disk_full", st
        assert str(data) in st["error"]["message"]
        for q in queued:
            st = b.wait(q, timeout=60)
            assert st["state"] == "failed" and st["error"]["code"] == "disk_full", st
            assert b.get(f"/jobs/{q}/result").status_code == 409
        b.wait(slow2, states=("running",), timeout=60)
        t0 = time.monotonic()
        assert b.delete(f"/jobs/{slow2}").status_code == 200
        st = b.wait(slow2, timeout=20)
        assert st["state"] == "cancelled", st
        assert time.monotonic() - t0 < 10
        assert b.get("/health").status_code == 200

        # space returns: the statuses reach the disk, and the next jobs are right
        filler.unlink()
        _wait_on_disk(data, {a: "failed", queued[0]: "failed", slow2: "cancelled"})
        assert _on_disk(data, a)["error"]["code"] == "disk_full"
        for seed, job in zip((10, 11), queued, strict=True):
            assert _job(b, seed) == job  # the same request runs again
            _assert_done_and_own(b, job)
        _assert_done_and_own(b, _job(b, 13))
    finally:
        b.stop()


def test_a_data_dir_made_unwritable_mid_job_ends_every_job_truly(small_disk: Path):
    data = small_disk / "jobs"
    b = start_backend(data, workers=1, extra_args=["--min-free-mb", "0.5"])
    try:
        a = _slow(b)
        b.wait(a, states=("running",), timeout=60)
        queued, waiting = _job(b, 20), _job(b, 21)
        _immutable(data, True)

        before = _job_dirs(data)
        r = _post(b, 22, **FAST)
        assert r.status_code == 507, r.text
        assert r.json()["code"] == "data_dir_not_writable" and str(data) in r.json()["message"]
        assert _job_dirs(data) == before

        # a queued job is cancelled at once although its status cannot be written
        st = b.delete(f"/jobs/{waiting}").json()
        assert st["state"] == "cancelled"
        assert b.get(f"/jobs/{waiting}").json()["state"] == "cancelled"
        st = b.wait(a, timeout=60)
        assert st["state"] == "failed" and st["error"]["code"] == "data_dir_not_writable", st
        st = b.wait(queued, timeout=60)
        assert st["state"] == "failed" and st["error"]["code"] == "data_dir_not_writable", st
        assert _on_disk(data, a)["state"] == "running"  # the disk still holds the old truth

        _immutable(data, False)
        _wait_on_disk(data, {a: "failed", queued: "failed", waiting: "cancelled"})
        assert _job(b, 20) == queued
        _assert_done_and_own(b, queued)
        _assert_done_and_own(b, _job(b, 23))
    finally:
        _immutable(data, False)
        b.stop()


def test_new_jobs_need_the_configured_free_space(small_disk: Path):
    b = start_backend(small_disk / "jobs", extra_args=["--min-free-mb", "100"])
    try:
        r = _post(b, 30, **FAST)
        assert r.status_code == 507 and r.json()["code"] == "disk_full", r.text
        assert "needs about" in r.json()["message"]
        assert b.get("/info").json()["limits"]["min_free_bytes"] == 100 * 2**20
    finally:
        b.stop()


def test_serve_on_an_unwritable_data_dir_says_so(small_disk: Path):
    data = small_disk / "jobs"
    data.mkdir()
    _immutable(data, True)
    env = {**os.environ, "SAM3D_BACKEND_TOKEN": "t" * 32}
    r = subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--port", "0", "--data-dir", str(data)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 3, r.stderr
    assert "error [data_dir_not_writable]" in r.stderr and str(data) in r.stderr
    assert "Traceback" not in r.stderr
