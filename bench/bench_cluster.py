"""The local executor against Ray (``serve --executor ray``), side by side in one run.

Every configuration is the real server with preview jobs sent over HTTP (the default
preview options: a realistic preview job), each configuration with its own data folder so
no job is a cache hit, the same photos in each. Ray clusters are real ``ray start`` clusters
on loopback (``tests/cluster/ray_cluster.py``); all of them share this machine's cores, so
"two nodes" measures the cost of spreading over nodes, not extra compute.

* Latency, one job at a time (one worker / one actor): a job's time in the server, from
  its creation to its final state (``status.json``), and the part of it spent outside the
  run itself (``result.json``'s ``timings.total_s``): the executor's overhead per job. Ray's
  overhead is the difference to the local executor's, also as a share of a preview job.
* Throughput: ``--jobs`` jobs sent at once to two slots: local (2 workers), Ray on one node
  (2 CPU actors), Ray on two nodes (one CPU actor each); jobs per minute.

    python bench/bench_cluster.py [--jobs 12] [--serial 6]

Units: seconds (wall clock), jobs per minute.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.jobs.status import FINAL_STATES  # noqa: E402
from tests.backend.conftest import disk_scene, png_bytes  # noqa: E402
from tests.cluster.ray_cluster import LocalRayCluster, ray_env  # noqa: E402


class Server:
    """``python -m backend serve`` with ``args``; talks to it with one token."""

    def __init__(self, data_dir: Path, args: list[str]) -> None:
        self.token = secrets.token_hex(16)
        env = {**ray_env(), "SAM3D_BACKEND_TOKEN": self.token}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--port", "0", "--data-dir", str(data_dir)]
            + args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready = json.loads(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{ready['port']}"
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def submit(self, seed: int) -> str:
        img, mask = disk_scene(w=480, h=360, seed=seed)
        files = [
            ("image", ("i.png", png_bytes(img))),
            ("mask", ("m.png", png_bytes(mask.astype(np.uint8) * 255))),
        ]
        r = requests.post(
            self.url + "/jobs",
            headers=self.headers,
            files=files,
            data={"options": json.dumps({"engine": "preview", "seed": seed})},
            timeout=60,
        )
        r.raise_for_status()
        return r.json()["id"]

    def wait(self, ids: list[str], timeout: float = 600) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            sts = [
                requests.get(f"{self.url}/jobs/{i}", headers=self.headers, timeout=30).json()
                for i in ids
            ]
            if all(s["state"] in FINAL_STATES for s in sts):
                bad = [s for s in sts if s["state"] != "done"]
                if bad:
                    raise RuntimeError(f"jobs did not finish: {bad}")
                return sts
            if time.monotonic() > deadline:
                raise RuntimeError("jobs did not finish in time")
            time.sleep(0.05)

    def run_time(self, job_id: str) -> float:
        r = requests.get(f"{self.url}/jobs/{job_id}/result.json", headers=self.headers, timeout=30)
        return float(r.json()["timings"]["total_s"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def serial(server: Server, seeds: list[int]) -> dict[str, float]:
    """Jobs one after another: mean time in the server, mean run time, overhead (s)."""
    server.wait([server.submit(10_000 + seeds[0])])  # warm: the engine is made once
    in_server, run = [], []
    for seed in seeds:
        job = server.submit(seed)
        (st,) = server.wait([job])
        in_server.append(st["finished"] - st["created"])
        run.append(server.run_time(job))
    return {
        "in_server_s": statistics.mean(in_server),
        "run_s": statistics.mean(run),
        "overhead_s": statistics.mean(a - b for a, b in zip(in_server, run, strict=True)),
    }


def throughput(server: Server, seeds: list[int], slots: int) -> float:
    """Jobs per minute for ``seeds`` sent at once (after one warm-up job per slot)."""
    server.wait([server.submit(20_000 + s) for s in seeds[:slots]])
    t0 = time.monotonic()
    ids = [server.submit(s) for s in seeds]
    server.wait(ids)
    return len(ids) / (time.monotonic() - t0) * 60.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=12, help="jobs per throughput run")
    ap.add_argument("--serial", type=int, default=6, help="jobs per latency run")
    args = ap.parse_args()
    serial_seeds = list(range(100, 100 + args.serial))
    batch_seeds = list(range(200, 200 + args.jobs))
    rows: dict[str, dict[str, float]] = {}
    with TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work = Path(tmp)

        def run(name: str, args_: list[str], what: str) -> None:
            s = Server(work / f"{name}-{what}", args_)
            try:
                if what == "serial":
                    rows.setdefault(name, {}).update(serial(s, serial_seeds))
                else:
                    rows.setdefault(name, {})["jobs_per_min"] = throughput(s, batch_seeds, 2)
            finally:
                s.stop()

        print(f"{os.cpu_count()} cores; {args.serial} serial jobs, {args.jobs} jobs at once")
        run("local", ["--workers", "1"], "serial")
        run("local", ["--workers", "2"], "batch")
        one = LocalRayCluster(nodes=1, cpus=2, gpus=0).start()
        try:
            ray1 = ["--executor", "ray", "--ray-address", one.address, "--ray-gpu-actors", "0"]
            run("ray, 1 node", [*ray1, "--ray-cpu-actors", "1"], "serial")
            run("ray, 1 node", [*ray1, "--ray-cpu-actors", "2"], "batch")
        finally:
            one.stop()
        two = LocalRayCluster(nodes=2, cpus=1, gpus=0).start()
        try:
            ray2 = ["--executor", "ray", "--ray-address", two.address, "--ray-gpu-actors", "0"]
            run("ray, 2 nodes", [*ray2, "--ray-cpu-actors", "1"], "serial")
            run("ray, 2 nodes", [*ray2], "batch")  # one CPU actor per node
        finally:
            two.stop()

    local = rows["local"]
    print()
    print(
        f"{'executor':<14} {'jobs/min':>9} {'x local':>8} {'job in server s':>16} "
        f"{'run s':>7} {'overhead s':>11} {'extra vs local':>15}"
    )
    for name, r in rows.items():
        extra = r["overhead_s"] - local["overhead_s"]
        print(
            f"{name:<14} {r['jobs_per_min']:>9.1f} {r['jobs_per_min'] / local['jobs_per_min']:>8.2f} "
            f"{r['in_server_s']:>16.2f} {r['run_s']:>7.2f} {r['overhead_s']:>11.3f} "
            + (
                "-".rjust(15)
                if name == "local"
                else f"{extra:>+7.3f} s {100 * extra / local['in_server_s']:>4.1f}%"
            )
        )
    worst = max(
        (r["overhead_s"] - local["overhead_s"]) / local["in_server_s"]
        for n, r in rows.items()
        if n != "local"
    )
    print(f"\nRay's overhead per preview job: {100 * worst:.1f}% at most (goal <= 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
