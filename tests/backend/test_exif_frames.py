"""Phone photos (EXIF orientation 1-8): masks and clicks in the photo's stored frame (what
Blender shows) give the same job and the same mask as their upright versions, through the
real server (real uvicorn, real intake, real mask worker, preview engine)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import requests
from PIL import Image, ImageOps, PngImagePlugin

from backend.jobs import orientation
from backend.jobs.images import load_inputs
from sam3d_blender.core import frames
from tests.backend.conftest import RunningBackend, start_backend

W, H = 240, 180  # the stored frame


def stored_scene() -> tuple[np.ndarray, np.ndarray]:
    """A photo as its file stores it: an object off-centre in both axes (so a 180 degree
    turn or a flip moves it), on a grey, slightly noisy background; and its mask."""
    yy, xx = np.mgrid[:H, :W]
    mask = ((xx - 70) / 45.0) ** 2 + ((yy - 60) / 35.0) ** 2 < 1
    mask |= (abs(xx - 110) < 12) & (abs(yy - 60) < 8)  # a handle: not symmetric either
    img = np.full((H, W, 3), 120, np.uint8)
    img[mask] = (205, 70, 40)
    img += np.random.default_rng(0).integers(0, 5, img.shape, dtype=np.uint8)
    return img, mask


def jpeg_with_orientation(img: np.ndarray, o: int) -> bytes:
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = o
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def upright(mask: np.ndarray, o: int) -> np.ndarray:
    """The stored-frame mask as a viewer shows it: Pillow's own EXIF transpose."""
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    im.getexif()[0x0112] = o
    return np.asarray(ImageOps.exif_transpose(im)) > 127


def png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def stored_png(mask: np.ndarray) -> bytes:
    """A mask PNG declaring the photo's stored frame, the way the add-on writes it."""
    return frames.declare_frame(png(mask), frames.STORED)


def read_png(data: bytes | str) -> np.ndarray:
    with Image.open(data if isinstance(data, str) else io.BytesIO(data)) as im:
        return np.asarray(im.convert("L")) > 127


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningBackend:
    b = start_backend(tmp_path_factory.mktemp("exif"))
    yield b
    b.stop()


def _job_file(b: RunningBackend, job_id: str, name: str) -> np.ndarray | bytes:
    (path,) = list(b.data_dir.rglob(f"{job_id}/{name}"))
    return path.read_bytes()


def test_the_addon_and_the_backend_name_the_frames_alike():
    assert frames.FRAME_KEY == orientation.FRAME_KEY
    assert (frames.UPRIGHT, frames.STORED) == orientation.FRAMES
    declared = frames.declare_frame(png(np.eye(4, dtype=bool)), frames.STORED)
    with Image.open(io.BytesIO(declared)) as im:  # seen from the header, before any pixel
        assert im.info[orientation.FRAME_KEY] == "stored"
        assert orientation.declared_frame(im) == "stored"
    assert read_png(declared).tolist() == np.eye(4, dtype=bool).tolist()


@pytest.mark.parametrize("o", range(1, 9))
def test_points_and_masks_turn_like_the_photo(o):
    """Every orientation: a stored-frame pixel lands where Pillow's exif_transpose puts
    it, and masks go upright and back unchanged."""
    stored = np.zeros((H, W), bool)
    stored[37, 201] = True
    up = upright(stored, o)
    x, y = orientation.point_to_upright(201.5, 37.5, (W, H), o)
    assert up[int(y), int(x)]
    turned = np.asarray(orientation.to_upright(Image.fromarray(stored), o))
    assert np.array_equal(turned, up)
    back = np.asarray(orientation.to_stored(Image.fromarray(turned), o))
    assert np.array_equal(back, stored)
    assert orientation.upright_size((W, H), o) == up.shape[::-1]


