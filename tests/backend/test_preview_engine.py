"""The preview engine's mesh: closed, oriented, reprojects onto its mask, coloured."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from backend.engines.preview import CAMERA_HEIGHT_M, PreviewEngine, clean_mask, ground_depth
from backend.errors import BackendError
from backend.job_context import JobContext
from backend.options import JobOptions
from backend.reconstruction import Intrinsics


def _scene(h=240, w=320):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(40, 250, w, dtype=np.uint8)[None, :]
    img[..., 2] = 90
    yy, xx = np.mgrid[:h, :w]
    return img, yy, xx


def _reproject_iou(rec, mask) -> float:
    from PIL import Image, ImageDraw

    uv = rec.intrinsics.project(rec.pose.apply(rec.vertices))
    h, w = mask.shape
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for tri in uv[rec.faces]:
        draw.polygon([tuple(p) for p in tri], fill=255)
    proj = np.asarray(canvas) > 127
    return float((proj & mask).sum() / (proj | mask).sum())


def test_disk_becomes_closed_outward_oriented_mesh():
    img, yy, xx = _scene()
    mask = (xx - 160) ** 2 + (yy - 150) ** 2 < 70**2
    rec = PreviewEngine().reconstruct(img, mask, 0, JobOptions(), JobContext())
    rec.validate()
    m = trimesh.Trimesh(rec.vertices, rec.faces, process=False)
    assert m.is_watertight
    assert m.is_winding_consistent
    assert m.volume > 0  # outward normals
    # a disk inflates into a round body: as wide as it is tall, thinner front-to-back
    ext = rec.vertices.max(axis=0) - rec.vertices.min(axis=0)
    assert ext[0] == pytest.approx(ext[1], rel=0.05) and 0.4 * ext[0] < ext[2] < ext[0]
    assert _reproject_iou(rec, mask) > 0.95


def test_islands_and_holes_are_kept_and_specks_dropped():
    img, yy, xx = _scene()
    mask = ((xx - 100) ** 2 + (yy - 150) ** 2 < 50**2) | ((xx - 230) ** 2 + (yy - 150) ** 2 < 40**2)
    hole = (xx - 100) ** 2 + (yy - 150) ** 2 < 15**2
    mask &= ~hole
    specks = np.zeros_like(mask)
    specks[10, 10] = specks[20, 300] = True
    specks[5:7, 200:202] = True
    cleaned = clean_mask(mask | specks)
    assert not cleaned[10, 10] and not cleaned[20, 300]
    assert not cleaned[150, 100]  # the real hole stays open
    rec = PreviewEngine().reconstruct(img, mask | specks, 0, JobOptions(), JobContext())
    m = trimesh.Trimesh(rec.vertices, rec.faces, process=False)
    assert m.is_watertight
    bodies = m.split(only_watertight=False)
    assert len(bodies) == 2
    assert (
        max(b.euler_number for b in bodies) == 2 and min(b.euler_number for b in bodies) == 0
    )  # one torus
    assert _reproject_iou(rec, cleaned) > 0.93


def test_colours_come_from_the_photo_front_and_back():
    img, yy, xx = _scene()
    img[:] = [30, 30, 30]
    mask = (xx - 160) ** 2 + (yy - 150) ** 2 < 60**2
    img[mask] = [220, 180, 20]
    rec = PreviewEngine().reconstruct(img, mask, 0, JobOptions(), JobContext())
    back = rec.vertices[:, 2] < -0.5 * np.abs(rec.vertices[:, 2]).max()
    assert back.sum() > 50
    # no background bleed anywhere, and the back is not black
    assert np.allclose(rec.vertex_colors, [220 / 255, 180 / 255, 20 / 255], atol=0.02)


def test_ground_plane_depth_and_pose():
    intr = Intrinsics.from_fov(400, 300, 55.0)
    near = np.zeros((300, 400), bool)
    near[200:280, 100:150] = True
    far = np.zeros((300, 400), bool)
    far[160:190, 250:270] = True
    zn, _ = ground_depth(near, intr)
    zf, _ = ground_depth(far, intr)
    assert zn == pytest.approx(CAMERA_HEIGHT_M * intr.fy / (280 - 150))
    assert zf > zn
    # the object's lowest point sits on the ground plane y = -camera height
    img = np.full((300, 400, 3), 100, np.uint8)
    rec = PreviewEngine().reconstruct(img, near, 0, JobOptions(), JobContext(), intrinsics=intr)
    pts = rec.pose.apply(rec.vertices)
    assert pts[:, 1].min() == pytest.approx(-CAMERA_HEIGHT_M, rel=0.08)
    assert (pts[:, 2] < 0).all()  # in front of the camera


def test_object_above_horizon_uses_fallback_with_warning():
    img = np.full((300, 400, 3), 100, np.uint8)
    m = np.zeros((300, 400), bool)
    m[20:80, 100:200] = True
    rec = PreviewEngine().reconstruct(img, m, 0, JobOptions(), JobContext())
    assert "horizon" in rec.meta["warnings"][0]


def test_speck_only_mask_is_a_clear_error():
    img = np.full((100, 100, 3), 100, np.uint8)
    m = np.zeros((100, 100), bool)
    m[50, 50] = m[10, 80] = True
    with pytest.raises(BackendError) as e:
        PreviewEngine().reconstruct(img, m, 0, JobOptions(), JobContext())
    assert e.value.code == "empty_mask"


def test_thin_structures_stay_closed():
    img = np.full((200, 200, 3), 100, np.uint8)
    m = np.zeros((200, 200), bool)
    m[20:180, 98:100] = True  # a 2-pixel stick
    m[100:102, 20:180] = True
    rec = PreviewEngine().reconstruct(img, m, 0, JobOptions(), JobContext())
    mesh = trimesh.Trimesh(rec.vertices, rec.faces, process=False)
    assert len(rec.faces) > 0 and mesh.is_watertight


def test_scattered_pixels_fail_only_their_own_part():
    img = np.full((1000, 1000, 3), 100, np.uint8)
    good = np.zeros((1000, 1000), bool)
    good[400:800, 350:650] = True
    scattered = np.zeros((1000, 1000), bool)
    scattered[::40, ::40] = True
    scattered[0:5, 0:5] = True
    out = PreviewEngine().reconstruct_many(img, [good, scattered], 0, JobOptions(), JobContext())
    assert len(out[0].faces) > 0
    assert isinstance(out[1], BackendError) and out[1].code == "empty_mask"
    assert "mask 1" in out[1].message


def _whole_frame_colors(image, mask, u, v):
    """The definition sample_colors must meet: fill the whole frame with the nearest object
    pixel's colour, then sample bilinearly."""
    _, idx = ndimage.distance_transform_edt(~mask, return_indices=True)
    filled = image[idx[0], idx[1]].astype(np.float32) / 255.0
    h, w = mask.shape
    coords = [np.clip(v - 0.5, 0, h - 1), np.clip(u - 0.5, 0, w - 1)]
    cols = [
        ndimage.map_coordinates(filled[..., c], coords, order=1, mode="nearest") for c in range(3)
    ]
    return np.clip(np.stack(cols, axis=1), 0, 1).astype(np.float32)


