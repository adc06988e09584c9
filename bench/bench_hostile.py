"""The backend under hostile conditions, side by side with the backend before its hardening.

Each scenario runs against the real server (``python -m backend serve`` on loopback, real
workers) of this tree and of ``--baseline`` (a git revision, extracted to a temporary folder;
``none`` skips it):

* disk full: the data folder on a 12 MB tmpfs is filled while a job runs (root only);
* unwritable: the data folder is made immutable (``chattr -R +i``) while a job runs;
* flood: 60 concurrent uploads of a 0.3 MB PNG declaring 10000x10000 (100 MP) with a mask of
  another shape; then ``--accepted`` uploads with a matching 100 MP mask (decoded for real);
* half-open: 1,100 connections that never finish their request head, under ``ulimit -n
  1024`` and under the machine's own limit;
* malformed: the request corpus of ``tests/backend/malformed.py``.

    .venv/bin/python bench/bench_hostile.py [--baseline c09b2b7] [--accepted 20]
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import os
import resource
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.backend.malformed import corpus, send  # noqa: E402

SCENARIOS = "full,immutable,flood,accept,half1024,half,malformed"
FINAL = ("done", "partial", "failed", "cancelled", "interrupted")
FAST = {"engine": "preview", "target_faces": 800, "texture_size": 256}


# -- a server of one source tree ------------------------------------------------------------
@dataclass
class Server:
    tree: Path
    data: Path
    args: list[str] = field(default_factory=list)
    open_files: int | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen | None = None
    url: str = ""

    def start(self) -> Server:
        env = {
            **os.environ,
            "SAM3D_BACKEND_TOKEN": self.token,
            "SAM3D_ENABLE_TEST_ENGINES": "1",
            "SAM3D_CHECKPOINTS": str(self.data.parent / "no-checkpoints"),
        }
        limit = self.open_files

        def preexec() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        cmd = [sys.executable, "-m", "backend", "serve", "--port", "0"]
        self.proc = subprocess.Popen(
            [*cmd, "--data-dir", str(self.data), "--workers", "1", *self.args],
            cwd=self.tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=preexec,
        )
        ready = json.loads(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{ready['port']}"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def get(self, path: str, timeout: float = 30) -> requests.Response:
        return requests.get(self.url + path, headers=self.headers, timeout=timeout)

    def post(self, image: bytes, mask: bytes, timeout: float = 300, **opts) -> requests.Response:
        return requests.post(
            self.url + "/jobs",
            headers=self.headers,
            files=[("image", ("i.png", image)), ("mask", ("m.png", mask))],
            data={"options": json.dumps(opts)},
            timeout=timeout,
        )

    def wait(self, job_id: str, timeout: float, states=FINAL) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.get(f"/jobs/{job_id}").json()
            if st.get("state") in states:
                return st
            time.sleep(0.1)
        return st


# -- inputs ---------------------------------------------------------------------------------
def _png(a: np.ndarray | Image.Image) -> bytes:
    im = a if isinstance(a, Image.Image) else Image.fromarray(a)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _scene(seed: int) -> tuple[bytes, bytes]:
    h, w = 180, 240
    yy, xx = np.mgrid[:h, :w]
    mask = (xx - w * 0.5) ** 2 + (yy - h * 0.6) ** 2 < (h * 0.3) ** 2
    img = np.full((h, w, 3), 120, np.uint8)
    img[mask] = [200, 60 + seed % 100, 40]
    return _png(img), _png(mask.astype(np.uint8) * 255)


def _job(s: Server, seed: int, **opts) -> tuple[str | None, requests.Response]:
    image, mask = _scene(seed)
    r = s.post(image, mask, seed=seed, **{**FAST, **opts})
    return (r.json().get("id") if r.status_code == 202 else None), r


# -- disk scenarios -------------------------------------------------------------------------
def _mount_tmpfs(where: Path) -> str | None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    return None if r.returncode == 0 else (r.stderr.strip() or "mount failed")


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (2**20, 2**16, 2**12, 2**9, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def disk_scenario(tree: Path, work: Path, kind: str, ours: bool) -> dict[str, Any]:
    """A slow job runs, two more wait; the disk fills (or turns immutable). Then: a new
    POST, the end of every job, a cancel, and after the disk recovers, the same jobs and a
    new one again."""
    disk = work / f"disk-{kind}"
    why = _mount_tmpfs(disk)
    if why is not None:
        return {"skipped": f"no tmpfs here ({why}); needs root"}
    data = disk / "jobs"
    s = Server(tree, data, ["--min-free-mb", "0.5"] if ours else []).start()
    out: dict[str, Any] = {}
    try:
        slow, _ = _job(s, 3, engine="crashtest")  # 6 s in reconstruct, checks for cancel
        s.wait(slow, 60, states=("running",))
        queued = [_job(s, 10)[0], _job(s, 11)[0]]
        to_cancel, _ = _job(s, 3, engine="crashtest", texture_size=512)
        filler = None
        if kind == "full":
            filler = _fill(disk)
        else:
            subprocess.run(["chattr", "-R", "+i", str(data)], check=True)
        before = {p.name for p in data.iterdir()}
        _, r = _job(s, 12)
        out["post"] = f"{r.status_code} {r.json().get('code')}"
        out["leftover"] = len({p.name for p in data.iterdir()} - before)
        t0 = time.monotonic()
        deadline = t0 + 30  # one deadline for all: the old backend wedges
        ends = {j: s.wait(j, max(0.1, deadline - time.monotonic())) for j in [slow, *queued]}
        out["ended_s"] = (
            time.monotonic() - t0 if all(st.get("state") in FINAL for st in ends.values()) else None
        )
        s.wait(to_cancel, 10, states=("running", *FINAL))
        t0 = time.monotonic()
        requests.delete(s.url + f"/jobs/{to_cancel}", headers=s.headers, timeout=30)
        cancelled = s.wait(to_cancel, 15)
        out["cancel_s"] = time.monotonic() - t0 if cancelled.get("state") == "cancelled" else None
        want = "disk_full" if kind == "full" else "data_dir_not_writable"
        true = sum(
            1
            for st in ends.values()
            if st.get("state") == "failed" and (st.get("error") or {}).get("code") == want
        )
        out["true_states"] = f"{true}/{len(ends)}"
        kinds = [f"{st.get('state')}:{(st.get('error') or {}).get('code')}" for st in ends.values()]
        out["states"] = ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds))
        # the disk recovers
        if filler is not None:
            filler.unlink()
        else:
            subprocess.run(["chattr", "-R", "-i", str(data)], check=True)
        time.sleep(1.5)
        right = 0
        for seed, job in zip((10, 11), queued, strict=True):
            again, r = _job(s, seed)
            st = s.wait(again, 30) if again else {}
            res = s.get(f"/jobs/{job}/result.json").json() if st.get("state") == "done" else {}
            right += int(again == job and res.get("id") == job)
        new, _ = _job(s, 13)
        st = s.wait(new, 30) if new else {}
        res = s.get(f"/jobs/{new}/result.json").json() if st.get("state") == "done" else {}
        right += int(res.get("id") == new)
        out["next_right"] = f"{right}/3"
        on_disk = json.loads((data / slow / "status.json").read_text())
        out["on_disk"] = on_disk["state"]
    finally:
        subprocess.run(["chattr", "-R", "-i", str(disk)], capture_output=True)
        s.stop()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    return out


# -- floods ---------------------------------------------------------------------------------
class _Sampler:
    """Server RSS every 20 ms; /health and a job's status every 20 ms (latencies)."""

    def __init__(self, s: Server, job_id: str, rss_cap_mib: float) -> None:
        self.s, self.job_id, self.cap = s, job_id, rss_cap_mib
        self.rss_peak = 0.0
        self.health: list[float] = []
        self.status: list[float] = []
        self.unanswered = 0
        self.over_cap = False
        self._stop = threading.Event()

    def _rss(self) -> None:
        p = psutil.Process(self.s.proc.pid)
        while not self._stop.is_set():
            try:
                rss = p.memory_info().rss / 2**20
            except psutil.Error:
                return
            self.rss_peak = max(self.rss_peak, rss)
            if rss > self.cap:  # the old backend can take the machine down: stop it here
                self.over_cap = True
                self.s.proc.kill()
                return
            time.sleep(0.02)

    def _poll(self) -> None:
        sess = requests.Session()
        while not self._stop.is_set():
            for into, path in ((self.health, "/health"), (self.status, f"/jobs/{self.job_id}")):
                t0 = time.perf_counter()
                try:
                    sess.get(self.s.url + path, headers=self.s.headers, timeout=20)
                    into.append(time.perf_counter() - t0)
                except requests.RequestException:
                    self.unanswered += 1
            time.sleep(0.02)

    def __enter__(self) -> _Sampler:
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._rss, self._poll)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def flood_scenario(tree: Path, work: Path, name: str, n: int, matching: bool) -> dict[str, Any]:
    big = _png(Image.new("RGB", (10_000, 10_000), (10, 20, 30)))
    if matching:
        m = Image.new("L", (10_000, 10_000), 0)
        m.paste(255, (3000, 3000, 6000, 6000))
        mask = _png(m)
    else:
        mask = _png(Image.new("L", (960, 720), 0))
    s = Server(tree, work / f"flood-{name}").start()
    out: dict[str, Any] = {}
    try:
        job, _ = _job(s, 50)
        codes: dict[str, int] = {}

        def post(i: int) -> None:
            try:
                r = s.post(big, mask, timeout=180, engine="preview", seed=1000 + i)
                key = f"{r.status_code} {r.json().get('code') or r.json().get('state')}"
                if r.status_code == 202:  # let the worker rest: this measures intake
                    requests.delete(
                        s.url + f"/jobs/{r.json()['id']}", headers=s.headers, timeout=30
                    )
            except (requests.RequestException, ValueError) as exc:
                key = type(exc).__name__
            codes[key] = codes.get(key, 0) + 1

        t0 = time.monotonic()
        with _Sampler(s, job, rss_cap_mib=4096) as smp, ThreadPoolExecutor(n) as ex:
            list(ex.map(post, range(n)))
        out["wall_s"] = time.monotonic() - t0
        out["rss_peak_mib"] = smp.rss_peak
        out["stopped_over_4gib"] = smp.over_cap
        out["health_p50_ms"] = (_p(smp.health, 0.5) or 0) * 1000
        out["health_p99_ms"] = (_p(smp.health, 0.99) or 0) * 1000
        out["status_p99_ms"] = (_p(smp.status, 0.99) or 0) * 1000
        out["unanswered"] = smp.unanswered
        out["answers"] = ", ".join(f"{k} x{v}" for k, v in sorted(codes.items()))
        time.sleep(1.0)
        out["rss_after_mib"] = None
        if not smp.over_cap:
            out["rss_after_mib"] = psutil.Process(s.proc.pid).memory_info().rss / 2**20
    finally:
        s.stop()
    return out


