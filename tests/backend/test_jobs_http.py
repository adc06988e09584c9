"""Job life cycle on the real server with real worker processes."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import trimesh

from tests.backend.conftest import disk_scene, png_bytes, start_backend

FAST = {"target_faces": 2000, "texture_size": 256}


def _job(backend, seed=0, engine="preview", **opts):
    img, mask = disk_scene(seed=seed)
    resp = backend.submit(
        png_bytes(img),
        png_bytes(mask.astype(np.uint8) * 255),
        engine=engine,
        seed=seed,
        **{**FAST, **opts},
    )
    assert resp.status_code == 202, resp.text
    return resp.json()


def _wait_stage(backend, job_id: str, stage: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while backend.get(f"/jobs/{job_id}").json()["stage"] != stage:
        assert time.monotonic() < deadline, f"job {job_id} never reached {stage}"
        time.sleep(0.05)


def test_health_needs_no_token_but_everything_else_does(backend):
    assert requests.get(backend.url + "/health", timeout=5).json()["api_version"] == 1
    for path in ("/info", "/jobs", "/jobs/" + "0" * 32):
        r = requests.get(backend.url + path, timeout=5)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        r = requests.get(backend.url + path, headers={"Authorization": "Bearer wrong"}, timeout=5)
        assert r.status_code == 401


def test_info_reports_engines_and_why_not(backend):
    info = backend.get("/info").json()
    assert info["engines"]["preview"]["available"] is True
    assert info["engines"]["sam3d"]["available"] is False
    assert info["engines"]["sam3d"]["reason"]
    assert info["default_engine"] == "preview"
    assert info["workers"] == 2 and len(info["worker_pids"]) == 2


def test_preview_job_end_to_end_then_cache_hit(backend):
    sub = _job(backend, seed=100)
    st = backend.wait(sub["id"])
    assert st["state"] == "done", st
    assert st["progress"] == 1.0
    glb = backend.get(f"/jobs/{sub['id']}/result")
    assert glb.headers["content-type"] == "model/gltf-binary"
    scene = trimesh.load(io.BytesIO(glb.content), file_type="glb")
    mesh = next(iter(scene.geometry.values()))
    assert 1900 <= len(mesh.faces) <= 2100
    res = backend.get(f"/jobs/{sub['id']}/result.json").json()
    assert res["engine"] == "preview" and res["pose"]["translation"][2] < 0
    assert res["intrinsics"]["width"] == 240
    assert res["stats"]["textured"] is True
    assert res["peak_memory"]["rss_mb"] > 0
    log = backend.get(f"/jobs/{sub['id']}/log").text
    assert "done" in log
    # the identical request is answered from the finished job at once
    t0 = time.perf_counter()
    again = _job(backend, seed=100)
    assert again["id"] == sub["id"] and again["cached"] is True and again["state"] == "done"
    assert time.perf_counter() - t0 < 2.0
    assert backend.get(f"/jobs/{sub['id']}").json()["cached"] is True
    # a different seed or option is a different job
    assert _job(backend, seed=100, texture_size=512)["id"] != sub["id"]
    listed = [j["id"] for j in backend.get("/jobs").json()["jobs"]]
    assert sub["id"] in listed


def test_no_bake_keeps_vertex_colours(backend):
    sub = _job(backend, seed=101, bake=False)
    assert backend.wait(sub["id"])["state"] == "done"
    res = backend.get(f"/jobs/{sub['id']}/result.json").json()
    assert res["stats"]["textured"] is False


def test_result_before_ready_is_409(backend):
    sub = _job(backend, seed=3, engine="crashtest")  # slow, cooperative
    r = backend.get(f"/jobs/{sub['id']}/result")
    assert r.status_code == 409 and r.json()["code"] == "not_ready"
    backend.delete(f"/jobs/{sub['id']}")
    backend.wait(sub["id"])


def test_cancel_running_job_between_stages(backend):
    sub = _job(backend, seed=3, engine="crashtest")
    backend.wait(sub["id"], states=("running",), timeout=30)
    time.sleep(0.5)
    st = backend.delete(f"/jobs/{sub['id']}").json()
    assert st["state"] in ("running", "cancelled")
    st = backend.wait(sub["id"], timeout=10)
    assert st["state"] == "cancelled" and st["error"]["code"] == "cancelled"
    # the worker is reused: the next job succeeds
    assert backend.wait(_job(backend, seed=102)["id"])["state"] == "done"


def test_cancel_hung_job_kills_and_replaces_worker(backend):
    pids_before = set(backend.get("/info").json()["worker_pids"])
    sub = _job(backend, seed=2, engine="crashtest")  # never checks for cancel
    _wait_stage(backend, sub["id"], "reconstruct")  # inside the hang, not still loading
    t0 = time.perf_counter()
    backend.delete(f"/jobs/{sub['id']}")
    st = backend.wait(sub["id"], timeout=20)
    assert st["state"] == "cancelled"
    assert time.perf_counter() - t0 < 10  # grace (3 s) + kill
    assert backend.wait(_job(backend, seed=103)["id"])["state"] == "done"
    pids_after = set(backend.get("/info").json()["worker_pids"])
    assert len(pids_after) == 2 and pids_after != pids_before


def test_worker_crash_fails_only_that_job(backend):
    sub = _job(backend, seed=1, engine="crashtest")  # os.abort() mid-job
    st = backend.wait(sub["id"], timeout=60)
    assert st["state"] == "failed"
    assert st["error"]["code"] == "worker_crashed"
    assert "SIGABRT" in st["error"]["message"] and "reconstruct" in st["error"]["message"]
    assert backend.get("/health").status_code == 200
    nxt = _job(backend, seed=104)
    assert backend.wait(nxt["id"])["state"] == "done"
    # resubmitting the failed job runs it again (failures are not cached)
    again = _job(backend, seed=1, engine="crashtest")
    assert again["id"] == sub["id"] and again["cached"] is False


def test_cancel_queued_job(backend):
    blockers = [
        _job(backend, seed=2, engine="crashtest", texture_size=512 * (i + 1)) for i in range(2)
    ]
    for b in blockers:
        backend.wait(b["id"], states=("running",), timeout=30)
    queued = _job(backend, seed=105)
    assert backend.get(f"/jobs/{queued['id']}").json()["state"] == "queued"
    st = backend.delete(f"/jobs/{queued['id']}").json()
    assert st["state"] == "cancelled"
    for b in blockers:
        backend.delete(f"/jobs/{b['id']}")
    for b in blockers:
        assert backend.wait(b["id"], timeout=20)["state"] == "cancelled"


def test_twenty_concurrent_submissions_all_finish(backend):
    def submit(i):
        return _job(backend, seed=200 + i, target_faces=1000, bake=(i % 2 == 0))["id"]

    with ThreadPoolExecutor(max_workers=20) as ex:
        ids = list(ex.map(submit, range(20)))
    assert len(set(ids)) == 20
    states = [backend.wait(i, timeout=240)["state"] for i in ids]
    assert states == ["done"] * 20


def test_scene_job_with_one_bad_mask(backend):
    img, m0 = disk_scene()
    m1 = np.zeros_like(m0)
    m1[100:170, 10:60] = True
    empty = np.zeros_like(m0)
    resp = backend.submit(
        png_bytes(img),
        masks=[png_bytes(m.astype(np.uint8) * 255) for m in (m0, empty, m1)],
        engine="preview",
        **FAST,
    )
    assert resp.status_code == 202, resp.text
    st = backend.wait(resp.json()["id"])
    # not "done": a client must not mistake it for a full success
    assert st["state"] == "partial" and st["kind"] == "scene"
    assert st["error"]["code"] == "partial" and st["error"]["details"]["failed_parts"] == [1]
    assert "mask 1" in st["error"]["message"]
    assert [p["state"] for p in st["parts"]] == ["done", "failed", "done"]
    assert st["parts"][1]["error"]["code"] == "empty_mask"
    res = backend.get(f"/jobs/{st['id']}/result.json").json()
    assert res["state"] == "partial" and res["failed_parts"] == [1]
    assert res["camera"]["width"] == 240 and len(res["parts"]) == 3
    part = backend.get(f"/jobs/{st['id']}/parts/2/result")
    assert part.status_code == 200 and part.content[:4] == b"glTF"
    scene = trimesh.load(
        io.BytesIO(backend.get(f"/jobs/{st['id']}/result").content), file_type="glb"
    )
    assert len(scene.geometry) == 2


def test_restart_keeps_finished_and_requeues_in_flight(tmp_path):
    b = start_backend(tmp_path, workers=1)
    try:
        done = _job(b, seed=300)
        assert b.wait(done["id"])["state"] == "done"
        slow = _job(b, seed=3, engine="crashtest")
        b.wait(slow["id"], states=("running",), timeout=30)
        waiting = _job(b, seed=301)
        assert b.get(f"/jobs/{waiting['id']}").json()["state"] == "queued"
    finally:
        b.stop(signal.SIGKILL)  # the hardest stop: no shutdown code runs
    # the killed server's worker notices its stdin closing and exits too
    b2 = start_backend(tmp_path, workers=1)
    try:
        assert b2.get(f"/jobs/{done['id']}").json()["state"] == "done"
        assert b2.get(f"/jobs/{done['id']}/result").content[:4] == b"glTF"
        for job in (slow, waiting):
            st = b2.wait(job["id"], timeout=120)
            assert st["state"] == "done", st
        assert "restarted" in " ".join(b2.get(f"/jobs/{slow['id']}").json()["warnings"])
    finally:
        b2.stop()


def test_job_running_across_two_restarts_is_marked_interrupted(tmp_path):
    from backend.jobs.job_dir import JobInputs
    from backend.jobs.request import JobRequest
    from backend.jobs.status import JobStatus
    from backend.jobs.store import JobStore

    store = JobStore(tmp_path)
    st = JobStatus(id="a" * 32, state="running", attempts=2)
    store.create(st, JobInputs(JobRequest(id=st.id, engine="preview"), b"", []))
    b = start_backend(tmp_path)
    try:
        st = b.get(f"/jobs/{'a' * 32}").json()
        assert st["state"] == "interrupted" and st["error"]["code"] == "interrupted"
    finally:
        b.stop()


def test_serve_refuses_without_token(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "SAM3D_BACKEND_TOKEN"}
    r = subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "SAM3D_BACKEND_TOKEN" in r.stderr


def test_parent_pid_exit_stops_backend_and_workers(tmp_path):
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    b = start_backend(tmp_path, extra_args=["--parent-pid", str(parent.pid)])
    workers = b.get("/info").json()["worker_pids"]
    parent.kill()
    parent.wait()
    t0 = time.perf_counter()
    b.proc.wait(timeout=10)
    assert time.perf_counter() - t0 < 5
    time.sleep(0.5)
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_info_json_is_stable_for_clients(backend):
    info = backend.get("/info").json()
    json.dumps(info)
    assert {"version", "api_version", "engines", "gpu", "workers", "limits"} <= set(info)


def test_two_live_servers_share_a_data_dir_without_stealing_jobs(tmp_path):
    """Two Blender sessions may start two backends on one cache folder: the second must not
    re-run the first one's job; once the first is gone, its unfinished work is recovered."""
    a = start_backend(tmp_path, workers=1)
    try:
        slow = _job(a, seed=3, engine="crashtest")
        a.wait(slow["id"], states=("running",), timeout=30)
        b = start_backend(tmp_path, workers=1)
        try:
            st = b.get(f"/jobs/{slow['id']}").json()
            assert st["state"] == "running" and not st["warnings"]  # left to server A
            assert a.wait(slow["id"], timeout=60)["state"] == "done"
            assert b.get(f"/jobs/{slow['id']}").json()["state"] == "done"  # B serves A's result
            assert b.get(f"/jobs/{slow['id']}/result").content[:4] == b"glTF"
            # A dies hard mid-job; a backend started afterwards recovers that job
            slow2 = _job(a, seed=3, engine="crashtest", texture_size=512)
            a.wait(slow2["id"], states=("running",), timeout=30)
        finally:
            b.stop()
    finally:
        a.stop(signal.SIGKILL)
    c = start_backend(tmp_path, workers=1)
    try:
        st = c.wait(slow2["id"], timeout=120)
        assert st["state"] == "done" and "restarted" in " ".join(st["warnings"])
    finally:
        c.stop()


