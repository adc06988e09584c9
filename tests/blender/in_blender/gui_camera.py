"""A scene camera's background photo in the real Blender GUI under Xvfb:

    scripts/blender.sh --xvfb --python gui_camera.py -- --result R.json --shots DIR \
        --photos JSON

``--photos``: a JSON list of ``{"path", "orientation", "upright": [w, h]}``. For each, the
installed add-on's ``import_scene`` builds the camera of a result recording that
orientation (centred pinhole intrinsics of the upright size) with the photo as its
background; the 3D Viewport looks through it (camera view, framed), and a screenshot of
the screen is taken with the camera frame's corners in screen pixels (Blender's own
projection, ``view3d_utils``), so the test can find where Blender drew the photo's marks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bpy
from bpy_extras import view3d_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Facts, addon, parse_args, run_gui  # noqa: E402

WATCHDOG_S = 120.0


def _args():
    def extra(p):
        p.add_argument("--shots", required=True)
        p.add_argument("--photos", required=True)

    return parse_args(extra)


def scenario(args, f: Facts):
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    f["views"] = []
    import_scene = addon("importing.scene").import_scene
    win = bpy.context.window_manager.windows[0]
    area = max(win.screen.areas, key=lambda a: a.width * a.height)
    area.type = "VIEW_3D"
    yield 0.3
    space = area.spaces.active
    region = next(r for r in area.regions if r.type == "WINDOW")
    space.overlay.show_overlays = True
    space.show_gizmo = False  # its red, green and blue axes are not the photo's marks
    for ob in list(bpy.data.objects):  # nothing in front of the photo
        bpy.data.objects.remove(ob)
    for photo in json.loads(args.photos):
        o, (w, h) = photo["orientation"], photo["upright"]
        for ob in list(bpy.data.objects):
            bpy.data.objects.remove(ob)
        result = {
            "kind": "scene",
            "engine": "preview",
            "camera": {"fx": 0.9 * w, "fy": 0.9 * w, "cx": w / 2, "cy": h / 2, "width": w, "height": h},
            "input": {"orientation": o, "size": [w, h], "original_size": [w, h]},
            "parts": [],
        }  # fmt: skip
        scene = bpy.context.scene
        imported = import_scene(bpy.context, result, {}, label=f"o{o}", photo=photo["path"])
        cam = imported.camera
        space.region_3d.view_perspective = "CAMERA"
        yield 0.3
        with bpy.context.temp_override(window=win, area=area, region=region):
            bpy.ops.view3d.view_center_camera()
        area.tag_redraw()
        yield 0.8
        frame = [cam.matrix_world @ v for v in cam.data.view_frame(scene=scene)]
        corners = [view3d_utils.location_3d_to_region_2d(region, space.region_3d, p) for p in frame]
        path = shots / f"{len(f['views']) + 1:02d}-orientation-{o}.png"
        subprocess.run(["import", "-display", os.environ["DISPLAY"], "-window", "root", str(path)],
                       check=True, timeout=30)  # fmt: skip
        (bg,) = cam.data.background_images
        f["views"].append(
            {
                "orientation": o,
                "shot": str(path),
                # screen pixels: x right, y down from the screen's top-left
                "frame": [[region.x + c.x, win.height - (region.y + c.y)] for c in corners],
                "image_size": list(imported.background.size),
                "render": [scene.render.resolution_x, scene.render.resolution_y],
                "background": {
                    "rotation": bg.rotation,
                    "use_flip_x": bg.use_flip_x,
                    "use_flip_y": bg.use_flip_y,
                    "scale": bg.scale,
                },
            }
        )
        f.note(f"orientation {o}: {path.name}")


def main() -> None:
    args = _args()
    facts = Facts(args.result)
    run_gui(lambda: scenario(args, facts), facts, WATCHDOG_S)


main()
