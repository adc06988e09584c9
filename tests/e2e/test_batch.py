"""``scripts/sam3d_batch.py`` end to end: the real script in its own process (``python
scripts/sam3d_batch.py`` with the bpy module), the add-on enabled as Blender does, its
managed backend, the real glTF importer; then the .blend it wrote, opened in Blender.

Ten items, two deliberately broken: 8 succeed, 2 fail with clear codes; a re-run does no
new work; an interrupted run (report entry and .blend lost) resumes from the backend cache
and the saved GLBs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.addon.helpers import REPO, enable_addon
from tests.scene_fixture import make_batch_set, render_in_subprocess

SCRIPT = REPO / "scripts" / "sam3d_batch.py"
FAST = ["--engine", "preview", "--target-faces", "2000", "--texture-size", "256"]


def batch_process(
    args: list[str], cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the batch script as a user would (``python scripts/sam3d_batch.py ARGS`` in
    ``cwd``, its own Blender user folder); a traceback on stderr fails the test."""
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(cwd / "blender-user")
    for var in ("SAM3D_BACKEND_URL", "SAM3D_BACKEND_TOKEN", "SAM3D_BACKEND_PYTHON"):
        env.pop(var, None)  # the script must find the backend Python itself
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def run_batch(args: list[str], cwd: Path, timeout: float = 600) -> tuple[int, str, float]:
    """:func:`batch_process`; returns (exit status, stdout, seconds)."""
    t0 = time.perf_counter()
    proc = batch_process(args, cwd, timeout)
    return proc.returncode, proc.stdout, time.perf_counter() - t0


def _job_dirs(out: Path) -> set[str]:
    jobs = out / "cache" / "jobs"
    return {p.name for p in jobs.iterdir() if p.is_dir()} if jobs.is_dir() else set()


@pytest.fixture(scope="module")
def batch_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    fixture = root / "fixture"
    render_in_subprocess(fixture, samples=4)
    manifest, expected = make_batch_set(root / "inputs", fixture)
    return root, manifest, expected


def test_batch_of_ten_with_two_broken_then_rerun_and_resume(batch_set):
    root, manifest, expected = batch_set
    out = root / "out"
    rc, stdout, first_s = run_batch(["--manifest", str(manifest), "--out", str(out), *FAST], root)
    print(f"\nfirst run {first_s:.1f} s\n{stdout}")
    assert rc == 1  # some items failed
    report = json.loads((out / "report.json").read_text())
    items = report["items"]
    assert set(items) == set(expected)
    for ident, (status, what) in expected.items():
        rec = items[ident]
        assert rec["status"] == status, (ident, rec.get("error"))
        if status == "failed":
            assert rec["error"]["code"] == what, rec["error"]
            assert rec["error"]["message"]
            assert not (out / "items" / ident).exists()
            continue
        objs = rec["objects"]
        assert len(objs) == what and all(o["state"] == "done" for o in objs)
        assert (out / rec["scene_glb"]).read_bytes()[:4] == b"glTF"
        for o in objs:
            assert (out / o["glb"]).read_bytes()[:4] == b"glTF"
            assert 0 < o["faces"] <= 2000 * 1.05 and o["backend_faces"] == o["faces"]
            assert o["iou"] >= 0.8, (ident, o)
        assert rec["timings"]["total_s"] > 0 and rec["timings"]["per_object_s"] > 0
    summary = report["summary"]
    assert (summary["done"], summary["failed"], summary["skipped"]) == (8, 2, 0)
    # a progress line per item and the summary table
    lines = stdout.splitlines()
    assert sum(1 for ln in lines if ln.startswith("[")) == 10
    assert any("[bad_image]" in ln for ln in lines) and any("[empty_mask]" in ln for ln in lines)
    assert "10 items: 8 done, 0 partial, 2 failed" in stdout
    jobs_after_first = _job_dirs(out)
    blend = out / "batch.blend"
    blend_mtime = blend.stat().st_mtime_ns

    # re-run: nothing new (no backend job, the .blend untouched)
    rc, stdout, rerun_s = run_batch(["--manifest", str(manifest), "--out", str(out), *FAST], root)
    print(f"re-run {rerun_s:.1f} s\n{stdout}")
    assert rc == 1
    report = json.loads((out / "report.json").read_text())
    assert report["runs"][-1]["skipped"] == 10
    assert sum(1 for ln in stdout.splitlines() if ln.startswith("[") and " skipped " in ln) == 10
    assert _job_dirs(out) == jobs_after_first
    assert blend.stat().st_mtime_ns == blend_mtime

    # interrupted run: one item's report entry and the whole .blend are lost
    del report["items"]["synthetic_1"]
    (out / "report.json").write_text(json.dumps(report))
    blend.unlink()
    rc, stdout, resume_s = run_batch(
        ["--", "--manifest", str(manifest), "--out", str(out), *FAST], root
    )
    print(f"resume {resume_s:.1f} s\n{stdout}")
    report = json.loads((out / "report.json").read_text())
    redone = report["items"]["synthetic_1"]
    assert redone["status"] == "done" and redone["cached"] is True  # the backend's cache
    assert _job_dirs(out) == jobs_after_first
    assert report["runs"][-1]["skipped"] == 9
    _check_blend(blend, report, expected)