def half_open_scenario(tree: Path, work: Path, name: str, open_files: int | None) -> dict:
    s = Server(tree, work / f"half-open-{name}", open_files=open_files).start()
    out: dict[str, Any] = {}
    socks: list[socket.socket] = []
    try:
        refused = 0
        for _ in range(1100):
            try:
                c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
                c.sendall(b"GET /jobs HTTP/1.1\r\nHost: x\r\n")
                socks.append(c)
            except OSError:
                refused += 1
        out["refused_at_connect"] = refused
        try:
            out["server_fds"] = len(os.listdir(f"/proc/{s.proc.pid}/fd"))
        except OSError:
            out["server_fds"] = None
        lat = []
        for _ in range(5):
            t0 = time.perf_counter()
            try:
                requests.get(s.url + "/health", timeout=5)
                lat.append(time.perf_counter() - t0)
            except requests.RequestException:
                pass
            time.sleep(0.2)
        out["health_answered"] = f"{len(lat)}/5"
        out["health_max_ms"] = max(lat) * 1000 if lat else None
        sel = selectors.DefaultSelector()
        for c in socks:
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
        t0 = time.monotonic()
        open_ = set(socks)
        while open_ and time.monotonic() - t0 < 30:
            for key, _ in sel.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(4096)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    open_.discard(key.fileobj)
        out["all_closed_s"] = time.monotonic() - t0 if not open_ else None
        out["open_after_30s"] = len(open_)
    finally:
        for c in socks:
            c.close()
        s.stop()
    return out


