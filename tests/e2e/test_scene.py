"""Photo to scene, end to end: a Blender-rendered photo with a KNOWN layout -> the real
backend (managed by the add-on) -> N posed objects under one camera in real Blender.

The acceptance figures of issue #6 are measured here: each object's silhouette, projected
through the Blender scene camera (Blender's own projection matrix) and rasterised at pixel
centres, against its mask (IoU), and the objects' depth order against the truth.
Run with ``-s`` to see the table.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.addon.helpers import RecordingLayout, addon, enable_addon
from tests.scene_fixture import load_layout, render_in_subprocess

FAST = {"engine": "preview", "target_faces": 3000, "texture_size": 256}


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scene_fixture")
    render_in_subprocess(out, samples=8)
    return out


@pytest.fixture(scope="module")
def bpy_addon():
    import bpy

    enable_addon()
    yield bpy
    addon("session").reset()  # stop the managed backend started by these tests


@pytest.fixture
def empty_file(bpy_addon):
    bpy_addon.ops.wm.read_homefile(use_empty=True)
    return bpy_addon


def _masks(fixture_dir: Path) -> list[np.ndarray]:
    layout = load_layout(fixture_dir)
    return [np.asarray(Image.open(o.mask)) > 127 for o in layout.objects]


def _scene_objects(bpy, scene):
    meshes = sorted(
        (o for o in scene.objects if o.type == "MESH"), key=lambda o: int(o["sam3d_part"])
    )
    cams = [o for o in scene.objects if o.type == "CAMERA"]
    return meshes, cams


def _measure(bpy, scene, masks):
    """Per object: (part index, IoU of the reprojected silhouette vs its mask, depth of the
    bounding-box centre along the camera axis in metres)."""
    measure, raster = addon("measure"), addon("core.raster")
    meshes, _ = _scene_objects(bpy, scene)
    cam = scene.camera
    rows = []
    with bpy.context.temp_override(scene=scene):
        for ob in meshes:
            i = int(ob["sam3d_part"])
            sil = measure.reprojected_silhouette(bpy.context, ob, cam)
            depth = measure.camera_depth(ob, cam)
            rows.append((i, raster.mask_iou(sil, masks[i]), depth, ob))
    return rows


def test_preview_assumption_is_stated_once(bpy_addon):
    """The Blender side's copy of the preview engine's assumption, the fixture's camera and
    the engine itself agree (Blender never imports the backend)."""
    from backend.engines import preview
    from tests import scene_fixture

    sr = addon("core.scene_result")
    assert sr.PREVIEW_CAMERA_HEIGHT_M == preview.CAMERA_HEIGHT_M == scene_fixture.CAMERA_HEIGHT_M
    assert sr.FALLBACK_FOV_X_DEG == preview.FOV_X_DEG == scene_fixture.FOV_X_DEG


def test_photo_to_scene_matches_masks_and_depth_order(empty_file, fixture_dir, tmp_path):
    bpy = empty_file
    layout = load_layout(fixture_dir)
    masks = _masks(fixture_dir)
    t0 = time.perf_counter()
    result = bpy.ops.sam3d.generate_scene(
        image_path=layout.photo, mask_dir=layout.masks_dir, blocking=True, timeout=300, **FAST
    )
    wall = time.perf_counter() - t0
    assert result == {"FINISHED"}
    scene = bpy.context.scene
    meshes, cams = _scene_objects(bpy, scene)
    assert len(meshes) == len(layout.objects) == 4
    assert len(cams) == 1 and scene.camera == cams[0]
    cam = cams[0]
    # the camera matches the photo: resolution, horizontal FOV, level at the preview height
    assert (scene.render.resolution_x, scene.render.resolution_y) == (480, 360)
    assert cam.data.angle_x == pytest.approx(np.radians(layout.fov_x_deg), abs=1e-4)
    assert cam.matrix_world.translation.z == pytest.approx(layout.camera_height_m)
    bg = cam.data.background_images[0]
    assert cam.data.show_background_images and bg.image is not None
    assert Path(bg.image.filepath).name == "photo.png" and bg.image.packed_file is not None

    rows = _measure(bpy, scene, masks)
    print(f"\nphoto to scene: {len(rows)} objects in {wall:.2f} s (backend start included)")
    print(f"{'object':<8}{'part':>5}{'IoU':>8}{'depth m':>9}{'true m':>8}{'bottom z':>10}")
    for i, iou, depth, ob in rows:
        truth = layout.objects[i]
        bottom = min((ob.matrix_world @ v.co).z for v in ob.data.vertices)
        print(f"{truth.name:<8}{i:>5}{iou:>8.3f}{depth:>9.2f}{truth.depth_m:>8.2f}{bottom:>10.3f}")
        assert iou >= 0.8, f"{truth.name}: IoU {iou:.3f}"
        assert depth == pytest.approx(truth.depth_m, rel=0.15)
        assert abs(bottom) < 0.15, f"{truth.name} does not stand on the ground (z={bottom:.3f})"
    order = [i for i, *_ in sorted(rows, key=lambda r: r[2])]
    true_order = sorted(range(len(layout.objects)), key=lambda i: layout.objects[i].depth_m)
    print(f"depth order {order}, truth {true_order}")
    assert order == true_order

    # the .blend reopens with the same scene
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    meshes, cams = _scene_objects(bpy, scene)
    assert len(meshes) == 4 and len(cams) == 1 and scene.camera == cams[0]
    bg = cams[0].data.background_images[0]
    assert bg.image is not None and bg.image.packed_file is not None and bg.image.size[0] == 480
    again = _measure(bpy, scene, masks)
    assert [round(r[1], 4) for r in again] == [round(r[1], 4) for r in rows]


def test_failed_mask_costs_only_its_part(empty_file, fixture_dir, tmp_path):
    bpy = empty_file
    layout = load_layout(fixture_dir)
    files = [Path(layout.objects[0].mask), Path(layout.objects[2].mask)]
    black = tmp_path / "black.png"
    Image.new("L", (layout.width, layout.height), 0).save(black)
    result = bpy.ops.sam3d.generate_scene(
        image_path=layout.photo,
        files=[{"name": str(p)} for p in [files[0], black, files[1]]],
        blocking=True,
        timeout=300,
        **FAST,
    )
    assert result == {"FINISHED"}
    meshes, cams = _scene_objects(bpy, bpy.context.scene)
    assert [int(o["sam3d_part"]) for o in meshes] == [0, 2]
    assert [o.name for o in meshes] == ["0", "2"]  # named after the mask files
    coll = meshes[0].users_collection[0]
    failed = json.loads(coll["sam3d_failed_parts"])
    assert list(failed) == ["1"] and failed["1"]["code"] == "empty_mask"
    assert len(cams) == 1


def test_masks_from_blender_images_and_panel(empty_file, fixture_dir):
    bpy = empty_file
    layout = load_layout(fixture_dir)
    scene = bpy.context.scene
    s, ss = scene.sam3d, scene.sam3d_scene
    s.image_source = "FILE"
    s.image_path = layout.photo
    s.engine, s.target_faces, s.texture_size = "preview", 3000, "256"
    panel = addon("ui.scene_panel")
    layout_rec = RecordingLayout()
    panel.draw_scene_panel(layout_rec, bpy.context)
    assert "sam3d.generate_scene" in layout_rec.operators
    assert "sam3d.scene_add_masks" in layout_rec.operators
    for o in layout.objects[1:3]:
        img = bpy.data.images.load(o.mask)
        bpy.ops.sam3d.scene_mask_add(image_name=img.name)
    assert len(ss.masks) == 2
    layout_rec = RecordingLayout()
    panel.draw_scene_panel(layout_rec, bpy.context)
    assert layout_rec.props.count("Sam3DSceneMask.image") == 2
    result = bpy.ops.sam3d.generate_scene(blocking=True, timeout=300)
    assert result == {"FINISHED"}
    meshes, _ = _scene_objects(bpy, scene)
    assert [o.name for o in meshes] == ["1", "2"]  # the Blender image names
    rows = _measure(bpy, scene, [_masks(fixture_dir)[1], _masks(fixture_dir)[2]])
    assert all(iou >= 0.8 for _, iou, _, _ in rows), rows
    bpy.ops.sam3d.scene_mask_remove(index=-1)
    assert len(ss.masks) == 0


def _generate_once(bpy, layout):
    """The 4-mask scene job of the fixture, finished (answered from the backend's cache when
    an earlier test ran it); leaves an empty file. Returns the job."""
    result = bpy.ops.sam3d.generate_scene(
        image_path=layout.photo, mask_dir=layout.masks_dir, blocking=True, timeout=300, **FAST
    )
    assert result == {"FINISHED"}
    bpy.ops.wm.read_homefile(use_empty=True)
    return addon("session").get().manager.jobs[-1]


def test_ui_path_imports_when_the_job_ends(empty_file, fixture_dir):
    """Without blocking, the operator returns at once and the timer body imports the scene
    (timers never fire in module mode: call it as Blender would)."""
    bpy = empty_file
    layout = load_layout(fixture_dir)
    timer = addon("timer")
    _generate_once(bpy, layout)
    result = bpy.ops.sam3d.generate_scene(
        image_path=layout.photo, mask_dir=layout.masks_dir, blocking=False, **FAST
    )
    assert result == {"FINISHED"}
    session = addon("session").get()
    job = session.manager.jobs[-1]
    assert job.delivery.value == "timer", "the timer should bring the scene job in"
    deadline = time.monotonic() + 300
    while timer.tick() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job.cached  # the same request as the blocking test: answered from the cache
    assert job.delivery.value == "delivered"
    meshes, cams = _scene_objects(bpy, bpy.context.scene)
    assert len(meshes) == 4 and len(cams) == 1
    assert "4 of 4 objects" in session.notice.text
    timer.stop()


def test_reimport_by_job_id_and_scene_glb(empty_file, fixture_dir):
    """A finished scene job can be imported again by its backend id; its scene GLB holds
    every object as its own node plus the camera."""
    bpy = empty_file
    layout = load_layout(fixture_dir)
    job = _generate_once(bpy, layout)
    result = bpy.ops.sam3d.import_scene(job_id=job.backend_id, image_path=layout.photo)
    assert result == {"FINISHED"}
    meshes, cams = _scene_objects(bpy, bpy.context.scene)
    assert len(meshes) == 4 and len(cams) == 1
    assert cams[0].data.background_images[0].image is not None
    rows = _measure(bpy, bpy.context.scene, _masks(fixture_dir))
    assert min(r[1] for r in rows) >= 0.8
    gltf = _glb_json(job.glb_path)
    names = [n.get("name") for n in gltf["nodes"]]
    assert sum(1 for n in gltf["nodes"] if "mesh" in n) == 4
    assert sum(1 for n in gltf["nodes"] if "camera" in n) == 1, names
    assert gltf["cameras"][0]["perspective"]["aspectRatio"] == pytest.approx(480 / 360)


def test_bad_inputs_are_reported_with_codes(empty_file, tmp_path, fixture_dir):
    bpy = empty_file
    layout = load_layout(fixture_dir)
    with pytest.raises(RuntimeError, match="mask"):
        bpy.ops.sam3d.generate_scene(
            image_path=layout.photo, mask_dir=str(tmp_path / "nowhere"), blocking=True
        )
    empty_dir = tmp_path / "no_masks"
    empty_dir.mkdir()
    with pytest.raises(RuntimeError, match="0.png"):
        bpy.ops.sam3d.generate_scene(image_path=layout.photo, mask_dir=str(empty_dir))
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.sam3d.generate_scene(
            image_path=str(tmp_path / "missing.png"), mask_dir=layout.masks_dir
        )
    assert not [o for o in bpy.context.scene.objects]


def _glb_json(path: Path) -> dict:
    data = Path(path).read_bytes()
    magic, _version, _length = struct.unpack_from("<III", data, 0)
    assert magic == 0x46546C67
    chunk_len, chunk_type = struct.unpack_from("<II", data, 12)
    assert chunk_type == 0x4E4F534A
    return json.loads(data[20 : 20 + chunk_len])
