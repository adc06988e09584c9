"""Which GPU each worker of the local executor gets: ``serve --gpus all|0,1``.

A worker pinned to GPU ``n`` is started with ``CUDA_VISIBLE_DEVICES=n`` and
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (so ``n`` means what ``nvidia-smi`` calls GPU ``n``); inside
it, CUDA sees one device, ``cuda:0``. ``SAM3D_WORKER_GPU`` tells the job which physical GPU
that is, and ``result.json`` records it. Nothing here imports torch: GPUs are listed by
``nvidia-smi`` (``backend.gpu.probe``).
"""

from __future__ import annotations

import os

from backend.errors import BackendError
from backend.gpu.probe import GpuProbe, probe_gpus

#: The environment variable naming the physical GPU (nvidia-smi index) a worker is pinned to.
WORKER_GPU_ENV = "SAM3D_WORKER_GPU"


def resolve_gpus(spec: str, probe: GpuProbe | None = None) -> list[int]:
    """``"all"`` or ``"0,1"`` -> the nvidia-smi indices to pin one worker each to.

    Raises ``BackendError("gpu_not_found")`` when the machine has no such GPU (or none at
    all), with the GPUs it does have, and ``bad_gpus`` for a list that is not indices."""
    probe = probe if probe is not None else probe_gpus(use_cache=False)
    have = {g.index: g for g in probe.gpus}
    listing = ", ".join(f"{g.index} ({g.name})" for g in probe.gpus) or "none"
    spec = spec.strip().lower()
    if spec == "all":
        if not have:
            raise BackendError(
                "gpu_not_found",
                "--gpus all: no NVIDIA GPU was found here"
                + (f" ({probe.error})" if probe.error else "")
                + ". Leave --gpus out to run one worker without pinning.",
            )
        return sorted(have)
    try:
        wanted = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise BackendError(
            "bad_gpus",
            f"--gpus {spec!r}: give 'all' or GPU indices as nvidia-smi numbers them, "
            "separated by commas (e.g. 0,1).",
        ) from None
    if not wanted or len(set(wanted)) != len(wanted):
        raise BackendError(
            "bad_gpus", f"--gpus {spec!r}: list each GPU index once (e.g. 0,1), or 'all'."
        )
    missing = [i for i in wanted if i not in have]
    if missing:
        raise BackendError(
            "gpu_not_found",
            f"--gpus: no GPU {', '.join(map(str, missing))} on this machine; it has: {listing}.",
        )
    return wanted


def worker_env(gpu: int | None) -> dict[str, str] | None:
    """The environment of a worker pinned to ``gpu`` (None: not pinned, inherit ours)."""
    if gpu is None:
        return None
    env = dict(os.environ)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    env[WORKER_GPU_ENV] = str(gpu)
    return env


def current_worker_gpu() -> int | None:
    """In a worker: the physical GPU it is pinned to (None when not pinned)."""
    value = os.environ.get(WORKER_GPU_ENV, "")
    return int(value) if value.isdigit() else None