@pytest.mark.parametrize("o", range(1, 9))
def test_a_stored_frame_mask_makes_the_job_of_its_upright_mask(server, o):
    img, mask = stored_scene()
    photo = jpeg_with_orientation(img, o)
    truth = upright(mask, o)
    a = server.submit(photo, stored_png(mask), engine="preview")
    b = server.submit(photo, png(truth), engine="preview")
    assert a.status_code == b.status_code == 202, (a.text, b.text)
    assert a.json()["warnings"] == [] == b.json()["warnings"]
    ida, idb = a.json()["id"], b.json()["id"]
    # the job keeps the same upright photo and the same upright mask, pixel for pixel
    assert np.array_equal(read_png(_job_file(server, ida, "mask.png")), truth)
    assert np.array_equal(read_png(_job_file(server, idb, "mask.png")), truth)
    assert _job_file(server, ida, "image.png") == _job_file(server, idb, "image.png")
    if o in (3, 6):  # two whole runs: the same object, placed the same way
        sa, sb = server.wait(ida), server.wait(idb)
        assert sa["state"] == sb["state"] == "done", (sa, sb)
        ra = server.get(f"/jobs/{ida}/result.json").json()
        rb = server.get(f"/jobs/{idb}/result.json").json()
        assert ra["pose"] == rb["pose"] and ra["intrinsics"] == rb["intrinsics"]
        assert ra["intrinsics"]["width"] == truth.shape[1]


def test_a_scene_job_takes_stored_and_upright_masks_side_by_side(server):
    img, mask = stored_scene()
    photo = jpeg_with_orientation(img, 8)
    other = np.zeros_like(mask)
    other[120:170, 150:230] = True
    r = server.submit(photo, masks=[stored_png(mask), png(upright(other, 8))], engine="preview")
    assert r.status_code == 202, r.text
    jid = r.json()["id"]
    assert np.array_equal(read_png(_job_file(server, jid, "masks/0.png")), upright(mask, 8))
    assert np.array_equal(read_png(_job_file(server, jid, "masks/1.png")), upright(other, 8))


def test_mask_files_from_elsewhere_are_read_upright_as_before(server):
    img, mask = stored_scene()
    photo = jpeg_with_orientation(img, 6)
    # a stored-frame mask that does not say so is a sideways mask: refused, as before
    r = server.submit(photo, png(mask), engine="preview")
    assert r.status_code == 400 and r.json()["code"] == "mask_size_mismatch"
    # the same declared: accepted; an unknown frame: a clear bad_mask
    assert server.submit(photo, stored_png(mask), engine="preview").status_code == 202
    info = PngImagePlugin.PngInfo()
    info.add_text("sam3d-frame", "sideways")
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG", pnginfo=info)
    r = server.submit(photo, buf.getvalue(), engine="preview")
    assert r.status_code == 400 and r.json()["code"] == "bad_mask"
    assert "stored" in r.json()["message"] and "sideways" in r.json()["message"]


def test_the_photos_own_orientation_turns_the_mask_even_after_a_pngs_pixels():
    """A PNG photo whose EXIF comes after its pixels: the header says nothing, decoding
    finds orientation 6, and the stored-frame mask still turns with it."""
    img, mask = stored_scene()
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", exif=exif.tobytes())
    data = buf.getvalue()
    if data.index(b"eXIf") < data.index(b"IDAT"):  # move it after the pixels
        start = data.index(b"eXIf") - 4
        length = int.from_bytes(data[start : start + 4], "big")
        chunk = data[start : start + 12 + length]
        data = data.replace(chunk, b"")
        iend = data.index(b"IEND") - 4
        data = data[:iend] + chunk + data[iend:]
    got = load_inputs(data, stored_png(mask))
    assert got.original_size == (H, W)
    assert np.array_equal(got.mask, upright(mask, 6))


def _click(b: RunningBackend, photo: bytes, prompts: dict) -> requests.Response:
    return requests.post(
        b.url + "/masks",
        headers=b.headers,
        files={"image": ("photo.jpg", photo, "application/octet-stream")},
        data={"prompts": json.dumps(prompts), "engine": "grabcut"},
        timeout=60,
    )


