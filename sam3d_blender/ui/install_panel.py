"""Installing the backend from where the artist is: the profile this computer gets (with
its one-line reason, changeable), Install backend, its progress (step i of n, a bar,
Cancel), a refusal's one-click way out, and what this computer can run (the doctor).

Drawing only reads state and starts, at most, the session's machine checks: subprocesses
in daemon threads (:meth:`..session.Session.profile_choice`, :meth:`~..session.Session.doctor`)
that never touch bpy. A short ``bpy.app.timers`` callback redraws once they are done; the
installer's progress is advanced by the add-on's timer (:mod:`..timer`).
"""

from __future__ import annotations

import bpy

from .. import paths, session, timer
from ..core.installer import (
    PROFILE_WORDS,
    Finding,
    InstallState,
    choice_findings,
    doctor_findings,
)

#: Characters per line of wrapped text when the region's width is unknown.
WRAP = 52
_ICONS = {True: "CHECKMARK", False: "ERROR", None: "DOT"}


def wrap_width(context: bpy.types.Context) -> int:
    """Characters that fit on one label line of the region being drawn (about 6.5 px per
    character at a UI scale of 1, less the icon and margins)."""
    region = getattr(context, "region", None)
    if region is None or region.width <= 1:
        return WRAP
    scale = context.preferences.system.ui_scale if context.preferences else 1.0
    return max(20, int((region.width / max(scale, 0.5) - 48) / 6.5))


def wrapped(
    layout: bpy.types.UILayout,
    text: str,
    *,
    icon: str = "NONE",
    alert: bool = False,
    width: int = WRAP,
) -> None:
    """``text`` as labels of at most ``width`` characters; ``icon`` on the first."""
    col = layout.column(align=True)
    col.alert = alert
    words, line, first = text.split(), "", True
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            col.label(text=line, icon=icon if first else "BLANK1" if icon != "NONE" else "NONE")
            line, first = word, False
        else:
            line = f"{line} {word}".strip()
    if line:
        col.label(text=line, icon=icon if first else "BLANK1" if icon != "NONE" else "NONE")


def _poll_checks() -> float | None:
    """Timer: redraw once the session's machine checks are done."""
    s = session.current()
    if s is None:
        return None
    if s.checks_pending():
        return 0.25
    timer.redraw()
    return None


def _watch_checks() -> None:
    if not bpy.app.timers.is_registered(_poll_checks):
        bpy.app.timers.register(_poll_checks, first_interval=0.25)


def installing() -> bool:
    return session.get().installing()


def draw_progress(layout: bpy.types.UILayout) -> None:
    """While the installer runs: step i of n, a progress bar, the elapsed time, Cancel."""
    run = session.get().installer
    assert run is not None
    col = layout.column(align=True)
    col.progress(factor=run.progress.fraction, type="BAR", text=run.summary()[:120])
    row = col.row(align=True)
    row.label(text=f"{run.profile}, {run.elapsed_s():.0f} s", icon="TIME")
    row.operator("sam3d.backend_install_cancel", text="Cancel", icon="X")


def draw_install(layout: bpy.types.UILayout, context: bpy.types.Context, prefs=None) -> None:
    """The profile (changeable, with the reason this computer gets it), Install backend, and
    how the last install went; its progress while it runs."""
    if installing():
        draw_progress(layout)
        return
    rt = session.get()
    width = wrap_width(context)
    prefs = prefs if prefs is not None else paths.addon_preferences(context)
    requested = prefs.install_profile if prefs is not None else "auto"
    col = layout.column(align=True)
    if prefs is not None:
        col.prop(prefs, "install_profile", text="Profile")
    call = rt.profile_choice(requested)
    choice = None
    if not call.done:
        col.label(text="Checking this computer...", icon="SORTTIME")
        _watch_checks()
    else:
        try:
            choice = call.result()
        except Exception as exc:  # the check itself failed: say so, installing still works
            wrapped(
                col, f"Could not check this computer: {exc}", icon="ERROR", alert=True, width=width
            )
    if choice is not None:
        wrapped(col, choice.line, icon="INFO", width=width)
    run = rt.installer
    refusal = run.refusal if run is not None and run.profile == requested else None
    refusal = refusal or (choice.refusal if choice is not None else None)
    if refusal is not None:
        box = layout.box()
        wrapped(box, refusal.sentence(), icon="ERROR", alert=True, width=width)
        if refusal.fallback:
            row = box.row()
            row.scale_y = 1.4
            op = row.operator(
                "sam3d.backend_install",
                text=f"Install the {refusal.fallback.upper()} preview instead"
                if refusal.fallback == "cpu"
                else f"Install {refusal.fallback} instead",
                icon="IMPORT",
            )
            op.profile = refusal.fallback
            op.make_default = True
            words = PROFILE_WORDS.get(refusal.fallback, refusal.fallback)
            wrapped(box, f"It gives {words}.", width=width)
    row = layout.row()
    row.scale_y = 1.0 if refusal is not None else 1.4
    row.operator("sam3d.backend_install", icon="IMPORT")
    if run is None or run.state == InstallState.IDLE or refusal is not None:
        return
    if run.state == InstallState.SUCCEEDED:
        layout.label(text=f"Backend installed in {run.elapsed_s():.0f} s.", icon="CHECKMARK")
        return
    wrapped(layout, run.summary(), icon="ERROR", alert=not run.cancelled, width=width)
    if prefs is not None and not run.cancelled:
        layout.prop(prefs, "show_install_log", toggle=True)
        if prefs.show_install_log:
            box = layout.column(align=True)
            for line in run.progress.lines[-12:]:
                box.label(text=line[:160])


def _findings(rt: session.Session, requested: str) -> tuple[list[Finding], bool]:
    """What to show in the machine report, and whether a check still runs."""
    call = rt.doctor()
    if call is not None:  # installed: the backend's own doctor
        if not call.done:
            return [], True
        try:
            return doctor_findings(call.result()), False
        except Exception as exc:
            return [Finding(False, f"The backend's doctor failed: {exc}")], False
    choice_call = rt.profile_choice(requested)
    if not choice_call.done:
        return [], True
    try:
        return choice_findings(choice_call.result()), False
    except Exception as exc:
        return [Finding(False, f"Could not check this computer: {exc}")], False


def draw_machine_report(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """A collapsible box: what this computer can run and why not, in plain words (the
    backend's ``doctor`` once installed; the installer's checks before)."""
    prefs = paths.addon_preferences(context)
    if prefs is None or session.settings().mode != "LOCAL":
        return
    box = layout.box()
    is_open = prefs.show_machine_report
    box.prop(
        prefs,
        "show_machine_report",
        icon="DOWNARROW_HLT" if is_open else "RIGHTARROW",
        emboss=False,
    )
    if not is_open:
        return
    rt = session.get()
    findings, pending = _findings(rt, prefs.install_profile)
    if pending:
        box.label(text="Checking this computer...", icon="SORTTIME")
        _watch_checks()
    width = wrap_width(context)
    for f in findings:
        wrapped(box, f.text, icon=_ICONS[f.ok], alert=f.ok is False, width=width)
    box.operator("sam3d.machine_check", text="Check again", icon="FILE_REFRESH")
