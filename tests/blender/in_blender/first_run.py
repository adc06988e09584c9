"""First run in the real Blender GUI under Xvfb, as a newcomer: no backend anywhere.

    scripts/blender.sh --xvfb --python first_run.py -- --scenario fresh|refused \
        --result R.json --shots DIR --photo P --mask M [--pip-cert CA] [--pip-cache DIR]

* ``fresh`` - the SAM 3D tab of a fresh user profile shows the profile this computer gets
  and why, before anything is installed; **Install backend** is pressed with the mouse (the
  installer runs with Blender's own Python, here Debian's 3.13); its progress (step i of n,
  a bar, Cancel) shows in the panel until it is done; then **Generate 3D** is pressed: the
  backend starts on demand and the object arrives, selected and framed.
* ``refused`` - the preferences ask for the GPU profile (``cuda``) on this GPU-less
  computer: the panel says it would be refused and offers the CPU preview; Install backend
  is pressed anyway, the installer refuses (exit 3), and the panel's one button "Install
  the CPU preview instead" starts the cpu profile; its Cancel is pressed mid-way.

Every press is an X event on the real window (buttons found as a person points at them,
see gui.py); each is counted in ``clicks``. Wall times of each step go to ``times_s``.
"""

from __future__ import annotations

import os
import sys
import time

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Facts, addon, object_facts, parse_args, run_gui  # noqa: E402
from gui import FAST, Session, _wait  # noqa: E402

#: Give up (and quit Blender, recording why) after this many seconds.
WATCHDOG_S = 1500.0
#: The install may take this long (a cold pip cache downloads ~100 MB).
INSTALL_TIMEOUT_S = 1200.0


def _args():
    def extra(p):
        p.add_argument("--scenario", required=True)
        p.add_argument("--shots", required=True)
        p.add_argument("--photo", required=True)
        p.add_argument("--mask", required=True)
        p.add_argument("--pip-cert", help="CA bundle for pip (PIP_CERT)")
        p.add_argument("--pip-cache", help="pip's cache folder (PIP_CACHE_DIR)")

    return parse_args(extra)


class FirstRun(Session):
    """:class:`gui.Session` that counts the artist's presses and finds buttons by what
    Ctrl+C copies from them (an operator with its properties)."""

    def __init__(self, args, facts: Facts) -> None:
        super().__init__(args, facts)
        facts["clicks"] = []

    def press(self, what: str, xy: tuple[int, int] | None = None, key: str | None = None):
        self.facts["clicks"].append(what)
        if key is not None:
            self.key_over_view(key)
        else:
            assert xy is not None
            self.click(xy)
        self.facts.note(f"pressed {what}")

    def find(self, copied: str, step: int = 8):
        """Screen position of the sidebar button whose Ctrl+C copy starts with ``copied``
        (e.g. ``bpy.ops.sam3d.backend_install(profile='cpu'``; any quotes), scanning top to
        bottom."""
        ui = self.region("UI")
        wm = bpy.context.window_manager
        y = ui.height - 4
        while y >= 4:
            wm.clipboard = ""
            xy = self.to_screen(ui, ui.width * 0.5, y)
            self.xdo("mousemove", *xy)
            yield 0.03
            self.xdo("key", "ctrl+c")
            yield 0.06
            if wm.clipboard.replace('"', "'").startswith(copied):
                self.facts.note(f"found {wm.clipboard!r} at region y {y:.0f}")
                return xy
            y -= step
        return None

    def open_tab(self):
        """The sidebar's SAM 3D tab, counted as the artist's clicks."""
        self.facts["clicks"].append("N (sidebar)")
        self.facts.note("pressed N (sidebar)")
        yield from self.open_sam3d_tab()
        self.facts["clicks"].append("SAM 3D tab")
        self.facts["tab"] = self.region("UI").active_panel_category

    def panel_text(self) -> list[str]:
        """What the panel says about the install (the session's state, as drawn)."""
        s = self.session
        prefs = addon("paths").addon_preferences()
        choice = s.choice_if_known(prefs.install_profile)
        run = s.installer
        return [
            choice.line if choice else "",
            run.summary() if run else "",
            (run.refusal.sentence() if run and run.refusal else ""),
        ]


