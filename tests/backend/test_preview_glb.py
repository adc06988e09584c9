"""The preview engine's GLB passes the Khronos validator and opens in Blender's importer."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gltf_validator import validate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_glb(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    subprocess.run(
        [sys.executable, "scripts/make_example.py", "--out", str(out)], cwd=REPO, check=True
    )
    glb = out / "example.glb"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend",
            "generate",
            "--image",
            str(out / "example_image.png"),
            "--mask",
            str(out / "example_mask.png"),
            "--engine",
            "preview",
            "--out",
            str(glb),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return glb


def test_preview_glb_passes_khronos_validator(demo_glb):
    report = validate(demo_glb)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:5]
    assert report["info"]["totalTriangleCount"] == pytest.approx(20000, rel=0.02)
    assert report["info"]["materialCount"] == 1


def test_preview_glb_imports_into_blender_with_texture(demo_glb):
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("the bpy module (Blender 4.5, Python 3.11 only) is not installed here")
    code = f"""
import bpy
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.import_scene.gltf(filepath={str(demo_glb)!r})
obj = [o for o in bpy.context.scene.objects if o.type == 'MESH'][0]
mat = obj.active_material
bsdf = next(n for n in mat.node_tree.nodes if n.type == 'BSDF_PRINCIPLED')
link = bsdf.inputs['Base Color'].links[0]
img = link.from_node.image
print('RESULT', len(obj.data.polygons), img.size[0], img.size[1])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT"))
    faces, w, h = map(int, line.split()[1:])
    assert abs(faces - 20000) <= 400 and (w, h) == (1024, 1024)
