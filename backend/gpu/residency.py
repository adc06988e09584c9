"""Staged GPU residency: only the running stage's sub-models live on the GPU.

A pipeline registers its sub-models (``torch.nn.Module`` or anything with ``.to()``,
``.parameters()`` and ``.buffers()``) by name, then runs each stage inside
``with manager.stage("sparse_structure", ["ss_generator", "ss_decoder"]):`` - or, when it
cannot restructure the code that calls the models, inside one ``with manager.guard():`` with
``attach_stage_hooks`` switching stages from forward pre-hooks (``manager.enter``). On
entering a stage the manager

1. moves registered modules the stage does not name off the GPU (to CPU memory, or drops
   them when registered with a ``loader`` and ``evict="drop"``): all of them when
   ``exclusive``, else only as many as needed (least recently used first) for the stage's
   weights plus headroom to fit the budget beside the modules that stay,
2. checks that the stage's weights plus a working-memory headroom fit both the VRAM budget
   and the memory the GPU has free, and refuses with ``BackendError("out_of_memory")``
   carrying the figures before anything is moved when they do not,
3. moves the stage's modules to the GPU and resets the peak-memory counters.

On exit it records the stage's wall-clock seconds (including the weight transfers, which are
also reported alone as ``load_s``) and its peak GPU memory. A CUDA out-of-memory error
inside the stage is turned into ``BackendError("out_of_memory")`` with the figures and a
suggestion, after everything has been moved off the GPU.

The budget is enforced, not only checked: the manager limits the process's CUDA caching
allocator with ``torch.cuda.set_per_process_memory_fraction(budget / total)``, so an
allocation past the budget fails as an out-of-memory error instead of taking the whole card.
The CUDA context itself (a few hundred MiB per process) lies outside the allocator and is not
counted in the budget or in the peaks; ``report()`` states it separately.

Idle unload: after ``idle_unload_s`` seconds without a stage, a timer thread moves every
module off the GPU and empties the allocator's cache.

Units: bytes internally, MiB (2**20 bytes) in reports and error details, GiB (2**30 bytes)
for the budget, seconds for times. torch is imported lazily: importing this module does not
import torch (only the worker process that runs stages does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from backend.errors import BackendError

MIB = 1 << 20
GIB = 1 << 30

#: Working memory a stage needs beyond its weights (activations, decoder outputs), MiB.
DEFAULT_HEADROOM_MB = 1024.0


def _torch() -> Any:
    import torch  # lazy: only worker processes run stages

    return torch


def module_bytes(module: Any) -> int:
    """Bytes held by a module's parameters and buffers (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    tensors = list(module.parameters()) + list(module.buffers())
    for t in tensors:
        key = t.data_ptr() if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def _module_device_type(module: Any) -> str:
    for t in module.parameters():
        return t.device.type
    for t in module.buffers():
        return t.device.type
    return "cpu"


def _is_oom(exc: BaseException) -> bool:
    torch = _torch()
    oom_types = tuple(
        t
        for t in (
            getattr(torch, "OutOfMemoryError", None),
            getattr(torch.cuda, "OutOfMemoryError", None),
        )
        if t
    )
    if oom_types and isinstance(exc, oom_types):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text.lower() or "CUDA_ERROR_OUT_OF_MEMORY" in text
    )


@dataclass
class StageStats:
    """What one stage cost (summed over runs when a stage runs several times in one job)."""

    name: str
    runs: int = 0
    seconds: float = 0.0
    load_s: float = 0.0
    weights_mb: float = 0.0
    peak_allocated_mb: float = 0.0
    peak_reserved_mb: float = 0.0

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "runs": self.runs,
            "seconds": round(self.seconds, 3),
            "load_s": round(self.load_s, 3),
            "weights_mb": round(self.weights_mb, 1),
            "peak_allocated_mb": round(self.peak_allocated_mb, 1),
            "peak_reserved_mb": round(self.peak_reserved_mb, 1),
        }


@dataclass
class _Slot:
    name: str
    module: Any | None
    loader: Callable[[], Any] | None
    evict: str  # "cpu" | "drop"
    dtype: Any | None
    nbytes: int
    last_used: int = 0


