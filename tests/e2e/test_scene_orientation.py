"""Photo to scene from a phone photo (bpy 4.5 module, the real managed backend): a JPEG
stored sideways with EXIF orientation 6. The backend records the orientation in the
result, the camera sees the upright photo, and its background shows the stored pixels
turned upright (where Blender draws them is measured in ``tests/blender/test_gui_camera.py``)."""

from __future__ import annotations

import math

import bpy
import pytest

from tests.addon.helpers import addon, fresh_file
from tests.backend.test_exif_frames import jpeg_with_orientation, png, stored_scene, upright


@pytest.fixture
def cache(tmp_path):
    fresh_file(tmp_path / "cache")
    yield tmp_path
    addon("session").get().shutdown()


def test_a_phone_photos_scene_camera_shows_it_upright(cache):
    img, mask = stored_scene()  # 240x180 stored
    photo = cache / "phone.jpg"
    photo.write_bytes(jpeg_with_orientation(img, 6))
    masks = cache / "masks"
    masks.mkdir()
    (masks / "0.png").write_bytes(png(upright(mask, 6)))  # a mask file made upright
    result = bpy.ops.sam3d.generate_scene(
        image_path=str(photo),
        mask_dir=str(masks),
        blocking=True,
        timeout=300,
        engine="preview",
        target_faces=3000,
        texture_size=256,
    )
    assert result == {"FINISHED"}
    scene = bpy.context.scene
    cam = scene.camera
    assert (scene.render.resolution_x, scene.render.resolution_y) == (180, 240)  # upright
    (bg,) = cam.data.background_images
    assert tuple(bg.image.size) == (240, 180)  # as stored
    assert (round(math.degrees(bg.rotation)), bg.use_flip_x, bg.use_flip_y) == (90, False, False)
    assert bg.scale == pytest.approx(240 / 180)
    kept = list((cache / "cache").rglob("result.json"))  # the backend's and the add-on's
    assert kept and all(
        addon("core.results").read_json(p)["input"]["orientation"] == 6 for p in kept
    )