def test_graceful_stop_mid_job_loses_nothing(tmp_path):
    """SIGTERM (Blender closing) while a job runs: the job is not failed; the next start
    runs it again."""
    b = start_backend(tmp_path, workers=1)
    sub = _job(b, seed=3, engine="crashtest")
    b.wait(sub["id"], states=("running",), timeout=30)
    workers = b.get("/info").json()["worker_pids"]
    b.stop(signal.SIGTERM)
    st = json.loads((tmp_path / sub["id"] / "status.json").read_text())
    assert st["state"] == "running"  # not failed: it is recovered on the next start
    time.sleep(0.5)
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    b2 = start_backend(tmp_path, workers=1)
    try:
        assert b2.wait(sub["id"], timeout=120)["state"] == "done"
    finally:
        b2.stop()


def test_worker_exits_when_the_server_is_killed(tmp_path):
    b = start_backend(tmp_path, workers=1)
    sub = _job(b, seed=2, engine="crashtest")  # a worker busy in a never-ending stage
    b.wait(sub["id"], states=("running",), timeout=30)
    workers = b.get("/info").json()["worker_pids"]
    b.stop(signal.SIGKILL)
    deadline = time.monotonic() + 5
    alive = list(workers)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _pid_running(p)]
        time.sleep(0.1)
    assert alive == []


