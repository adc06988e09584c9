"""First run in the SAM 3D panel with real bpy: the install profile this computer gets
(shown before installing, with its reason, changeable), Install backend with its progress
and Cancel, a refused GPU profile's one-click way to the CPU preview, and the doctor's
findings in plain words. The installer, its profile choice and the doctor are the real
``python -m backend`` subprocesses; this machine has no NVIDIA GPU.
"""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

import bpy
import pytest

from tests.addon.helpers import RecordingLayout, addon, enable_addon, preferences

pytestmark = pytest.mark.slow


class ButtonLayout(RecordingLayout):
    """A :class:`RecordingLayout` that also keeps each button's text and the operator
    properties the panel sets on it (what one click on it would run)."""

    def __init__(self, root=None) -> None:
        super().__init__(root)
        if root is None:
            self.buttons: list[dict] = []

    def _child(self) -> ButtonLayout:
        return ButtonLayout(self.root)

    def operator(self, idname: str, **kw):
        props = super().operator(idname, **kw)
        button = {"op": idname, "text": kw.get("text", ""), "props": {}}
        self.root.buttons.append(button)
        return _Setter(props, button["props"])

    def button(self, text_part: str) -> dict | None:
        return next((b for b in self.buttons if text_part in b["text"]), None)


class _Setter:
    def __init__(self, checked, record: dict) -> None:
        object.__setattr__(self, "_checked", checked)
        object.__setattr__(self, "_record", record)

    def __setattr__(self, key: str, value) -> None:
        setattr(self._checked, key, value)  # asserts the property exists
        self._record[key] = value


def _draw_main(context) -> ButtonLayout:
    """The 3D View's main SAM 3D panel, drawn as Blender would."""
    rec = ButtonLayout()
    main = next(c for c in addon("ui.panels").classes if c.bl_idname == "SAM3D_PT_view3d_main")
    assert main.poll(context)
    main.draw(SimpleNamespace(layout=rec), context)
    return rec


def _text(rec: RecordingLayout) -> str:
    """Every label, joined by spaces (wrapped sentences read as one)."""
    return " ".join(rec.labels)


def _no_terminal_advice(rec: RecordingLayout) -> None:
    for label in rec.labels:
        assert "python -m" not in label and "--profile" not in label, label


@pytest.fixture
def not_installed(tmp_path):
    """The add-on as on a fresh machine: no backend Python anywhere, the default profile."""
    enable_addon()
    bpy.ops.wm.read_homefile(use_empty=True)
    prefs = preferences()
    prefs.cache_dir = str(tmp_path / "cache")
    prefs.backend_mode = "LOCAL"
    old_profile, old_report = prefs.install_profile, prefs.show_machine_report
    prefs.install_profile = "auto"
    os.environ["SAM3D_BACKEND_PYTHON"] = str(tmp_path / "no-backend-yet" / "python")
    s = addon("session").get()
    s.forget_checks()
    s.installer = None
    assert s.current_backend().state.value == "not_installed"
    yield s
    if s.installer is not None:
        s.installer.cancel()
    s.installer = None
    os.environ["SAM3D_BACKEND_PYTHON"] = sys.executable
    prefs.install_profile, prefs.show_machine_report = old_profile, old_report
    s.shutdown()


def _choice(s, requested: str):
    call = s.profile_choice(requested)
    assert call.wait(120), "the installer's --choose did not answer"
    return call.result()


def test_fresh_panel_shows_the_profile_and_reason_before_installing(not_installed):
    s, prefs = not_installed, preferences()
    assert prefs.install_profile == "auto"  # the default: the machine decides
    first = _draw_main(bpy.context)
    assert "Backend: not installed (local)" in first.labels[0]
    assert "Checking this computer..." in first.labels or s.choice_if_known("auto")
    choice = _choice(s, "auto")
    assert choice.profile == "cpu" and choice.refused == []
    rec = _draw_main(bpy.context)
    text = _text(rec)
    # one line: the profile and why (wrapped to the sidebar's width)
    assert "cpu - no NVIDIA GPU found; the preview engine will be installed" in text
    assert "AddonPreferences.install_profile" in rec.props[0].replace("SAM3D_", "")
    install = next(b for b in rec.buttons if b["op"] == "sam3d.backend_install")
    assert install["props"] == {}  # the preference's profile ("auto": the installer decides)
    assert "Install the CPU preview instead" not in text
    _no_terminal_advice(rec)
    # changeable: a named profile is shown as chosen by hand
    prefs.install_profile = "cpu"
    _choice(s, "cpu")
    text = _text(_draw_main(bpy.context))
    assert "cpu - chosen by hand; the preview engine will be installed" in text


