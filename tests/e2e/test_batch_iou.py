"""The batch report's IoU on its coarse grid (``sam3d_blender/batch_iou.py``) against the
same IoU at the mask's full resolution: both computed here, for objects large and small,
masks larger than the render (a 27 MP photo worked at 16 MP) and at its size, alpha masks.
Run with ``-s`` to see both figures and their times."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.addon.helpers import addon, enable_addon


@pytest.fixture(scope="module")
def bpy_addon():
    import bpy

    enable_addon()
    yield bpy
    addon("session").reset()


def full_resolution_iou(bpy, obj, cam, mask_path: Path) -> float:
    """The reference: the silhouette rasterised at every pixel centre of the mask, against
    the mask decoded at full size (brightness > 50%, or alpha when it has any)."""
    measure, raster = addon("measure"), addon("core.raster")
    px, tris, depth = measure.project_object(bpy.context, obj, cam)
    tris = tris[(depth[tris] > 0).all(axis=1)]
    r = bpy.context.scene.render
    with Image.open(mask_path) as im:
        mw, mh = im.size
        mask = np.asarray(im.getchannel("A") if im.mode == "RGBA" else im.convert("L")) > 127
    scaled = px * np.array([mw / r.resolution_x, mh / r.resolution_y])
    return raster.mask_iou(raster.rasterize_triangles(scaled, tris, mw, mh), mask)


def scene_with_sphere(bpy, render: tuple[int, int], centre: tuple[float, float], radius: float):
    """A camera at the origin looking down -Y (render ``render`` px, 55 degrees across) and
    a UV sphere whose centre projects near ``centre`` (fractions of the frame)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = render
    scene.render.resolution_percentage = 100
    cam_data = bpy.data.cameras.new("cam")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.angle_x = math.radians(55)
    cam = bpy.data.objects.new("cam", cam_data)
    cam.rotation_euler = (math.radians(90), 0, 0)  # looking along +Y
    scene.collection.objects.link(cam)
    scene.camera = cam
    depth = 4.0
    half_w = depth * math.tan(math.radians(27.5))
    half_h = half_w * render[1] / render[0]
    x = (centre[0] * 2 - 1) * half_w
    z = (1 - centre[1] * 2) * half_h
    bpy.ops.mesh.primitive_uv_sphere_add(
        segments=96, ring_count=48, radius=radius, location=(x, depth, z)
    )
    obj = bpy.context.active_object
    obj.scale = (1.0, 1.0, 1.3)  # an upright ellipsoid
    bpy.context.view_layer.update()
    return obj, cam


def draw_mask(
    path: Path, size: tuple[int, int], box: tuple[float, float, float, float], alpha: bool
):
    """A mask of ``size`` holding an ellipse in ``box`` (fractions of the frame) with a
    notch cut out: close to the object's silhouette but not equal to it."""
    w, h = size
    m = Image.new("L", size, 0)
    d = ImageDraw.Draw(m)
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    d.ellipse((x0, y0, x1, y1), fill=255)
    d.rectangle((x0, (y0 + y1) / 2, x0 + (x1 - x0) * 0.25, y0 + (y1 - y0) * 0.6), fill=0)
    if alpha:
        rgba = Image.new("RGBA", size, (255, 255, 255, 0))
        rgba.putalpha(m)
        rgba.save(path)
    else:
        m.save(path)


CASES = [
    # (render px, mask px, sphere centre, radius m, mask box, alpha)
    ((4618, 3464), (6000, 4500), (0.3, 0.6), 0.35, (0.25, 0.47, 0.36, 0.74), False),
    ((4618, 3464), (6000, 4500), (0.7, 0.4), 0.12, (0.68, 0.36, 0.72, 0.44), False),
    ((1200, 900), (1200, 900), (0.5, 0.5), 0.5, (0.4, 0.3, 0.6, 0.7), True),
    ((960, 720), (2880, 2160), (0.45, 0.55), 0.3, (0.38, 0.43, 0.52, 0.68), False),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_coarse_iou_agrees_with_full_resolution(bpy_addon, tmp_path, case):
    bpy = bpy_addon
    batch_iou = addon("batch_iou")
    render, mask_size, centre, radius, box, alpha = CASES[case]
    obj, cam = scene_with_sphere(bpy, render, centre, radius)
    path = tmp_path / "0.png"
    draw_mask(path, mask_size, box, alpha)
    t0 = time.perf_counter()
    coarse = batch_iou.object_iou(bpy.context, obj, cam, path)
    t1 = time.perf_counter()
    full = full_resolution_iou(bpy, obj, cam, path)
    t2 = time.perf_counter()
    print(
        f"mask {mask_size}: coarse {coarse:.4f} in {t1 - t0:.2f} s, full {full:.4f} in {t2 - t1:.2f} s"
    )
    assert coarse is not None and 0.3 < full < 0.99  # a real overlap, not a trivial one
    assert abs(coarse - full) <= 0.01, (coarse, full)


def test_the_grid_is_coarse_for_large_photos_and_fine_for_small_objects(bpy_addon):
    grid = addon("batch_iou").iou_grid
    assert grid((6000, 4500), 1000) == (1000, 750)  # never over 1024 cells on a side...
    assert grid((6000, 4500), 500) == (2000, 1500)  # ...unless the object needs them
    assert grid((6000, 4500), 100) == (6000, 4500)
    assert grid((960, 720), 300) == (960, 720)


def test_masks_are_sampled_ahead_on_the_grid_their_own_extent_needs(bpy_addon, tmp_path):
    """The batch samples an item's masks while the backend works (``MaskGrids``): a large
    object's mask of a 27 MP photo on the coarsest grid, a small one's on a finer grid
    (read again), an unreadable file as no IoU rather than an error."""
    batch_iou = addon("batch_iou")
    large, small, broken = tmp_path / "0.png", tmp_path / "1.png", tmp_path / "2.png"
    draw_mask(large, (6000, 4500), CASES[0][4], False)  # 660 x 1215 px
    draw_mask(small, (6000, 4500), CASES[1][4], False)  # 240 x 360 px
    broken.write_bytes(b"not a picture")
    grids = batch_iou.MaskGrids([large, small, broken])
    prepared = 0
    while grids.prepare_next():
        prepared += 1
    assert prepared == 3 and not grids.prepare_next()
    assert grids.get(0).size == (1000, 750)  # 1215 // 128 = 9 >= 6: the coarsest grid
    assert grids.get(1).size == (3000, 2250)  # 360 // 128 = 2 cells per grid cell
    assert grids.get(0).cells.sum() > 0 and grids.get(1).cells.sum() > 0
    assert grids.get(2) is None and grids.get(3) is None  # unreadable; no such mask
    obj, cam = scene_with_sphere(bpy_addon, CASES[1][0], CASES[1][2], CASES[1][3])
    assert batch_iou.object_iou(bpy_addon.context, obj, cam, grids.get(1)) == (
        batch_iou.object_iou(bpy_addon.context, obj, cam, small)
    )
    assert batch_iou.object_iou(bpy_addon.context, obj, cam, grids.get(2)) is None
