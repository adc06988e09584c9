"""Work spread over this process's CPUs: how many it may use, and a list of independent
items run a few at a time with results in order."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from backend.memory import limit_heap_arenas

T = TypeVar("T")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one; at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def ordered_map(
    fn: Callable[[int], T],
    n: int,
    threads: int,
    on_result: Callable[[int, T], None] | None = None,
    name: str = "item",
) -> list[T]:
    """``[fn(0), ..., fn(n - 1)]``, up to ``threads`` (at most the usable CPUs) at a time in
    threads named ``name``; inline when that is one. ``on_result(i, result)`` runs in the
    calling thread as results arrive, in order. An exception raised by ``fn`` (items catch
    their own failures; what escapes is e.g. a cancellation) propagates once the items
    already running end; the items not yet started never start."""
    threads = min(threads, usable_cpus(), max(n, 1))
    out: list[T] = []
    if threads <= 1:
        for i in range(n):
            out.append(fn(i))
            if on_result is not None:
                on_result(i, out[-1])
        return out
    limit_heap_arenas()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
    try:
        futures = [pool.submit(fn, i) for i in range(n)]
        for i, fut in enumerate(futures):
            out.append(fut.result())
            if on_result is not None:
                on_result(i, out[-1])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out