class ResidencyManager:
    """Moves registered sub-models between CPU and one CUDA device, stage by stage.

    ``budget_gb``: GiB the process's CUDA allocator may use (None: the whole card).
    ``idle_unload_s``: seconds without a stage after which everything leaves the GPU
    (None or <= 0: never). ``headroom_mb``: working memory a stage needs beyond its
    weights; the pre-check refuses a stage whose weights plus headroom exceed the budget.
    ``stage_headroom_mb``: per-stage overrides of ``headroom_mb`` (a decoder that allocates
    dense grids needs more than a transformer step). ``exclusive``: evict every module the
    stage does not name; by default modules of
    earlier stages stay on the GPU while they fit beside the new stage's weights plus
    headroom within the budget (least recently used leave first), so a big card keeps the
    whole pipeline resident and later jobs move no weights at all.
    """

    def __init__(
        self,
        device: str = "cuda",
        budget_gb: float | None = None,
        idle_unload_s: float | None = None,
        headroom_mb: float = DEFAULT_HEADROOM_MB,
        log: Callable[[str], None] | None = None,
        exclusive: bool = False,
        stage_headroom_mb: dict[str, float] | None = None,
    ) -> None:
        self.device_name = device
        self.budget_gb = budget_gb
        self.idle_unload_s = idle_unload_s
        self.headroom_mb = float(headroom_mb)
        self.stage_headroom_mb = {k: float(v) for k, v in (stage_headroom_mb or {}).items()}
        self._log = log or (lambda msg: None)
        self._slots: dict[str, _Slot] = {}
        self._stats: dict[str, StageStats] = {}
        self._lock = threading.RLock()
        self._current: tuple[str, list[str], float, float] | None = None
        self._timer: threading.Timer | None = None
        self._budget_applied = False
        self._tick = 0
        self.exclusive = exclusive
        #: Called with the stage name whenever a new stage starts, before weights move
        #: (progress reporting; may raise to cancel).
        self.on_enter: Callable[[str], None] | None = None
        self.idle_unloads = 0
        self.context_mb: float | None = None

    # -- registration ---------------------------------------------------------------------
    def register(
        self,
        name: str,
        module: Any | None = None,
        *,
        loader: Callable[[], Any] | None = None,
        evict: str = "cpu",
        dtype: Any | None = None,
    ) -> None:
        """Register a sub-model, resident on CPU until a stage needs it.

        ``module``: the model (moved to CPU now if it is elsewhere); or ``loader``: a
        callable that builds it on CPU when a stage first needs it. ``evict``: ``"cpu"``
        keeps it in CPU memory between stages, ``"drop"`` forgets it (a ``loader`` then
        rebuilds it). ``dtype``: cast floating-point weights once (e.g. ``torch.bfloat16``).
        """
        if module is None and loader is None:
            raise ValueError(f"{name}: give a module or a loader")
        if evict not in ("cpu", "drop"):
            raise ValueError("evict must be 'cpu' or 'drop'")
        if evict == "drop" and loader is None:
            raise ValueError(f"{name}: evict='drop' needs a loader to rebuild the module")
        nbytes = 0
        if module is not None:
            module = self._prepare(module, dtype)
            # Entries that hold nothing while off the GPU state their GPU size themselves.
            nbytes = getattr(module, "gpu_nbytes", None) or module_bytes(module)
        with self._lock:
            self._slots[name] = _Slot(name, module, loader, evict, dtype, nbytes)

    def _prepare(self, module: Any, dtype: Any | None) -> Any:
        if dtype is not None:
            module = module.to(dtype=dtype)
        if _module_device_type(module) != "cpu":
            module = module.to("cpu")
        return module

    def module(self, name: str) -> Any:
        """The registered module (built by its loader when needed; stays where it is)."""
        slot = self._slots[name]
        if slot.module is None:
            assert slot.loader is not None
            slot.module = self._prepare(slot.loader(), slot.dtype)
            slot.nbytes = module_bytes(slot.module)
        return slot.module

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def where(self, name: str) -> str:
        """``"cuda"``, ``"cpu"`` or ``"unloaded"``."""
        slot = self._slots[name]
        if slot.module is None:
            return "unloaded"
        return _module_device_type(slot.module)

    def weights_mb(self, names: Iterable[str]) -> float:
        """Weights of these modules in MiB (known once each was built or registered)."""
        return sum(self._slots[n].nbytes for n in names) / MIB

    # -- device helpers -------------------------------------------------------------------
    @property
    def device(self) -> Any:
        return _torch().device(self.device_name)

    def _device_index(self) -> int:
        dev = self.device
        return dev.index if dev.index is not None else _torch().cuda.current_device()

    def _apply_budget(self) -> None:
        if self._budget_applied:
            return
        torch = _torch()
        if not torch.cuda.is_available():
            raise BackendError(
                "no_gpu", "CUDA is not available to this worker (no NVIDIA GPU or driver)."
            )
        idx = self._device_index()
        free, total = torch.cuda.mem_get_info(idx)
        reserved = torch.cuda.memory_reserved(idx)
        # What the process holds outside the allocator (CUDA context, cuBLAS workspaces...).
        self.context_mb = max(0.0, (total - free - reserved) / MIB)
        if self.budget_gb is not None:
            fraction = min(1.0, max(0.0, self.budget_gb * GIB / total))
            torch.cuda.set_per_process_memory_fraction(fraction, idx)
        self._budget_applied = True

    def budget_bytes(self) -> int:
        torch = _torch()
        total = torch.cuda.mem_get_info(self._device_index())[1]
        if self.budget_gb is None:
            return total
        return int(min(total, self.budget_gb * GIB))

    # -- moving ---------------------------------------------------------------------------
    def _evict(self, slot: _Slot) -> None:
        if slot.module is None:
            return
        if slot.evict == "drop":
            slot.module = None
        elif _module_device_type(slot.module) != "cpu":
            slot.module = slot.module.to("cpu")

    def offload_all(self) -> None:
        """Move every module off the GPU and return cached GPU memory to the driver."""
        with self._lock:
            self._current = None
            for slot in self._slots.values():
                self._evict(slot)
            torch = _torch()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def release(self) -> None:
        """Forget every module (CPU memory too) and free the GPU cache."""
        with self._lock:
            self._cancel_timer()
            self._slots.clear()
            torch = _torch()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # -- stages ---------------------------------------------------------------------------
    def _oom_error(
        self,
        stage: str,
        names: list[str],
        reason: str,
        peak_bytes: int | None = None,
    ) -> BackendError:
        torch = _torch()
        idx = self._device_index()
        free, total = torch.cuda.mem_get_info(idx)
        budget = self.budget_bytes()
        weights = sum(self._slots[n].nbytes for n in names)
        gb = 1.0 / GIB
        parts = [
            f"The GPU ran out of memory in stage '{stage}': {reason}.",
            f"VRAM: budget {budget * gb:.1f} GiB of {total * gb:.1f} GiB on the card, "
            f"{free * gb:.1f} GiB free now; this stage's weights {weights * gb:.1f} GiB",
        ]
        if peak_bytes is not None:
            parts[-1] += f", peak in the stage {peak_bytes * gb:.1f} GiB"
        parts[-1] += "."
        if weights + self.headroom_for(stage) * MIB > budget and budget < total:
            parts.append(
                f"Raise the budget (SAM3D_VRAM_BUDGET_GB, in GiB, at most {total * gb:.0f} on this GPU) "
                "or close other programs that use the GPU."
            )
        else:
            parts.append(
                "Try a lower quality preset ('fast'), raise the VRAM budget "
                "(SAM3D_VRAM_BUDGET_GB), or close other programs that use the GPU."
            )
        return BackendError(
            "out_of_memory",
            " ".join(parts),
            stage=stage,
            budget_mb=round(budget / MIB, 1),
            device_total_mb=round(total / MIB, 1),
            device_free_mb=round(free / MIB, 1),
            stage_weights_mb=round(weights / MIB, 1),
            headroom_mb=self.headroom_for(stage),
            peak_allocated_mb=None if peak_bytes is None else round(peak_bytes / MIB, 1),
        )

    def headroom_for(self, stage: str) -> float:
        """Working memory (MiB) the stage needs beyond its weights."""
        return self.stage_headroom_mb.get(stage, self.headroom_mb)

    def _make_room(self, stage: str, names: list[str]) -> None:
        """Evict modules the stage does not need: all of them when ``exclusive``, else the
        least recently used until the rest fit beside the stage within the budget."""
        torch = _torch()
        others = [s for s in self._slots.values() if s.name not in names and s.module is not None]
        if self.exclusive:
            for slot in others:
                self._evict(slot)
        else:
            idx = self._device_index()
            need = sum(self._slots[n].nbytes for n in names) + int(self.headroom_for(stage) * MIB)
            on_gpu = [s for s in others if _module_device_type(s.module) == "cuda"]
            for slot in others:
                if slot not in on_gpu:
                    self._evict(slot)  # "drop" modules waiting on the CPU are forgotten
            on_gpu.sort(key=lambda s: s.last_used)
            resident = sum(s.nbytes for s in on_gpu)
            cap = self.budget_bytes()
            free = (
                torch.cuda.mem_get_info(idx)[0]
                + torch.cuda.memory_reserved(idx)
                - torch.cuda.memory_allocated(idx)
            )
            incoming = sum(self._slots[n].nbytes for n in names if self.where(n) != "cuda")
            while on_gpu and (
                resident + need > cap or incoming + int(self.headroom_for(stage) * MIB) > free
            ):
                slot = on_gpu.pop(0)
                self._evict(slot)
                resident -= slot.nbytes
                free += slot.nbytes
        torch.cuda.empty_cache()

    def _check_fits(self, stage: str, names: list[str]) -> None:
        torch = _torch()
        idx = self._device_index()
        weights = sum(self._slots[n].nbytes for n in names)
        headroom_mb = self.headroom_for(stage)
        need = weights + int(headroom_mb * MIB)
        budget = self.budget_bytes()
        if need > budget:
            raise self._oom_error(
                stage,
                names,
                f"it needs {need / GIB:.1f} GiB (weights {weights / GIB:.1f} GiB + working memory "
                f"{headroom_mb / 1024:.1f} GiB) but the VRAM budget is {budget / GIB:.1f} GiB",
            )
        free, _total = torch.cuda.mem_get_info(idx)
        on_gpu = sum(
            s.nbytes
            for s in self._slots.values()
            if s.name in names and self.where(s.name) == "cuda"
        )
        usable = free + torch.cuda.memory_reserved(idx) - torch.cuda.memory_allocated(idx) + on_gpu
        if need > usable:
            raise self._oom_error(
                stage,
                names,
                f"it needs {need / GIB:.1f} GiB but only {usable / GIB:.1f} GiB of the GPU is free "
                "(other programs hold the rest)",
            )

    def current_stage(self) -> str | None:
        """Name of the stage whose modules are on the GPU now (None between stages)."""
        return self._current[0] if self._current else None

    def enter(self, name: str, modules: Iterable[str]) -> None:
        """Make ``name`` the running stage with exactly ``modules`` on the GPU.

        Finishes the previous stage's accounting first; a no-op when ``name`` is already
        the running stage (so forward hooks may call it on every call of a module).
        """
        torch = _torch()
        names = list(modules)
        unknown = [n for n in names if n not in self._slots]
        if unknown:
            raise KeyError(f"stage {name!r} names unregistered modules: {unknown}")
        with self._lock:
            if self._current is not None and self._current[0] == name:
                return
            self._finish_current()
            self._cancel_timer()
            if self.on_enter is not None:
                self.on_enter(name)
            self._apply_budget()
            idx = self._device_index()
            t0 = time.perf_counter()
            for n in names:  # build lazily-loaded modules (on CPU) so their size is known
                self.module(n)
            self._make_room(name, names)
            self._check_fits(name, names)
            self._tick += 1
            for n in names:
                self._slots[n].last_used = self._tick
            torch.cuda.reset_peak_memory_stats(idx)
            self._current = (name, names, t0, 0.0)
            for n in names:
                slot = self._slots[n]
                if _module_device_type(slot.module) != "cuda":
                    slot.module = slot.module.to(self.device)
            torch.cuda.synchronize(idx)
            self._current = (name, names, t0, time.perf_counter() - t0)

    def _finish_current(self) -> None:
        if self._current is None:
            return
        torch = _torch()
        name, names, t0, load_s = self._current
        self._current = None
        idx = self._device_index()
        torch.cuda.synchronize(idx)
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(idx)
        peak_reserved = torch.cuda.max_memory_reserved(idx)
        stats = self._stats.setdefault(name, StageStats(name))
        stats.runs += 1
        stats.seconds += seconds
        stats.load_s += load_s
        stats.weights_mb = self.weights_mb(names)
        stats.peak_allocated_mb = max(stats.peak_allocated_mb, peak / MIB)
        stats.peak_reserved_mb = max(stats.peak_reserved_mb, peak_reserved / MIB)
        self._log(
            f"stage {name}: {seconds:.2f} s (weights moved in {load_s:.2f} s), "
            f"peak {peak / MIB:.0f} MiB allocated / {peak_reserved / MIB:.0f} MiB reserved"
        )

    def finish(self) -> None:
        """End the running stage's accounting; the idle-unload timer starts."""
        with self._lock:
            self._finish_current()
            self._schedule_idle()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn a CUDA out-of-memory error raised inside into ``BackendError("out_of_memory")``.

        Wraps code that switches stages itself (``enter`` from forward hooks); finishes the
        running stage on the way out. On OOM everything is moved off the GPU first.
        """
        reason: str | None = None
        stage = "?"
        names: list[str] = []
        peak: int | None = None
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - only OOM is translated, the rest re-raised
            if not _is_oom(exc):
                self.finish()
                raise
            torch = _torch()
            with self._lock:
                if self._current is not None:
                    stage, names = self._current[0], list(self._current[1])
                self._current = None
            peak = torch.cuda.max_memory_allocated(self._device_index())
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
        else:
            self.finish()
        if reason is not None:
            self.offload_all()
            with self._lock:
                self._schedule_idle()
            err = self._oom_error(stage, names, f"CUDA reported: {reason}", peak_bytes=peak)
            self._log(f"out of memory in stage {stage}: {err.message}")
            raise err

    @contextmanager
    def stage(self, name: str, modules: Iterable[str]) -> Iterator[None]:
        """Run one stage with exactly ``modules`` on the GPU (see the module doc)."""
        with self.guard():
            self.enter(name, modules)
            yield

    # -- idle unload ----------------------------------------------------------------------
    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule_idle(self) -> None:
        self._cancel_timer()
        if not self.idle_unload_s or self.idle_unload_s <= 0:
            return
        timer = threading.Timer(self.idle_unload_s, self._idle_fire)
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _idle_fire(self) -> None:
        with self._lock:
            if self._current is not None:
                return
            self._timer = None
            if any(self.where(n) == "cuda" for n in self._slots):
                self.offload_all()
                self.idle_unloads += 1
                self._log(f"idle for {self.idle_unload_s:.0f} s: models moved off the GPU")

    # -- reporting ------------------------------------------------------------------------
    def reset_stats(self) -> None:
        """Start a new job's accounting (stage seconds and peaks)."""
        self._stats = {}

    @property
    def stats(self) -> dict[str, StageStats]:
        return dict(self._stats)

    def peak_vram_mb(self) -> float:
        """Largest allocator reservation (MiB) over the recorded stages."""
        return max((s.peak_reserved_mb for s in self._stats.values()), default=0.0)

    def report(self) -> dict[str, Any]:
        """JSON-ready figures: per-stage seconds, peaks (MiB), the budget and the card."""
        torch = _torch()
        total_mb = None
        if torch.cuda.is_available():
            total_mb = round(torch.cuda.mem_get_info(self._device_index())[1] / MIB, 1)
        return {
            "timings": {k: round(v.seconds, 3) for k, v in self._stats.items()},
            "peak_vram_mb": round(self.peak_vram_mb(), 1),
            "vram": {
                "budget_mb": None
                if self.budget_gb is None
                else round(self.budget_gb * GIB / MIB, 1),
                "device_total_mb": total_mb,
                "cuda_context_mb": None if self.context_mb is None else round(self.context_mb, 1),
                "headroom_mb": self.headroom_mb,
                "stage_headroom_mb": dict(self.stage_headroom_mb),
                "stages": {k: v.to_dict() for k, v in self._stats.items()},
            },
        }


