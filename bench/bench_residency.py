"""Staged GPU residency vs. everything resident, with synthetic SAM 3D-sized sub-models.

Run on a CUDA machine:  python bench/bench_residency.py [--budgets 8 6 4] [--tokens 4096]

Prints, per budget (exclusive policy: only the running stage on the GPU), then for the first
budget and for 40 GiB with the default LRU policy (second job shown), one row per stage: weights (MiB), seconds spent moving weights in,
stage seconds (including the move), peak allocated / reserved MiB; then the same pipeline
with every sub-model resident at once (the upstream default) for comparison, and what a
budget smaller than one stage answers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from backend.errors import BackendError  # noqa: E402
from backend.gpu.residency import MIB, ResidencyManager, attach_stage_hooks  # noqa: E402
from tests.synthetic_models import SAM3D_SIZES_GB, SAM3D_STAGES, make_synthetic  # noqa: E402

GB = 10**9


def run_staged(
    models: dict, budget_gb: float, tokens: int, exclusive: bool = False, jobs: int = 1
) -> None:
    mgr = ResidencyManager(budget_gb=budget_gb, exclusive=exclusive)
    for name, m in models.items():
        mgr.register(name, m)
    x = torch.randn(tokens, 4096, device="cuda", dtype=torch.bfloat16)
    handles = attach_stage_hooks(mgr, SAM3D_STAGES)
    t0 = time.perf_counter()
    try:
        for job in range(jobs):
            if job == jobs - 1:  # report the last job (later jobs show what stays resident)
                mgr.reset_stats()
                t0 = time.perf_counter()
            with mgr.guard():
                for names in SAM3D_STAGES.values():
                    for n in names:
                        models[n](x)
    except BackendError as err:
        print(f"\nbudget {budget_gb:.1f} GiB -> {err.code}: {err.message}")
        print(f"  details: {err.details}")
        return
    finally:
        for h in handles:
            h.remove()
        torch.cuda.set_per_process_memory_fraction(1.0)
    total = time.perf_counter() - t0
    rep = mgr.report()
    policy = "exclusive" if exclusive else "lru"
    print(
        f"\nbudget {budget_gb:.1f} GiB ({budget_gb * 1024:.0f} MiB), policy {policy}, job {jobs} of {jobs}; "
        f"CUDA context outside the allocator: {rep['vram']['cuda_context_mb']} MiB"
    )
    print(
        f"{'stage':<18}{'weights MiB':>12}{'load s':>9}{'stage s':>9}{'peak alloc':>12}{'peak resv':>11}"
    )
    for name, st in mgr.stats.items():
        print(
            f"{name:<18}{st.weights_mb:>12.0f}{st.load_s:>9.2f}{st.seconds:>9.2f}"
            f"{st.peak_allocated_mb:>12.0f}{st.peak_reserved_mb:>11.0f}"
        )
    print(f"{'total':<18}{'':>12}{'':>9}{total:>9.2f}{'':>12}{rep['peak_vram_mb']:>11.0f}")
    mgr.offload_all()


def run_all_resident(models: dict, tokens: int) -> None:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for m in models.values():
        m.to("cuda")
    torch.cuda.synchronize()
    load = time.perf_counter() - t0
    x = torch.randn(tokens, 4096, device="cuda", dtype=torch.bfloat16)
    for names in SAM3D_STAGES.values():
        for n in names:
            models[n](x)
    torch.cuda.synchronize()
    total = time.perf_counter() - t0
    peak = torch.cuda.max_memory_reserved() / MIB
    print(
        f"\nall resident (upstream default): load {load:.2f} s, total {total:.2f} s, peak reserved {peak:.0f} MiB"
    )
    for m in models.values():
        m.to("cpu")
    torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budgets", type=float, nargs="+", default=[8.0, 4.0])
    ap.add_argument("--tokens", type=int, default=4096)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs CUDA")
        return 1
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    t0 = time.perf_counter()
    models = {name: make_synthetic(int(gb * GB)) for name, gb in SAM3D_SIZES_GB.items()}
    print(
        f"built {sum(SAM3D_SIZES_GB.values()):.2f} GB of synthetic bf16 weights in {time.perf_counter() - t0:.1f} s"
    )
    for budget in args.budgets:
        run_staged(models, budget, args.tokens, exclusive=True)
    run_staged(models, args.budgets[0], args.tokens, exclusive=False, jobs=2)
    run_staged(models, 40.0, args.tokens, exclusive=False, jobs=2)
    run_all_resident(models, args.tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