def _check_blend(blend: Path, report: dict, expected: dict) -> None:
    """The .blend holds one Blender scene per successful item: its objects, ONE camera
    that is the scene camera, with the photo (packed) as its background."""
    import bpy

    enable_addon()
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scenes = {s.name: s for s in bpy.data.scenes}
    done = {k for k, (status, _) in expected.items() if status == "done"}
    assert set(scenes) == done
    for ident in done:
        scene = scenes[ident]
        meshes = [o for o in scene.objects if o.type == "MESH"]
        cams = [o for o in scene.objects if o.type == "CAMERA"]
        assert len(meshes) == expected[ident][1], ident
        assert len(cams) == 1 and scene.camera == cams[0], ident
        bg = cams[0].data.background_images[0].image
        assert bg is not None and bg.packed_file is not None, ident
        names = sorted(o.name for o in meshes)
        assert names == sorted(o["name"] for o in report["items"][ident]["objects"])
    bpy.ops.wm.read_homefile(use_empty=True)


def test_single_image_and_csv_manifest(batch_set):
    """``--image --mask`` (one object) and a CSV manifest with a folder and a file list;
    bad arguments exit with status 2."""
    root, _manifest, _ = batch_set
    fixture = root / "fixture"
    out = root / "out_single"
    rc, stdout, _ = run_batch(
        [
            "--image",
            str(fixture / "photo.png"),
            "--mask",
            str(fixture / "masks" / "2.png"),
            "--out",
            str(out),
            *FAST,
        ],
        root,
    )
    assert rc == 0, stdout
    rec = json.loads((out / "report.json").read_text())["items"]["photo"]
    assert rec["status"] == "done" and len(rec["objects"]) == 1
    csv_path = root / "items.csv"
    csv_path.write_text(
        "id,image,mask,masks,target_faces\n"
        "folder,fixture/photo.png,,fixture/masks,1500\n"
        "list,fixture/photo.png,,fixture/masks/3.png;fixture/masks/0.png,\n"
    )
    out = root / "out_csv"
    rc, stdout, _ = run_batch(["--manifest", str(csv_path), "--out", str(out), *FAST], root)
    assert rc == 0, stdout
    items = json.loads((out / "report.json").read_text())["items"]
    assert len(items["folder"]["objects"]) == 4
    assert items["folder"]["options"]["target_faces"] == 1500
    assert all(o["faces"] <= 1500 * 1.05 for o in items["folder"]["objects"])
    assert len(items["list"]["objects"]) == 2
    assert [Path(m).name for m in items["list"]["masks"]] == ["3.png", "0.png"]
    rc, _, _ = run_batch(["--image", str(fixture / "photo.png"), "--out", str(out)], root)
    assert rc == 2
