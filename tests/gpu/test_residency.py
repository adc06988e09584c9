"""Staged GPU residency on a real GPU, with synthetic sub-models sized like SAM 3D's.

Skipped without CUDA (tests/conftest.py). Imports only torch, numpy-free backend modules and
pytest, so it runs on a bare GPU machine. Set ``SAM3D_RESIDENCY_REPORT=path.json`` to keep
the measured figures.
"""

from __future__ import annotations

import json
import os
import time

import pytest

torch = pytest.importorskip("torch")

from backend.errors import BackendError  # noqa: E402
from backend.gpu.residency import MIB, ResidencyManager, attach_stage_hooks  # noqa: E402
from tests.synthetic_models import SAM3D_SIZES_GB, SAM3D_STAGES, make_synthetic  # noqa: E402

pytestmark = pytest.mark.gpu

GB = 10**9
TOKENS = 4096


@pytest.fixture(scope="module")
def models():
    built = {name: make_synthetic(int(gb * GB)) for name, gb in SAM3D_SIZES_GB.items()}
    yield built
    for m in built.values():
        m.to("cpu")
    torch.cuda.empty_cache()


@pytest.fixture(autouse=True)
def _reset_fraction():
    yield
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()


def _manager(models, budget_gb, **kw) -> ResidencyManager:
    mgr = ResidencyManager(budget_gb=budget_gb, **kw)
    for name, module in models.items():
        mgr.register(name, module)
    return mgr


def _run_pipeline(mgr: ResidencyManager, models) -> dict[str, list[str]]:
    """Drive the stages the way the engine does: depth in a stage() block, the rest from hooks."""
    x = torch.randn(TOKENS, 4096, device="cuda", dtype=torch.bfloat16)
    handles = attach_stage_hooks(mgr, {k: v for k, v in SAM3D_STAGES.items() if k != "depth"})
    seen: dict[str, list[str]] = {}
    try:
        with mgr.stage("depth", SAM3D_STAGES["depth"]):
            models["depth_model"](x)
            seen["depth"] = [n for n in mgr.names if mgr.where(n) == "cuda"]
        with mgr.guard():
            for stage, names in SAM3D_STAGES.items():
                if stage == "depth":
                    continue
                for n in names:
                    models[n](x)
                seen[stage] = [n for n in mgr.names if mgr.where(n) == "cuda"]
    finally:
        for h in handles:
            h.remove()
    budget = mgr.budget_bytes()
    for stage, on_gpu in seen.items():
        assert set(SAM3D_STAGES[stage]) <= set(on_gpu), (stage, on_gpu)
        if mgr.exclusive:
            assert sorted(on_gpu) == sorted(SAM3D_STAGES[stage]), (stage, on_gpu)
        assert sum(SAM3D_SIZES_GB[n] * GB for n in on_gpu) + mgr.headroom_mb * MIB <= budget, (
            stage,
            on_gpu,
        )
    return seen


@pytest.mark.parametrize("exclusive", [True, False], ids=["exclusive", "lru"])
def test_stages_stay_under_an_8_gb_budget(models, exclusive):
    budget_gb = 8.0
    mgr = _manager(models, budget_gb, exclusive=exclusive)
    _run_pipeline(mgr, models)
    rep = mgr.report()
    assert set(rep["timings"]) == set(SAM3D_STAGES)
    peak = rep["peak_vram_mb"]
    biggest = (
        max(sum(SAM3D_SIZES_GB[n] for n in names) for names in SAM3D_STAGES.values()) * GB / MIB
    )
    assert biggest <= peak <= budget_gb * 1024, (peak, biggest)
    total_weights = sum(SAM3D_SIZES_GB.values()) * GB / MIB
    assert peak < total_weights * 0.75  # far below holding everything at once
    print(f"\nresidency report ({'exclusive' if exclusive else 'lru'}):", json.dumps(rep, indent=1))
    out = os.environ.get("SAM3D_RESIDENCY_REPORT")
    if out and exclusive:
        with open(out, "w") as fh:
            json.dump(rep, fh, indent=1)
    # a second job reuses what is already there: same stage set, no error
    mgr.reset_stats()
    _run_pipeline(mgr, models)
    assert mgr.report()["peak_vram_mb"] <= budget_gb * 1024
    mgr.offload_all()
    assert all(mgr.where(n) == "cpu" for n in mgr.names)


