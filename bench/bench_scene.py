#!/usr/bin/env python
"""Photo to scene with the preview engine: per-object cost of a large photo with many masks
against one object from a small photo, CPU use and peak memory. Prints tables; not a test.

Inputs, drawn here with Pillow and written as PNG files the way a user hands them over:

* ``large``: a 6000 x 4500 photo (27 MP) with 16 objects standing on the ground (ellipses,
  boxes, polygons with gradients and stripes), one full-size mask PNG per object;
* ``small``: a 960 x 720 photo with one such object and its mask.

Each case runs in a fresh child process, the engine + finishing path of a scene job:
decode the photo, ``PreviewEngine.reconstruct_many`` over the masks (decoded when the
engine asks for each one), ``finish_to_glb`` per object (20,000 faces, 1024² texture by
default) and ``export_scene_glb``. The parts are finished either one after another
(``serial``, the scene job's loop today) or by ``finish_parts`` (``parts``, two at a time). Measured per case: wall time per phase, seconds per
object (the whole run divided by the objects), CPU utilisation (user + system CPU of the
process and its children over wall time and cores) and peak RSS of the process (VmHWM) and
of its largest child (the forked decimator, whose RSS counts the pages it shares with its
parent). Before the measured case each child finishes one small object, as a worker that
has served a job before, so lazy imports are not charged to either case.

``--baseline DIR`` runs the same children against another checkout's ``backend`` (e.g.
``git archive main | tar -x -C DIR``) in the same run, so before and after sit side by side.

    .venv/bin/python bench/bench_scene.py [--repeats 1] [--baseline DIR] [--texture-size 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LARGE = (6000, 4500)
SMALL = (960, 720)
N_LARGE = 16


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


class LazyMasks(Sequence):
    """Masks decoded from PNG when the engine asks for one (bool (H, W), True = object)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        from PIL import Image

        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        with Image.open(self.paths[i]) as im:
            return np.asarray(im.convert("L")) > 127


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM, which starts afresh at exec) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up(engine, opts, out_dir: Path) -> None:
    """One small object first, as a worker that has served a job before: lazy imports and
    first-call costs are not charged to the measured case."""
    from backend.finishing import finish_to_glb
    from backend.progress import JobContext

    img = np.full((240, 320, 3), 128, np.uint8)
    yy, xx = np.mgrid[:240, :320]
    mask = (xx - 160) ** 2 + (yy - 150) ** 2 < 60**2
    rec = engine.reconstruct(img, mask, 0, opts, JobContext())
    finish_to_glb(rec, opts, out_dir / "warm.glb")


def child(case_dir: Path, out_dir: Path, texture_size: int, mode: str) -> None:
    """One photo-to-scene run in this fresh process; prints one JSON line. ``mode``:
    ``serial`` finishes the parts one after another (the scene job's loop today),
    ``parts`` with ``backend.finishing.parts.finish_parts`` (two at a time)."""
    from PIL import Image

    from backend.engines.preview import PreviewEngine
    from backend.finishing import export_scene_glb, finish_to_glb
    from backend.options import JobOptions
    from backend.progress import JobContext

    opts = JobOptions(engine="preview", texture_size=texture_size)
    engine = PreviewEngine()
    warm_up(engine, opts, out_dir)
    t0 = time.perf_counter()
    c0 = os.times()
    with Image.open(case_dir / "photo.png") as im:
        image = np.asarray(im.convert("RGB"))
    t_load = time.perf_counter() - t0
    masks = LazyMasks(sorted((case_dir / "masks").glob("*.png"), key=lambda p: int(p.stem)))
    ctx = JobContext()
    t1 = time.perf_counter()
    recons = engine.reconstruct_many(image, masks, 0, opts, ctx)
    t_engine = time.perf_counter() - t1
    t2 = time.perf_counter()
    parts = []
    faces = []
    camera = next((r.intrinsics for r in recons if not isinstance(r, Exception)), None)
    paths = [out_dir / f"object_{i}.glb" for i in range(len(recons))]
    if mode == "parts":
        from backend.finishing.parts import finish_parts

        results = finish_parts(recons, opts, paths, ctx)
    else:
        results = []
        for i, rec in enumerate(recons):
            if isinstance(rec, Exception):
                raise rec
            results.append(finish_to_glb(rec, opts, paths[i], ctx.part(i, len(recons), {})))
    for i, res in enumerate(results):
        if isinstance(res, Exception):
            raise res
        faces.append(res["faces"])
        parts.append((f"object_{i}", paths[i]))
    export_scene_glb(parts, camera, "Camera", out_dir / "scene.glb")
    t_finish = time.perf_counter() - t2
    wall = time.perf_counter() - t0
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    cpu_children = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        json.dumps(
            {
                "objects": len(recons),
                "wall": wall,
                "load": t_load,
                "engine": t_engine,
                "finish": t_finish,
                "cpu": cpu + cpu_children,
                "cores": cores,
                "rss_mb": peak_rss_mib(),
                "child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "faces": faces,
            }
        )
    )


