"""The importer on GLBs made with trimesh: textures, collection, provenance, and placement
checked by projecting the imported mesh through the Blender camera."""

from __future__ import annotations

import io
import time
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Euler, Vector

from backend.reconstruction import Intrinsics, Pose
from tests.addon.helpers import addon, enable_addon, glb_with_node_extras, make_textured_glb

POSE = {
    "rotation_wxyz": list(
        np.array([0.9, 0.2, -0.3, 0.25]) / np.linalg.norm([0.9, 0.2, -0.3, 0.25])
    ),
    "translation": [0.3, -0.2, -5.0],
    "scale": [0.8, 0.8, 0.8],
}
INTRINSICS = {"fx": 600.0, "fy": 600.0, "cx": 300.0, "cy": 260.0, "width": 640, "height": 480}


@pytest.fixture
def importer(tmp_path):
    """The importing modules of the enabled add-on, by the names the tests use."""
    enable_addon()
    bpy.ops.wm.read_homefile(use_empty=True)
    gltf, cameras = addon("importing.gltf"), addon("importing.cameras")
    return SimpleNamespace(
        import_object=addon("importing.object").import_object,
        apply_intrinsics=cameras.apply_intrinsics,
        CAMERA_NAME=cameras.CAMERA_NAME,
        COLLECTION_NAME=gltf.COLLECTION_NAME,
        DECIMATE_NAME=gltf.DECIMATE_NAME,
        ensure_collection=gltf.ensure_collection,
        textured_image=gltf.textured_image,
    )


def _box_glb(path, extras):
    import trimesh

    mesh = trimesh.creation.box(extents=(0.4, 0.8, 0.2))
    mesh.apply_translation((0.1, 0.2, 0.05))  # asymmetric, so a wrong axis shows
    buf = io.BytesIO()
    mesh.export(buf, file_type="glb")
    path.write_bytes(glb_with_node_extras(buf.getvalue(), extras))
    return np.asarray(mesh.vertices)


def _projected_pixels(obj, scene, cam) -> np.ndarray:
    w, h = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for v in obj.data.vertices:
        ndc = world_to_camera_view(scene, cam, obj.matrix_world @ v.co)
        out.append((ndc.x * w, (1.0 - ndc.y) * h))
    return np.array(out)


def _expected_pixels(vertices_gltf) -> np.ndarray:
    pose = Pose.from_dict(POSE)
    return Intrinsics.from_dict(INTRINSICS).project(pose.apply(vertices_gltf))


def _match(got: np.ndarray, want: np.ndarray) -> float:
    d = np.linalg.norm(got[:, None, :] - want[None, :, :], axis=2)
    return float(max(d.min(axis=1).max(), d.min(axis=0).max()))


def test_camera_aligned_placement_projects_like_the_photo(importer, tmp_path):
    verts = _box_glb(tmp_path / "box.glb", {"sam3d": {"pose": POSE, "intrinsics": INTRINSICS}})
    ctx = bpy.context
    obj = importer.import_object(ctx, tmp_path / "box.glb", label="box", placement_mode="CAMERA")
    scene = ctx.scene
    cam = scene.camera
    assert cam is not None and cam.name == importer.CAMERA_NAME
    assert (scene.render.resolution_x, scene.render.resolution_y) == (640, 480)
    err = _match(_projected_pixels(obj, scene, cam), _expected_pixels(verts))
    assert err < 0.05, f"projection differs by {err:.3f} px"
    # In front of the camera, upright: the box's glTF +Y (up) is world +Z for this camera.
    assert obj.matrix_world.translation.y > 4.0
    assert obj["sam3d_placement"] == f"camera:{cam.name}"


def test_camera_aligned_with_an_existing_camera_anywhere(importer, tmp_path):
    verts = _box_glb(tmp_path / "box.glb", {"sam3d": {"pose": POSE, "intrinsics": INTRINSICS}})
    ctx = bpy.context
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    ctx.scene.collection.objects.link(cam)
    cam.location = (3.0, -7.0, 2.5)
    cam.rotation_euler = Euler((1.2, 0.1, 0.6))
    importer.apply_intrinsics(cam, INTRINSICS, ctx.scene)
    ctx.scene.camera = cam
    ctx.view_layer.update()
    obj = importer.import_object(ctx, tmp_path / "box.glb", label="box", placement_mode="CAMERA")
    assert ctx.scene.camera == cam and importer.CAMERA_NAME not in bpy.data.objects
    err = _match(_projected_pixels(obj, ctx.scene, cam), _expected_pixels(verts))
    assert err < 0.05, f"projection differs by {err:.3f} px"


def test_cursor_placement_stands_on_the_cursor(importer, tmp_path):
    _box_glb(tmp_path / "box.glb", {"sam3d": {"pose": POSE}})
    ctx = bpy.context
    ctx.scene.cursor.location = (1.0, 2.0, 3.0)
    obj = importer.import_object(ctx, tmp_path / "box.glb", label="box")
    ctx.view_layer.update()
    corners = np.array([tuple(obj.matrix_world @ Vector(c)) for c in obj.bound_box])
    lo, hi = corners.min(0), corners.max(0)
    assert np.allclose([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]], (1, 2, 3), atol=1e-5)
    # Upright: glTF Y (0.8 m box side) became Blender Z.
    assert hi[2] - lo[2] == pytest.approx(0.8, abs=1e-5)