def test_machine_report_is_collapsible_and_plain(not_installed):
    s, prefs = not_installed, preferences()
    prefs.show_machine_report = False
    closed = _draw_main(bpy.context)
    assert "SAM3D_AddonPreferences.show_machine_report" in closed.props
    _choice(s, "auto")
    prefs.show_machine_report = True
    text = _text(_draw_main(bpy.context))
    assert "Profile cpu - no NVIDIA GPU found" in text
    assert "python: Python 3." in text and "venv: Python 3." in text and "disk: " in text
    assert len(text) > len(_text(closed))
    # installed: the backend's own doctor, in sentences
    os.environ["SAM3D_BACKEND_PYTHON"] = sys.executable
    call = s.doctor()
    assert call is not None and call.wait(120)
    rec = _draw_main(bpy.context)
    text = _text(rec)
    assert "No NVIDIA GPU found on this computer." in text
    assert "The preview engine can run here." in text
    assert "SAM 3D can't run here:" in text and "Weights missing at" in text
    assert "Generate uses: the preview engine." in text
    assert any(b["op"] == "sam3d.machine_check" for b in rec.buttons)
    _no_terminal_advice(rec)
    assert bpy.ops.sam3d.machine_check() == {"FINISHED"}
    assert s.doctor() is not call  # asked again


def test_forced_gpu_profile_is_refused_and_the_cpu_preview_is_one_click(not_installed, tmp_path):
    s, prefs = not_installed, preferences()
    prefs.install_profile = "cuda"
    choice = _choice(s, "cuda")
    assert choice.profile == "cuda121" and choice.refused and choice.fallback == "cpu"
    before = _draw_main(bpy.context)
    assert "This computer can't take the cuda121 profile: no NVIDIA GPU found" in _text(before)
    assert before.button("Install the CPU preview instead") is not None
    # pressing Install backend anyway: the installer refuses (exit 3), nothing is created
    venv = tmp_path / "venv"
    with pytest.raises(RuntimeError, match="This computer can't take the cuda121 profile"):
        bpy.ops.sam3d.backend_install(venv=str(venv), blocking=True)  # reported as an ERROR
    run = s.installer
    assert run.returncode == 3 and run.refusal is not None and run.refusal.fallback == "cpu"
    assert not venv.exists()
    assert run.summary().startswith("This computer can't take the cuda121 profile")
    rec = _draw_main(bpy.context)
    _no_terminal_advice(rec)
    fallback = rec.button("Install the CPU preview instead")
    assert fallback == {
        "op": "sam3d.backend_install",
        "text": "Install the CPU preview instead",
        "props": {"profile": "cpu", "make_default": True},
    }
    # the one click (its properties, plus a test folder for the venv), not waiting: the
    # panel shows step i of n, a progress bar and Cancel
    timer = addon("timer")
    assert bpy.ops.sam3d.backend_install(venv=str(venv), blocking=False, **fallback["props"]) == {
        "FINISHED"
    }
    assert prefs.install_profile == "cpu"  # the working profile is now the preference
    run = s.installer
    assert timer.wait_for(lambda: run.progress.total > 0, 120), run.progress.lines
    rec = _draw_main(bpy.context)
    assert rec.progress_calls and rec.progress_calls[0]["text"].startswith("Step 1 of 2: venv")
    assert "Backend: installing..." in _text(rec) and "cpu, " in _text(rec)
    cancel = next(b for b in rec.buttons if b["op"] == "sam3d.backend_install_cancel")
    assert cancel["text"] == "Cancel"
    assert "sam3d.generate" in [b["op"] for b in rec.buttons]  # still there: it explains
    t0 = time.monotonic()
    assert bpy.ops.sam3d.backend_install_cancel() == {"FINISHED"}
    assert time.monotonic() - t0 < 1.0  # never waits for pip
    assert run.cancelled and run.summary() == "Install cancelled."
    rec = _draw_main(bpy.context)
    assert not rec.progress_calls and "Install cancelled." in _text(rec)
    assert any(b["op"] == "sam3d.backend_install" for b in rec.buttons)  # try again
    _no_terminal_advice(rec)