def malformed_scenario(tree: Path, work: Path) -> dict[str, Any]:
    s = Server(tree, work / "malformed").start()
    out = {"cases": 0, "4xx": 0, "5xx": 0, "other": 0, "as_expected": 0}
    try:
        for case in corpus():
            out["cases"] += 1
            try:
                status, _ = send(s.url, s.token, case, timeout=60)
            except (OSError, requests.RequestException, ValueError, IndexError):
                out["other"] += 1
                continue
            kind = "5xx" if status >= 500 else "4xx" if status >= 400 else "other"
            out[kind] += 1
            out["as_expected"] += int(status == case.status)
    finally:
        s.stop()
    return out


# -- the table ------------------------------------------------------------------------------
def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}{unit}" if abs(v) >= 10 else f"{v:.2f}{unit}"
    return f"{v}{unit}"


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a:
        return f"x{b / a:.1f}"
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline", default="c09b2b7", help="git revision to compare, or none")
    ap.add_argument("--accepted", type=int, default=20, help="100 MP uploads that decode")
    ap.add_argument("--only", default=SCENARIOS, help=f"comma-separated subset of {SCENARIOS}")
    args = ap.parse_args()
    only = set(args.only.split(","))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    work = Path(tempfile.mkdtemp(prefix="sam3d-hostile-"))
    trees = {"hardened": REPO}
    if args.baseline != "none":
        base = work / "baseline"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.baseline], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        trees[f"before ({args.baseline})"] = base
    results: dict[str, dict[str, Any]] = {}
    try:
        for label, tree in trees.items():
            ours = tree == REPO
            print(f"running {label} ...", file=sys.stderr, flush=True)
            r: dict[str, Any] = {}
            runs = {
                "full": lambda t=tree, o=ours, lb=label: disk_scenario(t, work / lb, "full", o),
                "immutable": lambda t=tree, o=ours, lb=label: disk_scenario(
                    t, work / lb, "immutable", o
                ),
                "flood": lambda t=tree, lb=label: flood_scenario(t, work / lb, "x", 60, False),
                "accept": lambda t=tree, lb=label: flood_scenario(
                    t, work / lb, "y", args.accepted, True
                ),
                "half1024": lambda t=tree, lb=label: half_open_scenario(t, work / lb, "a", 1024),
                "half": lambda t=tree, lb=label: half_open_scenario(t, work / lb, "b", None),
                "malformed": lambda t=tree, lb=label: malformed_scenario(t, work / lb),
            }
            for name, run in runs.items():
                if name in only:
                    print(f"  {name}", file=sys.stderr, flush=True)
                    r[name] = run()
            results[label] = r
    finally:
        shutil.rmtree(work, ignore_errors=True)

    labels = list(results)
    rows: list[tuple[str, list[str], str]] = []

    def row(name: str, get, unit: str = "", ratio: bool = False) -> None:
        vals = [get(results[lb]) for lb in labels]
        note = _ratio(vals[0], vals[1]) if ratio and len(vals) > 1 else ""
        rows.append((name, [_fmt(v, unit) for v in vals], note))

    for key, title in (("full", "disk full mid-job"), ("immutable", "data dir immutable mid-job")):
        if key not in only:
            continue
        rows.append((f"[{title}]", ["" for _ in labels], ""))
        if any("skipped" in results[lb][key] for lb in labels):
            row("  skipped", lambda r, k=key: r[k].get("skipped"))
            continue
        row("  3 jobs ending in their true failure", lambda r, k=key: r[k].get("true_states"))
        row("  their states", lambda r, k=key: r[k].get("states"))
        row("  s until all 3 ended", lambda r, k=key: r[k].get("ended_s"), " s")
        row("  POST while it lasts", lambda r, k=key: r[k].get("post"))
        row("  job folders that POST left", lambda r, k=key: r[k].get("leftover"))
        row("  cancel of a running job, s", lambda r, k=key: r[k].get("cancel_s"), " s")
        row("  status on disk after recovery", lambda r, k=key: r[k].get("on_disk"))
        row("  next jobs right (own result)", lambda r, k=key: r[k].get("next_right"))
    for key, title in (
        ("flood", "60 x 100 MP-header PNG, mask of another shape"),
        ("accept", f"{args.accepted} x 100 MP PNG, matching mask (decoded)"),
    ):
        if key not in only:
            continue
        rows.append((f"[{title}]", ["" for _ in labels], ""))
        row("  server RSS peak", lambda r, k=key: r[k]["rss_peak_mib"], " MiB", True)
        row("  killed by the bench at 4 GiB", lambda r, k=key: r[k]["stopped_over_4gib"])
        row("  server RSS 1 s after", lambda r, k=key: r[k]["rss_after_mib"], " MiB", True)
        row("  /health p50", lambda r, k=key: r[k]["health_p50_ms"], " ms", True)
        row("  /health p99", lambda r, k=key: r[k]["health_p99_ms"], " ms", True)
        row("  GET /jobs/{id} p99", lambda r, k=key: r[k]["status_p99_ms"], " ms", True)
        row("  polls unanswered (20 s timeout)", lambda r, k=key: r[k]["unanswered"])
        row("  flood wall time", lambda r, k=key: r[k]["wall_s"], " s", True)
        row("  answers", lambda r, k=key: r[k]["answers"])
    for key, title in (
        ("half1024", "1,100 half-open connections, ulimit -n 1024"),
        ("half", "1,100 half-open connections, the machine's ulimit"),
    ):
        if key not in only:
            continue
        rows.append((f"[{title}]", ["" for _ in labels], ""))
        row("  /health answered during", lambda r, k=key: r[k]["health_answered"])
        row("  /health slowest", lambda r, k=key: r[k]["health_max_ms"], " ms")
        row("  server open fds", lambda r, k=key: r[k]["server_fds"])
        row("  s until all closed", lambda r, k=key: r[k]["all_closed_s"], " s")
        row("  still open after 30 s", lambda r, k=key: r[k]["open_after_30s"])
    if "malformed" in only:
        rows.append(("[malformed requests]", ["" for _ in labels], ""))
        row("  cases", lambda r: r["malformed"]["cases"])
        row("  answered 4xx", lambda r: r["malformed"]["4xx"])
        row("  answered 5xx", lambda r: r["malformed"]["5xx"])
        row("  no answer / other", lambda r: r["malformed"]["other"])
        row("  exactly the expected status", lambda r: r["malformed"]["as_expected"])

    w = max(len(r[0]) for r in rows)
    cols = [max(len(lb), *(len(r[1][i]) for r in rows)) for i, lb in enumerate(labels)]
    print(
        f"{'measure':<{w}}  "
        + "  ".join(f"{lb:>{c}}" for lb, c in zip(labels, cols, strict=True))
        + "  ratio"
    )
    print("-" * (w + sum(cols) + 2 * len(cols) + 8))
    for name, vals, note in rows:
        print(
            f"{name:<{w}}  "
            + "  ".join(f"{v:>{c}}" for v, c in zip(vals, cols, strict=True))
            + f"  {note}"
        )
    print(
        f"\nmachine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        "ratio = before / hardened; goals: RSS <= 1.5 GiB, /health p99 < 200 ms"
    )


if __name__ == "__main__":
    main()
