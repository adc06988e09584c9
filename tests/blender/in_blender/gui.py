"""GUI scenarios in the real Blender under Xvfb: the real event loop, timers and drawing.

    scripts/blender.sh --xvfb --python gui.py -- --scenario session|undo --result R.json \
        --shots DIR --photo P --mask M [--masks DIR]

* ``session`` - what an artist does, with X events (xdotool) on the real window: show the
  sidebar (N), click the "SAM 3D" tab, press **Generate 3D** with the mouse, watch the
  progress, press **Cancel** (the panel returns to idle, nothing is imported), press
  Generate again (the object arrives, selected and framed in the view), Ctrl+Z (it is
  gone). The backend's processes are recorded so the caller can check that quitting
  Blender leaves none behind.
* ``undo`` - ``sam3d.generate`` and ``sam3d.generate_scene`` called as a script in the UI
  does (they return at once; timers import), then Undo and Redo of each import
  (``blender --background`` has no undo, so these run in a window).
* ``asset`` - in a file saved (``--save-as``) into a folder with a catalog file, the
  panel's "Mark as asset" on, Generate (the timer imports and renders the preview): the
  3D Viewport is switched to an Asset Browser showing the Current File's assets, which
  lists the object with its preview, also under its catalog picked in the tree; Undo takes
  it away again.

Buttons are found the way a person points at them: the mouse hovers over the sidebar and
Ctrl+C copies what is under it (an operator button copies ``bpy.ops.<id>()``), which the
script reads from Blender's clipboard. A screenshot of every step goes to ``--shots``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Facts, addon, object_facts, parse_args, run_gui, sam3d_objects  # noqa: E402

#: The cancelled job must run long enough to be cancelled mid-way (~15 s on 2 cores).
SLOW = {"texture_size": "4096", "target_faces": 100000}
FAST = {"texture_size": "256", "target_faces": 3000}
#: The same quick settings as operator arguments (``texture_size`` is a number there).
FAST_OPERATOR = {"texture_size": 256, "target_faces": 3000}
#: Give up (and quit Blender, recording why) after this many seconds.
WATCHDOG_S = 240.0

Steps = Generator[float, None, None]


def _args():
    def extra(p):
        p.add_argument("--scenario", required=True)
        p.add_argument("--shots", required=True)
        p.add_argument("--photo", required=True)
        p.add_argument("--mask", required=True)
        p.add_argument("--masks")
        p.add_argument("--save-as", help="asset: save the file here before generating")

    return parse_args(extra)


class Session:
    """Drives one scenario from a timer: each ``yield`` hands control back to Blender's
    event loop for that many seconds."""

    def __init__(self, args, facts: Facts) -> None:
        self.args = args
        self.facts = facts
        self.shots = Path(args.shots)
        self.shots.mkdir(parents=True, exist_ok=True)
        facts["screenshots"] = []
        self.win = bpy.context.window_manager.windows[0]

    # -- the window ----------------------------------------------------------------------
    @property
    def view3d(self) -> bpy.types.Area:
        return next(a for a in self.win.screen.areas if a.type == "VIEW_3D")

    def region(self, kind: str) -> bpy.types.Region:
        return next(r for r in self.view3d.regions if r.type == kind)

    def to_screen(self, region: bpy.types.Region, x: float, y: float) -> tuple[int, int]:
        """Region pixel (origin bottom-left) -> X screen pixel (origin top-left)."""
        return int(region.x + x), int(self.win.height - (region.y + y))

    def shot(self, name: str) -> None:
        n = len(self.facts["screenshots"]) + 1
        path = self.shots / f"{n:02d}-{name}.png"
        subprocess.run(
            ["import", "-display", os.environ["DISPLAY"], "-window", "root", str(path)],
            check=True,
            timeout=30,
        )
        self.facts["screenshots"].append(str(path))
        self.facts.note(f"screenshot {path.name}")

    @staticmethod
    def xdo(*args: object) -> None:
        subprocess.run(["xdotool", *map(str, args)], check=True, timeout=10)

    def click(self, xy: tuple[int, int]) -> None:
        self.xdo("mousemove", xy[0], xy[1], "click", "1")

    def key_over_view(self, key: str) -> None:
        r = self.region("WINDOW")
        self.xdo("mousemove", *self.to_screen(r, r.width * 0.4, r.height * 0.5), "key", key)

    def open_sam3d_tab(self):
        """N shows the sidebar; clicks on its tabs until "SAM 3D" is the active one (a
        scenario step: yields seconds to wait)."""
        self.key_over_view("n")
        yield from _wait(lambda: self.view3d.spaces.active.show_region_ui, 5)
        yield 0.3
        ui = self.region("UI")
        for y in range(int(ui.height) - 10, 10, -20):
            self.click(self.to_screen(ui, ui.width - 10, y))
            yield 0.15
            if ui.active_panel_category == "SAM 3D":
                break

    def find_button(
        self,
        idname: str,
        top: float | None = None,
        bottom: float | None = None,
        step: int = 8,
        across: tuple[float, ...] = (0.5,),
    ) -> Generator[float, None, tuple[int, int] | None]:
        """Screen position of the sidebar button running ``idname`` (hover + Ctrl+C, from
        ``top`` down to ``bottom``, region pixels, at the fractions ``across`` of the
        sidebar's width), or None."""
        ui = self.region("UI")
        wm = bpy.context.window_manager
        top = ui.height - 4 if top is None else top
        bottom = 4 if bottom is None else bottom
        want = f"bpy.ops.{idname}("
        y = top
        while y >= bottom:
            for x in (ui.width * a for a in across):
                wm.clipboard = ""
                xy = self.to_screen(ui, x, y)
                self.xdo("mousemove", *xy)
                yield 0.03
                self.xdo("key", "ctrl+c")
                yield 0.06
                if wm.clipboard.startswith(want):
                    self.facts.note(f"found {idname} at region y {y:.0f} (screen {xy})")
                    return xy
            y -= step
        return None

    # -- the add-on ------------------------------------------------------------------------
    @property
    def session(self):
        return addon("session").get()

    def active_jobs(self) -> list:
        return self.session.manager.active()

    def backend_processes(self) -> dict:
        backend = self.session.backend
        pid = getattr(backend, "pid", None)
        return {"blender_pid": os.getpid(), "backend_pid": pid, "children": _children(pid)}

    def frame_facts(self, obj: bpy.types.Object, view_matrix_before) -> dict:
        """Where ``obj``'s vertices land in the 3D Viewport now (region pixels), and where
        they would have landed in the view as it was before the import. ``visible``: the
        part of the viewport that the sidebar does not cover."""
        from bpy_extras.view3d_utils import location_3d_to_region_2d

        region = self.region("WINDOW")
        ui = self.region("UI")
        rv3d = region.data
        visible_w = min(region.width, ui.x - region.x) if ui.width > 1 else region.width
        points = [obj.matrix_world @ v.co for v in obj.data.vertices]

        def extent(px):
            xs = [p[0] for p in px]
            ys = [p[1] for p in px]
            return {
                "min": [min(xs), min(ys)],
                "max": [max(xs), max(ys)],
                "inside": all(0 <= x <= visible_w for x in xs)
                and all(0 <= y <= region.height for y in ys),
                "fraction": max(
                    (max(xs) - min(xs)) / visible_w, (max(ys) - min(ys)) / region.height
                ),
            }

        now = [location_3d_to_region_2d(region, rv3d, p) for p in points]
        before = _project(view_matrix_before, rv3d.window_matrix, region, points)
        return {
            "visible": [visible_w, region.height],
            "now": extent(now) if all(p is not None for p in now) else None,
            "before": extent(before) if before else None,
            "view_location": list(rv3d.view_location),
            "view_distance": rv3d.view_distance,
        }


def _project(view_matrix, window_matrix, region, points):
    """Region pixels of ``points`` seen with a saved view matrix (None when behind)."""
    out = []
    persp = window_matrix @ view_matrix
    for p in points:
        v = persp @ p.to_4d()
        if v.w <= 0:
            return None
        out.append(((v.x / v.w + 1) * region.width / 2, (v.y / v.w + 1) * region.height / 2))
    return out


def _children(pid: int | None) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    if not pid:
        return []
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        todo += kids
    return sorted(found)


def _wait(until, timeout: float, every: float = 0.1, on_tick=None) -> Generator[float, None, bool]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if on_tick is not None:
            on_tick()
        if until():
            return True
        yield every
    return bool(until())


# -- scenario: an artist's session -----------------------------------------------------


def scenario_session(s: Session) -> Steps:
    f = s.facts
    scene = bpy.context.scene
    settings = scene.sam3d
    settings.image_source, settings.image_path = "FILE", s.args.photo
    settings.mask_source, settings.mask_path = "FILE", s.args.mask
    settings.engine = "preview"
    for key, value in SLOW.items():
        setattr(settings, key, value)
    f["objects_at_start"] = sorted(o.name for o in bpy.data.objects)
    yield 0.5

    yield from s.open_sam3d_tab()
    f["sidebar_shown"] = s.view3d.spaces.active.show_region_ui
    ui = s.region("UI")
    f["tab"] = ui.active_panel_category
    s.shot("sam3d-tab")

    # Generate (slow settings), watch the progress, Cancel mid-job.
    generate = yield from s.find_button("sam3d.generate")
    f["generate_button"] = generate
    assert generate is not None, "no Generate 3D button in the SAM 3D tab"
    gen_region_y = s.win.height - generate[1] - ui.y
    view_before = s.region("WINDOW").data.view_matrix.copy()
    s.click(generate)
    f.note("clicked Generate 3D")
    samples: list[tuple[float, float, str]] = []

    def sample() -> None:
        for job in s.active_jobs():
            point = (round(time.monotonic() - s.facts.t0, 2), float(job.progress), job.phase.name)
            if not samples or point[1:] != samples[-1][1:]:
                samples.append(point)

    started = yield from _wait(lambda: bool(s.active_jobs()), 5, on_tick=sample)
    f["job_started"] = started
    assert started, "clicking Generate 3D started no job"
    yield from _wait(
        lambda: len({p for _, p, _ in samples if p > 0}) >= 2, 60, every=0.05, on_tick=sample
    )
    s.shot("progress")
    # Cancel sits right of the job's name, just below the progress bar.
    cancel = yield from s.find_button(
        "sam3d.cancel", gen_region_y + 20, gen_region_y - 60, 6, across=(0.8,)
    )
    f["cancel_button"] = cancel
    assert cancel is not None, "no Cancel button while the job runs"
    sample()
    f["progress_before_cancel"] = list(samples)
    job = s.active_jobs()[0]
    s.click(cancel)
    f.note("clicked Cancel")
    idle = yield from _wait(lambda: not s.active_jobs(), 30)
    yield 0.5
    f["cancel"] = {
        "idle": idle,
        "phase": job.phase.name,
        "notice": s.session.notice.text if s.session.notice else None,
        "objects": sorted(o.name for o in bpy.data.objects),
        "history": [(h.state, h.label) for h in scene.sam3d.history],
    }
    s.shot("cancelled")
    again = yield from s.find_button("sam3d.generate", gen_region_y + 30, gen_region_y - 30, 6)
    f["generate_button_after_cancel"] = again

    # Generate again (quick settings): the object arrives, selected and framed.
    for key, value in FAST.items():
        setattr(settings, key, value)
    yield 0.2
    samples.clear()
    s.click(again or generate)
    f.note("clicked Generate 3D again")
    arrived = yield from _wait(
        lambda: bpy.data.objects.get("photo") is not None and not s.active_jobs(),
        120,
        on_tick=sample,
    )
    f["progress_second_job"] = list(samples)
    assert arrived, "the second job imported nothing"
    yield 1.0  # the view's smooth zoom
    obj = bpy.data.objects["photo"]
    f["imported"] = object_facts(obj)
    f["notice_after_import"] = s.session.notice.text if s.session.notice else None
    f["frame"] = s.frame_facts(obj, view_before)
    cube = bpy.data.objects.get("Cube")
    f["cube_bbox"] = None if cube is None else {"min": [-1.0, -1.0, -1.0], "max": [1.0, 1.0, 1.0]}
    s.shot("imported")

    # Ctrl+Z with the mouse over the viewport.
    s.key_over_view("ctrl+z")
    yield from _wait(lambda: bpy.data.objects.get("photo") is None, 5)
    yield 0.3
    f["after_undo"] = sorted(o.name for o in bpy.data.objects)
    s.shot("undone")
    f["processes"] = s.backend_processes()


# -- scenario: undo of both imports, called as scripts in the UI do ---------------------


def scenario_undo(s: Session) -> Steps:
    f = s.facts
    names = lambda: sorted(o.name for o in bpy.data.objects)  # noqa: E731
    base = names()
    f["base"] = base
    ctx = {"window": s.win, "screen": s.win.screen}
    yield 0.5
    r = bpy.ops.sam3d.generate(
        image_path=s.args.photo, mask_path=s.args.mask, engine="preview", **FAST_OPERATOR
    )
    f["generate_result"] = sorted(r)
    ok = yield from _wait(lambda: "photo" in names() and not s.active_jobs(), 120)
    assert ok, "sam3d.generate imported nothing"
    f["after_generate"] = names()
    f["generated"] = object_facts(bpy.data.objects["photo"])
    s.shot("generated")
    with bpy.context.temp_override(**ctx):
        bpy.ops.ed.undo()
    f["after_undo"] = names()
    with bpy.context.temp_override(**ctx):
        bpy.ops.ed.redo()
    f["after_redo"] = names()
    yield 0.2

    before_scene = names()
    r = bpy.ops.sam3d.generate_scene(
        image_path=s.args.photo, mask_dir=s.args.masks, engine="preview", **FAST_OPERATOR
    )
    f["scene_result"] = sorted(r)
    ok = yield from _wait(lambda: len(names()) > len(before_scene) and not s.active_jobs(), 120)
    yield 0.5
    assert ok, "sam3d.generate_scene imported nothing"
    f["before_scene"] = before_scene
    f["after_scene"] = names()
    f["scene_objects"] = [object_facts(o) for o in sam3d_objects() if "sam3d_part" in o]
    s.shot("scene")
    with bpy.context.temp_override(**ctx):
        bpy.ops.ed.undo()
    f["after_scene_undo"] = names()
    with bpy.context.temp_override(**ctx):
        bpy.ops.ed.redo()
    f["after_scene_redo"] = names()
    s.shot("scene-redone")
    f["processes"] = s.backend_processes()


# -- scenario: "Mark as asset" and the Asset Browser ---------------------------------------


def _browser_assets(s: Session, area: bpy.types.Area) -> list[dict]:
    """What the Asset Browser in ``area`` lists (every asset selected, then read from
    ``context.selected_assets`` as an add-on in that editor would)."""
    region = next(r for r in area.regions if r.type == "WINDOW")
    with bpy.context.temp_override(window=s.win, area=area, region=region):
        bpy.ops.file.select_all(action="SELECT")
        found = list(bpy.context.selected_assets or [])
        return [
            {
                "name": a.name,
                "id_type": a.id_type,
                "local": a.local_id is not None,
                "catalog_id": a.metadata.catalog_id,
                "tags": [t.name for t in a.metadata.tags],
                "preview": list(a.local_id.preview.image_size)
                if a.local_id is not None and a.local_id.preview
                else None,
            }
            for a in found
        ]


def scenario_asset(s: Session) -> Steps:
    f = s.facts
    settings = bpy.context.scene.sam3d
    settings.image_source, settings.image_path = "FILE", s.args.photo
    settings.mask_source, settings.mask_path = "FILE", s.args.mask
    settings.engine = "preview"
    for key, value in FAST.items():
        setattr(settings, key, value)
    settings.mark_asset = True
    settings.asset_catalog = "Generated/From the panel"
    if s.args.save_as:
        Path(s.args.save_as).parent.mkdir(parents=True, exist_ok=True)
        with bpy.context.temp_override(window=s.win, screen=s.win.screen):
            bpy.ops.wm.save_as_mainfile(filepath=s.args.save_as)
    yield 0.5
    r = bpy.ops.sam3d.generate()
    f["generate_result"] = sorted(r)
    ok = yield from _wait(lambda: "photo" in bpy.data.objects and not s.active_jobs(), 120)
    assert ok, "Generate with 'Mark as asset' imported nothing"
    obj = bpy.data.objects["photo"]
    f["notice"] = s.session.notice.text if s.session.notice else None
    f["object_asset"] = obj.asset_data is not None
    f["object_preview"] = list(obj.preview.image_size) if obj.preview else None
    f["catalog_id"] = obj.asset_data.catalog_id
    cats = Path(bpy.data.filepath).parent / "blender_assets.cats.txt"
    f["catalog_file"] = cats.read_text() if bpy.data.filepath and cats.is_file() else None
    s.shot("generated")
    area = s.view3d
    area.ui_type = "ASSETS"
    yield 0.5
    space = area.spaces.active
    space.params.asset_library_reference = "LOCAL"  # "Current File"
    listed: list[dict] = []

    def look() -> bool:
        listed[:] = _browser_assets(s, area)
        return bool(listed)

    yield from _wait(look, 10, every=0.5)
    f["browser_assets"] = list(listed)
    f["browser_library"] = space.params.asset_library_reference
    yield 0.5
    s.shot("asset-browser")
    # the object's catalog picked in the browser's tree: the object is listed under it
    space.params.catalog_id = obj.asset_data.catalog_id
    yield from _wait(look, 10, every=0.5)
    f["catalog_assets"] = [a["name"] for a in listed]
    yield 0.5
    s.shot("asset-browser-catalog")
    ctx = {"window": s.win, "screen": s.win.screen}
    with bpy.context.temp_override(**ctx):
        bpy.ops.ed.undo()
    yield 0.5
    f["after_undo_assets"] = sorted(o.name for o in bpy.data.objects if o.asset_data)
    f["after_undo_browser"] = [a["name"] for a in _browser_assets(s, area)]
    s.shot("asset-browser-undone")


SCENARIOS = {"session": scenario_session, "undo": scenario_undo, "asset": scenario_asset}


def main() -> None:
    args = _args()
    facts = Facts(args.result)
    facts["scenario"] = args.scenario
    run_gui(lambda: SCENARIOS[args.scenario](Session(args, facts)), facts, WATCHDOG_S)


if __name__ == "__main__":  # first_run.py imports the helpers above
    main()
