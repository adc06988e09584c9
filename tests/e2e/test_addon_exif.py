"""Phone photos in the add-on (bpy 4.5 module, the real managed backend): a JPEG stored
sideways or upside down with an EXIF orientation. Blender shows it as stored; a mask
painted over it (New mask) or clicked on it (click-to-mask) lands, in the job, where the
photo shows the object - the backend's upright copy of the photo."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.addon.helpers import addon, fresh_file

W, H = 320, 240  # the stored frame


def _stored_scene() -> tuple[np.ndarray, np.ndarray]:
    """An object off-centre in both axes (a 180 degree turn moves it), top row first."""
    yy, xx = np.mgrid[:H, :W]
    mask = ((xx - 95) / 55.0) ** 2 + ((yy - 80) / 45.0) ** 2 < 1
    img = np.full((H, W, 3), (90, 110, 130), np.uint8)
    img[mask] = (205, 60, 40)
    img[mask, 1] += ((xx[mask] % 20) * 2).astype(np.uint8)
    return img, mask


def _upright(mask: np.ndarray, o: int) -> np.ndarray:
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    im.getexif()[0x0112] = o
    return np.asarray(ImageOps.exif_transpose(im)) > 127


@pytest.fixture
def phone_photo(tmp_path, request):
    """A JPEG with EXIF orientation ``request.param``, loaded into Blender."""
    o = request.param
    fresh_file(tmp_path / "cache")
    img, mask = _stored_scene()
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = o
    path = tmp_path / f"phone_{o}.jpg"
    pil.save(path, quality=95, exif=exif.tobytes())
    photo = bpy.data.images.load(str(path))
    yield {"photo": photo, "mask": mask, "o": o, "tmp": tmp_path}
    addon("session").get().shutdown()


def _client():
    """The tool's client getter, with the add-on's timer body run as Blender would."""
    addon("timer").tick()
    return addon("operators.masking").backend_client()


def _job_mask(tmp_path, job) -> np.ndarray:
    """The mask the backend stored for the job (upright, as it hands it to the engine)."""
    (path,) = list(tmp_path.rglob(f"{job.backend_id}/mask.png"))
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def _generate(tmp_path) -> np.ndarray:
    result = bpy.ops.sam3d.generate(engine="preview", target_faces=2000, texture_size=256)
    assert result == {"FINISHED"}
    job = addon("session").get().manager.jobs[-1]
    assert job.error is None and job.state == "done", (job.state, job.error)
    return _job_mask(tmp_path, job)


@pytest.mark.parametrize("phone_photo", [6, 3], indirect=True)
def test_a_mask_painted_over_a_phone_photo_masks_what_the_photo_shows(phone_photo):
    photo, mask, o = phone_photo["photo"], phone_photo["mask"], phone_photo["o"]
    assert tuple(photo.size) == (W, H)  # Blender ignores the EXIF orientation
    s = bpy.context.scene.sam3d
    s.image_source, s.image = "IMAGE", photo
    assert bpy.ops.sam3d.new_mask() == {"FINISHED"}
    painted = s.mask_image
    assert tuple(painted.size) == (W, H) and s.mask_source == "IMAGE"
    # paint the object white where the Image Editor shows it (pixels bottom row first)
    px = np.zeros((H, W, 4), np.float32)
    px[..., 3] = 1.0
    px[mask[::-1]] = (1.0, 1.0, 1.0, 1.0)
    painted.pixels.foreach_set(px.ravel())
    job_mask = _generate(phone_photo["tmp"])
    assert np.array_equal(job_mask, _upright(mask, o))
    objs = [ob for ob in bpy.data.collections["SAM 3D"].objects if ob.type == "MESH"]
    assert len(objs) == 1


@pytest.mark.parametrize("phone_photo", [8], indirect=True)
def test_clicking_a_phone_photo_gives_an_overlay_on_the_object_and_the_right_job(phone_photo):
    photo, mask, o = phone_photo["photo"], phone_photo["mask"], phone_photo["o"]
    clicks_mod, accept = addon("masking.clicks"), addon("masking.accept")
    clicks = clicks_mod.ClickMask(
        addon("job_inputs").image_bytes(photo), tuple(photo.size), "grabcut"
    )
    # a click on the object where the Image Editor shows it (view coordinates, v up)
    ys, xs = np.nonzero(mask)
    u, v = (xs.mean() + 0.5) / W, 1.0 - (ys.mean() + 0.5) / H
    assert clicks.add_point(*clicks_mod.view_to_pixel(u, v, (W, H)))
    assert clicks.wait(_client, timeout=90), clicks.error
    assert clicks.shown.answer.size == (W, H)
    preview = accept.load_mask_image(clicks.shown, None)
    shown = accept.mask_of(preview)  # top row first, as the editor shows the photo
    iou = np.count_nonzero(shown & mask) / np.count_nonzero(shown | mask)
    assert iou > 0.85, iou
    # the overlay texture (bottom row first) covers the object as the editor shows it
    rgba = accept.overlay_rgba(shown)
    assert np.array_equal(rgba[::-1][..., 3] > 0, shown)
    accept.accept(bpy.context, preview, photo, "PANEL")
    clicks.close()
    job_mask = _generate(phone_photo["tmp"])
    assert np.array_equal(job_mask, _upright(shown, o))
    truth = _upright(mask, o)
    assert np.count_nonzero(job_mask & truth) / np.count_nonzero(job_mask | truth) > 0.85


@pytest.mark.parametrize("phone_photo", [6], indirect=True)
def test_a_mask_file_from_another_tool_stays_upright_and_a_packed_photo_keeps_its_exif(
    phone_photo,
):
    photo, mask, o = phone_photo["photo"], phone_photo["mask"], phone_photo["o"]
    photo.pack()  # packed into the .blend: still sent as its JPEG, EXIF and all
    assert addon("job_inputs").image_bytes(photo) == photo.packed_file.data
    truth = _upright(mask, o)
    path = phone_photo["tmp"] / "upright_mask.png"
    Image.fromarray(truth.astype(np.uint8) * 255).save(path)  # made from the viewed photo
    loaded = bpy.data.images.load(str(path))
    assert addon("blender_images").mask_frame(loaded) == "upright"
    s = bpy.context.scene.sam3d
    s.image_source, s.image = "IMAGE", photo
    s.mask_source, s.mask_image = "IMAGE", loaded
    assert np.array_equal(_generate(phone_photo["tmp"]), truth)