def run_child(tree: Path, case_dir: Path, texture_size: int, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "PYTHONPATH": str(tree), "SAM3D_BAKE_DEVICE": "cpu"}
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(case_dir), out, str(texture_size), mode],
            capture_output=True,
            text=True,
            env=env,
            cwd=tree,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"child failed ({tree}):\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=1, help="runs per case (best is shown)")
    ap.add_argument("--baseline", type=Path, help="another checkout to run side by side")
    ap.add_argument("--texture-size", type=int, default=1024)
    ap.add_argument("--child", nargs=4, metavar=("CASE_DIR", "OUT_DIR", "TEXTURE_SIZE", "MODE"))
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), int(args.child[2]), args.child[3])
        return

    # (label, tree, how the scene's parts are finished)
    trees = [("ours", REPO, "parts"), ("ours", REPO, "serial")]
    if args.baseline:
        trees.append(("baseline", args.baseline.resolve(), "serial"))
    with tempfile.TemporaryDirectory(prefix="sam3d-bench-scene-") as tmp:
        t0 = time.perf_counter()
        draw_photo(LARGE, large_boxes(), 1, Path(tmp) / "large")
        draw_photo(SMALL, small_boxes(), 2, Path(tmp) / "small")
        print(
            f"inputs drawn in {time.perf_counter() - t0:.1f} s: large {LARGE[0]}x{LARGE[1]} "
            f"({LARGE[0] * LARGE[1] / 1e6:.0f} MP, {N_LARGE} masks), small {SMALL[0]}x{SMALL[1]} "
            f"(1 mask); preview engine, {args.texture_size}² texture, 20,000 faces"
        )
        # One object finishes the same way in both modes: the small case runs once per tree
        # and repeat, and every mode of that tree is compared with it.
        results: dict[tuple[str, str, str], dict] = {}
        done_small: set[tuple[str, str]] = set()
        for _ in range(args.repeats):
            for label, tree, mode in trees:
                cases = ("small", "large") if (label, "small") not in done_small else ("large",)
                for case in cases:
                    r = run_child(tree, Path(tmp) / case, args.texture_size, mode)
                    key = (label, "-" if case == "small" else mode, case)
                    if key not in results or r["wall"] < results[key]["wall"]:
                        results[key] = r
                done_small.add((label, "small"))
            done_small.clear()

    header = (
        f"{'tree':<9}{'parts':<7}{'case':<7}{'objects':>8}{'load s':>8}{'engine s':>9}{'finish s':>9}"
        f"{'wall s':>8}{'s/object':>9}{'CPU util':>9}{'RSS MiB':>9}{'child MiB':>10}"
    )
    print("\n" + header)
    print("-" * len(header))
    for (label, mode, case), r in results.items():
        per = r["wall"] / r["objects"]
        util = r["cpu"] / r["wall"] / r["cores"]
        print(
            f"{label:<9}{mode:<7}{case:<7}{r['objects']:>8}{r['load']:>8.2f}{r['engine']:>9.2f}"
            f"{r['finish']:>9.2f}{r['wall']:>8.2f}{per:>9.2f}{util:>9.0%}"
            f"{r['rss_mb']:>9.0f}{r['child_rss_mb']:>10.0f}"
        )
    print()
    for label, _, mode in trees:
        small, large = results[(label, "-", "small")], results[(label, mode, "large")]
        ratio = (large["wall"] / large["objects"]) / (small["wall"] / small["objects"])
        peak = max(large["rss_mb"], large["child_rss_mb"], small["rss_mb"])
        print(
            f"{label} ({mode}): per-object large / small = {ratio:.2f} (goal <= 0.80: "
            f"{'met' if ratio <= 0.8 else 'MISSED'}); peak RSS {peak:.0f} MiB (goal < 600: "
            f"{'met' if peak < 600 else 'MISSED'}); CPU utilisation on the large photo "
            f"{large['cpu'] / large['wall'] / large['cores']:.0%}"
        )


if __name__ == "__main__":
    main()
