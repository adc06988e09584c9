"""The engine interface and registry.

An engine is a class with a ``name``, an ``availability()`` check that never imports heavy
packages at module import time, and ``reconstruct``/``reconstruct_many``. Engines run only in
worker processes; the HTTP server calls ``availability()`` only through ``engine_report``
run in a subprocess-free, import-light way (each engine's check must be cheap and must not
import torch).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from backend.job_context import JobContext
from backend.options import JobOptions
from backend.reconstruction import Intrinsics, Reconstruction


@dataclass
class Availability:
    """Whether an engine can run here, and if not exactly why (a sentence a person can act on)."""

    available: bool
    reason: str = ""
    details: dict | None = None


class Engine(Protocol):
    name: str

    def availability(self) -> Availability: ...

    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        seed: int,
        options: JobOptions,
        ctx: JobContext,
        intrinsics: Intrinsics | None = None,
    ) -> Reconstruction:
        """image (H, W, 3) uint8 sRGB; mask (H, W) bool, same size. Raises BackendError."""
        ...

    def reconstruct_many(
        self,
        image: np.ndarray,
        masks: list[np.ndarray],
        seed: int,
        options: JobOptions,
        ctx: JobContext,
    ) -> list[Reconstruction | Exception]:
        """Several objects of one photo; per-image work (depth, intrinsics) done once.

        All returned reconstructions share one camera (same intrinsics) and one metric scale.
        A failing mask yields its exception in its slot; the others still succeed.
        """
        ...


def missing_modules(names: tuple[str, ...] | list[str]) -> list[str]:
    """Which of ``names`` cannot be imported here, told by ``find_spec`` without importing
    them (availability checks must never load torch into the server)."""
    missing = []
    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing
