"""Finished GLBs import into real Blender (bpy 4.5 from PyPI) with the texture connected."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gltf_validator import assert_valid  # noqa: E402

from backend.finishing import export_scene_glb, finish_to_glb  # noqa: E402
from backend.options import FinishOptions  # noqa: E402
from backend.reconstruction import Intrinsics, Pose, Reconstruction  # noqa: E402
from tests.synthetic_meshes import icosphere, smooth_color, torus  # noqa: E402

bpy = pytest.importorskip("bpy")


def fresh_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def recon(shape: str, pose: Pose, name: str) -> Reconstruction:
    v, f = torus(160, 80) if shape == "torus" else icosphere(5, radius=0.1)
    return Reconstruction(
        v,
        f,
        smooth_color(v),
        pose=pose,
        intrinsics=Intrinsics.from_fov(800, 600, 50.0),
        meta={"engine": "synthetic", "name": name},
    )


def mesh_objects():
    return [o for o in bpy.context.scene.objects if o.type == "MESH"]


def test_textured_glb_imports_with_texture_connected(tmp_path):
    out = tmp_path / "obj.glb"
    pose = Pose(translation=np.array([0.0, 0.0, -2.0]))
    stats = finish_to_glb(recon("torus", pose, "Torus"), FinishOptions(target_faces=4000), out)
    fresh_scene()
    bpy.ops.import_scene.gltf(filepath=str(out))
    objs = mesh_objects()
    assert len(objs) == 1
    obj = objs[0]
    assert len(obj.data.polygons) == stats["faces"]
    mat = obj.active_material
    assert mat.name.startswith("SAM3D_Material")
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    base = bsdf.inputs["Base Color"]
    assert base.is_linked
    # The importer may route the texture through helper nodes; walk upstream to the image.
    node = base.links[0].from_node
    seen = 0
    while node.type != "TEX_IMAGE" and seen < 5:
        node = next(i for i in node.inputs if i.is_linked).links[0].from_node
        seen += 1
    assert node.type == "TEX_IMAGE"
    assert tuple(node.image.size) == (1024, 1024)
    assert bsdf.inputs["Metallic"].default_value == 0.0
    assert bsdf.inputs["Roughness"].default_value == pytest.approx(1.0)
    assert obj.data.uv_layers.active is not None
    # Node extras arrive as custom properties; the mesh sits in the object frame (no pose).
    assert "sam3d" in obj.keys()
    assert obj.location.length < 1e-6


def test_vertex_colour_glb_imports_with_colour_attribute(tmp_path):
    out = tmp_path / "vc.glb"
    finish_to_glb(
        recon("sphere", Pose(), "Ball"), FinishOptions(target_faces=2000, bake=False), out
    )
    fresh_scene()
    bpy.ops.import_scene.gltf(filepath=str(out))
    obj = mesh_objects()[0]
    assert len(obj.data.color_attributes) >= 1


def test_scene_glb_places_objects_by_pose_and_adds_camera(tmp_path):
    poses = {
        "Torus": Pose(
            rotation=np.array([0.9659258, 0.2588190, 0.0, 0.0]),
            translation=np.array([0.3, 0.1, -2.0]),
            scale=np.array([1.5, 1.5, 1.5]),
        ),
        "Ball": Pose(translation=np.array([-0.4, -0.2, -3.0])),
    }
    parts = []
    for name, pose in poses.items():
        path = tmp_path / f"{name}.glb"
        finish_to_glb(
            recon("torus" if name == "Torus" else "sphere", pose, name),
            FinishOptions(target_faces=1500, texture_size=256),
            path,
        )
        parts.append((name, path))
    cam = Intrinsics.from_fov(800, 600, 50.0)
    out = tmp_path / "scene.glb"
    export_scene_glb(parts, cam, "PhotoCamera", out)
    assert_valid(out)
    fresh_scene()
    bpy.ops.import_scene.gltf(filepath=str(out))
    objs = {o.name: o for o in bpy.context.scene.objects}
    cam_obj = next(o for o in objs.values() if o.type == "CAMERA")
    assert cam_obj.data.angle_y == pytest.approx(np.radians(cam.fov_y_deg), abs=1e-3)
    # Blender's glTF importer converts glTF (Y up) to Blender (Z up): (x, y, z) -> (x, -z, y).
    conv = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    for name, pose in poses.items():
        obj = next(o for o in objs.values() if o.type == "MESH" and o.name.startswith(name))
        expected = conv @ np.asarray(pose.translation)
        np.testing.assert_allclose(np.array(obj.matrix_world.translation), expected, atol=1e-4)
        np.testing.assert_allclose(np.array(obj.matrix_world.to_scale()), pose.scale, atol=1e-4)
        # A vertex maps like the pose says: p_cam = R(s p) + t, all seen through `conv`.
        v_local = np.array(obj.data.vertices[0].co)
        world = np.array(obj.matrix_world) @ np.r_[v_local, 1.0]
        p_obj = conv.T @ v_local  # back to glTF object frame
        np.testing.assert_allclose(world[:3], conv @ pose.apply(p_obj[None])[0], atol=1e-4)