@pytest.mark.parametrize("o", [1, 3, 6, 8])
def test_clicks_in_the_stored_frame_give_a_stored_frame_mask_that_jobs_take(server, o):
    img, mask = stored_scene()
    photo = jpeg_with_orientation(img, o)
    ys, xs = np.nonzero(mask)
    click = {"x": float(xs.mean()) + 0.5, "y": float(ys.mean()) + 0.5}
    r = _click(server, photo, {"points": [click], "frame": "stored"})
    assert r.status_code == 200, r.text
    assert r.headers["X-Mask-Frame"] == "stored"
    assert r.headers["X-Image-Size"] == f"{W}x{H}" == r.headers["X-Mask-Size"]
    got = read_png(r.content)
    assert got.shape == mask.shape and _iou(got, mask) > 0.85  # over the photo as stored
    # a box too, in the same frame, on the photo held by id
    box = [float(xs.min()) - 4, float(ys.min()) - 4, float(xs.max()) + 5, float(ys.max()) + 5]
    r2 = requests.post(
        server.url + "/masks",
        headers=server.headers,
        data={
            "prompts": json.dumps({"box": box, "frame": "stored"}),
            "image_id": r.headers["X-Image-Id"],
            "engine": "grabcut",
        },
        timeout=60,
    )
    assert r2.status_code == 200 and r2.headers["X-Mask-Cached"] == "1"
    assert _iou(read_png(r2.content), mask) > 0.85
    # the answer goes to /jobs as it is and becomes the upright mask
    j = server.submit(photo, r.content, engine="preview")
    assert j.status_code == 202, j.text
    job_mask = read_png(_job_file(server, j.json()["id"], "mask.png"))
    assert np.array_equal(job_mask, upright(got, o))
    # the default frame is still upright: the same click is another spot there
    up = _click(server, photo, {"points": [click]})
    if o in (6, 8):
        assert up.headers["X-Image-Size"] == f"{H}x{W}"
    assert up.headers["X-Mask-Frame"] == "upright"


def test_stored_frame_prompts_are_checked_in_the_stored_frame(server):
    img, _ = stored_scene()
    photo = jpeg_with_orientation(img, 6)  # stored 240x180, upright 180x240
    ok = _click(server, photo, {"points": [{"x": 230, "y": 10}], "frame": "stored"})
    assert ok.status_code == 200, ok.text
    r = _click(server, photo, {"points": [{"x": 10, "y": 230}], "frame": "stored"})
    assert r.status_code == 422 and r.json()["details"]["reason"] == "outside_image"
    assert "240x180" in r.json()["message"]
    r = _click(server, photo, {"points": [{"x": 10, "y": 10}], "frame": "sideways"})
    assert r.status_code == 422 and r.json()["details"]["reason"] == "malformed"
    # a click on a left pixel edge is still inside once the photo is flipped upright
    edge = _click(server, jpeg_with_orientation(img, 2), {"points": [[0, 60]], "frame": "stored"})
    assert edge.status_code == 200, edge.text


def test_the_cli_takes_clicks_in_the_stored_frame(tmp_path):
    img, mask = stored_scene()
    photo = tmp_path / "phone.jpg"
    photo.write_bytes(jpeg_with_orientation(img, 6))
    ys, xs = np.nonzero(mask)
    out = tmp_path / "mask.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend",
            "mask",
            "--image",
            str(photo),
            "--engine",
            "grabcut",
            "--point",
            f"{xs.mean() + 0.5:.1f},{ys.mean() + 0.5:.1f}",
            "--frame",
            "stored",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = read_png(out.read_bytes())
    assert got.shape == mask.shape and _iou(got, mask) > 0.85
    with Image.open(out) as im:
        assert im.info[orientation.FRAME_KEY] == "stored"
