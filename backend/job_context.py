"""Progress and cancellation, passed from the worker into engines and finishing.

An engine or finishing step calls ``ctx.stage(name)`` when it starts a stage and
``ctx.progress(fraction)`` (0..1 within that stage) as it goes. Both check for a cancel
request and raise ``Cancelled`` - so cancellation is honoured between (and inside) stages.
"""

from __future__ import annotations

from collections.abc import Callable


class Cancelled(Exception):
    """The job was cancelled by its owner."""


class JobContext:
    """Reports stage/progress through ``on_update(stage, fraction)`` and checks ``is_cancelled()``.

    ``stages`` maps stage name -> weight; overall progress is the weighted sum, so a
    progress bar moves smoothly across engine and finishing stages.
    """

    def __init__(
        self,
        on_update: Callable[[str, float], None] | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        stages: dict[str, float] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._on_update = on_update or (lambda stage, frac: None)
        self._is_cancelled = is_cancelled or (lambda: False)
        self._log = log or (lambda msg: None)
        self.stages = dict(stages or {})
        self.current = ""
        self._done_weight = 0.0
        self._seen: list[str] = []

    def check_cancel(self) -> None:
        if self._is_cancelled():
            raise Cancelled(f"cancelled during {self.current or 'start'}")

    def _overall(self, fraction: float) -> float:
        total = sum(self.stages.values()) or 1.0
        w = self.stages.get(self.current, 0.0)
        return min(1.0, (self._done_weight + w * max(0.0, min(1.0, fraction))) / total)

    def stage(self, name: str) -> None:
        """Enter stage ``name`` (finishing the previous one)."""
        self.check_cancel()
        if self.current and self.current not in self._seen:
            self._seen.append(self.current)
            self._done_weight += self.stages.get(self.current, 0.0)
        self.current = name
        self._log(f"stage {name}")
        self._on_update(name, self._overall(0.0))

    def progress(self, fraction: float) -> None:
        """Report progress within the current stage (0..1)."""
        self.check_cancel()
        self._on_update(self.current, self._overall(fraction))

    def log(self, msg: str) -> None:
        self._log(msg)

    def part(self, index: int, count: int, stages: dict[str, float]) -> JobContext:
        """A context for part ``index`` of ``count`` inside the current stage (a scene's
        objects): it has its own stage weights, and its progress fills this stage's span
        ``[index / count, (index + 1) / count]``; stage names carry "(i/n)"."""
        outer = self.current

        def on_update(stage: str, fraction: float) -> None:
            self.current = outer
            self._on_update(
                f"{stage} ({index + 1}/{count})", self._overall((index + fraction) / count)
            )

        return JobContext(
            on_update=on_update, is_cancelled=self._is_cancelled, stages=stages, log=self._log
        )
