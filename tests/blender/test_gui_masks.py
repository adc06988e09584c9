"""Click-to-mask in Blender 4.3's GUI under Xvfb: a real mouse click on the photo in the
Image Editor makes the mask overlay, Enter makes it the panel's mask (one undo step), and
Generate 3D uses it. Screenshots go to ``out/blender/<test>/``.

Also with a phone photo: a JPEG stored 640x480 with EXIF orientation 6 (a 480x640 picture
upright). Blender shows it as stored; the click where the editor shows the object gives an
overlay on the object as shown, and Generate takes it."""

from __future__ import annotations

import os

import pytest

from tests.blender.blender_run import run_scenario
from tests.scene_fixture import synthetic_photo

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("exif_orientation", [None, 6])
def test_click_on_the_photo_makes_the_mask_enter_uses_it_generate_takes_it(
    user_dir, tmp_path, shots, exif_orientation
):
    photo = synthetic_photo(tmp_path / "in", seed=4, n_objects=1, size=(640, 480))
    if exif_orientation is not None:  # the same pixels, stored sideways in a JPEG
        from PIL import Image

        with Image.open(photo) as im:
            exif = im.getexif()
            exif[0x0112] = exif_orientation
            jpeg = photo.with_suffix(".jpg")
            im.convert("RGB").save(jpeg, quality=95, exif=exif.tobytes())
        photo = jpeg
    facts, proc = run_scenario(
        "gui_masks.py",
        [
            "--shots",
            str(shots),
            "--photo",
            str(photo),
            "--mask",
            str(photo.parent / "masks" / "0.png"),
        ],
        tmp_path / "masks.json",
        user_dir=user_dir,
        gui=True,
        timeout=300,
        log=shots / "blender.log",
    )
    print("\n".join(facts.get("log", [])))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert facts["tool_error"] is None
    assert facts["started"] == ["RUNNING_MODAL"] and facts["tool_running"]
    # the click landed as one positive point, and the overlay of the mask was drawn
    assert len(facts["points"]) == 1 and facts["points"][0][2] is True
    assert facts["overlay_shape"] == [240, 320, 4]  # 640x480 shown at half size
    assert facts["overlay_drawn"] > 0
    assert facts["iou"] > 0.9, facts["iou"]
    # Enter: the tool ended and the mask is the panel's, packed into the file
    after = facts["after_enter"]
    assert not after["tool_running"]
    assert after["mask_source"] == "IMAGE" and after["mask_image"] == f"{photo.name} mask"
    assert after["image"] == photo.name and after["packed"]
    # one undo step
    assert facts["after_undo"] != f"{photo.name} mask"
    assert facts["after_redo"] == f"{photo.name} mask"
    # Generate 3D used it
    assert facts["generate"] == ["FINISHED"] and facts["job_mask_count"] == 1
    assert facts["job_mask_stored_frame"]
    assert facts["imported"]
    assert all(os.path.getsize(p) > 10_000 for p in facts["screenshots"])