def test_a_big_budget_keeps_everything_resident_for_the_next_job(models):
    mgr = _manager(models, budget_gb=40.0)
    _run_pipeline(mgr, models)
    first = mgr.report()
    mgr.reset_stats()
    _run_pipeline(mgr, models)
    second = mgr.report()
    assert all(mgr.where(n) == "cuda" for n in mgr.names)
    load_second = sum(s["load_s"] for s in second["vram"]["stages"].values())
    load_first = sum(s["load_s"] for s in first["vram"]["stages"].values())
    assert load_second < 0.1 * load_first, (load_first, load_second)
    print(
        f"\nbudget 40 GiB: first job moved weights in {load_first:.2f} s, second in {load_second:.3f} s; "
        f"peaks {first['peak_vram_mb']:.0f} / {second['peak_vram_mb']:.0f} MiB"
    )
    mgr.offload_all()


def test_budget_smaller_than_a_stage_is_refused_before_moving_anything(models):
    mgr = _manager(models, budget_gb=4.0)
    before = torch.cuda.memory_allocated()
    with pytest.raises(BackendError) as info:
        with mgr.stage("sparse_structure", SAM3D_STAGES["sparse_structure"]):
            pytest.fail("the stage body must not run")
    err = info.value
    assert err.code == "out_of_memory"
    assert err.details["budget_mb"] == pytest.approx(4096, abs=1)
    assert err.details["stage_weights_mb"] == pytest.approx(6.45 * GB / MIB, rel=0.01)
    assert (
        "budget" in err.message and "GiB" in err.message and "SAM3D_VRAM_BUDGET_GB" in err.message
    )
    assert all(mgr.where(n) == "cpu" for n in mgr.names)
    assert torch.cuda.memory_allocated() <= before + 64 * MIB
    print("\nrefusal:", err.message)


def test_oom_inside_a_stage_becomes_a_clean_error_and_frees_the_gpu(models):
    mgr = _manager(models, budget_gb=8.0)
    with pytest.raises(BackendError) as info:
        with mgr.stage("latent", SAM3D_STAGES["latent"]):
            models["slat_generator"](torch.randn(TOKENS, 4096, device="cuda", dtype=torch.bfloat16))
            torch.empty(int(6 * GB), dtype=torch.uint8, device="cuda")  # past the 8 GB budget
    err = info.value
    assert err.code == "out_of_memory"
    assert err.details["stage"] == "latent"
    assert err.details["peak_allocated_mb"] >= 4.6 * GB / MIB
    assert "lower quality preset" in err.message
    assert all(mgr.where(n) == "cpu" for n in mgr.names)
    assert torch.cuda.memory_allocated() < 256 * MIB
    print("\nruntime OOM:", err.message)
    # the manager still works afterwards
    with mgr.stage("decode", SAM3D_STAGES["decode"]):
        pass


def test_idle_unload_moves_models_off_the_gpu(models):
    mgr = _manager({"ss_decoder": models["ss_decoder"]}, budget_gb=8.0, idle_unload_s=0.5)
    with mgr.stage("s", ["ss_decoder"]):
        assert mgr.where("ss_decoder") == "cuda"
    deadline = time.monotonic() + 5
    while mgr.where("ss_decoder") == "cuda" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mgr.where("ss_decoder") == "cpu" and mgr.idle_unloads == 1


def test_drop_eviction_rebuilds_with_the_loader(models):
    built = []

    def loader():
        built.append(1)
        return make_synthetic(int(0.1 * GB))

    mgr = ResidencyManager(budget_gb=8.0, exclusive=True)  # LRU would keep it: it fits
    mgr.register("dropped", loader=loader, evict="drop")
    mgr.register("other", models["ss_decoder"])
    with mgr.stage("a", ["dropped"]):
        assert mgr.where("dropped") == "cuda"
    with mgr.stage("b", ["other"]):
        assert mgr.where("dropped") == "unloaded"
    with mgr.stage("a", ["dropped"]):
        pass
    assert len(built) == 2
    mgr.release()
