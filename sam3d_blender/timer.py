"""The add-on's one timer: advances the session and hands finished jobs to :mod:`.finish`.

:func:`tick` is the body of the ``bpy.app.timers`` callback (Blender's main thread): it
advances jobs, the backend's start-up and the installer by small non-blocking steps,
delivers every finished job the timer is responsible for (``Delivery.TIMER``: objects and
scenes alike, through :func:`.finish.deliver`), and asks the panels to redraw.
Blocking callers (background mode, tests, the batch) run the same body in a loop
(:func:`wait_for`). No thread here touches bpy.

Opening another file cancels the jobs started for the old one, and nothing meant for it
is imported later (:func:`on_load_pre`).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

import bpy

from . import finish, session
from .core.backend_process import BackendState
from .core.installer import InstallState
from .core.jobs import Job
from .importing.view import window_override

__all__ = ["ensure", "register_handlers", "stop", "tick", "unregister_handlers", "wait_for"]


def tick() -> float | None:
    """One round of non-blocking work; returns seconds to the next round or None to stop."""
    s = session.get()
    waits: list[float] = []
    try:
        wait = s.manager.step()
        if wait is not None:
            waits.append(wait)
        backend = s.backend
        if backend is not None and backend.state == BackendState.STARTING:
            if backend.poll() == BackendState.STARTING:
                waits.append(0.1)
            elif backend.state == BackendState.ERROR and backend.error is not None:
                s.notify("ERROR", backend.error.sentence())
        if s.installer is not None and s.installer.state == InstallState.RUNNING:
            if s.installer.poll() == InstallState.RUNNING:
                waits.append(0.2)
            elif s.installer.state == InstallState.SUCCEEDED:
                # current_backend() notices the new venv's Python (its key changes).
                s.notify("INFO", "Backend installed.")
            else:
                s.notify("ERROR", s.installer.summary())
        for job in s.manager.to_deliver():
            _deliver(s, job)
    except Exception as exc:  # a timer that raises is removed by Blender: report, go on
        s.notify("ERROR", f"Internal error in the SAM 3D add-on: {exc}")
        traceback.print_exc()
    redraw()
    return min(waits) if waits else None


def _deliver(s: session.Session, job: Job) -> None:
    ctx = bpy.context
    with ctx.temp_override(**window_override(ctx)):
        outcome = finish.deliver(ctx, job, undo_step=True)
    s.notify(outcome.level, outcome.text)


def ensure() -> None:
    """Start the timer (no effect in module mode, where timers never fire)."""
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=0.05, persistent=True)


def stop() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)


def wait_for(done: Callable[[], bool], timeout: float | None = None) -> bool:
    """Blocking: run :func:`tick` until ``done()`` (or ``timeout`` seconds). For background
    mode and tests, where timers don't run. Returns ``done()``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done():
        wait = tick()
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(0.05 if wait is None else min(wait, 0.25))
    return done()


def redraw() -> None:
    """Ask the areas that show SAM 3D state to redraw."""
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type in {"VIEW_3D", "IMAGE_EDITOR", "PREFERENCES"}:
                area.tag_redraw()


@bpy.app.handlers.persistent
def on_load_pre(*_args) -> None:
    """A file is about to be opened (or File > New): jobs started for the old file must
    not land in the new one. Active jobs are cancelled (on the backend too) and nothing
    undelivered is imported later; the artist is told."""
    s = session.current()
    if s is None:
        return
    dropped = s.manager.drop_undelivered()
    if dropped:
        s.notify(
            "WARNING",
            f"{dropped} SAM 3D job(s) of the previous file were cancelled: a file was opened.",
        )


def register_handlers() -> None:
    if on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(on_load_pre)


def unregister_handlers() -> None:
    if on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(on_load_pre)
