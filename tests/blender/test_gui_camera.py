"""The scene camera's background photo lines up with the camera frame in Blender 4.3's GUI
(under Xvfb), for phone photos of every EXIF orientation: Blender shows the JPEG's stored
pixels, the add-on turns the background upright (``core/orientation.py``), and the marks
of the photo are found in a screenshot of the camera view where the upright photo has
them. Screenshots go to ``out/blender/<test>/``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from backend.jobs.orientation import to_stored
from tests.blender.blender_run import run_scenario

pytestmark = pytest.mark.slow

UPRIGHT = (320, 200)  # (width, height) of every photo as it is viewed
#: The marks of the upright photo: colour channel -> its box (x0, y0, x1, y1), pixels.
MARKS = {0: (30, 25, 70, 65), 1: (250, 25, 290, 65), 2: (30, 140, 70, 180)}
#: How far (screen pixels) a mark's centre may be from where the upright photo has it.
TOLERANCE_PX = 3.0


def _upright_photo() -> Image.Image:
    a = np.full((UPRIGHT[1], UPRIGHT[0], 3), 70, np.uint8)
    for channel, (x0, y0, x1, y1) in MARKS.items():
        a[y0:y1, x0:x1] = 0
        a[y0:y1, x0:x1, channel] = 255
    return Image.fromarray(a)


def _phone_jpeg(path, o: int):
    """The upright photo stored as a camera turned sideways would: its pixels turned back
    into the stored frame of orientation ``o`` and the orientation written in its EXIF."""
    stored = to_stored(_upright_photo(), o)
    exif = stored.getexif()
    exif[0x0112] = o
    stored.save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as im:  # a viewer shows the upright photo
        assert ImageOps.exif_transpose(im).size == UPRIGHT
    return path


def _found(shot: np.ndarray, channel: int, box) -> tuple[float, float] | None:
    """Centre (x, y, screen pixels) of the pixels inside ``box`` where ``channel`` stands
    out over the other two."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    a = shot[y0:y1, x0:x1].astype(int)
    others = np.delete(a, channel, axis=2).max(axis=2)
    ys, xs = np.nonzero(a[..., channel] - others > 100)
    if len(xs) < 20:
        return None
    return float(xs.mean()) + 0.5 + x0, float(ys.mean()) + 0.5 + y0


def test_the_background_photo_lines_up_with_the_camera_frame(user_dir, tmp_path, shots):
    orientations = range(1, 9)
    photos = [
        {"path": str(_phone_jpeg(tmp_path / f"phone-{o}.jpg", o)), "orientation": o,
         "upright": list(UPRIGHT)}
        for o in orientations
    ]  # fmt: skip
    facts, proc = run_scenario(
        "gui_camera.py",
        ["--shots", str(shots), "--photos", json.dumps(photos)],
        tmp_path / "camera.json",
        user_dir=user_dir,
        gui=True,
        timeout=300,
        log=shots / "blender.log",
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert [v["orientation"] for v in facts["views"]] == list(orientations)
    rows, worst = [], 0.0
    for view in facts["views"]:
        o = view["orientation"]
        stored = (UPRIGHT[1], UPRIGHT[0]) if o >= 5 else UPRIGHT
        assert view["image_size"] == list(stored)  # Blender shows the pixels as stored
        assert view["render"] == list(UPRIGHT)  # the camera sees the photo upright
        frame = np.array(view["frame"])
        (fx0, fy0), (fx1, fy1) = frame.min(axis=0), frame.max(axis=0)
        px = (fx1 - fx0) / UPRIGHT[0]  # screen pixels per photo pixel
        assert abs((fy1 - fy0) / UPRIGHT[1] - px) < 0.01 * px, view["frame"]
        shot = np.asarray(Image.open(view["shot"]).convert("RGB"))
        for channel, (x0, y0, x1, y1) in MARKS.items():
            want = (fx0 + px * (x0 + x1) / 2, fy0 + px * (y0 + y1) / 2)
            got = _found(shot, channel, (fx0, fy0, fx1, fy1))
            assert got is not None, f"orientation {o}: mark {channel} not seen in {view['shot']}"
            err = float(np.hypot(got[0] - want[0], got[1] - want[1]))
            worst = max(worst, err)
            rows.append((o, "RGB"[channel], want, got, err, px))
    print(f"\n{'orient.':>7} {'mark':>4} {'expected (screen px)':>22} {'found':>22} {'off px':>7}")
    for o, mark, want, got, err, _ in rows:
        print(f"{o:>7} {mark:>4} {want[0]:>10.1f} {want[1]:>10.1f}  {got[0]:>10.1f} "
              f"{got[1]:>10.1f} {err:>7.2f}")  # fmt: skip
    print(f"worst {worst:.2f} screen px ({worst / rows[0][5]:.2f} photo px); "
          f"{rows[0][5]:.2f} screen px per photo px")  # fmt: skip
    bad = [r for r in rows if r[4] > TOLERANCE_PX]
    assert not bad, bad
