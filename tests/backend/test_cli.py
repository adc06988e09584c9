"""``python -m backend generate`` and ``doctor`` as a pipeline would call them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import trimesh

from tests.backend.conftest import REPO, disk_scene, png_bytes


def _run(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def test_generate_writes_glb_and_report(tmp_path: Path):
    img, mask = disk_scene()
    (tmp_path / "i.png").write_bytes(png_bytes(img))
    (tmp_path / "m.png").write_bytes(png_bytes(mask.astype(np.uint8) * 255))
    out = tmp_path / "sub" / "o.glb"
    r = _run(
        "generate",
        "--image",
        str(tmp_path / "i.png"),
        "--mask",
        str(tmp_path / "m.png"),
        "--target-faces",
        "3000",
        "--texture-size",
        "512",
        "--out",
        str(out),
        "--report",
        str(tmp_path / "r.json"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out.resolve())
    # not a terminal: plain progress lines, stage by stage
    lines = [line for line in r.stderr.splitlines() if line.startswith("progress")]
    stages = {line.split()[-1] for line in lines}
    assert {"reconstruct", "simplify", "uv", "bake", "export"} <= stages
    mesh = next(iter(trimesh.load(out, file_type="glb").geometry.values()))
    assert abs(len(mesh.faces) - 3000) <= 60
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["stats"]["texture_size"] == 512 and rep["engine"] == "preview"


def test_generate_bad_input_exit_codes(tmp_path: Path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    r = _run("generate", "--image", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o.glb"))
    assert r.returncode == 2 and "error [bad_image]" in r.stderr
    r = _run("generate", "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o.glb"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    img, mask = disk_scene()
    (tmp_path / "i.png").write_bytes(png_bytes(img))
    r = _run(
        "generate",
        "--image",
        str(tmp_path / "i.png"),
        "--texture-size",
        "999",
        "--out",
        str(tmp_path / "o.glb"),
    )
    assert r.returncode == 2 and "texture_size" in r.stderr
    r = _run(
        "generate",
        "--image",
        str(tmp_path / "i.png"),
        "--engine",
        "sam3d",
        "--out",
        str(tmp_path / "o.glb"),
    )
    assert r.returncode == 2 and "engine_unavailable" in r.stderr


def _scene_files(folder: Path, first_mask: str = "0.png") -> np.ndarray:
    """``folder/i.png`` and two masks in ``folder/masks`` (the first named ``first_mask``,
    in the format its suffix says); returns the image."""
    from PIL import Image

    img, m0 = disk_scene()
    m1 = np.zeros_like(m0)
    m1[100:170, 10:60] = True
    (folder / "masks").mkdir()
    Image.fromarray(m0.astype(np.uint8) * 255).save(folder / "masks" / first_mask, quality=95)
    (folder / "masks" / "1.png").write_bytes(png_bytes(m1.astype(np.uint8) * 255))
    (folder / "i.png").write_bytes(png_bytes(img))
    return img


def test_generate_scene_from_mask_folder(tmp_path: Path):
    _scene_files(tmp_path)
    out = tmp_path / "scene.glb"
    r = _run(
        "generate",
        "--image",
        str(tmp_path / "i.png"),
        "--masks",
        str(tmp_path / "masks"),
        "--target-faces",
        "1000",
        "--no-bake",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert len(trimesh.load(out, file_type="glb").geometry) == 2
    assert (tmp_path / "scene_0.glb").is_file() and (tmp_path / "scene_1.glb").is_file()


def test_generate_scene_from_jpeg_masks_with_the_apis_defaults(tmp_path: Path):
    """A mask folder holds the image types the add-on accepts (JPEG too); options left out
    are JobOptions' defaults, as for a request to the server."""
    from backend.options import JobOptions

    img = _scene_files(tmp_path, first_mask="0.jpg")
    out = tmp_path / "scene.glb"
    r = _run(
        "generate",
        "--image",
        str(tmp_path / "i.png"),
        "--masks",
        str(tmp_path / "masks"),
        "--out",
        str(out),
        "--report",
        str(tmp_path / "r.json"),
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [p["state"] for p in rep["parts"]] == ["done", "done"]
    defaults = JobOptions(engine="preview").model_dump(mode="json")
    assert rep["options"] == defaults
    assert rep["input"]["size"] == [img.shape[1], img.shape[0]] and len(rep["id"]) == 32
    none = tmp_path / "none"
    r = _run(
        "generate", "--image", str(tmp_path / "i.png"), "--masks", str(none), "--out", str(out)
    )
    assert r.returncode == 2 and "error [bad_mask]" in r.stderr and "does not exist" in r.stderr


def test_doctor_explains_sam3d(tmp_path: Path):
    import os

    r = _run("doctor", env={**os.environ, "SAM3D_CHECKPOINTS": str(tmp_path / "ckpt")})
    assert r.returncode == 0
    assert "preview   available" in r.stdout
    assert "sam3d     UNAVAILABLE" in r.stdout
    assert "auto picks:   preview" in r.stdout
    r = _run("doctor", "--json", env={**os.environ, "SAM3D_CHECKPOINTS": str(tmp_path / "ckpt")})
    info = json.loads(r.stdout)
    assert info["engines"]["sam3d"]["available"] is False and info["engines"]["sam3d"]["reason"]


def test_generate_refuses_an_unwritable_out_before_working(tmp_path: Path):
    img, mask = disk_scene()
    (tmp_path / "i.png").write_bytes(png_bytes(img))
    (tmp_path / "m.png").write_bytes(png_bytes(mask.astype(np.uint8) * 255))
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path, tmp_path / "afile" / "o.glb"):
        r = _run(
            "generate",
            "--image",
            str(tmp_path / "i.png"),
            "--mask",
            str(tmp_path / "m.png"),
            "--out",
            str(out),
        )
        assert r.returncode == 2 and "cannot write the output file" in r.stderr
        assert "Traceback" not in r.stderr and "progress" not in r.stderr


