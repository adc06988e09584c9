"""Benchmark assets: what marking objects as assets costs the batch, and the preview render
against its alternatives.

1. The batch (``python scripts/sam3d_batch.py``, bpy module, preview engine) over
   synthetic photos, run four ways on the same inputs, every job already in the backend's
   cache (a warm-up run fills it), so the columns differ only in the Blender-side work:
   no assets; assets without previews; assets (the default); assets + an asset library +
   exports. Then a re-run of the last, which must rewrite nothing.
2. One object's preview, in this process: the add-on's Cycles render at the chosen size
   and samples against other sizes and sample counts, and against Blender's own
   ``asset_generate_preview`` (it needs a GPU context: here it runs on EGL's software
   renderer in the bpy module; in ``blender --background`` without EGL it aborts Blender).

Prints tables with ratios; asserts nothing.

    .venv/bin/python bench/bench_assets.py [--photos 3] [--target-faces 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_batch import run_batch, table  # noqa: E402
from tests.scene_fixture import synthetic_photo  # noqa: E402

VARIANTS = {
    "no assets": ["--no-assets"],
    "assets, no previews": ["--no-previews"],
    "assets (default)": [],
    "assets + library + exports": ["--asset-library", "{lib}", "--export", "{exports}"],
}


def batch_table(work: Path, n_photos: int, faces: int, texture: int) -> None:
    items = []
    for k in range(n_photos):
        photo = synthetic_photo(work / "in" / f"p{k}", seed=40 + k, n_objects=2 + k % 2)
        items.append({"id": f"p{k}", "image": str(photo), "masks": str(photo.parent / "masks")})
    manifest = work / "manifest.json"
    manifest.write_text(json.dumps({"items": items}))
    common = ["--manifest", str(manifest), "--engine", "preview", "--target-faces", str(faces),
              "--texture-size", str(texture), "--cache-dir", str(work / "cache")]  # fmt: skip
    rc, out, s = run_batch([*common, "--out", str(work / "warm"), "--no-assets"], work)
    print(f"warm-up (fills the backend's cache): {s:.1f} s, exit {rc}")
    exports = "usdc,fbx"
    rows, base = [], None
    for name, extra in VARIANTS.items():
        out_dir = work / f"out-{len(rows)}"
        args = [a.format(lib=work / f"lib-{len(rows)}", exports=exports) for a in extra]
        rc, text, seconds = run_batch([*common, "--out", str(out_dir), *args], work)
        report = json.loads((out_dir / "report.json").read_text())
        objs = [o for r in report["items"].values() for o in r.get("objects", [])]
        previews = [
            o["asset"]["preview_s"] for o in objs if (o.get("asset") or {}).get("preview_s")
        ]
        base = base or seconds
        rows.append((
            name, rc, len(objs), f"{seconds:.1f}", f"{seconds / len(objs):.2f}",
            f"{seconds / base:.2f}",
            f"{statistics.median(previews):.2f}" if previews else "-",
            f"{min(previews):.2f}-{max(previews):.2f}" if previews else "-",
        ))  # fmt: skip
        last = (out_dir, args)
    print(table(rows, ("batch", "exit", "objects", "wall s", "s/object", "ratio",
                       "preview s (median)", "preview s (range)")))  # fmt: skip
    out_dir, args = last
    lib = Path(args[1])
    before = {p.name: p.stat().st_mtime_ns for p in lib.iterdir()}
    rc, text, seconds = run_batch([*common, "--out", str(out_dir), *args], work)
    after = {p.name: p.stat().st_mtime_ns for p in lib.iterdir()}
    print(f"re-run of the last: {seconds:.1f} s, exit {rc}, library files rewritten: "
          f"{sum(1 for k in after if before.get(k) != after[k])} of {len(after)}")  # fmt: skip


def _opaque(obj) -> int:
    pv = obj.preview
    w, h = pv.image_size
    px = array("f", bytes(4 * w * h * 4))
    pv.image_pixels_float.foreach_get(px)
    return sum(1 for a in px[3::4] if a > 0.5)


def preview_table(work: Path) -> None:
    """Preview alternatives on one object of the warm-up's .blend (this process)."""
    import bpy

    from tests.addon.helpers import addon, enable_addon

    enable_addon()
    bpy.ops.wm.open_mainfile(filepath=str(work / "warm" / "batch.blend"))
    obj = next(o for o in bpy.data.objects if o.type == "MESH")
    preview = addon("importing.asset_preview")
    rows = []
    chosen = (256, preview.SAMPLES)
    for size, samples in ((128, 8), chosen, (256, 32), (512, 16)):
        preview.SAMPLES = samples
        times = [preview.render_preview(obj, size) for _ in range(3)]
        t = statistics.median(times)
        rows.append([f"Cycles CPU {size} px, {samples} spp" + (" (chosen)" if (size, samples) == chosen else ""),
                     f"{t:.2f}", _opaque(obj), t])  # fmt: skip
    preview.SAMPLES = chosen[1]
    obj.asset_mark()
    t0 = time.perf_counter()
    try:
        obj.asset_generate_preview()
        t = time.perf_counter() - t0
        rows.append(["asset_generate_preview (EGL, bpy module only)", f"{t:.2f}", _opaque(obj), t])
    except RuntimeError as exc:
        rows.append([f"asset_generate_preview: {exc}", "-", "-", None])
    ref = next(r[3] for r in rows if "(chosen)" in r[0])
    print(table([(r[0], r[1], r[2], f"{r[3] / ref:.2f}" if r[3] else "-") for r in rows],
                ("preview of one object", "seconds (median of 3)", "opaque px", "ratio")))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--target-faces", type=int, default=2000)
    ap.add_argument("--texture-size", type=int, default=256)
    args = ap.parse_args()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    work = Path(tempfile.mkdtemp(prefix="sam3d-bench-assets-"))
    batch_table(work, args.photos, args.target_faces, args.texture_size)
    preview_table(work)
    sys.stdout.flush()
    os._exit(0)  # bpy 4.5 can hang at interpreter exit


if __name__ == "__main__":
    main()
