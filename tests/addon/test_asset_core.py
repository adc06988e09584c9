"""The bpy-free side of assets: the catalog definition file (Blender's format), catalog
paths and UUIDs, which library a .blend's catalogs go to, the metadata an asset carries,
and the batch's asset and export arguments."""

from __future__ import annotations

import uuid

import pytest

from sam3d_blender.core.asset_catalogs import (
    CATALOG_FILE,
    CatalogError,
    CatalogFile,
    catalog_uuid,
    clean_catalog_path,
    library_root_for,
    simple_name,
)
from sam3d_blender.core.asset_metadata import (
    AssetSettings,
    asset_description,
    asset_tags,
    photo_name,
    size_m,
)
from sam3d_blender.core.batch_items import (
    UsageError,
    build_parser,
    check_outputs,
    export_formats,
    load_manifest,
)

#: A catalog file as Blender 4.3 writes it, with an artist's catalogs.
BLENDER_WRITTEN = """\
# This is an Asset Catalog Definition file for Blender.
#
# Empty lines and lines starting with `#` will be ignored.
# The first non-ignored line should be the version indicator.
# Other lines are of the format "UUID:catalog/path/for/assets:simple catalog name"

VERSION 1

313ea471-7c82-4ef3-a8c7-5ae3df2d2a0a:Props:Props
0e2b3c4d-0000-4000-8000-000000000001:Props/Chairs:Props-Chairs
"""


def test_catalog_paths_are_cleaned_as_blender_keeps_them():
    assert clean_catalog_path("  /Props\\\\Chairs// Wooden / ") == "Props/Chairs/Wooden"
    assert clean_catalog_path("a:b/c") == "a-b/c"  # ':' separates the file's fields
    assert clean_catalog_path("///") == "" and clean_catalog_path("") == ""
    assert simple_name("Props/Chairs") == "Props-Chairs"
    # the same path gets the same UUID everywhere, whatever its spelling
    assert catalog_uuid("Props/Chairs") == catalog_uuid(" /Props/Chairs/")
    assert catalog_uuid("Props/Chairs") != catalog_uuid("Props")
    uuid.UUID(catalog_uuid("Props"))


def test_a_new_catalog_file_gets_every_level_in_blenders_format(tmp_path):
    cats = CatalogFile(tmp_path)
    assert cats.catalogs == {} and not cats.path.exists()
    cat = cats.ensure("Props/Generated/Photos")
    assert cat.path == "Props/Generated/Photos" and cat.uuid == catalog_uuid(cat.path)
    lines = (tmp_path / CATALOG_FILE).read_text().splitlines()
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    assert body == [
        "VERSION 1",
        f"{catalog_uuid('Props')}:Props:Props",
        f"{catalog_uuid('Props/Generated')}:Props/Generated:Props-Generated",
        f"{cat.uuid}:Props/Generated/Photos:Props-Generated-Photos",
    ]
    # read back, and asking again writes nothing
    again = CatalogFile(tmp_path)
    assert again.get("Props/Generated/Photos") == cat
    before = cats.path.stat().st_mtime_ns
    assert again.ensure("Props/Generated/Photos") == cat
    assert cats.path.stat().st_mtime_ns == before
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file


def test_an_artists_catalog_file_keeps_its_lines_and_uuids(tmp_path):
    (tmp_path / CATALOG_FILE).write_text(BLENDER_WRITTEN)
    cats = CatalogFile(tmp_path)
    # an existing path keeps the artist's UUID: assets go into their catalog
    assert cats.ensure("Props/Chairs").uuid == "0e2b3c4d-0000-4000-8000-000000000001"
    assert (tmp_path / CATALOG_FILE).read_text() == BLENDER_WRITTEN  # nothing to add
    new = cats.ensure("Props/Chairs/Generated")
    text = (tmp_path / CATALOG_FILE).read_text()
    assert text.startswith(BLENDER_WRITTEN)  # every old line as it was
    assert (
        text[len(BLENDER_WRITTEN) :]
        == f"{new.uuid}:Props/Chairs/Generated:Props-Chairs-Generated\n"
    )
    assert cats.path_of(new.uuid) == "Props/Chairs/Generated"


