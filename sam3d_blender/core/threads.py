"""Blocking work in a daemon thread, so Blender's main thread never waits for the network.

No bpy: the functions run here must not touch bpy; the main thread polls ``done`` (from a
timer step) and then takes ``result()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class BackgroundCall:
    """One blocking exchange with the backend in a daemon thread, so Blender's main thread
    never waits for the network. ``fn`` must not touch bpy. Read ``done`` from the main
    thread; ``result()`` returns ``fn``'s value or raises its exception."""

    def __init__(self, kind: str, fn: Callable[[], Any]) -> None:
        self.kind = kind
        self._value: Any = None
        self._exc: BaseException | None = None
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(fn,), daemon=True, name=f"sam3d-{kind}").start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # handed to the main thread by result()
            self._exc = exc
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def result(self) -> Any:
        if self._exc is not None:
            raise self._exc
        return self._value
