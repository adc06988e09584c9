"""Click-to-mask in the real Blender GUI under Xvfb (X events from xdotool):

    scripts/blender.sh --xvfb --python gui_masks.py -- --result R.json --shots DIR \
        --photo P --mask M

The 3D Viewport becomes an Image Editor showing the photo; the tool is started there
(``sam3d.click_mask``, as its sidebar button does); a mouse click on the object puts the
mask over the photo (drawn by the real draw handler); Enter makes it the panel's mask;
Ctrl+Z takes that back and Ctrl+Shift+Z brings it again; Generate 3D uses it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Facts, addon, parse_args, run_gui  # noqa: E402

WATCHDOG_S = 200.0


def _args():
    def extra(p):
        p.add_argument("--shots", required=True)
        p.add_argument("--photo", required=True)
        p.add_argument("--mask", required=True)

    return parse_args(extra)


def scenario(args, f: Facts):
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    f["screenshots"] = []

    def shot(name: str) -> None:
        path = shots / f"{len(f['screenshots']) + 1:02d}-{name}.png"
        subprocess.run(["import", "-display", os.environ["DISPLAY"], "-window", "root", str(path)],
                       check=True, timeout=30)  # fmt: skip
        f["screenshots"].append(str(path))

    def xdo(*a) -> None:
        subprocess.run(["xdotool", *map(str, a)], check=True, timeout=10)

    win = bpy.context.window_manager.windows[0]
    area = max(win.screen.areas, key=lambda a: a.width * a.height)
    area.type = "IMAGE_EDITOR"
    photo = bpy.data.images.load(args.photo)
    area.spaces.active.image = photo
    s = bpy.context.scene.sam3d
    s.engine, s.texture_size, s.target_faces = "preview", "256", 3000
    yield 0.5
    region = next(r for r in area.regions if r.type == "WINDOW")
    with bpy.context.temp_override(window=win, area=area, region=region):
        bpy.ops.image.view_all(fit_view=True)
    yield 0.5
    with bpy.context.temp_override(window=win, area=area, region=region):
        started = bpy.ops.sam3d.click_mask("INVOKE_DEFAULT", engine="grabcut")
    f["started"] = list(started)
    tool_mod = addon("operators.masking")
    f["tool_running"] = tool_mod.active is not None
    yield 0.3

    # a mouse click on the object (the centre of its known mask)
    cx, cy, known = _known_centre(args.mask)
    w, h = photo.size
    rx, ry = region.view2d.view_to_region(cx / w, 1.0 - cy / h, clip=False)
    screen = (int(region.x + rx), int(win.height - (region.y + ry)))
    f["click_screen"] = screen
    xdo("mousemove", *screen)
    yield 0.2
    xdo("click", "1")
    f.note(f"clicked the photo at {screen}")
    deadline = time.monotonic() + 90
    tool = tool_mod.active
    while time.monotonic() < deadline and not (
        tool.preview is not None and tool.overlay.drawn_mask
    ):
        tool.area.tag_redraw()
        yield 0.1
    f["points"] = [list(p) for p in tool.clicks.points]
    f["overlay_shape"] = list(tool.overlay.rgba.shape) if tool.overlay.rgba is not None else None
    f["overlay_drawn"] = tool.overlay.drawn_mask
    got = addon("masking.accept").mask_of(tool.preview) if tool.preview is not None else None
    if got is not None:
        f["iou"] = float((got & known).sum() / max(1, (got | known).sum()))
    f["tool_error"] = None if tool.clicks.error is None else str(tool.clicks.error)
    shot("mask-overlay")

    # Enter: the panel's mask
    xdo("key", "Return")
    yield from _until(lambda: tool_mod.active is None, 10)
    yield 0.3
    f["after_enter"] = {
        "tool_running": tool_mod.active is not None,
        "mask_source": s.mask_source,
        "mask_image": s.mask_image.name if s.mask_image else None,
        "image": s.image.name if s.image else None,
        "packed": bool(s.mask_image and s.mask_image.packed_file),
    }
    shot("accepted")
    # Ctrl+Z takes the acceptance back; Ctrl+Shift+Z brings it again
    xdo("key", "ctrl+z")
    yield 0.8
    f["after_undo"] = (
        bpy.context.scene.sam3d.mask_image.name if bpy.context.scene.sam3d.mask_image else None
    )
    xdo("key", "ctrl+shift+z")
    yield 0.8
    s = bpy.context.scene.sam3d
    f["after_redo"] = s.mask_image.name if s.mask_image else None

    # Generate 3D uses it (as a script in the UI calls it: returns at once, the timer imports)
    with bpy.context.temp_override(window=win, area=area, region=region):
        f["generate"] = list(bpy.ops.sam3d.generate())
    session = addon("session").get()
    job = session.manager.jobs[-1] if session.manager.jobs else None
    f["job_mask_count"] = job.request.mask_count if job else None
    # the mask leaves Blender saying it is in the photo's stored frame (core/frames.py)
    f["job_mask_stored_frame"] = bool(job and b"sam3d-frame\0stored" in job.request.mask)
    yield from _until(lambda: bpy.data.objects.get("photo") is not None, 120)
    f["imported"] = bpy.data.objects.get("photo") is not None
    f["job_engine"] = job.request.options.engine if job else None
    shot("generated")


def _until(cond, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        yield 0.1


def _known_centre(mask_path: str) -> tuple[float, float, np.ndarray]:
    img = bpy.data.images.load(mask_path)
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    m = (px.reshape(h, w, 4)[..., 0] > 0.5)[::-1]
    bpy.data.images.remove(img)
    ys, xs = np.nonzero(m)
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5, m


def main() -> None:
    args = _args()
    facts = Facts(args.result)
    run_gui(lambda: scenario(args, facts), facts, WATCHDOG_S)


main()