def test_per_object_work_on_a_window_equals_the_whole_frame():
    """clean_mask and sample_colors work on the object's window of a large photo; the result
    is the whole-frame one, also for an object at the frame's edge."""
    from backend.engines.preview import clean_mask, inflate_silhouette, sample_colors

    rng = np.random.default_rng(3)
    h, w = 900, 1400
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.ogrid[:h, :w]
    for cy, cx in ((400, 700), (120, 60), (850, 1390)):  # middle, near a corner, off the edge
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < 110**2
        mask[cy - 52 : cy - 49, cx - 52 : cx - 49] = False  # a pin-hole: filled
        mask[cy - 40 : cy + 40, cx - 2 : cx + 2] = False  # a slit: kept
        clean = clean_mask(mask)
        assert clean[cy - 50, cx - 50] and not clean[cy - 30, cx]
        verts, _faces = inflate_silhouette(clean)
        u, v = verts[:, 0], verts[:, 1]
        ours = sample_colors(image, clean, u, v)
        assert np.array_equal(ours, _whole_frame_colors(image, clean, u, v))
    # the same mask embedded in a larger frame cleans to the same pixels
    small = np.zeros((300, 300), bool)
    small[50:250, 60:240] = True
    small[140:143, 140:143] = False  # pin-hole
    small[60:70, 0:5] = True  # speck at the border
    big = np.zeros((900, 900), bool)
    big[300:600, 300:600] = small
    assert np.array_equal(clean_mask(big)[300:600, 300:600], clean_mask(small))


