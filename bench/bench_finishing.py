#!/usr/bin/env python
"""Mesh finishing benchmark (issue #3): prints a table; not a test.

One input for every row: a 400,056-face bumpy torus whose vertex colours are a known
function of position (``tests/synthetic_meshes.py: smooth_color``), simplified to 20,000
faces with a 1024² texture.

* ours: ``finish_to_glb`` end to end in a fresh child process (per-stage times, peak RSS);
  best of ``--repeats`` runs.
* simplify: ours (fast-simplification) vs pyvista/VTK ``decimate`` (upstream's choice):
  time and geometric error (mean symmetric surface distance and Hausdorff distance, from
  200k points sampled on each surface and the dense source's vertices).
* bake: ours (numpy CPU) vs Blender Cycles "selected to active" EMIT bake (bpy from PyPI,
  CPU, 1 sample, same UV'd target, 4 px margin): time and colour error against the known
  function at every texel whose centre lies on the target surface.

Usage: ``.venv/bin/python bench/bench_finishing.py [--repeats 3] [--skip-cycles]``.
Needs the bench extras (pyvista, psutil) and bpy for the Cycles row.
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
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from backend.finishing.bake import (  # noqa: E402
    DenseColorSource,
    bake_base_color,
    rasterize_uv,
    texel_points,
    vertex_normals,
)
from backend.finishing.glb import srgb_to_linear  # noqa: E402
from backend.finishing.simplify import simplify_mesh  # noqa: E402
from backend.finishing.uv import unwrap  # noqa: E402
from tests.synthetic_meshes import smooth_color, torus  # noqa: E402

TARGET = 20_000
SIZE = 1024


def make_source() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v, f = torus(633, 316, bumps=0.1)
    return v, f, smooth_color(v)


def child_ours(out: str) -> None:
    """Run finish_to_glb once in this (fresh) process and print JSON stats."""
    from backend.finishing import finish_to_glb
    from backend.options import FinishOptions
    from backend.reconstruction import Reconstruction

    v, f, c = make_source()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    stats = finish_to_glb(
        Reconstruction(v, f, c), FinishOptions(target_faces=TARGET, texture_size=SIZE), Path(out)
    )
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"stats": stats, "wall": wall, "peak_rss_mb": peak, "base_rss_mb": base_rss}))


def run_ours(repeats: int) -> list[dict]:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            proc = subprocess.run(
                [sys.executable, __file__, "--child-ours", str(Path(tmp) / f"o{i}.glb")],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "SAM3D_BAKE_DEVICE": "cpu"},
            )
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return runs


def surface_points(v: np.ndarray, f: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    tri = v[f].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(f), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    return np.einsum("ij,ijk->ik", bary, tri[face])


def geometric_error(dense_v, dense_f, simp_v, simp_f) -> tuple[float, float]:
    """(mean symmetric surface distance, Hausdorff distance) in millimetres."""
    rng = np.random.default_rng(0)
    colors = np.zeros((len(dense_v), 3), np.float32)
    dense = DenseColorSource(dense_v, dense_f, colors)
    simp = DenseColorSource(simp_v, simp_f, np.zeros((len(simp_v), 3), np.float32))
    d1 = dense.distance(surface_points(simp_v, simp_f, 200_000, rng), k=8)
    d2 = simp.distance(np.asarray(dense_v, np.float64), k=64)
    return 1e3 * 0.5 * (d1.mean() + d2.mean()), 1e3 * max(d1.max(), d2.max())


def best_time(fn, repeats: int):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def pyvista_decimate(v: np.ndarray, f: np.ndarray, target: int):
    import pyvista as pv

    faces = np.hstack([np.full((len(f), 1), 3), f]).ravel()
    mesh = pv.PolyData(np.asarray(v, np.float64), faces)
    out = mesh.decimate(1.0 - target / len(f))
    tri = out.faces.reshape(-1, 4)[:, 1:]
    return np.asarray(out.points, np.float64), tri.astype(np.int64)


def cycles_bake(
    dense_v, dense_f, dense_c, tv, tf, tuv, size: int
) -> tuple[float, float, np.ndarray]:
    """Cycles 'selected to active' EMIT bake. Returns (bake seconds, setup seconds, image
    (size, size, 3) uint8 sRGB with row 0 = glTF v 0)."""
    t_setup = time.perf_counter()
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.render.threads_mode = "FIXED"
    scene.render.threads = os.cpu_count() or 2

    def make_mesh(name, v, f):
        me = bpy.data.meshes.new(name)
        me.vertices.add(len(v))
        me.vertices.foreach_set("co", np.asarray(v, np.float32).ravel())
        me.loops.add(3 * len(f))
        me.loops.foreach_set("vertex_index", np.asarray(f, np.int32).ravel())
        me.polygons.add(len(f))
        me.polygons.foreach_set("loop_start", np.arange(0, 3 * len(f), 3, dtype=np.int32))
        me.update()
        obj = bpy.data.objects.new(name, me)
        scene.collection.objects.link(obj)
        return obj, me

    src, src_me = make_mesh("Source", dense_v, dense_f)
    attr = src_me.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
    rgba = np.ones((len(dense_v), 4), np.float32)
    rgba[:, :3] = srgb_to_linear(dense_c)  # Blender float colours are linear
    attr.data.foreach_set("color", rgba.ravel())
    mat_src = bpy.data.materials.new("SourceMat")
    mat_src.use_nodes = True
    nodes = mat_src.node_tree.nodes
    nodes.clear()
    col = nodes.new("ShaderNodeVertexColor")
    col.layer_name = "Col"
    emit = nodes.new("ShaderNodeEmission")
    outn = nodes.new("ShaderNodeOutputMaterial")
    mat_src.node_tree.links.new(col.outputs["Color"], emit.inputs["Color"])
    mat_src.node_tree.links.new(emit.outputs["Emission"], outn.inputs["Surface"])
    src_me.materials.append(mat_src)

    tgt, tgt_me = make_mesh("Target", tv, tf)
    uv_layer = tgt_me.uv_layers.new(name="UVMap")
    loop_uv = np.asarray(tuv, np.float32)[np.asarray(tf).ravel()].copy()
    loop_uv[:, 1] = 1.0 - loop_uv[:, 1]  # glTF v down -> Blender v up
    uv_layer.data.foreach_set("uv", loop_uv.ravel())
    img = bpy.data.images.new("Bake", size, size, alpha=False, float_buffer=False)
    img.colorspace_settings.name = "sRGB"
    mat_t = bpy.data.materials.new("TargetMat")
    mat_t.use_nodes = True
    tex = mat_t.node_tree.nodes.new("ShaderNodeTexImage")
    tex.image = img
    mat_t.node_tree.nodes.active = tex
    tgt_me.materials.append(mat_t)

    bpy.ops.object.select_all(action="DESELECT")
    src.select_set(True)
    tgt.select_set(True)
    bpy.context.view_layer.objects.active = tgt
    setup = time.perf_counter() - t_setup
    t0 = time.perf_counter()
    bpy.ops.object.bake(
        type="EMIT",
        use_selected_to_active=True,
        cage_extrusion=0.01,
        margin=4,
        margin_type="EXTEND",
    )
    bake_s = time.perf_counter() - t0
    px = np.empty(size * size * 4, np.float32)
    img.pixels.foreach_get(px)
    image = (px.reshape(size, size, 4)[::-1, :, :3] * 255.0 + 0.5).astype(np.uint8)
    return bake_s, setup, image


def colour_error(image: np.ndarray, samples, pts: np.ndarray) -> tuple[float, float]:
    inside = samples.inside
    got = image[samples.y[inside], samples.x[inside]] / 255.0
    err = np.abs(got - smooth_color(pts[inside]))
    return float(err.mean()), float(np.percentile(err, 99))


def gpu_pipeline(repeats: int) -> None:
    """finish_to_glb with the numpy bake vs the torch/CUDA bake (GPU machine)."""
    import torch

    from backend.finishing import finish_to_glb
    from backend.finishing.bake_torch import bake_base_color_torch
    from backend.options import FinishOptions
    from backend.reconstruction import Reconstruction

    v, f, c = make_source()
    recon = Reconstruction(v, f, c)
    opts = FinishOptions(target_faces=TARGET, texture_size=SIZE)
    print(f"finish_to_glb on {torch.cuda.get_device_name()}, {os.cpu_count()} CPU threads")
    print(f"{'bake on':<8}{'simplify':>10}{'uv':>8}{'bake':>8}{'export':>8}{'total':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for dev in ("cpu", "cuda"):
            os.environ["SAM3D_BAKE_DEVICE"] = dev
            finish_to_glb(recon, opts, Path(tmp) / "warm.glb")  # warm-up (CUDA context)
            runs = [finish_to_glb(recon, opts, Path(tmp) / f"{dev}{i}.glb") for i in range(repeats)]
            best = min(runs, key=lambda r: r["total_seconds"])
            st = best["stage_seconds"]
            assert best["bake_device"] == dev, best["bake_device"]
            print(
                f"{dev:<8}{st['simplify']:>10.3f}{st['uv']:>8.3f}{st['bake']:>8.3f}"
                f"{st['export']:>8.3f}{best['total_seconds']:>8.3f}"
            )
    sv, sf = simplify_mesh(v, f, TARGET)
    uvm = unwrap(sv, sf, SIZE, 4)
    tv, tn = sv[uvm.vmap], vertex_normals(sv, sf)[uvm.vmap]
    for method in ("flat", "loop"):
        times = []
        for _ in range(repeats + 1):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            bake_base_color_torch(tv, tn, uvm.faces, uvm.uv, v, f, c, SIZE, method=method)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        print(f"torch bake, {method} search: {min(times[1:]):.3f} s (best of {repeats}, warm)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-cycles", action="store_true")
    ap.add_argument("--skip-pyvista", action="store_true")
    ap.add_argument("--gpu-pipeline", action="store_true", help="numpy vs CUDA bake end to end")
    ap.add_argument("--child-ours", metavar="OUT_GLB")
    args = ap.parse_args()
    if args.child_ours:
        child_ours(args.child_ours)
        return
    if args.gpu_pipeline:
        gpu_pipeline(args.repeats)
        return

    v, f, c = make_source()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"Mesh finishing benchmark: bumpy torus {len(f):,} faces -> {TARGET:,} faces, "
        f"{SIZE}x{SIZE} texture, {cores} CPU cores, best of {args.repeats}"
    )

    runs = run_ours(args.repeats)
    best = min(runs, key=lambda r: r["stats"]["total_seconds"])
    st = best["stats"]
    print("\n== ours: finish_to_glb end to end (fresh process per run) ==")
    print(f"{'stage':<10}{'seconds':>10}")
    for k, s in st["stage_seconds"].items():
        print(f"{k:<10}{s:>10.3f}")
    total = st["total_seconds"]
    verdict = "met" if total < 2.0 else f"MISSED by {total - 2.0:.2f} s ({total / 2.0:.2f}x)"
    print(f"{'total':<10}{total:>10.3f}   target < 2 s: {verdict}")
    totals = sorted(r["stats"]["total_seconds"] for r in runs)
    print(f"all runs: {', '.join(f'{t:.3f}' for t in totals)} s")
    print(
        f"peak RSS {best['peak_rss_mb']:.0f} MiB (process; {best['base_rss_mb']:.0f} MiB before "
        f"finishing, i.e. +{best['peak_rss_mb'] - best['base_rss_mb']:.0f} MiB); "
        f"faces {st['faces']:,}, charts {st.get('uv_charts')}, coverage {st.get('texture_coverage')}"
    )

    print("\n== simplify: ours (fast-simplification) vs pyvista/VTK decimate ==")
    t_ours, (sv, sf) = best_time(lambda: simplify_mesh(v, f, TARGET), args.repeats)
    m_ours, h_ours = geometric_error(v, f, sv, sf)
    rows = [("ours", t_ours, len(sf), m_ours, h_ours)]
    if not args.skip_pyvista:
        t_pv, (pv_v, pv_f) = best_time(
            lambda: pyvista_decimate(v, f, TARGET), max(1, args.repeats - 1)
        )
        m_pv, h_pv = geometric_error(v, f, pv_v, pv_f)
        rows.append(("pyvista", t_pv, len(pv_f), m_pv, h_pv))
    print(
        f"{'method':<10}{'seconds':>9}{'faces':>9}{'mean dist mm':>14}{'Hausdorff mm':>14}{'time ratio':>12}"
    )
    for name, t, nf, m, h in rows:
        print(f"{name:<10}{t:>9.3f}{nf:>9,}{m:>14.4f}{h:>14.3f}{t / t_ours:>12.2f}")

    print("\n== bake: ours (numpy CPU) vs Cycles selected-to-active (same target and UVs) ==")
    uvm = unwrap(sv, sf, SIZE, 4)
    tv = sv[uvm.vmap]
    tn = vertex_normals(sv, sf)[uvm.vmap]
    samples = rasterize_uv(uvm.uv, uvm.faces, SIZE)
    pts, _ = texel_points(tv, tn, uvm.faces, samples)

    def ours_bake():
        src = DenseColorSource(v, f, c)
        return bake_base_color(tv, tn, uvm.faces, uvm.uv, src, SIZE)

    t_bake, res = best_time(ours_bake, args.repeats)
    e_mean, e99 = colour_error(res.image, samples, pts)
    print(f"{'method':<10}{'seconds':>9}{'mean |err|':>12}{'p99 |err|':>11}{'time ratio':>12}")
    print(f"{'ours':<10}{t_bake:>9.3f}{e_mean:>12.4f}{e99:>11.4f}{1.0:>12.2f}")
    if not args.skip_cycles:
        t_cy, setup, cy_img = cycles_bake(v, f, c, tv, uvm.faces, uvm.uv, SIZE)
        cy_mean, cy99 = colour_error(cy_img, samples, pts)
        print(f"{'cycles':<10}{t_cy:>9.3f}{cy_mean:>12.4f}{cy99:>11.4f}{t_cy / t_bake:>12.2f}")
        print(f"(Cycles scene setup, not counted: {setup:.2f} s)")
        ok = t_cy / t_bake >= 10 and e_mean <= cy_mean
        print(
            f"target: bake >= 10x faster than Cycles at equal or lower colour error: "
            f"{'met' if ok else 'MISSED'} ({t_cy / t_bake:.1f}x, {e_mean:.4f} vs {cy_mean:.4f})"
        )
    if "bpy" in sys.modules:  # bpy can hang at interpreter exit
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
