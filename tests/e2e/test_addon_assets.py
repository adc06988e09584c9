"""Assets with the bpy module (Blender 4.5): "Mark as asset" on Generate and on a photo's
scene, the catalog file next to the saved file, a library that cannot take the catalog,
and the batch's asset library (one file for all) with USD and FBX exports read back by
Blender's own importers. The real backend, the real add-on; nothing mocked."""

from __future__ import annotations

import json
import time
from array import array
from types import SimpleNamespace

import bpy
import pytest
from mathutils import Vector

from tests.addon.helpers import RecordingLayout, addon, enable_addon, fresh_file, preferences
from tests.e2e.test_batch import batch_process
from tests.scene_fixture import synthetic_photo

FAST = {"engine": "preview", "target_faces": 3000, "texture_size": 256}


@pytest.fixture
def blender(tmp_path):
    fresh_file(tmp_path / "cache")
    preferences().asset_author = "Test Author"
    photo = synthetic_photo(tmp_path / "in", seed=21, n_objects=2)
    yield {"photo": photo, "masks": photo.parent / "masks", "tmp": tmp_path}
    preferences().asset_author = ""
    addon("session").get().shutdown()


def _preview(obj: bpy.types.Object) -> tuple[list[int], int]:
    """(size, opaque pixels) of ``obj``'s preview image."""
    pv = obj.preview
    w, h = pv.image_size
    px = array("f", bytes(4 * w * h * 4))
    pv.image_pixels_float.foreach_get(px)
    return [w, h], sum(1 for a in px[3::4] if a > 0.5)


def _counts() -> dict[str, int]:
    kinds = ("scenes", "objects", "cameras", "lights", "worlds", "images", "meshes")
    return {k: len(getattr(bpy.data, k)) for k in kinds}


def test_generate_marks_an_asset_then_saving_writes_its_catalog(blender):
    photo, tmp = blender["photo"], blender["tmp"]
    bpy.ops.ed.undo_push(message="before generate")
    before = _counts()
    t0 = time.perf_counter()
    result = bpy.ops.sam3d.generate(
        image_path=str(photo),
        mask_path=str(blender["masks"] / "0.png"),
        mark_asset=True,
        asset_catalog="Generated/Chairs",
        **FAST,
    )
    print(f"\nGenerate + mark as asset: {time.perf_counter() - t0:.2f} s")
    assert result == {"FINISHED"}
    obj = bpy.data.objects["photo"]
    data = obj.asset_data
    assert data is not None and obj.use_fake_user
    assert [t.name for t in data.tags] == ["SAM 3D", "preview", "photo"]
    assert data.author == "Test Author"
    assert "photo 'photo.png'" in data.description and "seed 0" in data.description
    size, opaque = _preview(obj)
    assert size == [256, 256] and opaque > 0.1 * 256 * 256
    assert list(data["sam3d_size_m"]) == pytest.approx(list(obj.dimensions), abs=2e-4)
    assert (
        "Marked as an asset in the catalog 'Generated/Chairs'" in addon("session").get().notice.text
    )
    # the preview's temporary scene, camera, light, world and render left no trace
    after = _counts()
    assert after == {**before, "objects": before["objects"] + 1, "meshes": before["meshes"] + 1,
                     "images": before["images"] + 1}  # fmt: skip
    # a file never saved has no library yet: saving it writes the catalog next to it
    folder = tmp / "saved"
    folder.mkdir()
    blend = folder / "chairs.blend"
    assert bpy.ops.wm.save_as_mainfile(filepath=str(blend)) == {"FINISHED"}
    CatalogFile = addon("core.asset_catalogs").CatalogFile
    cats = CatalogFile(folder)
    assert cats.path_of(data.catalog_id) == "Generated/Chairs"
    assert cats.get("Generated") is not None
    copy = tmp / "copy.blend"  # Blender 4.5 loads no data-blocks from the open file itself
    copy.write_bytes(blend.read_bytes())
    with bpy.data.libraries.load(str(copy), assets_only=True) as (src, _dst):
        assert list(src.objects) == ["photo"]
    job_id = obj["sam3d_job_id"]
    # one Undo takes the object (and the asset) away again
    bpy.ops.ed.undo()
    assert "photo" not in bpy.data.objects
    # a re-import may be marked too; without Cycles there is no preview, and the artist is
    # told why (the object is an asset all the same)
    import addon_utils

    addon_utils.disable("cycles", default_set=False)
    try:
        result = bpy.ops.sam3d.import_result(job_id=job_id, mark_asset=True)
    finally:
        addon_utils.enable("cycles", default_set=False)
    assert result == {"FINISHED"}
    (again,) = [o for o in bpy.context.scene.objects if o.get("sam3d_job_id") == job_id]
    assert again.asset_data is not None  # in the preferences' catalog, added to the file's
    assert CatalogFile(folder).path_of(again.asset_data.catalog_id) == "SAM 3D"
    assert again.preview is None or tuple(again.preview.image_size) == (0, 0)
    notice = addon("session").get().notice
    assert notice.level == "WARNING" and "the Cycles add-on is disabled" in notice.text