def _pid_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_deleted_running_job_does_not_stall_the_queue(tmp_path):
    import shutil

    b = start_backend(tmp_path, workers=1)
    try:
        sub = _job(b, seed=3, engine="crashtest")
        b.wait(sub["id"], states=("running",), timeout=30)
        shutil.rmtree(tmp_path / sub["id"])  # someone cleans the cache folder mid-job
        nxt = _job(b, seed=400)
        assert b.wait(nxt["id"], timeout=120)["state"] == "done"
    finally:
        b.stop()


def test_identical_concurrent_posts_run_one_job_once(backend):
    with ThreadPoolExecutor(max_workers=6) as ex:
        subs = list(ex.map(lambda _: _job(backend, seed=401), range(6)))
    assert len({s["id"] for s in subs}) == 1
    jid = subs[0]["id"]
    assert backend.wait(jid)["state"] == "done"
    log = backend.get(f"/jobs/{jid}/log").text
    assert log.count("running on worker") == 1


def test_resubmit_while_cancel_is_pending_is_refused_clearly(backend):
    sub = _job(backend, seed=2, engine="crashtest")
    backend.wait(sub["id"], states=("running",), timeout=30)
    backend.delete(f"/jobs/{sub['id']}")
    img, mask = disk_scene(seed=2)
    r = backend.submit(
        png_bytes(img), png_bytes(mask.astype(np.uint8) * 255), engine="crashtest", seed=2, **FAST
    )
    if r.status_code == 202:  # the kill already happened: it was simply queued again
        assert r.json()["state"] == "queued"
        backend.delete(f"/jobs/{sub['id']}")
    else:
        assert r.status_code == 409 and "being cancelled" in r.json()["message"]
    assert backend.wait(sub["id"], timeout=20)["state"] == "cancelled"


