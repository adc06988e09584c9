"""The add-on's reading of a photo's EXIF orientation (``core/orientation.py``, from the
EXIF definition) against Pillow's ``ImageOps.exif_transpose`` (the backend's one
definition) for all eight values, and the camera background it implies: where Blender
draws each stored pixel in the camera frame (Blender's rule, measured in the real GUI by
``tests/blender/test_gui_camera.py``) is where the upright photo has it. No bpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageOps

from backend.jobs import orientation as backend_orientation
from sam3d_blender.core import orientation
from sam3d_blender.core.scene_result import photo_orientation

EXIF_ORIENTATION = 0x0112


def _labelled(w: int, h: int) -> Image.Image:
    """A w x h picture whose pixels hold their own index (row-major), as 32-bit ints."""
    return Image.fromarray(np.arange(w * h, dtype=np.int32).reshape(h, w), mode="I")


def _upright(im: Image.Image, o: int) -> np.ndarray:
    """``im`` stored with EXIF orientation ``o``, turned upright by Pillow."""
    im = im.copy()
    im.getexif()[EXIF_ORIENTATION] = o
    return np.asarray(ImageOps.exif_transpose(im))


def _where(labels: np.ndarray) -> dict[int, tuple[float, float]]:
    """Label -> the centre (x, y) of its pixel, in pixels, x right, y down."""
    h, w = labels.shape
    return {int(labels[j, i]): (i + 0.5, j + 0.5) for j in range(h) for i in range(w)}


def _apply(m, v):
    return (m[0][0] * v[0] + m[0][1] * v[1], m[1][0] * v[0] + m[1][1] * v[1])


@pytest.mark.parametrize("o", orientation.ORIENTATIONS)
@pytest.mark.parametrize("size", [(6, 4), (3, 5)])
def test_stored_to_upright_is_pillows_exif_transpose(o, size):
    w, h = size
    upright = _upright(_labelled(w, h), o)
    uh, uw = upright.shape
    assert (uw, uh) == ((h, w) if orientation.swaps_axes(o) else (w, h))
    at = _where(upright)
    m = orientation.stored_to_upright(o)
    for label, (x, y) in _where(np.asarray(_labelled(w, h))).items():
        dx, dy = _apply(m, (x - w / 2, y - h / 2))
        assert (uw / 2 + dx, uh / 2 + dy) == at[label], (o, label)
        # the backend's point mapping (Pillow's table) says the same
        assert backend_orientation.point_to_upright(x, y, (w, h), o) == pytest.approx(at[label])


def _blender_draws(turn: orientation.BackgroundTurn, stored: tuple[int, int], frame_aspect: float):
    """Where Blender's camera view draws a stored pixel (x, y) of a background image: as a
    function returning (u, v) in the camera frame, fractions of its width and height from
    the top-left. Blender's rule: FIT the stored image into the frame, mirror it left-right
    (use_flip_x), turn it clockwise as seen by ``rotation``, multiply by ``scale``, about the
    frame's centre. Lengths below are in units of the frame's height."""
    w, h = stored
    a = w / h
    fit_w, fit_h = (frame_aspect, frame_aspect / a) if a > frame_aspect else (a, 1.0)
    c, s = math.cos(turn.rotation), math.sin(turn.rotation)

    def draw(x: float, y: float) -> tuple[float, float]:
        px, py = (x / w - 0.5) * fit_w, (y / h - 0.5) * fit_h
        if turn.use_flip_x:
            px = -px
        qx, qy = c * px - s * py, s * px + c * py  # clockwise on a y-down screen
        return (0.5 + turn.scale * qx / frame_aspect, 0.5 + turn.scale * qy)

    return draw


@pytest.mark.parametrize("o", orientation.ORIENTATIONS)
@pytest.mark.parametrize("stored", [(80, 40), (30, 50), (64, 64)])
def test_the_background_shows_every_stored_pixel_where_the_upright_photo_has_it(o, stored):
    w, h = stored
    upright = _upright(_labelled(w, h), o)
    uh, uw = upright.shape
    turn = orientation.background_turn(o, stored)
    draw = _blender_draws(turn, stored, frame_aspect=uw / uh)
    at = _where(upright)
    for label, (x, y) in _where(np.asarray(_labelled(w, h))).items():
        u, v = draw(x, y)
        ux, uy = at[label]
        assert u * uw == pytest.approx(ux, abs=1e-9) and v * uh == pytest.approx(uy, abs=1e-9)
    assert turn.rotation in (0.0, math.pi / 2, math.pi, 3 * math.pi / 2)
    assert (turn.scale != 1.0) == (orientation.swaps_axes(o) and w != h)


def test_the_result_names_the_orientation_older_results_do_not():
    assert photo_orientation({"input": {"orientation": 6}}) == 6
    assert photo_orientation({"input": {"size": [4, 3]}}) == 1  # an older backend's
    assert photo_orientation({}) == 1
    for damaged in (None, "six", 0, 9, [6]):
        assert photo_orientation({"input": {"orientation": damaged}}) == 1
    assert photo_orientation({"input": None}) == 1