def test_generate_scene_marks_each_object_and_the_panel_offers_it(blender):
    ctx = bpy.context
    settings = ctx.scene.sam3d
    settings.mark_asset = True
    settings.asset_catalog = ""  # the preferences' catalog
    preferences().asset_catalog = "Studio/Scans"
    rec = RecordingLayout()
    for cls in addon("ui.panels").classes:
        cls.draw(SimpleNamespace(layout=rec), ctx)
    assert {"Sam3DSettings.mark_asset", "Sam3DSettings.asset_catalog"} <= set(rec.props)
    # the library's catalog file cannot be read: the objects are assets all the same, and
    # the artist is told why they have no catalog
    library = blender["tmp"] / "library"
    library.mkdir()
    (library / "blender_assets.cats.txt").write_text("VERSION 99\n")
    ctx.preferences.filepaths.asset_libraries.new(name="broken", directory=str(library))
    try:
        bpy.ops.wm.save_as_mainfile(filepath=str(library / "scene.blend"))
        result = bpy.ops.sam3d.generate_scene(
            image_path=str(blender["photo"]), mask_dir=str(blender["masks"]), **FAST
        )
    finally:
        libs = ctx.preferences.filepaths.asset_libraries
        libs.remove(libs["broken"])
        preferences().asset_catalog = "SAM 3D"
    assert result == {"FINISHED"}
    objs = [o for o in ctx.scene.objects if o.type == "MESH" and "sam3d_part" in o]
    assert len(objs) == 2 and all(o.asset_data is not None for o in objs)
    nil = "00000000-0000-0000-0000-000000000000"  # "Unassigned", where the artist finds them
    assert all(o.asset_data.catalog_id == nil for o in objs)
    for o in objs:
        assert _preview(o)[0] == [256, 256]
        assert f"mask {o['sam3d_part']}" in o.asset_data.description
    notice = addon("session").get().notice
    assert (
        notice.level == "WARNING"
        and "Marked as 2 assets in the catalog 'Studio/Scans'" in notice.text
    )
    assert "'Studio/Scans' could not be added" in notice.text and "VERSION 99" in notice.text
    assert (library / "blender_assets.cats.txt").read_text() == "VERSION 99\n"  # left alone


def test_batch_one_file_library_with_usd_and_fbx(tmp_path):
    photo = synthetic_photo(tmp_path / "in", seed=21, n_objects=2)
    out, lib = tmp_path / "out", tmp_path / "lib"
    # a library folder that cannot be made stops the batch before any work, with why
    (tmp_path / "a file").write_text("x")
    proc = batch_process(["--image", str(photo), "--masks", str(photo.parent / "masks"),
                   "--out", str(out), "--asset-library", str(tmp_path / "a file" / "lib")],
                  tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "asset library folder cannot be written" in proc.stderr
    assert not out.exists()
    args = ["--image", str(photo), "--masks", str(photo.parent / "masks"), "--out", str(out),
            "--engine", "preview", "--target-faces", "2000", "--texture-size", "256",
            "--asset-library", str(lib), "--asset-blend", "all.blend",
            "--catalog", "Scans", "--export", "usdc,fbx"]  # fmt: skip
    t0 = time.perf_counter()
    proc = batch_process(args, tmp_path)
    print(f"\nbatch with assets, library and exports: {time.perf_counter() - t0:.1f} s")
    print(proc.stdout[-1500:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in lib.iterdir()) == ["all.blend", "blender_assets.cats.txt"]
    item = json.loads((out / "report.json").read_text())["items"]["photo"]
    assert item["asset_file"] == str(lib / "all.blend") and item["output_errors"] == []
    objs = item["objects"]
    assert all(o["asset"]["catalog"] == "Scans" and o["asset"]["preview_s"] > 0 for o in objs)
    enable_addon()
    bpy.ops.wm.read_homefile(use_empty=True)
    with bpy.data.libraries.load(str(lib / "all.blend"), assets_only=True) as (src, _dst):
        assert sorted(src.objects) == sorted(o["name"] for o in objs)
    # USD and FBX, read back by Blender's own importers: textured, the same size, standing
    # on the origin
    o = objs[0]
    for fmt, importer in (("usdc", bpy.ops.wm.usd_import), ("fbx", bpy.ops.import_scene.fbx)):
        bpy.ops.wm.read_homefile(use_empty=True)
        path = out / o["exports"][fmt]
        assert importer(filepath=str(path)) == {"FINISHED"}
        (mesh,) = [m for m in bpy.context.scene.objects if m.type == "MESH"]
        bpy.context.view_layer.update()
        image = addon("importing.gltf").textured_image(mesh)
        assert image is not None and tuple(image.size) == (256, 256), fmt
        corners = [mesh.matrix_world @ Vector(c) for c in mesh.bound_box]
        dims = [max(c[i] for c in corners) - min(c[i] for c in corners) for i in range(3)]
        assert dims == pytest.approx(o["asset"]["size_m"], abs=1e-3), fmt
        assert min(c[2] for c in corners) == pytest.approx(0.0, abs=1e-4), fmt
    assert (out / "items" / "photo" / "textures").is_dir()  # USD's texture files

    # a re-run changes nothing: the one-file library is not rewritten
    mtime = (lib / "all.blend").stat().st_mtime_ns
    proc = batch_process(args, tmp_path)
    assert proc.returncode == 0 and "skipped  (done in an earlier run)" in proc.stdout
    assert (lib / "all.blend").stat().st_mtime_ns == mtime
    # another catalog: the assets move, without any new job
    proc = batch_process([*args[:-4], "--catalog", "Scans/Again", "--export", "usdc,fbx"], tmp_path)
    assert proc.returncode == 0 and "its assets and exports updated" in proc.stdout
    assert (lib / "all.blend").stat().st_mtime_ns != mtime
    item = json.loads((out / "report.json").read_text())["items"]["photo"]
    assert all(o["asset"]["catalog"] == "Scans/Again" for o in item["objects"])
    bpy.ops.wm.read_homefile(use_empty=True)