def test_textured_glb_import(importer, tmp_path):
    extras = {"sam3d": {"pose": POSE, "intrinsics": INTRINSICS, "engine": "preview"}}
    path = make_textured_glb(tmp_path / "sphere.glb", extras=extras)
    ctx = bpy.context
    t0 = time.perf_counter()
    obj = importer.import_object(
        ctx,
        path,
        label="chair",
        provenance={
            "job_id": "abc123",
            "engine": "preview",
            "seed": 7,
            "options": {"engine": "preview", "seed": 7},
            "source_sha256": "f" * 64,
        },
    )
    seconds = time.perf_counter() - t0
    print(f"import of a 20,480-face 1024^2 textured GLB: {seconds:.3f} s")
    assert obj.name == "chair" and obj.data.name == "chair"
    assert len(obj.data.polygons) == 20480
    assert obj.users_collection[0].name == importer.COLLECTION_NAME
    assert ctx.scene.collection.children.get(importer.COLLECTION_NAME) is not None
    image = importer.textured_image(obj)
    assert image is not None and tuple(image.size) == (1024, 1024)
    assert image.packed_file is not None  # travels with the .blend
    mod = obj.modifiers[importer.DECIMATE_NAME]
    assert mod.type == "DECIMATE" and mod.ratio == 1.0
    assert obj["sam3d_job_id"] == "abc123" and obj["sam3d_seed"] == 7
    assert obj["sam3d_source_sha256"] == "f" * 64
    assert '"engine": "preview"' in obj["sam3d_options"]
    assert obj["sam3d"].to_dict()["engine"] == "preview"  # node extras, kept by the importer
    assert ctx.view_layer.objects.active == obj and obj.select_get()
    # The decimate modifier really simplifies, non-destructively.
    mod.ratio = 0.25
    dg = ctx.evaluated_depsgraph_get()
    assert len(obj.evaluated_get(dg).data.polygons) < 0.3 * 20480
    assert len(obj.data.polygons) == 20480


def test_collection_of_another_scene_is_not_linked(importer):
    """A second scene must not get the first scene's "SAM 3D" collection (its objects
    would show up in both scenes)."""
    first = bpy.context.scene
    own = importer.ensure_collection(first)
    assert own.name == importer.COLLECTION_NAME
    assert importer.ensure_collection(first) == own
    second = bpy.data.scenes.new("second")
    got = importer.ensure_collection(second)
    assert got == second.collection
    assert own.name not in second.collection.children
    assert own.name in first.collection.children
    # An unlinked collection of that name (the first scene deleted) is adopted.
    bpy.data.scenes.remove(first)
    third = bpy.data.scenes.new("third")
    assert importer.ensure_collection(third) == own


@pytest.mark.parametrize(
    "intr",
    [
        {"fx": 620.0, "fy": 540.0, "cx": 300.0, "cy": 260.0, "width": 640, "height": 480},
        {"fx": 500.0, "fy": 610.0, "cx": 330.0, "cy": 220.0, "width": 640, "height": 480},
        {"fx": 700.0, "fy": 560.0, "cx": 230.0, "cy": 350.0, "width": 480, "height": 640},
        {"fx": 450.0, "fy": 600.0, "cx": 250.0, "cy": 300.0, "width": 480, "height": 640},
        {"fx": 640.0, "fy": 500.0, "cx": 320.0, "cy": 300.0, "width": 500, "height": 620},
    ],
)
def test_camera_intrinsics_with_non_square_pixels(importer, intr):
    """fx != fy and portrait images: Blender's own projection (calc_matrix_camera with the
    render's pixel aspect) gives the backend's pinhole pixels."""
    ctx = bpy.context
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    ctx.scene.collection.objects.link(cam)
    importer.apply_intrinsics(cam, intr, ctx.scene)
    r = ctx.scene.render
    depsgraph = ctx.evaluated_depsgraph_get()
    proj = np.array(
        cam.calc_matrix_camera(
            depsgraph,
            x=r.resolution_x,
            y=r.resolution_y,
            scale_x=r.pixel_aspect_x,
            scale_y=r.pixel_aspect_y,
        )
    )
    pts = np.array([[0.3, 0.2, -4.0], [-0.5, -0.4, -2.0], [0.0, 0.0, -1.0], [0.6, -0.3, -3.0]])
    clip = (proj @ np.c_[pts, np.ones(len(pts))].T).T
    ndc = clip[:, :2] / clip[:, 3:4]
    w, h = intr["width"], intr["height"]
    got = np.stack([(ndc[:, 0] + 1) / 2 * w, (1 - (ndc[:, 1] + 1) / 2) * h], axis=1)
    want = Intrinsics.from_dict(intr).project(pts)
    assert np.allclose(got, want, atol=1e-3), (got, want)