def attach_stage_hooks(
    manager: ResidencyManager,
    stages: dict[str, list[str]],
    headroom_from_args: dict[str, Callable[[tuple[Any, ...]], float | None]] | None = None,
) -> list[Any]:
    """Switch stages from forward pre-hooks: calling any module of ``stages[name]`` first
    makes ``name`` the running stage (``manager.enter``). Returns the hook handles.

    Upstream calls its sub-models as plain ``module(...)``; hooking them loads each stage's
    weights exactly when the stage starts, without changing upstream's control flow.
    ``headroom_from_args[name]``, when given, sizes the stage's working memory (MiB) from the
    call's positional arguments before the stage is entered (None: keep the table's value),
    e.g. the decoders' working memory from the number of voxels they are given.
    """
    handles = []
    sizers = headroom_from_args or {}
    for stage_name, names in stages.items():
        for n in names:
            module = manager.module(n)
            if not hasattr(module, "register_forward_pre_hook"):
                continue  # a non-module entry (e.g. dense grids) moves with its stage

            def hook(
                _module: Any, args: Any, _stage: str = stage_name, _names: list[str] = names
            ) -> None:
                sizer = sizers.get(_stage)
                if sizer is not None and manager.current_stage() != _stage:
                    mb = sizer(tuple(args))
                    if mb is not None:
                        manager.stage_headroom_mb[_stage] = float(mb)
                manager.enter(_stage, _names)

            handles.append(module.register_forward_pre_hook(hook))
    return handles