def _installer_watch(s: FirstRun, samples: list):
    def sample() -> None:
        run = s.session.installer
        if run is None:
            return
        p = run.progress
        point = (round(run.elapsed_s(), 1), p.step, p.total, round(p.fraction, 3), run.summary())
        if not samples or point[1:] != samples[-1][1:]:
            samples.append(point)

    return sample


def _settings() -> None:
    scene = bpy.context.scene.sam3d
    args = _ARGS
    scene.image_source, scene.image_path = "FILE", args.photo
    scene.mask_source, scene.mask_path = "FILE", args.mask
    scene.engine = "auto"
    for key, value in FAST.items():
        setattr(scene, key, value)


def scenario_fresh(s: FirstRun):
    f = s.facts
    times = f["times_s"] = {}
    prefs = addon("paths").addon_preferences()
    f["profile_preference"] = prefs.install_profile
    f["backend_python_setting"] = str(addon("session").settings().python)
    f["objects_at_start"] = sorted(o.name for o in bpy.data.objects)
    _settings()
    yield 0.5
    yield from s.open_tab()
    f["state_at_start"] = s.session.shown_backend().state.value
    t0 = time.monotonic()
    known = yield from _wait(lambda: s.session.choice_if_known("auto") is not None, 60)
    times["profile_shown"] = round(time.monotonic() - t0, 2)
    assert known, "the panel never showed the install profile"
    yield 0.3
    f["panel_before_install"] = s.panel_text()
    s.shot("profile-shown")

    install = yield from s.find("bpy.ops.sam3d.backend_install(")
    f["install_button"] = install
    assert install is not None, "no Install backend button in the SAM 3D tab"
    t0 = time.monotonic()
    s.press("Install backend", install)
    samples: list = []
    sample = _installer_watch(s, samples)
    yield from _wait(lambda: s.session.installer is not None, 5, on_tick=sample)
    run = s.session.installer
    assert run is not None, "pressing Install backend started no installer"
    yield from _wait(lambda: run.progress.total > 0, 60, on_tick=sample)
    yield 0.5
    s.shot("installing")
    cancel = yield from s.find("bpy.ops.sam3d.backend_install_cancel(")
    f["cancel_button_while_installing"] = cancel is not None
    from_core = addon("core.installer")
    done = yield from _wait(
        lambda: run.state != from_core.InstallState.RUNNING,
        INSTALL_TIMEOUT_S,
        every=0.5,
        on_tick=sample,
    )
    times["install"] = round(time.monotonic() - t0, 1)
    f["install"] = {
        "done": done,
        "state": run.state.value,
        "returncode": run.returncode,
        "profile": run.profile,
        "summary": run.summary(),
        "samples": samples,
        "last_lines": run.progress.lines[-15:],
        "python": run.python,
    }
    assert run.state == from_core.InstallState.SUCCEEDED, run.progress.lines[-30:]
    yield 1.0
    f["backend_after_install"] = {
        "python": str(addon("session").settings().python),
        "state": s.session.shown_backend().state.value,
    }
    s.shot("installed")

    generate = yield from s.find("bpy.ops.sam3d.generate(")
    f["generate_button"] = generate
    assert generate is not None, "no Generate 3D button after installing"
    view_before = s.region("WINDOW").data.view_matrix.copy()
    t0 = time.monotonic()
    s.press("Generate 3D", generate)
    arrived = yield from _wait(
        lambda: bpy.data.objects.get("photo") is not None and not s.active_jobs(), 300
    )
    times["generate"] = round(time.monotonic() - t0, 1)
    assert arrived, "Generate imported nothing: " + (
        s.session.notice.text if s.session.notice else "no notice"
    )
    yield 1.0  # the view's smooth zoom
    obj = bpy.data.objects["photo"]
    f["imported"] = object_facts(obj)
    f["notice_after_import"] = s.session.notice.text if s.session.notice else None
    f["frame"] = s.frame_facts(obj, view_before)
    backend = s.session.backend
    f["backend_info"] = {"python": str(backend.config.python), "engine": backend.describe()}
    s.shot("imported")
    f["processes"] = s.backend_processes()


