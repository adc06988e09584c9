"""The backend on a real Ray cluster (``serve --executor ray``): a head and two worker nodes
started with ``ray start`` on loopback, GPU slots simulated with a custom resource, artists
with their own tokens - and a worker node's raylet killed mid-run.

Each test starts its own server (a server's actors take every slot of the cluster); the
node-loss test runs last, as it leaves the cluster with one worker node.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import numpy as np
import pytest

from tests.backend.conftest import disk_scene, png_bytes
from tests.cluster.conftest import FAST, as_artist, make_artists, photo, start_studio

ray = pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")

from tests.cluster.ray_cluster import SIM_GPU, LocalRayCluster, ray_env  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    c = LocalRayCluster(nodes=2, cpus=1, gpus=1)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    return path, make_artists(path, ["alice", "bob", "carol"])


def _serve(cluster, tokens, data_dir, *extra: str):
    return start_studio(
        data_dir,
        tokens[0],
        extra_args=[
            "--executor",
            "ray",
            "--ray-address",
            cluster.address,
            "--ray-gpu-resource",
            SIM_GPU,
            "--cancel-grace",
            "1.5",
            *extra,
        ],
        env={k: v for k, v in ray_env().items() if k.startswith(("RAY_", "SAM3D_"))},
    )


def _slots(b) -> list[dict]:
    return b.get("/info").json()["slots"]


def _log_time(line: str) -> float:
    return datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").timestamp()


def test_cancel_reaches_the_actor_within_5_s(cluster, tokens, tmp_path):
    b = _serve(cluster, tokens, tmp_path / "jobs")
    try:
        alice = as_artist(b, tokens[1]["alice"])
        assert {s["kind"] for s in _slots(alice)} == {"gpu", "cpu"}
        # cooperative: stops at its next step; stuck in native code: its actor is killed
        for seed in (3, 2):
            job = alice.submit(*photo(20 + seed), engine="crashtest", seed=seed).json()["id"]
            alice.wait(job, states=("running",), timeout=60)
            time.sleep(0.5)
            t0 = time.monotonic()
            assert alice.delete(f"/jobs/{job}").status_code == 200
            st = alice.wait(job, timeout=5)
            assert st["state"] == "cancelled", st
            print(f"seed {seed}: cancelled {time.monotonic() - t0:.2f} s after DELETE")
        after = alice.submit(*photo(25), **FAST).json()["id"]  # a fresh actor took over
        assert alice.wait(after, timeout=90)["state"] == "done"
    finally:
        b.stop()


def test_a_job_that_kills_its_actor_twice_fails_with_worker_crashed(cluster, tokens, tmp_path):
    b = _serve(cluster, tokens, tmp_path / "jobs")
    try:
        bob = as_artist(b, tokens[1]["bob"])
        job = bob.submit(*photo(30), engine="crashtest", seed=1).json()["id"]  # os.abort()
        st = bob.wait(job, timeout=120)
        assert st["state"] == "failed" and st["error"]["code"] == "worker_crashed", st
        assert "2 times" in st["error"]["message"] and st["attempts"] == 2
        log = bob.get(f"/jobs/{job}/log").text
        assert "trying once more on a fresh actor" in log
        # the service goes on; a scene job's masks travel to the actor, its parts come back
        img, mask = disk_scene(seed=31)
        halves = [mask.copy(), mask.copy()]
        halves[0][:, mask.shape[1] // 2 :] = False
        halves[1][:, : mask.shape[1] // 2] = False
        masks = [png_bytes(h.astype(np.uint8) * 255) for h in halves]
        ok = bob.submit(png_bytes(img), masks=masks, **FAST).json()["id"]
        st = bob.wait(ok, timeout=120)
        assert st["state"] == "done" and [p["state"] for p in st["parts"]] == ["done", "done"]
        for i in (0, 1):
            part = bob.get(f"/jobs/{ok}/parts/{i}/result")
            assert part.status_code == 200 and part.content[:4] == b"glTF"
    finally:
        b.stop()


def test_a_server_restart_recovers_its_jobs(cluster, tokens, tmp_path):
    b = _serve(cluster, tokens, tmp_path / "jobs")
    carol = as_artist(b, tokens[1]["carol"])
    job = carol.submit(*photo(40), engine="crashtest", seed=3).json()["id"]
    carol.wait(job, states=("running",), timeout=60)
    b.stop()  # SIGTERM mid-job: its actors go with it, the job stays "running" on disk
    b = _serve(cluster, tokens, tmp_path / "jobs")
    try:
        carol = as_artist(b, tokens[1]["carol"])
        st = carol.wait(job, timeout=120)
        assert st["state"] == "done" and st["attempts"] == 2, st
        assert any("restarted" in w for w in st["warnings"])
    finally:
        b.stop()


def test_twelve_jobs_three_artists_one_node_killed_mid_run(cluster, tokens, tmp_path):
    """12 preview jobs from 3 artists (4 each), bob also sending one of alice's: a worker
    node's raylet is killed while it runs a job. All 12 finish once, none is lost."""
    b = _serve(cluster, tokens, tmp_path / "jobs")
    try:
        artists = {name: as_artist(b, tok) for name, tok in tokens[1].items()}
        seeds = {"alice": [50, 51, 52, 53], "bob": [54, 55, 56, 57], "carol": [58, 59, 60, 61]}

        def send(name: str, seed: int) -> str:
            r = artists[name].submit(*photo(seed), **FAST)
            assert r.status_code == 202, r.text
            return r.json()["id"]

        with ThreadPoolExecutor(6) as pool:
            futures = {
                (name, seed): pool.submit(send, name, seed)
                for name, ss in seeds.items()
                for seed in ss
            }
            ids = {key: f.result() for key, f in futures.items()}
        assert len(set(ids.values())) == 12
        shared = send("bob", 50)  # identical to alice's first: the same job
        assert shared == ids[("alice", 50)]

        # kill worker node 0 while it runs a job
        node0 = None
        deadline = time.monotonic() + 120
        while node0 is None:
            assert time.monotonic() < deadline, "no job ran on worker node 0"
            pid = cluster.raylet_pid(0)
            for s in _slots(artists["alice"]):
                if s["job"] and s["node"] and _on_raylet(s["pid"], pid):
                    node0 = s
            time.sleep(0.1)
        killed_at = cluster.kill_node(0)
        victim = node0["job"]

        # the server keeps answering throughout, and every job finishes
        answers = []
        deadline = time.monotonic() + 240
        while True:
            t = time.monotonic()
            states = {k: artists[k[0]].get(f"/jobs/{i}").json()["state"] for k, i in ids.items()}
            answers.append(time.monotonic() - t)
            if all(s in ("done", "failed", "cancelled", "interrupted") for s in states.values()):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.5)
        assert set(states.values()) == {"done"}, states
        assert max(answers) < 5.0

        # none lost, none run twice to the end, each artist sees exactly their own
        for (name, _), job in ids.items():
            log = artists[name].get(f"/jobs/{job}/log").text
            assert log.count(" done\n") == 1, log
            assert artists[name].get(f"/jobs/{job}/result").status_code == 200
        for name, who in artists.items():
            listed = {j["id"] for j in who.get("/jobs").json()["jobs"]}
            own = {ids[(name, s)] for s in seeds[name]} | ({shared} if name == "bob" else set())
            assert listed == own, name
            for job in ids.values():
                if job not in own:
                    assert who.get(f"/jobs/{job}").status_code == 404
        assert artists["bob"].get(f"/jobs/{shared}/result").status_code == 200

        # the timeline of the job the node took down with it
        owner = next(k[0] for k, i in ids.items() if i == victim)
        st = artists[owner].get(f"/jobs/{victim}").json()
        log = artists[owner].get(f"/jobs/{victim}/log").text.splitlines()
        lost = next(ln for ln in log if "was lost" in ln)
        resumed = [ln for ln in log if "running on ray actor" in ln][-1]
        assert st["attempts"] == 2 and _log_time(resumed) >= _log_time(lost)
        timeline = {
            "killed": killed_at,
            "lost_noticed": _log_time(lost),
            "resumed": st["started"],
            "finished": st["finished"],
            "resumed_after_s": round(st["started"] - killed_at, 1),
            "finished_after_s": round(st["finished"] - killed_at, 1),
            "max_status_answer_s": round(max(answers), 3),
        }
        print("fault timeline:", json.dumps(timeline))
    finally:
        b.stop()


def _on_raylet(worker_pid: int, raylet_pid: int) -> bool:
    """Whether ``worker_pid`` is a worker process of the raylet ``raylet_pid``."""
    import psutil

    try:
        return psutil.Process(worker_pid).ppid() == raylet_pid
    except psutil.Error:
        return False
