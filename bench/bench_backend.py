"""Benchmark the backend service: job time, idle memory, cache hits.

Runs the real server (``python -m backend serve``) on a loopback port and the demo example
(``scripts/make_example.py``: 960x720 photo, preview engine, 20k faces, 1024² texture).
Side by side with what a pipeline would otherwise do: call ``python -m backend generate``
once per object (a cold process each time).

    .venv/bin/python bench/bench_backend.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sam3d-bench-"))
    subprocess.run(
        [sys.executable, "scripts/make_example.py", "--out", str(tmp)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    image = (tmp / "example_image.png").read_bytes()
    mask = (tmp / "example_mask.png").read_bytes()
    token = secrets.token_hex(16)
    env = {**os.environ, "SAM3D_BACKEND_TOKEN": token}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "serve", "--port", "0", "--data-dir", str(tmp / "jobs")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = json.loads(proc.stdout.readline())
    startup = time.perf_counter() - t0
    url = f"http://127.0.0.1:{ready['port']}"
    h = {"Authorization": f"Bearer {token}"}
    # wait for the worker to be up, then let things settle
    while not requests.get(url + "/info", headers=h, timeout=5).json()["worker_pids"]:
        time.sleep(0.1)
    time.sleep(1.0)
    info = requests.get(url + "/info", headers=h, timeout=5).json()
    server_idle = rss_mb(proc.pid)
    worker_idle = sum(rss_mb(p) for p in info["worker_pids"])

    def job(seed: int) -> tuple[float, str]:
        t = time.perf_counter()
        r = requests.post(
            url + "/jobs",
            headers=h,
            timeout=60,
            files={"image": ("i.png", image), "mask": ("m.png", mask)},
            data={"options": json.dumps({"engine": "preview", "seed": seed})},
        )
        jid = r.json()["id"]
        while requests.get(f"{url}/jobs/{jid}", headers=h, timeout=5).json()["state"] not in (
            "done",
            "failed",
        ):
            time.sleep(0.05)
        glb = requests.get(f"{url}/jobs/{jid}/result", headers=h, timeout=30).content
        assert glb[:4] == b"glTF"
        return time.perf_counter() - t, jid

    job_times = [job(seed)[0] for seed in range(args.runs)]
    server_busy = rss_mb(proc.pid)
    worker_after = sum(
        rss_mb(p) for p in requests.get(url + "/info", headers=h, timeout=5).json()["worker_pids"]
    )
    hits = []
    for _ in range(20):
        t = time.perf_counter()
        r = requests.post(
            url + "/jobs",
            headers=h,
            timeout=60,
            files={"image": ("i.png", image), "mask": ("m.png", mask)},
            data={"options": json.dumps({"engine": "preview", "seed": 0})},
        )
        assert r.json()["cached"] is True
        requests.get(f"{url}/jobs/{r.json()['id']}/result", headers=h, timeout=30)
        hits.append(time.perf_counter() - t)
    proc.terminate()
    proc.wait(timeout=20)

    cli_times = []
    for seed in range(args.runs):
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "backend",
                "generate",
                "--image",
                str(tmp / "example_image.png"),
                "--mask",
                str(tmp / "example_mask.png"),
                "--engine",
                "preview",
                "--seed",
                str(seed),
                "--out",
                str(tmp / f"cli{seed}.glb"),
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        cli_times.append(time.perf_counter() - t)

    med = statistics.median
    rows = [
        ("server start -> ready line", f"{startup:.2f} s", ""),
        ("server process idle RSS", f"{server_idle:.0f} MiB", "never imports torch"),
        ("worker process idle RSS", f"{worker_idle:.0f} MiB", "1 worker, preview engine"),
        ("server RSS after jobs", f"{server_busy:.0f} MiB", ""),
        ("worker RSS after jobs", f"{worker_after:.0f} MiB", ""),
        (
            f"preview job POST -> GLB (median of {args.runs})",
            f"{med(job_times):.2f} s",
            f"min {min(job_times):.2f} s",
        ),
        (
            f"  vs one-shot CLI generate (median of {args.runs})",
            f"{med(cli_times):.2f} s",
            f"x{med(cli_times) / med(job_times):.2f} of the warm server",
        ),
        (
            "cache hit POST + GET result (median of 20)",
            f"{med(hits) * 1000:.1f} ms",
            f"max {max(hits) * 1000:.1f} ms",
        ),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'value':>12}  note")
    print("-" * (w + 40))
    for name, val, note in rows:
        print(f"{name:<{w}}  {val:>12}  {note}")
    print(f"\nmachine: {os.cpu_count()} CPUs; demo image 960x720, 20k faces, 1024² texture")


if __name__ == "__main__":
    main()