def scenario_refused(s: FirstRun):
    f = s.facts
    prefs = addon("paths").addon_preferences()
    prefs.install_profile = "cuda"  # what the artist picked (forced on a GPU-less machine)
    f["profile_preference"] = prefs.install_profile
    _settings()
    yield 0.5
    yield from s.open_tab()
    known = yield from _wait(lambda: s.session.choice_if_known("cuda") is not None, 60)
    assert known, "the panel never showed the install profile"
    yield 0.3
    f["panel_before_install"] = s.panel_text()
    s.shot("gpu-profile-would-be-refused")
    # the button offered before installing, and Install backend pressed anyway
    offered = yield from s.find("bpy.ops.sam3d.backend_install(profile='cpu'")
    f["cpu_offered_before_install"] = offered is not None
    install = yield from s.find("bpy.ops.sam3d.backend_install()")
    assert install is not None, "no Install backend button"
    s.press("Install backend", install)
    core = addon("core.installer")
    refused = yield from _wait(
        lambda: (
            s.session.installer is not None
            and s.session.installer.state != core.InstallState.RUNNING
        ),
        120,
    )
    run = s.session.installer
    assert refused and run is not None
    yield 0.5
    f["refused"] = {
        "returncode": run.returncode,
        "summary": run.summary(),
        "fallback": run.refusal.fallback if run.refusal else None,
        "notice": s.session.notice.text if s.session.notice else None,
        "files": sorted(os.listdir(addon("paths").user_dir())),
    }
    f["panel_after_refusal"] = s.panel_text()
    s.shot("refused")
    fallback = yield from s.find("bpy.ops.sam3d.backend_install(profile='cpu'")
    f["fallback_button"] = fallback
    assert fallback is not None, "no 'Install the CPU preview instead' button"
    s.press("Install the CPU preview instead", fallback)
    started = yield from _wait(
        lambda: s.session.installer is not run and s.session.installer.progress.total > 0, 60
    )
    assert started, "the CPU preview's install did not start"
    cpu_run = s.session.installer
    f["after_fallback"] = {
        "profile": cpu_run.profile,
        "preference": prefs.install_profile,
        "summary": cpu_run.summary(),
    }
    yield 0.3
    s.shot("installing-cpu")
    cancel = yield from s.find("bpy.ops.sam3d.backend_install_cancel(")
    assert cancel is not None, "no Cancel while installing"
    s.press("Cancel", cancel)
    stopped = yield from _wait(lambda: cpu_run.state != core.InstallState.RUNNING, 10)
    yield 0.5
    f["cancelled"] = {"stopped": stopped, "summary": cpu_run.summary()}
    s.shot("cancelled")


SCENARIOS = {"fresh": scenario_fresh, "refused": scenario_refused}
_ARGS = _args()


def main() -> None:
    args = _ARGS
    # A newcomer's machine: no backend Python set anywhere (scripts/blender.sh points the
    # add-on at the checkout's venv by default; that is not what a fresh install has).
    os.environ.pop("SAM3D_BACKEND_PYTHON", None)
    if args.pip_cert:
        os.environ["PIP_CERT"] = args.pip_cert
    if args.pip_cache:
        os.environ["PIP_CACHE_DIR"] = args.pip_cache
    facts = Facts(args.result)
    facts["scenario"] = args.scenario
    facts["blender_python"] = sys.executable
    run_gui(lambda: SCENARIOS[args.scenario](FirstRun(args, facts)), facts, WATCHDOG_S)


main()