def _photo_with_objects(h=600, w=900):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.ogrid[:h, :w]
    masks = [
        (yy - 420) ** 2 + (xx - 200) ** 2 < 90**2,
        (np.abs(yy - 450) < 100) & (np.abs(xx - 520) < 70),
        (yy - 500) ** 2 / 4 + (xx - 760) ** 2 < 60**2,
    ]
    speck = np.zeros((h, w), bool)
    speck[10:12, 10:12] = True
    return image, masks[:2] + [speck] + masks[2:]


def test_objects_in_parallel_equal_one_by_one():
    """reconstruct_many runs two objects at a time; each part equals its own reconstruct
    call (same camera), in order, and a bad mask fails only its own slot."""
    image, masks = _photo_with_objects()
    engine = PreviewEngine()
    many = engine.reconstruct_many(image, masks, 0, JobOptions(), JobContext())
    intr = engine.intrinsics_for(image)
    assert isinstance(many[2], BackendError) and many[2].code == "empty_mask"
    assert "mask 2" in many[2].message
    for i in (0, 1, 3):
        one = engine.reconstruct(image, masks[i], 0, JobOptions(), JobContext(), intr)
        np.testing.assert_array_equal(many[i].vertices, one.vertices)
        np.testing.assert_array_equal(many[i].faces, one.faces)
        np.testing.assert_array_equal(many[i].vertex_colors, one.vertex_colors)
        np.testing.assert_array_equal(many[i].pose.translation, one.pose.translation)


def test_object_from_its_window_equals_the_whole_frame_computation():
    """The engine works on the mask's window; the mesh and colours are those of the
    whole-frame steps (clean, inflate, sample colours)."""
    from backend.engines.preview import inflate_silhouette, sample_colors

    image, masks = _photo_with_objects()
    mask = masks[1]
    rec = PreviewEngine().reconstruct(image, mask, 0, JobOptions(), JobContext())
    clean = clean_mask(mask)
    verts, faces = inflate_silhouette(clean)
    np.testing.assert_array_equal(rec.faces, faces)
    colours = sample_colors(image, clean, verts[:, 0], verts[:, 1])
    np.testing.assert_array_equal(rec.vertex_colors, colours)
    depth, _ = ground_depth(clean, PreviewEngine.intrinsics_for(image))
    assert rec.meta["depth_m"] == depth


def test_masks_are_read_when_their_object_starts():
    """A sequence that loads masks on access is read once per mask (so a scene of large
    masks never holds them all), and cancelling stops the objects not yet started."""
    from collections.abc import Sequence

    from backend.job_context import Cancelled

    image, masks = _photo_with_objects()

    class Loader(Sequence):
        def __init__(self):
            self.reads = []

        def __len__(self):
            return len(masks)

        def __getitem__(self, i):
            self.reads.append(i)
            return masks[i]

    loader = Loader()
    PreviewEngine().reconstruct_many(image, loader, 0, JobOptions(), JobContext())
    assert sorted(loader.reads) == list(range(len(masks)))
    loader = Loader()
    ctx = JobContext(is_cancelled=lambda: len(loader.reads) >= 2)
    with pytest.raises(Cancelled):
        PreviewEngine().reconstruct_many(image, loader, 0, JobOptions(), ctx)
    assert len(loader.reads) < len(masks)
