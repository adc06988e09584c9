"""What this machine can run, told without torch: the engines' availability and the GPUs.

Used by ``GET /info``, by submissions (to resolve ``auto``) and by ``python -m backend
doctor``. Nothing here loads an engine or touches the GPU (``nvidia-smi`` only).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from backend.engines.base import Availability
from backend.engines.registry import engine_report


def gpu_summary() -> list[dict[str, Any]]:
    """GPUs seen by nvidia-smi (no torch in this process); [] when none."""
    from backend.gpu.probe import probe_gpus

    try:
        probe = probe_gpus()
    except Exception:
        return []
    return [
        {"name": g.name, "memory_total_mb": g.memory_total_mb, "memory_free_mb": g.memory_free_mb}
        for g in probe.gpus
    ]


class MachineProbe:
    """Engine availability and GPUs: cheap but not free (file checks, nvidia-smi), so
    refreshed at most every ``max_age_s`` seconds. Thread-safe."""

    def __init__(self, max_age_s: float = 30.0) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._when: float | None = None
        self._engines: dict[str, Availability] = {}
        self._gpus: list[dict[str, Any]] = []

    def _fresh(self) -> None:
        with self._lock:
            if self._when is None or time.monotonic() - self._when > self.max_age_s:
                self._engines = engine_report()
                self._gpus = gpu_summary()
                self._when = time.monotonic()

    def engines(self) -> dict[str, Availability]:
        self._fresh()
        return self._engines

    def gpus(self) -> list[dict[str, Any]]:
        self._fresh()
        return self._gpus

    def warm_up(self) -> None:
        """Probe once in a background thread (a server's first request need not wait)."""
        threading.Thread(target=self._fresh, daemon=True, name="probe-warmup").start()
