#!/usr/bin/env python
"""Photo to scene, the whole path, with the preview engine: the per-object cost of a 27 MP
photo with 16 masks against one object from a 960x720 photo, CPU use and the peak memory
of every process. Prints tables; not a test.

Inputs, drawn here with Pillow and written as PNG files the way a user hands them over:

* ``large``: a 6000 x 4500 photo (27 MP) with 16 objects standing on the ground (ellipses,
  boxes, polygons with gradients and stripes), one full-size 8-bit grey mask PNG per object;
* ``small``: a 960 x 720 photo with one such object and its mask.

Each case is one run of ``scripts/sam3d_batch.py`` as an artist runs it (the bpy module,
the add-on's managed backend: HTTP server + one worker; ``--no-assets``; 20,000 faces,
1024² texture): intake, engine, finishing, import into Blender and the report's IoU check.
Measured per case, from the batch's ``report.json`` and the job's ``result.json``: the
item's seconds (submission to objects imported and measured) split into the job (intake +
queue + worker run), the worker's run, the import and the rest (the IoU check and the
report), seconds per object (item seconds / objects), and the item's IoUs; CPU
utilisation of the whole run (user + system CPU of every process over wall time and
cores); and the peak RSS (VmHWM) of each process: Blender (the batch), the server, the
worker and the worker's forked children (the decimator).

Where the large photo's wall time goes: every 0.1 s the run's processes are sampled from
/proc (CPU seconds and resident memory by role, runnable threads) beside the machine's
busy CPU seconds, and the run is cut into phases - ``boot`` (bpy, add-on, backend start),
``submit`` (request, upload, intake, queue), the worker's ``engine`` and ``finish``,
``hand-over`` (the add-on sees the end, downloads), Blender's ``import``, ``IoU+report``
and ``save+exit`` - from the batch's output, the job's status and log and its timings.
Per phase: CPU use of the cores by the run (by role) and by other programs (a shared
machine's noise, shown, not hidden), the run's *demand* (its runnable threads, at most
the cores: what it would use of an otherwise idle machine), the largest RSS of each role;
and the same over the phases while objects are in flight (engine to IoU). The GLBs of
both trees are compared byte for byte but for the timings recorded in their JSON.

``--baseline DIR`` runs the same cases with another checkout (e.g. ``git archive main |
tar -x -C DIR``: its batch script, add-on and backend) in the same run, so before and after
sit side by side.

    .venv/bin/python bench/bench_scene.py [--repeats 1] [--small-repeats 3] [--baseline DIR]
        [--texture-size 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LARGE = (6000, 4500)
SMALL = (960, 720)
N_LARGE = 16
ROLES = ("blender", "server", "worker", "fork")


def _palette(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    a = tuple(int(x) for x in rng.integers(40, 220, 3))
    b = tuple(int(x) for x in rng.integers(40, 220, 3))
    return a, b  # type: ignore[return-value]


def draw_photo(size: tuple[int, int], boxes: list[tuple[int, int, int, int]], seed: int, out: Path):
    """Photo ``size`` (w, h) with one object per box (x0, y0, x1, y1): writes ``photo.png`` and
    ``masks/<i>.png`` (L, 255 = object) into ``out``."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = size
    # Background: sky-to-floor gradient with mild noise (not flat, so colours matter).
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    base = (1 - yy) * np.array([150, 175, 205], np.float32) + yy * np.array([120, 95, 70])
    noise = rng.integers(-8, 9, (h // 8 + 1, w // 8 + 1, 1)).astype(np.float32)
    noise = np.kron(noise, np.ones((8, 8, 1), np.float32))[:h, :w]
    photo = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    (out / "masks").mkdir(parents=True, exist_ok=True)
    draw = ImageDraw.Draw(photo)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        mask = Image.new("L", size, 0)
        md = ImageDraw.Draw(mask)
        kind = i % 3
        if kind == 0:
            md.ellipse((x0, y0, x1, y1), fill=255)
        elif kind == 1:
            r = (x1 - x0) // 8
            md.rounded_rectangle((x0, y0, x1, y1), radius=r, fill=255)
        else:
            cx = (x0 + x1) / 2
            md.polygon([(cx, y0), (x1, y0 + (y1 - y0) * 0.4), (x1 - (x1 - x0) * 0.2, y1),
                        (x0 + (x1 - x0) * 0.2, y1), (x0, y0 + (y1 - y0) * 0.4)], fill=255)  # fmt: skip
        a, b = _palette(rng)
        # Object texture: stripes of two colours across the box, pasted through the mask.
        tw, th = x1 - x0 + 1, y1 - y0 + 1
        stripe = max(4, tw // 12)
        xs = (np.arange(tw) // stripe) % 2
        tex = np.where(xs[None, :, None] == 0, np.array(a), np.array(b)).astype(np.uint8)
        tex = np.broadcast_to(tex, (th, tw, 3))
        patch = Image.fromarray(np.ascontiguousarray(tex), "RGB")
        photo.paste(patch, (x0, y0), mask.crop((x0, y0, x1 + 1, y1 + 1)))
        mask.save(out / "masks" / f"{i}.png", compress_level=1)
    del draw
    photo = photo.filter(ImageFilter.SMOOTH)
    photo.save(out / "photo.png", compress_level=1)


def large_boxes() -> list[tuple[int, int, int, int]]:
    """16 objects on a 4 x 4 layout, all reaching below the horizon (y = 2250)."""
    boxes = []
    rng = np.random.default_rng(1)
    for r in range(4):
        for c in range(4):
            bw = int(rng.integers(700, 1300))
            bh = int(rng.integers(600, 1100))
            cx = 750 + c * 1500
            bottom = 2700 + r * 500 + int(rng.integers(0, 200))
            boxes.append((cx - bw // 2, bottom - bh, cx + bw // 2, min(bottom, LARGE[1] - 2)))
    return boxes


def small_boxes() -> list[tuple[int, int, int, int]]:
    return [(330, 280, 630, 600)]


def _role(pid: int, root: int, parents: dict[int, int], cmdlines: dict[int, str]) -> str | None:
    """What process ``pid`` is in a batch run whose batch process is ``root``."""
    if pid == root:
        return "blender"
    cmd = cmdlines.get(pid, "")
    if "backend serve" in cmd:
        return "server"
    if "backend.worker" in cmd:
        parent = parents.get(pid)
        return (
            "fork"
            if parent is not None and "backend.worker" in cmdlines.get(parent, "")
            else "worker"
        )
    return None


#: Seconds between two samples of the processes (CPU time and peak RSS).
INTERVAL_S = 0.1
#: The phases of one item, in order (see ``phases``); "in flight" is engine .. IoU.
PHASES = ("boot", "submit", "engine", "finish", "hand-over", "import", "IoU+report", "save+exit")
IN_FLIGHT = ("engine", "finish", "hand-over", "import", "IoU+report")
_TICKS = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, every process: /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / _TICKS  # all but idle and iowait


@dataclass
class Sample:
    """The run's processes at one instant: CPU seconds per role (cumulative; an ended
    process keeps its last figure), the machine's busy CPU seconds, resident MiB per role
    and how many of the run's threads were runnable (on a core or waiting for one)."""

    t: float  # unix time
    cpu: dict[str, float]
    machine: float
    rss: dict[str, float]
    runnable: int


@dataclass
class Phase:
    """One span of a run: its seconds, the CPU seconds of each role and of the whole
    machine in it, the largest resident MiB of each role and the run's mean parallelism
    (runnable threads, at most the cores: what it would use of an otherwise idle machine)."""

    seconds: float
    cpu: dict[str, float]
    machine: float
    rss: dict[str, float]
    demand: float


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class TreeSampler(threading.Thread):
    """Every ``INTERVAL_S``, the processes under ``root`` by role (``samples``), and the
    peak RSS (VmHWM, MiB) of each role (``peak``)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak: dict[str, float] = dict.fromkeys(ROLES, 0.0)
        self.cpu: dict[int, tuple[str, float]] = {}  # pid -> (role, CPU s at its last sample)
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(INTERVAL_S)
        self.sample()

    def sample(self) -> None:
        parents: dict[int, int] = {}
        cpu: dict[int, float] = {}
        now = time.time()
        busy = _machine_busy_s()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                stat = _read(f"/proc/{d}/stat")
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(d)] = int(fields[1])
            cpu[int(d)] = (int(fields[11]) + int(fields[12])) / _TICKS
        ours = []
        for pid in cpu:
            p = pid
            while p and p != self.root:  # only the descendants of this run
                p = parents.get(p, 0)
            if p == self.root:
                ours.append(pid)
        cmdlines: dict[int, str] = {}
        for pid in ours:
            try:
                cmdlines[pid] = _read(f"/proc/{pid}/cmdline").replace("\0", " ")
            except OSError:
                pass
        rss = dict.fromkeys(ROLES, 0.0)
        runnable = 0
        for pid in ours:
            role = _role(pid, self.root, parents, cmdlines)
            if role is None:
                continue
            try:
                status = _read(f"/proc/{pid}/status")
                for tid in os.listdir(f"/proc/{pid}/task"):
                    task = _read(f"/proc/{pid}/task/{tid}/stat")
                    runnable += task[task.rindex(")") + 2] == "R"
            except OSError:
                continue
            self.cpu[pid] = (role, cpu[pid])
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak[role] = max(self.peak[role], int(line.split()[1]) / 1024)
                elif line.startswith("VmRSS:"):
                    rss[role] += int(line.split()[1]) / 1024
        per_role = dict.fromkeys(ROLES, 0.0)
        for role, seconds in self.cpu.values():
            per_role[role] += seconds
        self.samples.append(Sample(now, per_role, busy, rss, runnable))

    def phase(self, t0: float, t1: float) -> Phase:
        """The span from unix time ``t0`` to ``t1`` (CPU figures linear between samples)."""

        def at(t: float) -> tuple[dict[str, float], float]:
            s = self.samples
            if t <= s[0].t:
                return s[0].cpu, s[0].machine
            for a, b in zip(s, s[1:], strict=False):
                if a.t <= t <= b.t:
                    f = (t - a.t) / (b.t - a.t) if b.t > a.t else 1.0
                    cpu = {k: a.cpu[k] + f * (b.cpu[k] - a.cpu[k]) for k in ROLES}
                    return cpu, a.machine + f * (b.machine - a.machine)
            return s[-1].cpu, s[-1].machine

        (c0, m0), (c1, m1) = at(t0), at(t1)
        inside = [s for s in self.samples if t0 <= s.t <= t1] or [
            min(self.samples, key=lambda s: abs(s.t - (t0 + t1) / 2))
        ]
        return Phase(
            seconds=t1 - t0,
            cpu={k: c1[k] - c0[k] for k in ROLES},
            machine=m1 - m0,
            rss={k: max(s.rss[k] for s in inside) for k in ROLES},
            demand=sum(min(s.runnable, CORES) for s in inside) / len(inside) / CORES,
        )


def _job_times(out: Path) -> tuple[float, float, float]:
    """Unix times at which the scene job's worker run started, its finishing stage began
    and the run ended, from the batch's own backend folder: the job's status (``started``,
    ``finished``; a backend without them: its last update, less the run's seconds) and the
    worker's ``timings.engine_s`` (without it: the log's "stage finish" line, to the
    second)."""
    (job,) = [d for d in (out / "cache" / "jobs").iterdir() if (d / "status.json").is_file()]
    status = json.loads((job / "status.json").read_text())
    timings = json.loads((job / "result.json").read_text())["timings"]
    finished = status.get("finished", status["updated"])
    started = status.get("started", finished - timings["total_s"])
    if "engine_s" in timings:
        return started, started + timings["engine_s"], finished
    for line in (job / "job.log").read_text().splitlines():
        if line.endswith(" stage finish"):
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + 0.5
            return started, min(max(started, stamp), finished), finished
    return started, started, finished


def phases(
    t_start: float, t_item: float, t_exit: float, timings: dict, job: tuple[float, float, float]
) -> dict[str, tuple[float, float]]:
    """Unix-time spans of one single-item batch run: ``boot`` (bpy, add-on, backend start),
    ``submit`` (request from files, upload, intake, queue), the worker's ``engine`` and
    ``finish`` (``job``: the times of ``_job_times``), ``hand-over`` (the add-on sees the
    job end, downloads), Blender's ``import``, ``IoU+report`` (IoU, copies, outputs) and
    ``save+exit``."""
    job_end = t_item + timings["job_s"]
    imported = job_end + timings["import_s"]
    item_end = t_item + timings["total_s"]
    marks = [t_start, t_item, *job, job_end, imported, item_end, t_exit]
    return {name: (marks[i], marks[i + 1]) for i, name in enumerate(PHASES)}


def glb_digest(path: Path) -> str:
    """SHA-256 of a GLB's bytes but for the timings it records (its JSON's ``*seconds``
    keys, which differ from run to run): equal digests mean equal meshes, textures, poses
    and every other field."""

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if not k.endswith("seconds")}
        return [strip(x) for x in v] if isinstance(v, list) else v

    data = path.read_bytes()
    h = hashlib.sha256()
    offset = 12  # header: magic, version, length; then chunks: length, type, bytes
    while offset < len(data):
        n, kind = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8 : offset + 8 + n]
        if kind == 0x4E4F534A:  # JSON
            chunk = json.dumps(strip(json.loads(chunk)), sort_keys=True).encode()
        h.update(chunk)
        offset += 8 + n
    return h.hexdigest()


def run_case(tree: Path, case_dir: Path, texture_size: int) -> dict:
    """One batch run over one case with the checkout ``tree``; its figures."""
    with tempfile.TemporaryDirectory(prefix="sam3d-bench-scene-run-") as work:
        out = Path(work) / "out"
        masks = sorted((case_dir / "masks").glob("*.png"), key=lambda p: int(p.stem))
        inputs = (
            ["--image", str(case_dir / "photo.png"), "--masks", str(case_dir / "masks")]
            if len(masks) > 1
            else ["--image", str(case_dir / "photo.png"), "--mask", str(masks[0])]
        )
        args = [*inputs, "--out", str(out), "--engine", "preview", "--no-assets"]
        args += ["--target-faces", "20000", "--texture-size", str(texture_size)]
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "SAM3D_BAKE_DEVICE": "cpu",
            "BLENDER_USER_RESOURCES": str(Path(work) / "blender-user"),
        }
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        t_start = time.time()
        proc = subprocess.Popen(
            [sys.executable, str(tree / "scripts" / "sam3d_batch.py"), *args],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        sampler = TreeSampler(proc.pid)
        sampler.start()
        log: list[str] = []
        t_item = None
        assert proc.stdout is not None
        for line in proc.stdout:  # the item starts right after the backend's line
            if t_item is None and line.startswith("backend:"):
                t_item = time.time()
            log.append(line)
        proc.wait()
        t_exit = time.time()
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0 or t_item is None:
            tail = "".join(log)[-3000:]
            raise RuntimeError(f"batch failed ({tree}, exit {proc.returncode}):\n{tail}")
        report = json.loads((out / "report.json").read_text())
        (item,) = report["items"].values()
        result = json.loads(next((out / "items").glob("*/result.json")).read_text())
        job = _job_times(out)
        glbs = {p.name: glb_digest(p) for p in sorted((out / "items").glob("*/*.glb"))}
    objs = [o for o in item["objects"] if o.get("state") == "done"]
    t = item["timings"]
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    spans = phases(t_start, t_item, t_exit, t, job)
    return {
        "objects": len(objs),
        "item": t["total_s"],
        "job": t["job_s"],
        "worker": result["timings"]["total_s"],
        "import": t["import_s"],
        "wall": wall,
        "cpu_util": cpu / wall / CORES,
        "ious": [o.get("iou") for o in objs],
        "rss": sampler.peak,
        "worker_rss_own": (result.get("peak_memory") or {}).get("rss_mb"),
        "phases": {k: sampler.phase(a, b) for k, (a, b) in spans.items()},
        "glbs": glbs,
    }


def in_flight(r: dict) -> Phase:
    """The ``IN_FLIGHT`` phases of run ``r`` as one."""
    spans: list[Phase] = [r["phases"][k] for k in IN_FLIGHT]
    seconds = sum(p.seconds for p in spans)
    return Phase(
        seconds=seconds,
        cpu={k: sum(p.cpu[k] for p in spans) for k in ROLES},
        machine=sum(p.machine for p in spans),
        rss={k: max(p.rss[k] for p in spans) for k in ROLES},
        demand=sum(p.demand * p.seconds for p in spans) / max(seconds, 1e-9),
    )


def use(p: Phase) -> tuple[float, float]:
    """CPU use of all cores in ``p`` by the run's processes, and by other programs."""
    dt = max(p.seconds, 1e-9) * CORES
    ours = sum(p.cpu.values())
    return ours / dt, max(p.machine - ours, 0.0) / dt


def print_phases(label: str, case: str, r: dict) -> None:
    """Where the run's wall time went: per phase its seconds, CPU use (of all cores: the
    run's processes, each role, other programs), the run's parallelism (``demand``) and
    the resident MiB of each role at its largest."""
    print(
        f"\n{label} {case}: CPU use of the {CORES} cores (ours, by role, other programs), "
        "demand (the run's runnable threads, at most the cores: its use of an idle machine), "
        "largest RSS in MiB"
    )
    print(
        f"  {'phase':<12}{'s':>7}{'ours':>6}"
        + "".join(f"{k:>8}" for k in ROLES)
        + f"{'others':>8}{'demand':>8}"
        + "".join(f"{k[:6] + ' MiB':>11}" for k in ROLES)
    )
    rows = [(name, r["phases"][name]) for name in PHASES] + [("in flight", in_flight(r))]
    for name, p in rows:
        ours, others = use(p)
        dt = max(p.seconds, 1e-9) * CORES
        print(
            f"  {name:<12}{p.seconds:>7.2f}{ours:>6.0%}"
            + "".join(f"{p.cpu[k] / dt:>8.0%}" for k in ROLES)
            + f"{others:>8.0%}{p.demand:>8.0%}"
            + "".join(f"{p.rss[k]:>11.0f}" for k in ROLES)
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=1, help="runs per case (best is shown)")
    ap.add_argument(
        "--small-repeats",
        type=int,
        default=3,
        help="runs of the small case per repeat (a few seconds each, and the noisiest: the "
        "best is the ratio's denominator, which can only raise the ratio)",
    )
    ap.add_argument("--baseline", type=Path, help="another checkout to run side by side")
    ap.add_argument("--texture-size", type=int, default=1024)
    args = ap.parse_args()

    trees = [("ours", REPO)]
    if args.baseline:
        trees.append(("baseline", args.baseline.resolve()))
    with tempfile.TemporaryDirectory(prefix="sam3d-bench-scene-") as tmp:
        t0 = time.perf_counter()
        draw_photo(LARGE, large_boxes(), 1, Path(tmp) / "large")
        draw_photo(SMALL, small_boxes(), 2, Path(tmp) / "small")
        print(
            f"inputs drawn in {time.perf_counter() - t0:.1f} s: large {LARGE[0]}x{LARGE[1]} "
            f"({LARGE[0] * LARGE[1] / 1e6:.0f} MP, {N_LARGE} masks), small {SMALL[0]}x{SMALL[1]} "
            f"(1 mask); scripts/sam3d_batch.py, preview engine, --no-assets, "
            f"{args.texture_size}² texture, 20,000 faces"
        )
        results: dict[tuple[str, str], dict] = {}
        for _ in range(args.repeats):
            for label, tree in trees:
                for case in ["small"] * args.small_repeats + ["large"]:
                    r = run_case(tree, Path(tmp) / case, args.texture_size)
                    key = (label, case)
                    if key not in results or r["item"] < results[key]["item"]:
                        results[key] = r

    header = (
        f"{'tree':<9}{'case':<7}{'objects':>8}{'item s':>8}{'job s':>7}{'worker s':>9}"
        f"{'import s':>9}{'rest s':>7}{'s/object':>9}{'CPU util':>9}{'flight':>7}{'demand':>7}{'min IoU':>8}"
        + "".join(f"{r + ' MiB':>12}" for r in ROLES)
    )
    print("\n" + header)
    print("-" * len(header))
    for (label, case), r in results.items():
        rest = r["item"] - r["job"] - r["import"]
        ious = [i for i in r["ious"] if i is not None]
        iou = f"{min(ious):.3f}" if len(ious) == r["objects"] else f"{len(ious)}/{r['objects']}"
        print(
            f"{label:<9}{case:<7}{r['objects']:>8}{r['item']:>8.2f}{r['job']:>7.2f}"
            f"{r['worker']:>9.2f}{r['import']:>9.2f}{rest:>7.2f}{r['item'] / r['objects']:>9.2f}"
            f"{r['cpu_util']:>9.0%}{use(in_flight(r))[0]:>7.0%}{in_flight(r).demand:>7.0%}{iou:>8}"
            + "".join(f"{r['rss'][k]:>12.0f}" for k in ROLES)
        )
    print(
        "\nmin IoU: n/m where only n of the m objects got an IoU; CPU util: the whole run "
        "(Blender and backend start included); flight: CPU use while objects are in flight "
        "(the worker's engine start to the last object measured in Blender); fork: the "
        "worker's forked decimator (its RSS counts pages shared with the worker)"
    )
    for label, _ in trees:
        print_phases(label, "large", results[(label, "large")])
    if args.baseline:
        for case in ("small", "large"):
            a, b = results[("ours", case)]["glbs"], results[("baseline", case)]["glbs"]
            same = sum(a.get(k) == v for k, v in b.items())
            print(
                f"\n{case}: {same} of {len(b)} GLBs identical to the baseline's (bytes, but for "
                "the timings in their JSON)",
                end="",
            )
            if a.keys() != b.keys():
                print(f" (names differ: {sorted(a)} vs {sorted(b)})", end="")
    print()
    for label, _ in trees:
        small, large = results[(label, "small")], results[(label, "large")]
        ratio = (large["item"] / large["objects"]) / (small["item"] / small["objects"])
        peak = max(max(r["rss"].values()) for r in (small, large))
        flight = in_flight(large)
        ours, others = use(flight)
        print(
            f"{label}: per-object large / small = {ratio:.2f} (goal <= 0.80: "
            f"{'met' if ratio <= 0.8 else 'MISSED'}); peak RSS of any process {peak:.0f} MiB "
            f"(goal < 600: {'met' if peak < 600 else 'MISSED'}); while the large photo's "
            f"objects are in flight, demand {flight.demand:.0%} of the {CORES} cores (goal "
            f">= 90%: {'met' if flight.demand >= 0.9 else 'MISSED'}), CPU use {ours:.0%} "
            f"beside other programs' {others:.0%}"
        )


if __name__ == "__main__":
    main()
