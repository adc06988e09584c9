"""Backend supervision without Blender: the real ``python -m backend serve`` subprocess."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sam3d_blender.core.backend_process import (
    BackendState,
    LaunchConfig,
    ManagedBackend,
    RemoteBackend,
    reap_stale_backends,
)
from sam3d_blender.core.client import BackendClient, BackendClientError
from sam3d_blender.core.subprocesses import pid_alive
from tests.addon.helpers import REPO


def _config(tmp: Path, python: Path | str | None = sys.executable, **kw) -> LaunchConfig:
    return LaunchConfig(
        python=Path(python) if python else None,
        backend_root=REPO,
        log_path=tmp / "logs" / "backend.log",
        run_dir=tmp / "run",
        data_dir=tmp / "jobs",
        startup_timeout_s=60,
        **kw,
    )


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def backend(tmp_path):
    b = ManagedBackend(_config(tmp_path))
    yield b
    b.stop()


def test_start_ready_info_and_stop(backend, tmp_path):
    assert backend.state == BackendState.STOPPED
    backend.ensure_started()
    assert backend.state == BackendState.STARTING  # non-blocking
    t0 = time.monotonic()
    assert backend.wait_ready(60) == BackendState.READY, backend.error
    print(f"backend ready in {time.monotonic() - t0:.2f} s")
    assert backend.info["api_version"] == 1
    assert backend.info["engines"]["preview"]["available"] is True
    assert "engine" in backend.describe()
    # The record used for stale-backend cleanup exists while it runs...
    record = tmp_path / "run" / f"{os.getpid()}.json"
    assert json.loads(record.read_text())["pid"] == backend.pid
    # ...and the data dir is the one we asked for.
    assert backend.info.get("data_dir", str(tmp_path / "jobs")) == str(tmp_path / "jobs")
    pid = backend.pid
    backend.stop()
    assert backend.state == BackendState.STOPPED
    assert _gone(pid), "backend still running after stop()"
    assert not record.exists()


def test_token_is_required_and_fresh(backend):
    assert backend.wait_ready(60) == BackendState.READY
    first_token = backend.token
    wrong = BackendClient(backend.url, "not-the-token")
    with pytest.raises(BackendClientError) as err:
        wrong.info()
    assert err.value.code == "unauthorized"
    backend.stop()
    assert backend.wait_ready(60) == BackendState.READY
    assert backend.token != first_token


def test_not_installed_when_python_missing(tmp_path):
    b = ManagedBackend(_config(tmp_path, python=tmp_path / "no" / "python"))
    assert b.state == BackendState.NOT_INSTALLED
    b.ensure_started()
    assert b.state == BackendState.NOT_INSTALLED
    assert b.error is not None and b.error.code == "backend_not_installed"
    assert "Install backend" in b.error.sentence()
    b2 = ManagedBackend(_config(tmp_path, python=None))
    assert b2.state == BackendState.NOT_INSTALLED


def test_unwritable_cache_folder_is_a_sentence(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = blocker / "cache"
    b = ManagedBackend(_config(cache))
    assert b.wait_ready(10) == BackendState.ERROR
    assert b.error.code == "cache_unwritable"
    assert str(cache) in b.error.sentence() and "cache folder" in b.error.sentence()
    assert b.proc is None


def test_results_folder_unwritable_fails_the_job_with_a_sentence(backend, tmp_path):
    from sam3d_blender.core.job_manager import JobManager, run_to_completion
    from sam3d_blender.core.jobs import JobRequest, Phase
    from sam3d_blender.core.options import JobOptions
    from tests.addon.helpers import make_photo

    image, mask, _ = make_photo(tmp_path / "photo")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    manager = JobManager(lambda: backend, blocker / "results")
    job = manager.submit(
        JobRequest(
            image=image.read_bytes(), mask=mask.read_bytes(), options=JobOptions(engine="preview")
        )
    )
    run_to_completion(manager, job, timeout=120)
    assert job.phase == Phase.FAILED
    assert job.error.code == "cache_unwritable", job.error
    assert "cache folder" in job.error.sentence()


def test_broken_backend_reports_reason_and_log_tail(tmp_path):
    # An interpreter that cannot run the backend (a broken install): exits with a message.
    broken = tmp_path / "python"
    broken.write_text(
        "#!/bin/sh\necho 'ModuleNotFoundError: No module named fastapi' >&2\nexit 1\n"
    )
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    b = ManagedBackend(_config(tmp_path, python=broken))
    assert b.wait_ready(30) == BackendState.ERROR
    assert b.error.code == "backend_start_failed"
    assert "code 1" in b.error.message
    assert any("No module named fastapi" in line for line in b.error.log_tail)
    assert "could not start" in b.error.sentence()


def test_died_backend_is_reported_and_restarted(backend):
    assert backend.wait_ready(60) == BackendState.READY
    old = backend.pid
    os.killpg(old, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while backend.poll() == BackendState.READY and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.state == BackendState.ERROR
    assert backend.error.code == "backend_died"
    assert "restarted" in backend.error.sentence()
    assert backend.wait_ready(60) == BackendState.READY
    assert backend.pid != old
    assert backend.client().health()["status"] == "ok"


def test_stale_backend_from_crashed_blender_is_reaped(tmp_path):
    # A backend left by an earlier Blender that crashed: its parent pid is dead.
    dead_parent = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_parent.wait()
    env = dict(os.environ, SAM3D_BACKEND_TOKEN="old", SAM3D_DATA_DIR=str(tmp_path / "old"))
    stale = subprocess.Popen(
        [sys.executable, "-m", "backend", "serve", "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert json.loads(stale.stdout.readline())["event"] == "ready"
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / f"{dead_parent.pid}.json").write_text(
            json.dumps({"pid": stale.pid, "parent_pid": dead_parent.pid, "group": True})
        )
        # A live Blender's backend (here: this test process as its parent) is left alone.
        (run_dir / "1.json").write_text(json.dumps({"pid": stale.pid, "parent_pid": 1}))
        assert reap_stale_backends(run_dir, own_parent_pid=os.getpid()) == [stale.pid]
        assert stale.wait(10) is not None
        assert not (run_dir / f"{dead_parent.pid}.json").exists()
        assert (run_dir / "1.json").exists()
        # And a new backend starts normally next to where the stale one was.
        b = ManagedBackend(_config(tmp_path))
        try:
            assert b.wait_ready(60) == BackendState.READY
        finally:
            b.stop()
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.wait()


def test_remote_wrong_token_and_unreachable(backend):
    assert backend.wait_ready(60) == BackendState.READY
    remote = RemoteBackend(backend.url, "wrong-token")
    remote.wait_ready(10)
    assert remote.state == BackendState.ERROR
    assert remote.error.code == "unauthorized"
    assert "token" in remote.error.sentence()
    good = RemoteBackend(backend.url, backend.token)
    good.ensure_started()
    assert good.state == BackendState.STARTING  # checked in a thread, never blocking
    good.wait_ready(10)
    assert good.state == BackendState.READY, good.error
    assert good.client().info()["api_version"] == 1
    # Nothing listens on port 9 (discard) on loopback: refused at once, clear message.
    t0 = time.monotonic()
    gone = RemoteBackend("http://127.0.0.1:9", "x")
    gone.wait_ready(10)
    assert time.monotonic() - t0 < 3.0
    assert gone.state == BackendState.ERROR
    assert gone.error.code == "backend_unreachable"
    assert "Cannot reach" in gone.error.sentence()


def test_stop_does_not_wait_out_its_timeout_without_proc(backend, monkeypatch):
    """macOS has no /proc: there an exited, not yet reaped child still answers kill(pid, 0)
    and looks alive. stop() must notice the exit through the Popen object instead of
    spinning until its timeout."""
    import sam3d_blender.core.subprocesses as bp

    def pid_alive_without_proc(pid: int) -> bool:  # pid_alive's answer on macOS
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    monkeypatch.setattr(bp, "pid_alive", pid_alive_without_proc)
    assert backend.wait_ready(60) == BackendState.READY
    t0 = time.monotonic()
    backend.stop(timeout=5.0)
    took = time.monotonic() - t0
    print(f"stop took {took:.2f} s")
    assert took < 3.0
    assert backend.state == BackendState.STOPPED
