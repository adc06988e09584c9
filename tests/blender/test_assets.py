"""Asset workflows in the real Blender 4.3: the batch builds an asset library that a fresh
Blender finds, previewed and catalogued; a re-run touches only what changed; a single
Generate with "Mark as asset" puts the object among the current file's assets, with its
preview, headless and in the GUI's Asset Browser. Preview engine on the CPU, the real
backend, nothing mocked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.blender.blender_run import REPO, run_blender, run_scenario
from tests.scene_fixture import synthetic_photo

pytestmark = pytest.mark.slow

FAST = ["--engine", "preview", "--target-faces", "2000", "--texture-size", "256"]
CATALOG = "Props/Generated"


def _batch(args: list[str], user: Path, log: Path):
    """``blender --background --python scripts/sam3d_batch.py -- ARGS`` (the checkout's add-on,
    enabled by the script, its backend from the checkout's venv)."""
    return run_blender(
        ["--background", "--python", str(REPO / "scripts" / "sam3d_batch.py"), "--", *args],
        user_dir=user,
        cwd=REPO,
        log=log,
        timeout=600,
    )


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture
def two_photos(tmp_path) -> Path:
    """A manifest of two photos: ``shelf`` (3 objects, the run's catalog) and ``desk`` (2
    objects, its own catalog)."""
    shelf = synthetic_photo(tmp_path / "in" / "shelf", seed=11, n_objects=3)
    desk = synthetic_photo(tmp_path / "in" / "desk", seed=12, n_objects=2)
    manifest = tmp_path / "in" / "manifest.json"
    items = [
        {"id": "shelf", "image": str(shelf), "masks": str(shelf.parent / "masks")},
        {
            "id": "desk",
            "image": str(desk),
            "masks": str(desk.parent / "masks"),
            "catalog": "Props/Desk",
        },
    ]
    manifest.write_text(json.dumps({"items": items}))
    return manifest


def test_batch_builds_an_asset_library_that_a_fresh_blender_finds(
    real_blender, two_photos, tmp_path, shots
):
    out, lib, user = tmp_path / "out", tmp_path / "library", tmp_path / "batch-user"
    args = ["--manifest", str(two_photos), "--out", str(out), *FAST,
            "--asset-library", str(lib), "--catalog", CATALOG, "--author", "Test Studio"]  # fmt: skip
    # Debian's Blender has no USD: asking for it stops before any work, with the reason.
    proc = _batch([*args, "--export", "usdc,fbx"], user, shots / "batch-usd.log")
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "Debian's Blender has no USD" in proc.stdout and not out.exists()

    proc = _batch([*args, "--export", "fbx"], user, shots / "batch.log")
    assert proc.returncode == 0, proc.stdout[-5000:]
    report = json.loads((out / "report.json").read_text())
    items = report["items"]
    assert {k: v["status"] for k, v in items.items()} == {"shelf": "done", "desk": "done"}
    assert sorted(p.name for p in lib.iterdir()) == [
        "blender_assets.cats.txt",
        "desk.blend",
        "shelf.blend",
    ]
    previews = [o["asset"]["preview_s"] for r in items.values() for o in r["objects"]]
    print(
        f"\nbatch: {report['runs'][-1]['wall_s']:.1f} s for 5 objects; preview per object "
        f"{min(previews):.2f}-{max(previews):.2f} s"
    )
    shelf_obj = items["shelf"]["objects"][1]
    fbx = out / shelf_obj["exports"]["fbx"]
    assert fbx.is_file() and b"\x89PNG" in fbx.read_bytes()  # the texture is embedded

    # A fresh Blender (no add-on) with the folder registered as an asset library.
    facts, _ = run_scenario(
        "assets.py",
        [
            "--scenario",
            "library",
            "--library",
            str(lib),
            "--append",
            shelf_obj["name"],
            "--fbx",
            str(fbx),
        ],  # fmt: skip
        tmp_path / "library.json",
        user_dir=tmp_path / "fresh-user",
        log=shots / "library.log",
    )
    assert facts["registered"] == [["SAM 3D test", str(lib)]]
    expected = {"shelf.blend": ("shelf", CATALOG, 3), "desk.blend": ("desk", "Props/Desk", 2)}
    previews_mean = []
    for blend, (ident, catalog, n) in expected.items():
        found = facts["files"][blend]
        names = sorted(o["name"] for o in items[ident]["objects"])
        assert sorted(found["assets_only_listing"]["objects"]) == names  # assets_only finds them
        assert found["assets_only_listing"]["meshes"] == []  # only the objects are assets
        assert len(found["assets"]) == n
        for a in found["assets"]:
            assert a["catalog"] == catalog, a  # the UUID is in the library's catalog file
            assert a["tags"] == ["SAM 3D", "preview", "photo"], a
            assert a["author"] == "Test Studio"
            assert "photo.png" in a["description"] and "seed 0" in a["description"]
            assert "Engine preview" in a["description"] and "m (X x Y x Z" in a["description"]
            w, h = a["preview"]["size"]
            assert (w, h) == (256, 256)
            # a render of the object: a good part of the square, in its varied colours
            assert a["preview"]["opaque"] > 0.1 * w * h, a["preview"]
            assert a["preview"]["colour_spread"] > 0.02, a["preview"]
            previews_mean.append(a["preview"]["mean"])
    assert len({tuple(round(c, 2) for c in m) for m in previews_mean}) == len(previews_mean)
    assert set(facts["catalogs"].values()) == {"Props", CATALOG, "Props/Desk"}
    # appended, as an artist drags it in: textured, at the size it was imported at
    app = facts["appended"]
    assert app["in_scene"] and not app["library"] and app["is_asset"]
    assert app["texture"]["packed"] and app["texture"]["has_colour"]
    assert app["texture"]["size"] == [256, 256]
    assert app["size"] == pytest.approx(shelf_obj["asset"]["size_m"], abs=2e-4)
    assert app["size"] == pytest.approx(app["asset_size"], abs=2e-4)
    assert app["faces"] == shelf_obj["faces"]
    # the FBX brings the same object back: its texture, its size, standing on the origin
    (fbx_obj,) = facts["fbx"]
    assert fbx_obj["texture"]["size"] == [256, 256] and fbx_obj["texture"]["has_colour"]
    assert fbx_obj["size"] == pytest.approx(app["size"], abs=1e-3)
    assert facts["fbx_lowest_z"] == pytest.approx(0.0, abs=1e-4)

    # Re-run, nothing changed: no file of the library is touched.
    before = {p.name: _digest(p) for p in lib.iterdir()}
    proc = _batch([*args, "--export", "fbx"], user, shots / "rerun.log")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert proc.stdout.count("skipped  (done in an earlier run)") == 2
    assert {p.name: _digest(p) for p in lib.iterdir()} == before

    # One item changes (desk: another seed): only its file is rewritten, in place.
    data = json.loads(two_photos.read_text())
    data["items"][1]["seed"] = 7
    two_photos.write_text(json.dumps(data))
    proc = _batch([*args, "--export", "fbx"], user, shots / "changed.log")
    assert proc.returncode == 0, proc.stdout[-3000:]
    after = {p.name: _digest(p) for p in lib.iterdir()}
    assert after["shelf.blend"] == before["shelf.blend"]
    assert after["desk.blend"] != before["desk.blend"]
    assert after["blender_assets.cats.txt"] == before["blender_assets.cats.txt"]
    facts2, _ = run_scenario(
        "assets.py",
        ["--scenario", "library", "--library", str(lib)],
        tmp_path / "library2.json",
        user_dir=tmp_path / "fresh-user-2",
        log=shots / "library2.log",
    )
    desk = facts2["files"]["desk.blend"]["assets"]
    assert len(desk) == 2 and all("seed 7" in a["description"] for a in desk)
    assert all(a["catalog"] == "Props/Desk" for a in desk)
    shelf = facts2["files"]["shelf.blend"]["assets"]
    assert sorted(a["name"] for a in shelf) == sorted(
        a["name"] for a in facts["files"]["shelf.blend"]["assets"]
    )


def test_generate_with_mark_as_asset_headless(installed, user_dir, tmp_path, shots):
    photo = synthetic_photo(tmp_path / "in", seed=11, n_objects=1)
    save_dir = tmp_path / "saved"
    facts, _ = run_scenario(
        "assets.py",
        [
            "--scenario",
            "generate",
            "--photo",
            str(photo),
            "--mask",
            str(photo.parent / "masks" / "0.png"),
            "--catalog",
            "Generated/Single",
            "--save-dir",
            str(save_dir),
        ],  # fmt: skip
        tmp_path / "generate.json",
        user_dir=user_dir,
        log=shots / "generate.log",
    )
    assert facts["result"] == ["FINISHED"]
    obj = facts["object"]
    assert facts["current_file_assets"] == [obj["name"]] == ["photo"]
    assert obj["preview"]["size"] == [256, 256] and obj["preview"]["opaque"] > 6000
    assert obj["tags"] == ["SAM 3D", "preview", "photo"]
    assert obj["size_m"] == pytest.approx(obj["size"], abs=2e-4)
    # an unsaved file has no library yet: the catalog is written when it is first saved
    assert not facts["cats_before_save"]
    assert facts["catalog"] == "Generated/Single"
    assert facts["assets_in_saved_file"] == ["photo"]


def test_gui_mark_as_asset_shows_in_the_asset_browser(user_dir, tmp_path, shots):
    photo = synthetic_photo(tmp_path / "in", seed=11, n_objects=1)
    # the artist's folder already has a catalog of their own
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "blender_assets.cats.txt").write_text(
        "VERSION 1\n\n0e2b3c4d-0000-4000-8000-000000000001:Artist/Own:Artist-Own\n"
    )
    facts, proc = run_scenario(
        "gui.py",
        [
            "--scenario",
            "asset",
            "--shots",
            str(shots),
            "--photo",
            str(photo),
            "--mask",
            str(photo.parent / "masks" / "0.png"),
            "--save-as",
            str(tmp_path / "saved" / "file.blend"),
        ],
        tmp_path / "asset.json",
        user_dir=user_dir,
        gui=True,
        timeout=300,
        log=shots / "blender.log",
    )
    print("\n".join(facts["log"]))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert facts["generate_result"] == ["FINISHED"]
    assert facts["object_asset"] and facts["object_preview"] == [256, 256]
    assert "Marked as an asset in the catalog 'Generated/From the panel'" in facts["notice"]
    (listed,) = facts["browser_assets"]
    assert listed["name"] == "photo" and listed["id_type"] == "OBJECT" and listed["local"]
    assert listed["preview"] == [256, 256]
    assert listed["tags"] == ["SAM 3D", "preview", "photo"]
    assert listed["catalog_id"] == facts["catalog_id"] and facts["catalog_assets"] == ["photo"]
    # the artist's catalog is kept; ours (and its parent) are added to the folder's file
    cats = facts["catalog_file"]
    assert "Artist/Own" in cats and f"{facts['catalog_id']}:Generated/From the panel:" in cats
    assert facts["after_undo_assets"] == [] and facts["after_undo_browser"] == []