def test_part_results_of_failed_parts_and_object_jobs_are_404(backend):
    img, m0 = disk_scene()
    resp = backend.submit(
        png_bytes(img),
        masks=[png_bytes(m.astype(np.uint8) * 255) for m in (m0, np.zeros_like(m0))],
        engine="preview",
        seed=402,
        **FAST,
    )
    st = backend.wait(resp.json()["id"])
    r = backend.get(f"/jobs/{st['id']}/parts/1/result")
    assert r.status_code == 404 and "mask 1" in r.json()["message"]
    assert backend.get(f"/jobs/{st['id']}/parts/7/result").status_code == 404
    obj = _job(backend, seed=403)
    backend.wait(obj["id"])
    assert backend.get(f"/jobs/{obj['id']}/parts/0/result").status_code == 404


def test_damaged_status_file_is_redone_not_a_500(backend):
    sub = _job(backend, seed=404)
    assert backend.wait(sub["id"])["state"] == "done"
    (backend.data_dir / sub["id"] / "status.json").write_text("{ half a file")
    r = backend.get(f"/jobs/{sub['id']}")
    assert r.status_code == 404 and "damaged" in r.json()["message"]
    again = _job(backend, seed=404)
    assert again["id"] == sub["id"] and again["state"] == "queued"
    assert backend.wait(sub["id"])["state"] == "done"
