"""Enabling the extension like Blender does, the scripting API, and drawing the panels
headless in every backend state."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import bpy
import pytest

from tests.addon.helpers import (
    ADDON_MODULE,
    RecordingLayout,
    addon,
    disable_addon,
    enable_addon,
    make_photo,
    preferences,
)

OPERATORS = [
    "generate",
    "cancel",
    "import_result",
    "backend_start",
    "backend_stop",
    "backend_install",
    "new_mask",
    "open_folder",
]


def _ops_present() -> list[str]:
    return [name for name in OPERATORS if hasattr(bpy.types, f"SAM3D_OT_{name}")]


def test_enable_disable_twice():
    for _ in range(2):
        enable_addon()
        assert ADDON_MODULE in bpy.context.preferences.addons
        assert _ops_present() == OPERATORS
        assert hasattr(bpy.types.Scene, "sam3d")
        assert hasattr(bpy.types, "SAM3D_PT_view3d_main")
        assert hasattr(bpy.types, "SAM3D_PT_image_main")
        assert preferences().backend_mode == "LOCAL"
        # the add-on writes below its extension user folder, never into its own folder
        user = addon("paths").user_dir()
        assert "extensions" in str(user) and str(user).endswith(("sam3d", "sam3d/"))
        disable_addon()
        assert ADDON_MODULE not in bpy.context.preferences.addons
        assert _ops_present() == []
        assert not hasattr(bpy.types.Scene, "sam3d")
        # the session state (backend, jobs) was shut down with it
        session_mod = sys.modules.get(f"{ADDON_MODULE}.sam3d_blender.session")
        assert session_mod is None or session_mod.current() is None
    enable_addon()


def test_disable_stops_the_backend(tmp_path):
    enable_addon()
    preferences().cache_dir = str(tmp_path)
    assert bpy.ops.sam3d.backend_start(blocking=True) == {"FINISHED"}
    backend = addon("session").get().backend
    pid = backend.pid
    sp = addon("core.subprocesses")
    assert sp.pid_alive(pid)
    disable_addon()
    deadline = time.monotonic() + 10
    while sp.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sp.pid_alive(pid)
    enable_addon()


def _panel_classes():
    return list(addon("ui.panels").classes)


def _draw_all(context) -> RecordingLayout:
    rec = RecordingLayout()
    for cls in _panel_classes():
        panel = SimpleNamespace(layout=rec.column())
        assert cls.poll(context)
        cls.draw(panel, context)
    prefs = preferences()
    prefs_layout = RecordingLayout(rec)
    type(prefs).draw(_with_layout(prefs, prefs_layout), context)
    return rec


class _with_layout:  # noqa: N801
    """Preferences draw() reads self.layout and the properties: give it both."""

    def __init__(self, prefs, layout) -> None:
        object.__setattr__(self, "_p", prefs)
        object.__setattr__(self, "layout", layout)

    def __getattr__(self, name):
        value = getattr(self._p, name)
        if callable(value) and name == "_draw_installer":
            return lambda *a: type(self._p)._draw_installer(self, *a)
        return value

    @property
    def bl_rna(self):
        return self._p.bl_rna


@pytest.fixture
def scene_ready(tmp_path):
    enable_addon()
    bpy.ops.wm.read_homefile(use_empty=True)
    preferences().cache_dir = str(tmp_path / "cache")
    photo, mask, _ = make_photo(tmp_path)
    s = bpy.context.scene.sam3d
    s.image = bpy.data.images.load(str(photo))
    s.mask_image = bpy.data.images.load(str(mask))
    yield s
    addon("session").get().shutdown()


def test_panels_draw_in_every_backend_state(scene_ready, tmp_path):
    timer = addon("timer")
    bp = addon("core.backend_process")
    rt = addon("session").get()
    ctx = bpy.context
    seen = {}

    # stopped
    backend = rt.current_backend()
    assert backend.state == bp.BackendState.STOPPED
    seen["stopped"] = _draw_all(ctx)
    # starting
    backend.ensure_started()
    assert backend.state == bp.BackendState.STARTING
    seen["starting"] = _draw_all(ctx)
    # ready
    assert backend.wait_ready(60) == bp.BackendState.READY
    seen["ready"] = _draw_all(ctx)
    # a job running (progress bar + Cancel)
    s = ctx.scene.sam3d
    assert bpy.ops.sam3d.generate(engine="crashtest", seed=3, blocking=False) == {"FINISHED"}
    timer.wait_for(lambda: any(j.state == "running" for j in rt.manager.active()), 60)
    seen["running"] = _draw_all(ctx)
    bpy.ops.sam3d.cancel()
    timer.wait_for(lambda: not rt.manager.active(), 30)
    seen["after cancel"] = _draw_all(ctx)
    # error (the process died) + not installed
    import os
    import signal

    os.killpg(backend.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while backend.poll() == bp.BackendState.READY and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.state == bp.BackendState.ERROR
    seen["error"] = _draw_all(ctx)
    os.environ["SAM3D_BACKEND_PYTHON"] = str(tmp_path / "missing-python")
    try:
        assert rt.current_backend().state == bp.BackendState.NOT_INSTALLED
        seen["not installed"] = _draw_all(ctx)
    finally:
        os.environ["SAM3D_BACKEND_PYTHON"] = sys.executable
    # remote mode
    preferences().backend_mode = "REMOTE"
    try:
        # Drawing never switches the backend; it says a restart applies the change.
        seen["remote pending"] = _draw_all(ctx)
        rt.current_backend()  # what the next action (start, generate) does
        seen["remote"] = _draw_all(ctx)
    finally:
        preferences().backend_mode = "LOCAL"
    # other input sources
    s.image_source, s.mask_source = "FILE", "FILE"
    seen["file inputs"] = _draw_all(ctx)
    s.image_source, s.mask_source = "IMAGE", "ALPHA"
    seen["alpha"] = _draw_all(ctx)

    texts = {k: " | ".join(v.labels) for k, v in seen.items()}
    assert "Backend: stopped" in texts["stopped"]
    assert "Backend: starting" in texts["starting"]
    assert "Backend: ready" in texts["ready"] and "engine" in texts["ready"]
    assert seen["running"].progress_calls, "no progress bar while running"
    assert "sam3d.cancel" in seen["running"].operators
    assert "sam3d.generate" in seen["ready"].operators
    assert "cancelled" in texts["after cancel"].lower()
    assert "Backend: error" in texts["error"] and "stopped unexpectedly" in texts["error"]
    assert "not installed" in texts["not installed"]
    assert "sam3d.backend_install" in seen["not installed"].operators
    assert "(remote)" in texts["remote"]
    assert "(local)" in texts["remote pending"] and "settings changed" in texts["remote pending"]
    assert "settings changed" not in texts["remote"]
    assert "mask: " in texts["ready"] and "% of image" in texts["ready"]
    assert "no alpha" in texts["alpha"]
    for name, rec in seen.items():
        assert rec.labels, name
    print({k: len(v.labels) for k, v in seen.items()})


def test_changing_a_backend_preference_mid_job_keeps_the_job(scene_ready):
    """Drawing the panel after a preference change must not stop the backend under a
    running job; the change applies once no job uses the backend."""
    timer = addon("timer")
    bp = addon("core.backend_process")
    panels = addon("ui.panels")
    rt = addon("session").get()
    backend = rt.current_backend()
    assert backend.wait_ready(60) == bp.BackendState.READY
    assert bpy.ops.sam3d.generate(engine="crashtest", seed=3, blocking=False) == {"FINISHED"}
    job = rt.manager.jobs[-1]
    assert timer.wait_for(lambda: job.state == "running", 60), job.error
    prefs = preferences()
    old = prefs.idle_unload_min
    prefs.idle_unload_min = old + 1
    try:
        layout = RecordingLayout()
        t0 = time.monotonic()
        panels.draw_backend_status(layout, bpy.context)
        took = time.monotonic() - t0
        assert took < 0.1, took
        assert rt.backend is backend and backend.alive()
        assert any("settings changed" in text for text in layout.labels)
        for _ in range(5):  # the timer's steps (which ask for the backend) don't switch
            timer.tick()
            time.sleep(0.05)
        assert rt.backend is backend and backend.alive() and not job.finished, job.error
        bpy.ops.sam3d.cancel()
        assert timer.wait_for(lambda: job.finished, 30)
        assert job.phase.value == "cancelled", job.error
        assert rt.current_backend() is not backend  # applied now that no job uses it
        assert not rt.restart_pending()
    finally:
        prefs.idle_unload_min = old


def test_stop_backend_mid_job_ends_it_cancelled(scene_ready):
    timer = addon("timer")
    rt = addon("session").get()
    assert bpy.ops.sam3d.backend_start(blocking=True) == {"FINISHED"}
    assert bpy.ops.sam3d.generate(engine="crashtest", seed=3, blocking=False) == {"FINISHED"}
    job = rt.manager.jobs[-1]
    assert timer.wait_for(lambda: job.state == "running", 60), job.error
    assert bpy.ops.sam3d.backend_stop() == {"FINISHED"}
    assert job.phase.value == "cancelled" and job.error is None
    timer.tick()
    assert rt.notice is not None and "cancelled" in rt.notice.text.lower()
    assert "reach" not in rt.notice.text


def test_mask_coverage_line(scene_ready):
    panels = addon("ui.panels")
    s = scene_ready
    text, warn = panels._mask_status(s)
    frac = float(text.split()[1].rstrip("%"))
    assert 20 <= frac <= 30 and not warn, text  # the ellipse covers ~25.6% of the photo
    blank = addon("blender_images").new_mask_image("blank", 320, 240)
    s.mask_image = blank
    text, warn = panels._mask_status(s)
    assert warn and "empty" in text


def test_mask_coverage_of_a_large_image_being_painted_is_not_reread_in_draw(scene_ready):
    import numpy as np

    blender_images = addon("blender_images")
    panels = addon("ui.panels")
    s = scene_ready
    w, h = 3000, 2000  # 6 MP
    big = blender_images.new_mask_image("big mask", w, h)
    rgba = np.zeros((h, w, 4), np.float32)
    rgba[..., 3] = 1.0
    rgba[: h // 2, :, :3] = 1.0  # half painted white
    big.pixels.foreach_set(rgba.ravel())
    assert big.is_dirty
    s.mask_source, s.mask_image = "IMAGE", big
    t0 = time.monotonic()
    for _ in range(5):  # redraws while painting
        text, warn = panels._mask_status(s)
    took = (time.monotonic() - t0) / 5
    assert "painting" in text and took < 0.05, (text, took)
    rec = RecordingLayout()
    panels.draw_inputs(rec, bpy.context)
    assert "sam3d.mask_coverage" in rec.operators
    assert bpy.ops.sam3d.mask_coverage() == {"FINISHED"}
    text, warn = panels._mask_status(s)
    assert text.startswith("mask: 50% of image"), text


def test_new_mask_operator_makes_a_paintable_mask(scene_ready):
    s = scene_ready
    s.mask_image = None
    assert bpy.ops.sam3d.new_mask() == {"FINISHED"}
    mask = s.mask_image
    assert mask is not None and tuple(mask.size) == tuple(s.image.size)
    assert s.mask_source == "IMAGE"
    text, warn = addon("ui.panels")._mask_status(s)
    assert warn and "empty" in text
    # Generate refuses an empty mask with a sentence, before any backend work.
    with pytest.raises(RuntimeError, match="mask is empty"):
        bpy.ops.sam3d.generate()


def test_install_button_runs_the_real_installer(tmp_path):
    """The Install button in the UI path (timer steps), against the real installer in
    --dry-run mode (checks + the exact commands, nothing downloaded)."""
    enable_addon()
    preferences().cache_dir = str(tmp_path / "cache")
    timer = addon("timer")
    rt = addon("session").get()
    venv = tmp_path / "venv"
    assert bpy.ops.sam3d.backend_install(
        profile="cpu", venv=str(venv), dry_run=True, blocking=False
    ) == {"FINISHED"}
    run = rt.installer
    assert run.state.value == "running"
    rec = RecordingLayout()
    prefs = preferences()
    type(prefs).draw(_with_layout(prefs, rec), bpy.context)  # progress shown while running
    assert timer.wait_for(lambda: run.state.value != "running", timeout=120)
    assert run.state.value == "succeeded", run.progress.lines
    p = run.progress
    assert p.total >= 1 and p.step == p.total, p.lines
    assert any(line.startswith("STEP 1/") for line in p.lines)
    staged = addon("paths").user_dir("installer_source")
    assert (staged / "pyproject.toml").is_file() and (staged / "backend" / "server.py").is_file()
    assert "installed" in rt.notice.text
    rec = RecordingLayout()
    type(prefs).draw(_with_layout(prefs, rec), bpy.context)
    assert any("installed" in label for label in rec.labels)