def test_a_catalog_file_of_another_version_is_left_alone(tmp_path):
    (tmp_path / CATALOG_FILE).write_text("VERSION 2\n\nsomething:new\n")
    with pytest.raises(CatalogError, match="VERSION 2") as info:
        CatalogFile(tmp_path)
    assert info.value.code == "asset_catalog_failed"
    assert (tmp_path / CATALOG_FILE).read_text() == "VERSION 2\n\nsomething:new\n"


def test_a_library_that_is_no_folder_is_a_catalog_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CatalogError, match="cannot read .*Not a directory"):
        CatalogFile(blocker / "library").ensure("Props")
    (tmp_path / "lib").mkdir()
    cats = CatalogFile(tmp_path / "lib")
    (tmp_path / "lib").rmdir()
    (tmp_path / "lib").write_text("replaced by a file")
    with pytest.raises(CatalogError, match="cannot write"):
        cats.ensure("Props")


def test_the_library_of_a_blend_follows_blenders_rule(tmp_path):
    lib = tmp_path / "library"
    blend = lib / "sub" / "chair.blend"
    assert library_root_for(blend, ["", str(tmp_path / "other"), str(lib)]) == lib
    assert library_root_for(tmp_path / "x" / "a.blend", [str(lib)]) == tmp_path / "x"


def test_asset_metadata_from_provenance():
    prov = {
        "engine": "preview",
        "seed": 7,
        "options": '{"quality": "fast", "target_faces": 2000, "bake": true, "texture_size": 256}',
        "source_image": "/data/photos/kitchen chair.JPG",
        "part": 2,
        "job_id": "abc",
    }
    assert photo_name(prov["source_image"]) == "kitchen chair"
    assert photo_name("chair.png") == "chair" and photo_name("") == ""
    assert asset_tags(prov) == ["SAM 3D", "preview", "kitchen chair"]
    assert asset_tags({"engine": "", "source_image": ""}) == ["SAM 3D"]
    size = size_m([0.0, 1.0, -0.5], [0.61234, 1.5, 0.25])
    assert size == [0.6123, 0.5, 0.75]
    text = asset_description(prov, size)
    assert "photo 'kitchen chair.JPG', mask 2" in text
    assert "Engine preview, seed 7; quality fast, 2000 faces, 256 px baked texture" in text
    assert "0.612 x 0.500 x 0.750 m" in text and "Job abc" in text and "\n" not in text
    s = AssetSettings(catalog=" Props//Chairs/ ")
    assert s.catalog == "Props/Chairs"
    assert s.fingerprint() == AssetSettings(catalog="Props/Chairs").fingerprint()
    assert s.fingerprint() != AssetSettings(catalog="Props/Chairs", author="A").fingerprint()


def _args(tmp_path, *extra: str):
    return build_parser().parse_args(["--image", "p.png", "--mask", "m.png",
                                      "--out", str(tmp_path / "out"), *extra])  # fmt: skip


def test_batch_asset_and_export_arguments(tmp_path):
    assert export_formats("fbx, .USDC,fbx") == ["fbx", "usdc"]
    with pytest.raises(UsageError, match="unknown format 'obj'"):
        export_formats("fbx,obj")
    check_outputs(_args(tmp_path, "--asset-library", str(tmp_path / "lib"), "--export", "fbx"))
    cases = {
        "inside": (["--asset-library", str(tmp_path)], "must not be inside"),
        "no assets": (["--asset-library", str(tmp_path / "l"), "--no-assets"], "needs assets"),
        "blend alone": (["--asset-blend", "all.blend"], "give that too"),
        "blend name": (["--asset-library", str(tmp_path / "l"), "--asset-blend", "x"], ".blend"),
        "catalog": (["--catalog", "//"], "names no catalog"),
    }
    for name, (extra, message) in cases.items():
        with pytest.raises(UsageError, match=message):
            check_outputs(_args(tmp_path, *extra))
        print(f"{name}: refused")


def test_manifest_items_may_name_their_catalog(tmp_path):
    (tmp_path / "p.png").write_bytes(b"x")
    (tmp_path / "m.png").write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,image,mask,catalog\na,p.png,m.png,Props/Desk\nb,p.png,m.png,\n")
    items, _ = load_manifest(manifest)
    assert [(i.id, i.catalog) for i in items] == [("a", "Props/Desk"), ("b", None)]
