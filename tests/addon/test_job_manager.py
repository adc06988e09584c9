"""The job state machine against the real backend, without Blender."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from sam3d_blender.core.backend_process import BackendState, LaunchConfig, ManagedBackend
from sam3d_blender.core.job_manager import JobManager, run_to_completion
from sam3d_blender.core.jobs import JobRequest, Phase
from sam3d_blender.core.options import JobOptions
from tests.addon.helpers import REPO, make_photo


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photo")
    image, mask, _ = make_photo(folder)
    return image.read_bytes(), mask.read_bytes()


@pytest.fixture
def backend(tmp_path):
    b = ManagedBackend(
        LaunchConfig(
            python=Path(sys.executable),
            backend_root=REPO,
            log_path=tmp_path / "backend.log",
            run_dir=tmp_path / "run",
            data_dir=tmp_path / "jobs",
        )
    )
    yield b
    b.stop()


def _manager(backend, tmp_path, auto_start=True):
    return JobManager(lambda: backend, tmp_path / "results", auto_start=auto_start)


def _request(photo, **options):
    image, mask = photo
    opts = JobOptions(engine="preview", target_faces=3000, texture_size=256).updated(options)
    return JobRequest(image=image, mask=mask, options=opts, label="photo")


def test_job_runs_to_done_then_answers_from_cache(backend, tmp_path, photo):
    manager = _manager(backend, tmp_path)
    job = manager.submit(_request(photo))
    assert job.phase == Phase.WAITING_BACKEND  # submit never blocks
    seen = []
    run_to_completion(manager, job, timeout=120, on_update=lambda j: seen.append(j.phase))
    assert job.phase == Phase.DONE, job.error
    assert {Phase.WAITING_BACKEND, Phase.RUNNING, Phase.DOWNLOADING} <= set(seen) | {
        Phase.WAITING_BACKEND
    }
    assert job.glb_path.is_file() and job.glb_path.read_bytes()[:4] == b"glTF"
    assert job.glb_path.parent.name == job.backend_id
    assert job.glb_path.with_name("result.json").is_file()
    assert set(job.result["pose"]) == {"rotation_wxyz", "translation", "scale"}
    assert job.result["intrinsics"]["width"] == 320
    assert job.progress == 1.0
    assert manager.step() is None  # nothing left to do
    again = manager.submit(_request(photo))
    run_to_completion(manager, again, timeout=60)
    assert again.phase == Phase.DONE and again.cached
    assert again.backend_id == job.backend_id


def test_steps_are_short(backend, tmp_path, photo):
    """The UI calls step() from a timer: no single call may block for long."""
    manager = _manager(backend, tmp_path)
    job = manager.submit(_request(photo, seed=11))
    worst = 0.0
    while not job.finished:
        t0 = time.monotonic()
        wait = manager.step()
        worst = max(worst, time.monotonic() - t0)
        time.sleep(wait or 0.02)
    assert job.phase == Phase.DONE, job.error
    print(f"longest step: {worst * 1000:.0f} ms")
    assert worst < 0.5


def test_cancel_mid_job(backend, tmp_path, photo):
    manager = _manager(backend, tmp_path)
    job = manager.submit(_request(photo, engine="crashtest", seed=3))  # slow, cooperative
    deadline = time.monotonic() + 60
    while job.phase != Phase.RUNNING or job.state != "running":
        time.sleep(manager.step() or 0.05)
        assert time.monotonic() < deadline and not job.finished, job.error
    t0 = time.monotonic()
    manager.cancel(job)
    run_to_completion(manager, job, timeout=30)
    assert job.phase == Phase.CANCELLED
    assert time.monotonic() - t0 < 5.0
    assert backend.client().job(job.backend_id)["state"] == "cancelled"


def test_worker_crash_is_a_clear_failure_and_next_job_works(backend, tmp_path, photo):
    manager = _manager(backend, tmp_path)
    job = run_to_completion(
        manager, manager.submit(_request(photo, engine="crashtest", seed=1)), timeout=120
    )
    assert job.phase == Phase.FAILED
    assert job.error.code == "worker_crashed"
    assert "crashed" in job.error.sentence() and "Traceback" not in job.error.sentence()
    ok = run_to_completion(manager, manager.submit(_request(photo, seed=5)), timeout=120)
    assert ok.phase == Phase.DONE, ok.error


def test_backend_killed_mid_job_then_restarted(backend, tmp_path, photo):
    manager = _manager(backend, tmp_path)
    job = manager.submit(_request(photo, engine="crashtest", seed=3))
    deadline = time.monotonic() + 60
    while job.state != "running":
        time.sleep(manager.step() or 0.05)
        assert time.monotonic() < deadline and not job.finished, job.error
    old_pid = backend.pid
    os.killpg(old_pid, signal.SIGKILL)
    run_to_completion(manager, job, timeout=30)
    assert job.phase == Phase.FAILED
    assert job.error.code == "backend_died"
    assert "stopped unexpectedly" in job.error.sentence()
    # The next request restarts the backend and succeeds.
    ok = run_to_completion(manager, manager.submit(_request(photo, seed=6)), timeout=120)
    assert ok.phase == Phase.DONE, ok.error
    assert backend.pid != old_pid
    # The restarted backend re-queued the job it was running; the add-on, which already
    # reported it failed, cancelled it so it does not hold the queue.
    assert backend.client().job(job.backend_id)["state"] == "cancelled"
    assert manager.orphans == set()


def test_bad_input_maps_to_a_sentence(backend, tmp_path, photo):
    manager = _manager(backend, tmp_path)
    image, _ = photo
    job = manager.submit(
        JobRequest(image=image, mask=b"not an image", options=JobOptions(engine="preview"))
    )
    run_to_completion(manager, job, timeout=60)
    assert job.phase == Phase.FAILED
    assert job.error.code == "bad_mask"
    assert "mask" in job.error.sentence().lower()


def test_stopped_backend_without_auto_start(backend, tmp_path, photo):
    manager = _manager(backend, tmp_path, auto_start=False)
    job = run_to_completion(manager, manager.submit(_request(photo)), timeout=10)
    assert job.phase == Phase.FAILED and job.error.code == "backend_stopped"
    assert backend.state == BackendState.STOPPED


def test_cancel_before_backend_ready(backend, tmp_path, photo):
    manager = _manager(backend, tmp_path)
    job = manager.submit(_request(photo))
    manager.cancel(job)
    assert job.phase == Phase.CANCELLED
    assert manager.step() is None


def _big_photo(folder: Path, width: int = 4000, height: int = 3000) -> tuple[bytes, bytes]:
    """A 12 MP photo with noise (so the PNG stays large, like a real photo) and its mask."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    mask = (
        (xx - width / 2) ** 2 / (width * 0.3) ** 2 + (yy - height / 2) ** 2 / (height * 0.3) ** 2
    ) < 1
    out = []
    for arr in (img, (mask * 255).astype(np.uint8)):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
        out.append(buf.getvalue())
    return out[0], out[1]