def test_parent_that_is_a_zombie_counts_as_gone(tmp_path: Path):
    """A dead parent not yet reaped by its own parent must still stop the backend."""
    import os
    import signal
    import time

    from tests.backend.conftest import start_backend

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    b = start_backend(tmp_path, extra_args=["--parent-pid", str(child.pid)])
    os.kill(child.pid, signal.SIGKILL)  # never waited for: it stays a zombie meanwhile
    t0 = time.perf_counter()
    b.proc.wait(timeout=10)
    assert time.perf_counter() - t0 < 5
    child.wait()


def test_generate_inputs_that_are_not_image_files_get_true_messages(tmp_path: Path):
    img, mask = disk_scene()
    (tmp_path / "i.png").write_bytes(png_bytes(img))
    out = str(tmp_path / "o.glb")
    for image, says in (
        (str(tmp_path), "is a folder"),
        ("/dev/zero", "not a regular file"),
        ("/proc/self/mem", "cannot be read"),
    ):
        r = _run("generate", "--image", image, "--out", out)
        assert r.returncode == 2, r.stderr
        assert "error [bad_image]" in r.stderr and says in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and "does not exist" not in r.stderr
    r = _run("generate", "--image", str(tmp_path / "i.png"), "--mask", "/dev/null", "--out", out)
    assert r.returncode == 2 and "error [bad_mask]" in r.stderr and "not a regular file" in r.stderr


def test_generate_refuses_unwritable_out_and_report_with_a_code(tmp_path: Path):
    img, mask = disk_scene()
    (tmp_path / "i.png").write_bytes(png_bytes(img))
    (tmp_path / "m.png").write_bytes(png_bytes(mask.astype(np.uint8) * 255))
    (tmp_path / "afile").write_text("x")
    good = ["--image", str(tmp_path / "i.png"), "--mask", str(tmp_path / "m.png")]
    for extra in (
        ["--out", "/proc/x.glb"],
        ["--out", str(tmp_path / "o.glb"), "--report", "/proc/r.json"],
        ["--out", str(tmp_path / "o.glb"), "--report", str(tmp_path / "afile" / "r.json")],
        ["--out", str(tmp_path / "o.glb"), "--report", str(tmp_path)],
    ):
        r = _run("generate", *good, *extra)
        assert r.returncode == 2, r.stderr
        assert "error [output_not_writable]" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and "progress" not in r.stderr
    assert not (tmp_path / "o.glb").exists()
