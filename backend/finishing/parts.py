"""Finishing the objects of one photo (a scene's parts) two at a time.

One object's finishing leaves a core idle for part of its run (sanitising, UV charting,
PNG encoding run on one core), so the parts of a scene are finished ``PART_THREADS`` at a
time in threads: most of the work is numpy, scipy or Pillow on large arrays (which release
the GIL) or waits for the forked decimator. One bake runs at a time (``pipeline``). Each
part's GLB is written through a temporary name (``backend.storage.atomic_path``), so a file
that exists is complete. Each part's failure stays in its own slot; cancelling stops the
parts not yet started and raises ``Cancelled``, and so does an exception raised by the
caller's ``on_part``. Progress is reported monotonically through the caller's context as
the mean of the parts' own progress.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.finishing.pipeline import STAGES, finish_to_glb
from backend.job_context import Cancelled, JobContext
from backend.parallel import ordered_map
from backend.reconstruction import Reconstruction
from backend.storage import atomic_path

if TYPE_CHECKING:
    from backend.options import FinishOptions

#: Parts finished at a time (at most the CPUs this process may use).
PART_THREADS = 2
# Relative duration of the finishing stages (in STAGES order), for each part's progress.
_PART_STAGES = dict(zip(STAGES, (0.35, 0.1, 0.45, 0.1), strict=True))


def finish_parts(
    recons: Sequence[Reconstruction | Exception],
    options: FinishOptions,
    out_paths: Sequence[Path],
    ctx: JobContext | None = None,
    on_part: Callable[[int, dict[str, Any] | Exception], None] | None = None,
    threads: int | None = None,
) -> list[dict[str, Any] | Exception]:
    """``finish_to_glb(recons[i], options, out_paths[i])`` for every part, up to ``threads``
    (default ``PART_THREADS``, at most the CPUs) at a time.

    Returns, per part and in order, the stats dict of ``finish_to_glb`` or the exception
    that part raised (an exception passed in ``recons`` is passed through). ``on_part(i,
    result)`` is called from the calling thread as each part completes, in order; what it
    raises stops the parts not yet started and propagates once the running ones end.
    ``ctx.progress`` receives the mean progress of the parts, never decreasing.
    """
    n = len(recons)
    lock = threading.Lock()
    done = [0.0] * n
    reported = [0.0]

    def report(i: int, fraction: float) -> None:
        with lock:
            done[i] = max(done[i], fraction)
            overall = sum(done) / max(n, 1)
            if ctx is not None and overall > reported[0]:
                reported[0] = overall
                ctx.progress(overall)

    def part_context(i: int) -> JobContext:
        def cancelled() -> bool:
            if ctx is not None:
                ctx.check_cancel()
            return False

        return JobContext(
            on_update=lambda stage, fraction: report(i, fraction),
            is_cancelled=cancelled,
            stages=dict(_PART_STAGES),
        )

    def one(i: int) -> dict[str, Any] | Exception:
        rec = recons[i]
        result: dict[str, Any] | Exception
        if isinstance(rec, Exception):
            result = rec
        else:
            try:
                with atomic_path(out_paths[i]) as tmp:
                    result = finish_to_glb(rec, options, tmp, part_context(i))
            except Cancelled:
                raise
            except Exception as exc:  # one part's failure never costs the others
                result = exc
        report(i, 1.0)  # done, finished or failed
        return result

    return ordered_map(one, n, threads or PART_THREADS, on_part, "finish")