def test_step_never_waits_for_the_upload_of_a_large_photo(backend, tmp_path):
    """POST /jobs of a 12 MP photo takes seconds; it runs in a thread, so step() (called by
    the UI timer on Blender's main thread) stays short while it happens."""
    image, mask = _big_photo(tmp_path)
    assert backend.wait_ready(60) == BackendState.READY
    manager = _manager(backend, tmp_path)
    job = manager.submit(
        JobRequest(
            image=image, mask=mask, options=JobOptions(engine="crashtest", seed=3), label="big"
        )
    )
    worst, t_submit0, t_submit = 0.0, None, None
    deadline = time.monotonic() + 120
    while job.backend_id is None and not job.finished:
        t0 = time.monotonic()
        wait = manager.step()
        worst = max(worst, time.monotonic() - t0)
        if job.phase == Phase.SUBMITTING and t_submit0 is None:
            t_submit0 = time.monotonic()
        time.sleep(wait or 0.02)
        assert time.monotonic() < deadline
    t_submit = time.monotonic() - (t_submit0 or time.monotonic())
    assert job.phase == Phase.RUNNING, job.error
    print(
        f"upload of {len(image) / 1e6:.0f} MB took {t_submit:.2f} s; longest step {worst * 1e3:.0f} ms"
    )
    assert worst < 0.1
    # The bytes are gone once the backend has them; their hash stays for provenance.
    assert job.request.image == b"" and job.request.mask is None
    assert len(job.request.source_sha256) == 64
    manager.cancel(job)
    run_to_completion(manager, job, timeout=30)
    assert job.phase == Phase.CANCELLED


