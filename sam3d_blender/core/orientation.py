"""A photo's EXIF orientation as geometry, and the camera background that shows its stored
pixels upright (no bpy).

Blender shows a photo's pixels as the file stores them (the **stored frame**; it ignores
the EXIF orientation), while a job's camera - its intrinsics, its render resolution - is in
the photo's **upright frame** (the orientation applied; see ``core/frames.py`` and
``docs/API.md``). The backend records the orientation in ``result.json`` (``input`` >
``orientation``, 1 to 8; absent from older results: 1), and the camera's background image
is turned by it (``importing/cameras.py: set_background_image``).

The orientation is taken here from the EXIF definition of the tag (0x0112: which visual
side of the picture the stored row 0 and column 0 are), not from a table of turns; a test
holds it to Pillow's ``ImageOps.exif_transpose`` for all eight values (the backend's one
definition, ``backend/jobs/orientation.py``; Blender never imports the backend).

Directions are 2-vectors in a picture's own pixel axes, x right and y down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "ORIENTATIONS",
    "BackgroundTurn",
    "background_turn",
    "normalized",
    "stored_to_upright",
    "swaps_axes",
]

#: The EXIF orientation values; 1 is "as stored".
ORIENTATIONS = tuple(range(1, 9))

#: EXIF 2.3, tag 0x0112 (Orientation), in the standard's words: orientation -> (the visual
#: side the stored 0th row is at, the visual side the stored 0th column is at).
_ROW0_COL0 = {
    1: ("top", "left"),
    2: ("top", "right"),
    3: ("bottom", "right"),
    4: ("bottom", "left"),
    5: ("left", "top"),
    6: ("right", "top"),
    7: ("right", "bottom"),
    8: ("left", "bottom"),
}
#: The direction from a picture's centre towards each of its sides (x right, y down).
_TOWARDS = {"top": (0, -1), "bottom": (0, 1), "left": (-1, 0), "right": (1, 0)}

Matrix2 = tuple[tuple[int, int], tuple[int, int]]


def normalized(orientation: object) -> int:
    """``orientation`` as an EXIF value 1..8; anything else (absent, damaged) is 1."""
    try:
        value = int(orientation)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 1
    return value if value in _ROW0_COL0 else 1


def stored_to_upright(orientation: int) -> Matrix2:
    """The 2x2 matrix (rows) that takes a direction in the stored frame to the same
    direction in the upright frame, both about the picture's centre.

    Stored +x runs along row 0 away from column 0, so upright it points away from the
    side column 0 is at; stored +y runs away from row 0 likewise."""
    row0, col0 = _ROW0_COL0[normalized(orientation)]
    x_to = tuple(-c for c in _TOWARDS[col0])
    y_to = tuple(-c for c in _TOWARDS[row0])
    return ((x_to[0], y_to[0]), (x_to[1], y_to[1]))


def swaps_axes(orientation: int) -> bool:
    """Whether the upright picture's width is the stored height (orientations 5 to 8)."""
    return stored_to_upright(orientation)[0][0] == 0


@dataclass(frozen=True)
class BackgroundTurn:
    """How a Blender camera background image (``CameraBackgroundImage``) shows a photo's
    stored pixels upright: ``rotation`` (radians), ``use_flip_x`` and ``scale``, with
    ``frame_method`` FIT and no vertical flip."""

    rotation: float
    use_flip_x: bool
    scale: float


def _blender_turn(quarter_turns: int, flip_x: bool) -> Matrix2:
    """What Blender does to a background image's pixels (x right, y down on screen): first
    ``use_flip_x`` mirrors them left-right, then ``rotation`` turns them clockwise as seen
    (measured in Blender 4.3's camera view; ``tests/blender/test_gui_camera.py`` holds it)."""
    c = round(math.cos(quarter_turns * math.pi / 2))
    s = round(math.sin(quarter_turns * math.pi / 2))
    f = -1 if flip_x else 1
    return ((c * f, -s), (s * f, c))


def background_turn(orientation: int, stored_size: tuple[int, int]) -> BackgroundTurn:
    """The background settings that show a photo stored ``stored_size`` (width, height, as
    Blender reads it) upright in a camera frame of the upright photo's aspect.

    The rotation and flip are the one pair of Blender's turns equal to
    :func:`stored_to_upright`. Blender fits the image to the frame before it turns it, so
    when the turn swaps the axes the fitted picture is short by the photo's aspect ratio
    (long side / short side): that is the scale."""
    want = stored_to_upright(orientation)
    quarter, flip = next(
        (q, f) for q in range(4) for f in (False, True) if _blender_turn(q, f) == want
    )
    scale = 1.0
    w, h = stored_size
    if swaps_axes(orientation) and w > 0 and h > 0:
        scale = max(w, h) / min(w, h)
    return BackgroundTurn(rotation=quarter * math.pi / 2, use_flip_x=flip, scale=scale)
