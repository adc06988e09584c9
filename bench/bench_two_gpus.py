"""Two GPUs, one backend: ``serve --gpus all`` running SAM 3D jobs side by side.

What it proves, on a machine with two or more GPUs: the real server (``python -m backend
serve --gpus all``) pins one worker per GPU; two SAM 3D jobs (the real upstream pipeline,
random weights, as ``bench/bench_sam3d_gpu.py`` builds it) submitted together run at the
same time, each on its own GPU; a third waits for the first GPU that frees up; a worker
killed mid-job costs only its job while the other GPU's job finishes. Evidence comes from
three places that do not depend on each other: each job's ``status.json`` (slot, pid, GPU,
start and end times), each job's ``result.json`` (the worker's pid and GPU, written inside
the worker) and ``nvidia-smi`` sampled every 0.2 s (which process held memory on which GPU,
and each GPU's peak memory and utilisation).

The workers run the same occupancy and depth hooks as ``bench_sam3d_gpu.py`` (random
weights make both arbitrary), installed in each worker process by a ``sitecustomize``
module this script writes into its work folder; the server process never imports torch.

Run it where CUDA is, after (or instead of) the single-GPU harness's setup (it runs that
setup itself, with no plans)::

    python bench/bench_two_gpus.py --upstream .upstream --work /tmp/sam3d-gpu --configs configs

Units: seconds (wall clock), MiB as nvidia-smi reports them.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench_sam3d_gpu as single  # noqa: E402

from backend.jobs.status import FINAL_STATES  # noqa: E402

SITECUSTOMIZE = '''"""Installs the SAM 3D harness's hooks in pinned backend workers (written by
bench/bench_two_gpus.py; only processes with SAM3D_WORKER_GPU and SAM3D_BENCH_HOOKS set)."""
import importlib.machinery
import os
import sys

_SPEC = os.environ.get("SAM3D_BENCH_HOOKS")


class _AfterSam3D:
    """Runs the hooks right after ``backend.engines.sam3d`` is imported (as a job would)."""

    def find_spec(self, name, path, target=None):
        if name != "backend.engines.sam3d":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            voxels, bench_dir, ckpt = _SPEC.split("|")
            sys.path.insert(0, bench_dir)
            from pathlib import Path

            import bench_sam3d_gpu

            bench_sam3d_gpu.install_hooks(int(voxels), Path(ckpt))

        spec.loader.exec_module = exec_module
        return spec


if _SPEC and os.environ.get("SAM3D_WORKER_GPU"):
    sys.meta_path.insert(0, _AfterSam3D())
'''


class GpuSampler:
    """nvidia-smi every ``period_s``: per GPU peak memory.used and utilization.gpu, and which
    pids held memory on which GPU (``--query-compute-apps``), with the time each was seen."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.period = period_s
        self.uuid_to_index = {
            uuid: int(index)
            for index, uuid in self._query("--query-gpu=index,uuid")
            if index.strip().isdigit()
        }
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def _query(*args: str) -> list[list[str]]:
        try:
            out = subprocess.run(
                ["nvidia-smi", *args, "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            t = time.time()
            gpus = {
                int(i): {"mem_mb": float(m), "util": float(u)}
                for i, m, u in self._query("--query-gpu=index,memory.used,utilization.gpu")
                if i.isdigit()
            }
            apps = [
                {"pid": int(pid), "gpu": self.uuid_to_index.get(uuid), "mem_mb": float(mem)}
                for pid, uuid, mem in self._query("--query-compute-apps=pid,gpu_uuid,used_memory")
                if pid.isdigit() and mem.replace(".", "", 1).isdigit()
            ]
            self.samples.append({"t": t, "gpus": gpus, "apps": apps})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """Peaks per GPU and the GPUs each pid was seen on, between unix times t0 and t1."""
        peak: dict[int, dict[str, float]] = {}
        seen: dict[int, set[int]] = {}
        both_busy = 0
        inside = [s for s in self.samples if t0 <= s["t"] <= t1]
        for s in inside:
            for i, g in s["gpus"].items():
                p = peak.setdefault(i, {"mem_mb": 0.0, "util": 0.0})
                p["mem_mb"], p["util"] = max(p["mem_mb"], g["mem_mb"]), max(p["util"], g["util"])
            for a in s["apps"]:
                if a["gpu"] is not None:
                    seen.setdefault(a["pid"], set()).add(a["gpu"])
            busy = [i for i, g in s["gpus"].items() if g["util"] > 0]
            both_busy += len(busy) >= 2
        return {
            "peak": peak,
            "pids_on_gpus": {pid: sorted(g) for pid, g in seen.items()},
            "samples": len(inside),
            "samples_with_two_gpus_busy": both_busy,
        }


class Service:
    """The real backend server with ``--gpus all``, and the HTTP calls the bench makes."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.token = secrets.token_hex(16)
        self.data = work / "two-gpu-data"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--port", "0", "--gpus", "all"]
            + ["--data-dir", str(self.data)],
            cwd=ROOT,
            env={**env, "SAM3D_BACKEND_TOKEN": self.token},
            stdout=subprocess.PIPE,
            stderr=open(work / "two-gpu-server.log", "ab"),  # noqa: SIM115
            text=True,
        )
        ready = json.loads(self.proc.stdout.readline() or "{}")
        if ready.get("event") != "ready":
            raise SystemExit(f"the server did not start: {ready}; see {work}/two-gpu-server.log")
        self.url = f"http://127.0.0.1:{ready['port']}"
        self.gpus = ready.get("gpus")

    def get(self, path: str) -> Any:
        r = requests.get(self.url + path, headers=self._auth(), timeout=30)
        r.raise_for_status()
        return r.json()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def wait_workers(self, timeout: float = 300) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            slots = self.get("/info")["slots"]
            if all(s["pid"] for s in slots):
                return slots
            time.sleep(0.5)
        raise SystemExit(f"workers did not start in {timeout} s")

    def submit(self, inputs: dict[str, Path], seed: int) -> str:
        files = {
            "image": ("photo.png", inputs["image"].read_bytes(), "image/png"),
            "mask": ("mask.png", inputs["mask"].read_bytes(), "image/png"),
        }
        options = {"engine": "sam3d", "seed": seed}
        r = requests.post(
            self.url + "/jobs",
            headers=self._auth(),
            files=files,
            data={"options": json.dumps(options)},
            timeout=120,
        )
        if r.status_code != 202:
            raise SystemExit(f"submission refused: {r.status_code} {r.text}")
        return r.json()["id"]

    def wait(self, job_id: str, states: tuple[str, ...] = FINAL_STATES, timeout: float = 600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.get(f"/jobs/{job_id}")
            if st["state"] in states:
                return st
            time.sleep(0.2)
        raise SystemExit(f"job {job_id} did not reach {states} in {timeout} s")

    def result(self, job_id: str) -> dict[str, Any]:
        r = requests.get(f"{self.url}/jobs/{job_id}/result.json", headers=self._auth(), timeout=30)
        return r.json() if r.ok else {}

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def job_row(svc: Service, st: dict[str, Any], t_ref: float) -> dict[str, Any]:
    """One finished job: its GPU from status.json and from result.json, times from t_ref."""
    res = svc.result(st["id"]) if st["state"] in ("done", "partial") else {}
    w = st.get("worker") or {}
    return {
        "id": st["id"][:10],
        "state": st["state"],
        "error": (st.get("error") or {}).get("code"),
        "gpu_status": w.get("gpu"),
        "gpu_result": (res.get("worker") or {}).get("gpu"),
        "pid": w.get("pid"),
        "submitted_s": round(st["created"] - t_ref, 2),
        "started_s": round(st["started"] - t_ref, 2) if st.get("started") else None,
        "finished_s": round(st["finished"] - t_ref, 2) if st.get("finished") else None,
        "run_s": round(st["finished"] - st["started"], 2)
        if st.get("started") and st.get("finished")
        else None,
    }


def run_phase(
    svc: Service,
    smi: GpuSampler,
    inputs: dict[str, Path],
    name: str,
    seeds: list[int],
    together: bool,
    kill_after_s: float | None = None,
) -> dict[str, Any]:
    """Submit one job per seed (all at once, or each after the previous ended); with
    ``kill_after_s``, SIGKILL the worker of the first job that many seconds into its run."""
    t0 = time.time()
    rows, kill = [], None
    if together:
        ids = [svc.submit(inputs, s) for s in seeds]
        if kill_after_s is not None:
            running = svc.wait(ids[0], states=("running", *FINAL_STATES))
            while running["state"] == "running" and not running.get("worker"):
                running = svc.get(f"/jobs/{ids[0]}")
            time.sleep(kill_after_s)
            victim = svc.get(f"/jobs/{ids[0]}")
            if victim["state"] == "running":
                os.kill(victim["worker"]["pid"], signal.SIGKILL)
                kill = {
                    "t_s": round(time.time() - t0, 2),
                    "pid": victim["worker"]["pid"],
                    "gpu": victim["worker"]["gpu"],
                    "stage": victim["stage"],
                }
        sts = [svc.wait(i) for i in ids]
    else:
        sts = [svc.wait(svc.submit(inputs, s)) for s in seeds]
    wall = time.time() - t0
    rows = [job_row(svc, st, t0) for st in sts]
    return {
        "phase": name,
        "wall_s": round(wall, 2),
        "jobs": rows,
        "kill": kill,
        "smi": smi.window(t0, time.time()),
    }


def print_phase(p: dict[str, Any]) -> None:
    print(f"\n== {p['phase']}: wall {p['wall_s']} s")
    print(
        f"  {'job':<12}{'state':<9}{'error':<16}{'GPU(status)':>12}{'GPU(result)':>12}"
        f"{'pid':>9}{'start s':>9}{'end s':>9}{'run s':>8}"
    )
    for r in p["jobs"]:
        print(
            f"  {r['id']:<12}{r['state']:<9}{str(r['error'] or '-'):<16}"
            f"{str(r['gpu_status']):>12}{str(r['gpu_result']):>12}{str(r['pid']):>9}"
            f"{str(r['started_s']):>9}{str(r['finished_s']):>9}{str(r['run_s']):>8}"
        )
    smi = p["smi"]
    peaks = ", ".join(
        f"GPU {i}: {v['mem_mb']:.0f} MiB, util {v['util']:.0f}%"
        for i, v in sorted(smi["peak"].items())
    )
    print(
        f"  nvidia-smi ({smi['samples']} samples, {smi['samples_with_two_gpus_busy']} with "
        f"two GPUs busy): {peaks}"
    )
    print(f"  pids seen on GPUs: {smi['pids_on_gpus']}")
    if p["kill"]:
        print(
            f"  killed worker pid {p['kill']['pid']} (GPU {p['kill']['gpu']}) at "
            f"{p['kill']['t_s']} s, in stage {p['kill']['stage']!r}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", type=Path, default=ROOT / ".upstream")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sam3d-gpu"))
    ap.add_argument("--configs", default="configs")
    ap.add_argument("--voxels", type=int, default=single.REALISTIC_VOXELS)
    ap.add_argument("--kill-after", type=float, default=4.0, help="seconds into the job")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    args.work = args.work.resolve()
    upstream = args.upstream.resolve()

    import torch

    if torch.cuda.device_count() < 2:
        print(f"this benchmark needs two GPUs; this machine has {torch.cuda.device_count()}")
        return 2
    # the single-GPU harness's setup: PyTorch3D build, stand-ins, random weights (cached)
    single.main(
        ["--upstream", str(upstream), "--work", str(args.work)]
        + ["--configs", args.configs, "--plans", ""]
    )
    ckpt = args.work / f"ckpt-{args.configs}"
    hooks = args.work / "two-gpu-hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    paths = [hooks, *single.upstream_paths(upstream, args.work), ROOT]
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, paths), *inherited]))
    env.update(
        SAM3D_BENCH_HOOKS=f"{args.voxels}|{BENCH}|{ckpt}",
        SAM3D_CHECKPOINTS=str(ckpt),
        SAM3D_STANDIN_LOG=str(args.work / "standin_calls.jsonl"),
        PYTHONUNBUFFERED="1",
    )
    inputs = single.make_inputs(args.work)
    smi = GpuSampler()
    t_start = time.perf_counter()
    svc = Service(args.work, env)
    phases: list[dict[str, Any]] = []
    try:
        slots = svc.wait_workers()
        print(
            f"server up with --gpus all -> {svc.gpus}; slots {slots} "
            f"({time.perf_counter() - t_start:.1f} s)",
            flush=True,
        )
        plan = [
            ("warm-up: both workers load the model", [101, 102], True, None),
            ("one after the other", [201, 202], False, None),
            ("two together", [301, 302], True, None),
            ("three together (the third waits for a free GPU)", [401, 402, 403], True, None),
            ("a worker killed mid-job", [501, 502], True, args.kill_after),
            ("after the kill: both GPUs again", [601, 602], True, None),
        ]
        for name, seeds, together, kill in plan:
            phases.append(run_phase(svc, smi, inputs, name, seeds, together, kill))
            print_phase(phases[-1])
            sys.stdout.flush()
    finally:
        svc.stop()
        smi.stop()
    serial = next(p for p in phases if p["phase"] == "one after the other")["wall_s"]
    parallel = next(p for p in phases if p["phase"] == "two together")["wall_s"]
    print(
        f"\ntwo jobs: together {parallel:.1f} s vs one after the other {serial:.1f} s "
        f"-> {serial / parallel:.2f}x the throughput"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"phases": phases, "serial_s": serial, "parallel_s": parallel},
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
