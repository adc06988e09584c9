"""The torch/CUDA bake against the numpy bake and the known colour function.

Self-contained with numpy + scipy + torch (no xatlas or fast-simplification needed): the
target is a 20k-face torus with parametric UVs, the source a 400k-face torus coloured by a
known function. Prints wall times of both bakes (information, not asserted).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from backend.finishing.bake import (
    DenseColorSource,
    bake_base_color,
    rasterize_uv,
    texel_points,
    vertex_normals,
)
from tests.synthetic_meshes import parametric_torus_uv, smooth_color, torus


@pytest.mark.gpu
def test_cuda_bake_matches_cpu_and_truth():
    import torch

    from backend.finishing.bake_torch import bake_base_color_torch, cuda_available

    assert cuda_available()
    dense_v, dense_f = torus(633, 316)  # 400,056 faces
    dense_c = smooth_color(dense_v)
    tv, tf, tuv = parametric_torus_uv(141, 71)  # 20,022 faces
    tn = vertex_normals(tv.astype(np.float64), tf)
    size = 1024

    t0 = time.perf_counter()
    src = DenseColorSource(dense_v, dense_f, dense_c)
    cpu = bake_base_color(tv, tn, tf, tuv, src, size)
    t_cpu = time.perf_counter() - t0

    args = (tv, tn, tf, tuv, dense_v, dense_f, dense_c, size)
    bake_base_color_torch(*args)  # warm-up: CUDA context, kernels
    torch.cuda.synchronize()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        gpu = bake_base_color_torch(*args)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t_gpu = min(times)

    loop = bake_base_color_torch(*args, method="loop")  # the other search, same answer
    loop_diff = np.abs(loop.image.astype(int) - gpu.image.astype(int)) / 255.0

    samples = rasterize_uv(tuv, tf, size)
    inside = samples.inside
    pts, _ = texel_points(tv, tn, tf, samples)
    truth = smooth_color(pts[inside])
    ys, xs = samples.y[inside], samples.x[inside]
    err_cpu = np.abs(cpu.image[ys, xs] / 255.0 - truth)
    err_gpu = np.abs(gpu.image[ys, xs] / 255.0 - truth)
    diff = np.abs(gpu.image[ys, xs].astype(int) - cpu.image[ys, xs].astype(int)) / 255.0
    print(
        f"\nbake 400k -> 20k faces, {size}^2, {int(inside.sum())} inside texels on "
        f"{torch.cuda.get_device_name()}:\n"
        f"  numpy CPU : {t_cpu:7.3f} s   mean |err| {err_cpu.mean():.4f}\n"
        f"  torch CUDA: {t_gpu:7.3f} s   mean |err| {err_gpu.mean():.4f}  (best of 3, warm)\n"
        f"  speed-up {t_cpu / t_gpu:.1f}x; mean |gpu - cpu| {diff.mean():.4f}; "
        f"coverage cpu {cpu.coverage:.4f} gpu {gpu.coverage:.4f}; "
        f"flat vs loop search mean |diff| {loop_diff.mean():.5f}"
    )
    # Same colour quality as the CPU path (both within quantisation of the truth).
    assert err_gpu.mean() < 0.005
    assert np.percentile(err_gpu, 99) < 0.02
    assert diff.mean() < 0.003
    assert loop_diff.mean() < 0.001
    assert abs(gpu.coverage - cpu.coverage) < 0.01
    # No black texels anywhere (the field is >= 0.15 everywhere, gutters are filled).
    assert gpu.image.min() >= 30
