"""Benchmark the headless batch (``scripts/sam3d_batch.py``): wall time per object and for
the whole batch, and the re-run.

Builds the test set of ``tests/e2e/test_batch.py`` - a Blender-rendered photo with a known
layout (4 objects) plus synthetic photos: 10 items, 18 objects, 2 deliberately broken
items - and runs the batch script as a user would (``python scripts/sam3d_batch.py``, the
bpy module, the add-on's managed backend, preview engine), twice: a fresh run, then a
re-run over the same output folder (which must do no work). Prints tables; asserts
nothing (numbers are for reading, not for CI).

    .venv/bin/python bench/bench_batch.py [--target-faces 20000] [--texture-size 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.scene_fixture import load_layout, make_batch_set, render_in_subprocess  # noqa: E402


def run_batch(args: list[str], cwd: Path) -> tuple[int, str, float]:
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(cwd / "blender-user")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sam3d_batch.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


def table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    out = [
        "  ".join(
            c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target-faces", type=int, default=20000)
    ap.add_argument("--texture-size", type=int, default=1024)
    ap.add_argument("--samples", type=int, default=16, help="Cycles samples of the fixture")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sam3d-bench-batch-"))
    t0 = time.perf_counter()
    render_in_subprocess(work / "fixture", samples=args.samples)
    render_s = time.perf_counter() - t0
    manifest, expected = make_batch_set(work / "inputs", work / "fixture")
    layout = load_layout(work / "fixture")
    out = work / "out"
    common = [
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--engine",
        "preview",
        "--target-faces",
        str(args.target_faces),
        "--texture-size",
        str(args.texture_size),
    ]
    rc1, log1, first_s = run_batch(common, work)
    report = json.loads((out / "report.json").read_text())
    rc2, log2, rerun_s = run_batch(common, work)
    report2 = json.loads((out / "report.json").read_text())

    print(
        f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}; engine preview, target {args.target_faces} faces, "
        f"{args.texture_size} px texture"
    )
    print(f"fixture render (Cycles CPU, 480x360, {args.samples} spp): {render_s:.1f} s\n")
    items = report["items"]
    rows = []
    objects = 0
    per_object = []
    for ident in expected:
        r = items[ident]
        objs = [o for o in r.get("objects", []) if o.get("state") == "done"]
        objects += len(objs)
        t = r.get("timings", {})
        if objs:
            per_object.append(t["total_s"] / len(objs))
        ious = [o["iou"] for o in objs if o.get("iou") is not None]
        rows.append(
            (
                ident,
                r["status"] + (f" [{r['error']['code']}]" if r.get("error") else ""),
                len(objs),
                sum(int(o.get("faces") or 0) for o in objs),
                f"{t.get('job_s', 0):.2f}",
                f"{t.get('import_s', 0):.2f}",
                f"{t.get('total_s', 0):.2f}",
                f"{t['total_s'] / len(objs):.2f}" if objs else "-",
                f"{min(ious):.3f}" if ious else "-",
            )
        )
    print(
        table(
            rows,
            (
                "item",
                "status",
                "objects",
                "faces",
                "job s",
                "import s",
                "item s",
                "s/object",
                "min IoU",
            ),
        )
    )
    run1 = report["runs"][0]
    print(
        f"\nwhole batch: {first_s:.1f} s wall for {len(expected)} items / {objects} objects "
        f"(exit {rc1}; backend start {run1.get('backend_start_s', 0):.1f} s, Blender start, "
        f".blend saves included) = {first_s / objects:.2f} s per object overall; per object "
        f"within an item: median {statistics.median(per_object):.2f} s, "
        f"max {max(per_object):.2f} s"
    )
    print(
        f"re-run: {rerun_s:.1f} s wall (exit {rc2}), {report2['runs'][-1]['skipped']} of "
        f"{len(expected)} items skipped, no backend job\n"
    )
    scene = items["render_all"]
    rows = []
    for o in scene["objects"]:
        truth = layout.objects[o["index"]]
        rows.append(
            (
                truth.name,
                o["index"],
                f"{o['iou']:.3f}",
                f"{o['depth_m']:.2f}",
                f"{truth.depth_m:.2f}",
            )
        )
    print("photo to scene (rendered known layout, reprojected through the scene camera):")
    print(table(rows, ("object", "part", "IoU", "depth m", "true m")))
    order = [o["index"] for o in sorted(scene["objects"], key=lambda o: o["depth_m"])]
    truth = sorted(range(len(layout.objects)), key=lambda i: layout.objects[i].depth_m)
    print(f"depth order {order}, truth {truth}: {'match' if order == truth else 'MISMATCH'}")
    if args.keep:
        print(f"\nwork folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if rc1 not in (0, 1):
        print(log1[-3000:])


if __name__ == "__main__":
    main()
