"""A scene's camera shows its photo upright whatever the photo's EXIF orientation (real
bpy): Blender loads the JPEG as stored, the camera frame is the upright photo's, and the
background image is turned, mirrored and scaled by the orientation the result records.
Where Blender then draws the photo is measured in the real GUI
(``tests/blender/test_gui_camera.py``)."""

from __future__ import annotations

import math

import bpy
import numpy as np
import pytest
from PIL import Image

from tests.addon.helpers import addon, enable_addon

STORED = (80, 40)  # (width, height) as the file stores the pixels


def _jpeg(path, o: int | None):
    img = np.full((STORED[1], STORED[0], 3), 90, np.uint8)
    img[4:12, 6:16] = (230, 30, 30)  # a marker near the stored top-left corner
    im = Image.fromarray(img)
    exif = im.getexif()
    if o is not None:
        exif[0x0112] = o
    im.save(path, quality=95, exif=exif.tobytes())
    return path


def _result(o: int | None) -> dict:
    w, h = (STORED[1], STORED[0]) if o in (5, 6, 7, 8) else STORED  # upright
    cam = {"fx": 60.0, "fy": 60.0, "cx": w / 2, "cy": h / 2, "width": w, "height": h}
    result = {"kind": "scene", "engine": "preview", "camera": cam, "parts": []}
    if o is not None:
        result["input"] = {"orientation": o, "size": [w, h], "original_size": [w, h]}
    return result


@pytest.fixture
def scene_importer():
    enable_addon()
    bpy.ops.wm.read_homefile(use_empty=True)
    return addon("importing.scene").import_scene


@pytest.mark.parametrize("o", range(1, 9))
def test_the_background_is_turned_by_the_results_orientation(scene_importer, tmp_path, o):
    orientation = addon("core.orientation")
    photo = _jpeg(tmp_path / f"o{o}.jpg", o)
    imported = scene_importer(bpy.context, _result(o), {}, label=f"o{o}", photo=photo)
    cam, scene = imported.camera, bpy.context.scene
    assert tuple(imported.background.size) == STORED  # Blender ignores EXIF orientation
    upright = (STORED[1], STORED[0]) if o >= 5 else STORED
    assert (scene.render.resolution_x, scene.render.resolution_y) == upright
    (bg,) = cam.data.background_images
    assert cam.data.show_background_images and bg.show_background_image
    assert bg.image == imported.background and bg.frame_method == "FIT"
    turn = orientation.background_turn(o, STORED)
    assert bg.rotation == pytest.approx(turn.rotation)
    assert (bg.use_flip_x, bg.use_flip_y) == (turn.use_flip_x, False)
    assert bg.scale == pytest.approx(turn.scale)
    # what each orientation comes to, in Blender's terms (clockwise quarter turns)
    quarter, flip, scale = {
        1: (0, False, 1),
        2: (0, True, 1),
        3: (2, False, 1),
        4: (2, True, 1),
        5: (3, True, 2),
        6: (1, False, 2),
        7: (1, True, 2),
        8: (3, False, 2),
    }[o]
    assert (round(bg.rotation / (math.pi / 2)) % 4, bg.use_flip_x, bg.scale) == (
        quarter,
        flip,
        pytest.approx(scale),
    )


def test_a_result_without_orientation_shows_the_photo_as_stored(scene_importer, tmp_path):
    """Results of older backends record no orientation: nothing is turned (as before)."""
    imported = scene_importer(
        bpy.context, _result(None), {}, label="old", photo=_jpeg(tmp_path / "p.jpg", None)
    )
    (bg,) = imported.camera.data.background_images
    assert (bg.rotation, bg.use_flip_x, bg.use_flip_y, bg.scale) == (0.0, False, False, 1.0)


def test_without_intrinsics_the_guessed_camera_is_upright(scene_importer, tmp_path):
    result = _result(6)
    del result["camera"]
    imported = scene_importer(
        bpy.context, result, {}, label="guess", photo=_jpeg(tmp_path / "p.jpg", 6)
    )
    scene = bpy.context.scene
    assert (scene.render.resolution_x, scene.render.resolution_y) == (40, 80)
    assert imported.warnings  # the field of view was assumed


def test_the_turned_background_survives_save_and_reopen(scene_importer, tmp_path):
    scene_importer(bpy.context, _result(8), {}, label="keep", photo=_jpeg(tmp_path / "p.jpg", 8))
    blend = tmp_path / "keep.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    (bg,) = bpy.context.scene.camera.data.background_images
    assert bg.image.packed_file is not None
    assert (round(math.degrees(bg.rotation)), bg.use_flip_x, bg.scale) == (270, False, 2.0)