def test_cancel_while_the_upload_is_in_flight_cancels_on_the_backend(backend, tmp_path):
    image, mask = _big_photo(tmp_path)
    assert backend.wait_ready(60) == BackendState.READY
    manager = _manager(backend, tmp_path)
    job = manager.submit(
        JobRequest(
            image=image, mask=mask, options=JobOptions(engine="crashtest", seed=3), label="big"
        )
    )
    while job.phase != Phase.SUBMITTING or job._call is None:
        time.sleep(manager.step() or 0.02)
    manager.cancel(job)
    assert job.phase == Phase.CANCELLED  # at once, without waiting for the upload
    deadline = time.monotonic() + 60
    while (manager.step() is not None or manager.orphans) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.backend_id is not None and manager.orphans == set()
    _wait_backend_state(backend, job.backend_id, "cancelled")


def test_stopping_the_backend_mid_job_ends_it_cancelled(backend, tmp_path, photo):
    manager = _manager(backend, tmp_path)
    job = manager.submit(_request(photo, engine="crashtest", seed=3))
    deadline = time.monotonic() + 60
    while job.state != "running":
        time.sleep(manager.step() or 0.05)
        assert time.monotonic() < deadline and not job.finished, job.error
    client = backend.client()
    manager.cancel_all(client, wait_s=2.0)
    assert job.phase == Phase.CANCELLED and job.error is None
    _wait_backend_state(backend, job.backend_id, "cancelled")
    backend.stop()
    assert manager.step() is None


def _wait_backend_state(backend, backend_id: str, state: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while backend.client().job(backend_id)["state"] != state:
        assert time.monotonic() < deadline, backend.client().job(backend_id)
        time.sleep(0.1)


def test_a_partial_scene_is_downloaded_and_says_which_part_failed(backend, tmp_path, photo):
    """A scene job with a failed mask ends ``partial`` on the backend: the add-on still
    downloads the objects that were made, and knows which one failed."""
    import io

    import numpy as np
    from PIL import Image

    image, mask = photo
    empty = io.BytesIO()
    Image.fromarray(np.zeros((240, 320), np.uint8)).save(empty, format="PNG")
    manager = _manager(backend, tmp_path)
    job = manager.submit(
        JobRequest(
            image=image,
            masks=[mask, empty.getvalue()],
            options=JobOptions(engine="preview", target_faces=1000, texture_size=256),
            label="scene",
        )
    )
    run_to_completion(manager, job, timeout=180)
    assert job.state == "partial" and job.phase == Phase.DONE, job.error
    assert job.result["state"] == "partial" and job.result["failed_parts"] == [1]
    assert job.glb_path.read_bytes()[:4] == b"glTF"


def test_generate_during_the_install_waits_for_it_then_runs(tmp_path, photo):
    """Generate pressed while the backend is being installed: the job waits (and says so)
    instead of failing 'not installed', and runs once the install has made the venv."""
    venv_python = tmp_path / "venv" / "bin" / "python"
    backend = ManagedBackend(
        LaunchConfig(
            python=venv_python,
            backend_root=REPO,
            log_path=tmp_path / "backend.log",
            run_dir=tmp_path / "run",
            data_dir=tmp_path / "jobs",
        )
    )
    installing = [True]
    manager = JobManager(lambda: backend, tmp_path / "results", installing=lambda: installing[0])
    job = manager.submit(_request(photo))
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        manager.step()
        time.sleep(0.05)
    assert job.phase == Phase.WAITING_BACKEND and job.error is None
    assert job.status_line() == "Waiting for the backend install to finish..."
    venv_python.parent.mkdir(parents=True)  # the install made the venv: its python runs ours
    venv_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    venv_python.chmod(0o755)
    installing[0] = False
    try:
        run_to_completion(manager, job, timeout=120)
        assert job.phase == Phase.DONE, job.error
    finally:
        backend.stop()

    # with no install running, a missing backend still fails at once with its sentence
    missing = ManagedBackend(
        LaunchConfig(
            python=tmp_path / "none" / "python", backend_root=REPO, log_path=tmp_path / "b2.log"
        )
    )
    manager = JobManager(lambda: missing, tmp_path / "results")
    job = manager.submit(_request(photo))
    for _ in range(3):
        manager.step()
    assert job.phase == Phase.FAILED and job.error.code == "backend_not_installed"
