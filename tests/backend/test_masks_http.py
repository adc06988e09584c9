"""Click-to-mask through the real server (``POST /masks``, real uvicorn, the real mask
worker process) and the real CLI (``python -m backend mask``)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
from PIL import Image

from tests.backend.conftest import REPO, RunningBackend, disk_scene, png_bytes, start_backend


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningBackend:
    b = start_backend(tmp_path_factory.mktemp("masks"), extra_args=["--max-upload-mb", "1"])
    yield b
    b.stop()


def _post(b: RunningBackend, prompts, image: bytes | None = None, **form) -> requests.Response:
    files = {"image": ("photo.png", image, "image/png")} if image is not None else None
    data = {"prompts": prompts if isinstance(prompts, str) else json.dumps(prompts), **form}
    return requests.post(b.url + "/masks", headers=b.headers, files=files, data=data, timeout=60)


def _mask(resp: requests.Response) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.content))) > 127


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


def test_a_click_makes_the_objects_mask_and_the_next_click_reuses_the_photo(server):
    img, truth = disk_scene(seed=3)
    r1 = _post(server, {"points": [{"x": 120, "y": 108}]}, png_bytes(img))
    m1 = _mask(r1)
    assert m1.shape == truth.shape and _iou(m1, truth) > 0.9
    assert r1.headers["X-Mask-Engine"] == "grabcut"  # auto here: no SAM 2 weights
    assert r1.headers["X-Mask-Size"] == "240x180" == r1.headers["X-Image-Size"]
    assert 0.0 <= float(r1.headers["X-Mask-Score"]) <= 1.0
    assert r1.headers["X-Mask-Cached"] == "0"
    image_id = r1.headers["X-Image-Id"]
    # the next click names the photo by id: no upload, the prepared photo is reused
    r2 = _post(
        server,
        {"points": [[120, 108, 1], [5, 5, 0]], "box": [60, 50, 182, 166]},
        image_id=image_id,
        engine="grabcut",
    )
    m2 = _mask(r2)
    assert r2.headers["X-Mask-Cached"] == "1" and r2.headers["X-Image-Id"] == image_id
    assert _iou(m2, truth) > 0.9


def test_mask_engines_are_reported(server):
    body = server.get("/masks/engines").json()
    assert body["auto"] == "grabcut"
    assert body["engines"]["grabcut"]["available"] is True
    assert body["engines"]["sam2"]["available"] is False and body["engines"]["sam2"]["reason"]


@pytest.mark.parametrize(
    "prompts, reason",
    [
        ({"points": [{"x": 240, "y": 10}]}, "outside_image"),  # x == width is outside
        ({"points": [{"x": 10, "y": -0.5}]}, "outside_image"),
        ({"box": [0, 0, 241, 100]}, "outside_image"),
        ({"box": [50, 50, 50, 120]}, "empty_box"),
        ({"box": [80, 50, 40, 120]}, "empty_box"),  # corners swapped
        ({}, "no_prompts"),
        ({"points": []}, "no_prompts"),
        ({"points": [{"x": 5, "y": 5, "positive": False}]}, "no_prompts"),
        ({"points": [[10, 10, 1]] * 65}, "too_many_points"),
        ('{"points": [', "malformed"),
        ({"points": [{"x": "ten", "y": 3}]}, "malformed"),
        ({"points": [[1, 2, 7]]}, "malformed"),
        ({"pts": []}, "malformed"),
    ],
)
def test_bad_prompts_are_coded_422(server, prompts, reason):
    img, _ = disk_scene()
    r = _post(server, prompts, png_bytes(img))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "bad_prompt" and body["details"]["reason"] == reason, body
    assert len(body["message"]) < 400


def test_bad_requests_are_coded(server):
    img, _ = disk_scene()
    ok = {"points": [{"x": 120, "y": 108}]}
    r = requests.post(server.url + "/masks", data={"prompts": json.dumps(ok)}, timeout=30)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = _post(server, ok, image_id="0" * 32)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert "send the image again" in r.json()["message"]
    r = _post(server, ok)
    assert r.status_code == 400 and r.json()["code"] == "bad_image"
    r = _post(server, ok, b"%PDF-1.4 not a picture")
    assert r.status_code == 400 and r.json()["code"] == "bad_image"
    r = _post(server, ok, png_bytes(img), engine="sam2")
    assert r.status_code == 409 and r.json()["code"] == "engine_unavailable"
    assert "sam2" in r.json()["message"]
    r = _post(server, ok, png_bytes(img), engine="magic")
    assert r.status_code == 422 and r.json()["code"] == "unknown_engine"
    noise = np.random.default_rng(0).integers(0, 255, (800, 800, 3), np.uint8)
    big = png_bytes(noise)
    assert len(big) > 2**20  # the server was started with --max-upload-mb 1
    r = _post(server, ok, big)
    assert r.status_code == 413 and r.json()["code"] == "upload_too_large"


def test_coordinates_are_in_the_upright_photo_as_jobs_reads_it(server):
    """A JPEG stored 240x180 with EXIF orientation 6 is a 180x240 photo (as /jobs sees it):
    a click at y=230 is inside it, and the mask comes back upright."""
    img, _ = disk_scene(seed=5)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    upright_truth = np.rot90(disk_scene(seed=5)[1], k=-1)  # orientation 6: 90 deg clockwise
    ys, xs = np.nonzero(upright_truth)
    click = {"x": float(xs.mean()), "y": float(ys.mean())}
    r = _post(server, {"points": [click]}, buf.getvalue())
    m = _mask(r)
    assert r.headers["X-Image-Size"] == "180x240" and m.shape == (240, 180)
    assert _iou(m, upright_truth) > 0.85
    r = _post(server, {"points": [{"x": 200, "y": 100}]}, buf.getvalue())  # inside 240x180 only
    assert r.status_code == 422 and r.json()["details"]["reason"] == "outside_image"


def test_a_crashed_mask_worker_costs_one_answer_never_the_server(server):
    img, truth = disk_scene(seed=7)
    ok = {"points": [{"x": 120, "y": 108}]}
    assert _post(server, ok, png_bytes(img)).status_code == 200
    workers = [
        p
        for p in psutil.Process(server.proc.pid).children()
        if "backend.masking.worker" in " ".join(p.cmdline())
    ]
    assert len(workers) == 1
    workers[0].kill()
    deadline = time.monotonic() + 5  # our child is reaped by the server, not by us
    while time.monotonic() < deadline and workers[0].is_running():
        if workers[0].status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    # the photo died with the worker: by id it is unknown now, with the bytes it works again
    r = _post(server, ok, png_bytes(img))
    assert _iou(_mask(r), truth) > 0.9
    assert server.get("/health").status_code == 200


# -- the CLI ----------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend", "mask", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_the_mask_and_generate_takes_it(tmp_path: Path):
    img, truth = disk_scene(seed=2)
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(img))
    out = tmp_path / "out" / "mask.png"
    p = _cli("--image", str(photo), "--point", "120,108", "--point", "3,3,-", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(out.resolve())
    assert "engine grabcut" in p.stderr
    m = np.asarray(Image.open(out)) > 127
    assert _iou(m, truth) > 0.9
    p = _cli(
        "--image", str(photo), "--box", "60,50,182,166", "--engine", "grabcut", "--out", str(out)
    )
    assert p.returncode == 0, p.stderr
    assert _iou(np.asarray(Image.open(out)) > 127, truth) > 0.9
    glb = tmp_path / "obj.glb"
    g = subprocess.run(
        [sys.executable, "-m", "backend", "generate", "--image", str(photo), "--mask", str(out),
         "--out", str(glb), "--engine", "preview", "--texture-size", "256", "--target-faces", "2000"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert g.returncode == 0, g.stderr
    assert glb.stat().st_size > 1000


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["--point", "240,10"], "bad_prompt", "outside the image"),
        (["--box", "10,10,10,50"], "bad_prompt", "no area"),
        ([], "bad_prompt", "at least one point"),
        ([a for i in range(65) for a in ("--point", f"{i},5")], "bad_prompt", "at most 64"),
        (["--point", "12;4"], "bad_prompt", "X,Y"),
        (["--point", "12,4", "--engine", "sam2"], "engine_unavailable", "sam2"),
    ],
)
def test_cli_bad_prompts_exit_2_with_a_code(tmp_path: Path, args, code, words):
    img, _ = disk_scene()
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(img))
    out = tmp_path / "m.png"
    p = _cli("--image", str(photo), *args, "--out", str(out))
    assert p.returncode == 2, p.stderr
    assert f"error [{code}]" in p.stderr and words in p.stderr, p.stderr
    assert not out.exists()
