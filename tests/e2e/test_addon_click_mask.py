"""Click-to-mask in the add-on (bpy 4.5 module, the real managed backend): the clicks go
to ``POST /masks`` in a background thread, the answer becomes a packed Blender image and
the overlay's pixels, accepting makes it the panel's mask, and Generate uses it. Modal
operators don't run in module mode: the tool's own steps are driven here; the real GUI
tier (tests/blender/test_gui.py) clicks in a real Image Editor."""

from __future__ import annotations

import bpy
import numpy as np
import pytest

from tests.addon.helpers import addon, fresh_file, make_photo


@pytest.fixture
def blender(tmp_path):
    fresh_file(tmp_path / "cache")
    photo, mask_path, mask = make_photo(tmp_path / "in")
    yield {"photo": photo, "mask": mask, "tmp": tmp_path}
    addon("session").get().shutdown()


def _client():
    """The tool's client getter, with the add-on's timer body run as Blender would."""
    addon("timer").tick()
    return addon("operators.masking").backend_client()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


def test_clicks_make_the_panels_mask_and_generate_uses_it(blender):
    ctx = bpy.context
    photo = bpy.data.images.load(str(blender["photo"]))
    truth = blender["mask"]
    clicks_mod, accept = addon("masking.clicks"), addon("masking.accept")
    clicks = clicks_mod.ClickMask(
        addon("job_inputs").image_bytes(photo), tuple(photo.size), "grabcut"
    )
    # a click in the Image Editor's view coordinates (v up) -> pixels (y down)
    ys, xs = np.nonzero(truth)
    u, v = (xs.mean() + 0.5) / photo.size[0], 1.0 - (ys.mean() + 0.5) / photo.size[1]
    x, y = clicks_mod.view_to_pixel(u, v, tuple(photo.size))
    assert abs(x - xs.mean() - 0.5) < 1e-6 and abs(y - ys.mean() - 0.5) < 1e-6
    assert not clicks.add_point(-1, 5) and not clicks.add_point(320, 5)  # outside: ignored
    assert clicks.add_point(x, y, positive=True)
    assert clicks.wait(_client, timeout=90), clicks.error
    first = clicks.shown.answer
    assert first.engine == "grabcut" and not first.cached and first.size == (320, 240)
    preview = accept.load_mask_image(clicks.shown, None)
    assert preview.packed_file is not None
    got = accept.mask_of(preview)
    assert got.shape == truth.shape and _iou(got, truth) > 0.9
    rgba = accept.overlay_rgba(got)
    assert rgba.shape == (240, 320, 4) and rgba[..., 3].max() > 0
    assert np.array_equal(rgba[::-1][..., 3] > 0, got)  # the overlay is bottom row first
    # a second click (background) and a box: the photo is named by id, not uploaded again
    assert clicks.add_point(5, 5, positive=False)
    assert clicks.set_box(300, 230, 40, 10)  # any two corners
    assert clicks.box == (40, 10, 300, 230)
    assert clicks.wait(_client, timeout=60), clicks.error
    assert clicks.shown.answer.cached and clicks.requests == 2
    old = preview.name
    preview = accept.load_mask_image(clicks.shown, preview)
    assert old not in bpy.data.images or bpy.data.images[old] == preview
    # undo of a click, then a box-only prompt
    assert clicks.undo() and clicks.undo() and clicks.points == []
    assert clicks.box is not None and clicks.has_prompt
    # Enter: the panel's mask; Generate takes it
    mask_img = accept.accept(ctx, preview, photo, "PANEL")
    s = ctx.scene.sam3d
    assert s.mask_source == "IMAGE" and s.mask_image == mask_img and s.image == photo
    assert mask_img.name == "photo.png mask"
    clicks.close()
    result = bpy.ops.sam3d.generate(engine="preview", target_faces=3000, texture_size=256)
    assert result == {"FINISHED"}
    job = addon("session").get().manager.jobs[-1]
    assert job.request.mask_count == 1
    objs = [o for o in bpy.data.collections["SAM 3D"].objects if o.type == "MESH"]
    assert len(objs) == 1


def test_bad_clicks_come_back_as_the_backends_coded_error(blender):
    photo = bpy.data.images.load(str(blender["photo"]))
    clicks_mod = addon("masking.clicks")
    clicks = clicks_mod.ClickMask(addon("job_inputs").image_bytes(photo), (640, 480), "grabcut")
    assert clicks.add_point(600, 400)  # inside what the tool was told, outside the photo
    assert not clicks.wait(_client, timeout=90)
    assert clicks.error.code == "bad_prompt" and clicks.error.status == 422
    assert clicks.error.details["reason"] == "outside_image"
    c = _client()
    with pytest.raises(addon("core.client").BackendClientError) as exc:
        c.create_mask({"points": [{"x": 10, "y": 10}]}, image_id="f" * 32)
    assert exc.value.code == "not_found"


def test_the_tool_only_runs_in_an_image_editor(blender):
    assert not bpy.ops.sam3d.click_mask.poll()
    panel = addon("masking.panel").SAM3D_PT_click_mask
    assert panel.bl_space_type == "IMAGE_EDITOR"
