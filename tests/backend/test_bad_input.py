"""Every bad input gets a JSON 4xx {code, message} from the real server, which keeps serving.

Inputs that are merely unusual (alpha / L / 1-bit / RGB masks, 16-bit, palette, CMYK JPEG,
EXIF rotation, oversized images, resizable masks) are accepted and normalised.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from backend.jobs.images import decode_mask, load_inputs
from tests.backend.conftest import disk_scene, png_bytes

IMG, MASK = disk_scene()
IMG_PNG = png_bytes(IMG)
MASK_PNG = png_bytes(MASK.astype(np.uint8) * 255)


def _err(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code, body
    assert len(body["message"]) > 20 and "Traceback" not in body["message"]
    return body


# -- rejected: a clear code and sentence ----------------------------------------------------
def test_not_an_image(backend):
    _err(backend.submit(b"hello, I am text, not a picture" * 10, MASK_PNG), 400, "bad_image")


def test_truncated_png(backend):
    body = _err(backend.submit(IMG_PNG[: len(IMG_PNG) // 2], MASK_PNG), 400, "bad_image")
    assert "truncated" in body["message"] or "corrupt" in body["message"]


def test_empty_file(backend):
    _err(backend.submit(b"", MASK_PNG), 400, "empty_file")
    _err(backend.submit(IMG_PNG, b""), 400, "empty_file")


def test_mask_not_an_image(backend):
    _err(backend.submit(IMG_PNG, b"\x89PNG but not really"), 400, "bad_mask")


def test_mask_of_other_aspect(backend):
    other = png_bytes(np.zeros((100, 100), np.uint8))
    body = _err(backend.submit(IMG_PNG, other), 400, "mask_size_mismatch")
    assert "100x100" in body["message"] and "240x180" in body["message"]


def test_empty_mask(backend):
    _err(backend.submit(IMG_PNG, png_bytes(np.zeros((180, 240), np.uint8))), 400, "empty_mask")


def test_full_mask(backend):
    body = _err(
        backend.submit(IMG_PNG, png_bytes(np.full((180, 240), 255, np.uint8))), 400, "full_mask"
    )
    assert "inverted" in body["message"]


def test_no_mask_and_no_alpha(backend):
    _err(backend.submit(IMG_PNG), 400, "bad_mask")


def test_unknown_engine(backend):
    body = _err(backend.submit(IMG_PNG, MASK_PNG, engine="dreamfusion"), 422, "unknown_engine")
    assert "preview" in body["message"]


def test_unavailable_engine(backend):
    body = _err(backend.submit(IMG_PNG, MASK_PNG, engine="sam3d"), 409, "engine_unavailable")
    assert "sam3d" in body["message"]


@pytest.mark.parametrize(
    "options",
    [
        {"target_faces": 5},
        {"texture_size": 100000},
        {"texture_size": 1000},
        {"seed": -1},
        {"quality": "ultra"},
        {"no_such_option": 1},
        {"bake": "maybe"},
    ],
)
def test_options_out_of_range(backend, options):
    body = _err(backend.submit(IMG_PNG, MASK_PNG, **options), 422, "bad_options")
    assert list(options)[0] in body["message"]


def test_options_not_json(backend):
    import requests

    resp = requests.post(
        backend.url + "/jobs",
        headers=backend.headers,
        files={"image": ("i.png", IMG_PNG), "mask": ("m.png", MASK_PNG)},
        data={"options": "{not json"},
        timeout=30,
    )
    _err(resp, 422, "bad_options")


def test_missing_image_field(backend):
    import requests

    resp = requests.post(
        backend.url + "/jobs",
        headers=backend.headers,
        files={"mask": ("m.png", MASK_PNG)},
        timeout=30,
    )
    _err(resp, 422, "bad_options")


def test_image_over_decode_limit(backend):
    # a PNG that claims 20000 x 20000 pixels (a decompression bomb), tiny on the wire
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, format="PNG")
    _err(backend.submit(buf.getvalue(), MASK_PNG), 413, "image_too_large")


def test_bad_job_ids(backend):
    # an encoded slash never reaches a job route; a dotted id is refused by validation
    _err(backend.get("/jobs/..%2F..%2Fetc%2Fpasswd"), 404, "not_found")
    _err(backend.get("/jobs/..%2E"), 400, "bad_job_id")
    _err(backend.get("/jobs/.." + "a" * 30 + "/result.json"), 400, "bad_job_id")
    _err(backend.get("/jobs/not-a-job/result"), 400, "bad_job_id")
    _err(backend.get("/jobs/" + "0" * 32), 404, "not_found")


def test_server_still_healthy_after_all_that(backend):
    assert backend.get("/health").json()["status"] == "ok"
    assert backend.proc.poll() is None


# -- accepted and normalised ---------------------------------------------------------------
def _encode(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _mask_variants() -> dict[str, bytes]:
    m8 = MASK.astype(np.uint8) * 255
    grey = Image.fromarray(m8)
    rgba = np.zeros((180, 240, 4), np.uint8)
    rgba[..., :3] = 77  # colour is irrelevant when alpha carries the mask
    rgba[..., 3] = m8
    return {
        "alpha": _encode(Image.fromarray(rgba)),
        "L": _encode(grey),
        "1-bit": _encode(grey.convert("1")),
        "RGB": _encode(grey.convert("RGB")),
        "LA": _encode(Image.merge("LA", [Image.new("L", grey.size, 10), grey])),
        "16-bit": _encode(Image.fromarray(MASK.astype(np.uint16) * 65535)),
        "palette": _encode(grey.convert("P")),
    }


@pytest.mark.parametrize("kind", ["alpha", "L", "1-bit", "RGB", "LA", "16-bit", "palette"])
def test_mask_encodings_all_decode_to_the_same_mask(kind):
    m = decode_mask(_mask_variants()[kind])
    assert m.shape == MASK.shape and (m == MASK).all()


def test_mask_of_same_aspect_is_resized_with_a_note():
    small = png_bytes((MASK[::2, ::2]).astype(np.uint8) * 255)
    loaded = load_inputs(IMG_PNG, small)
    assert loaded.mask.shape == MASK.shape
    assert (loaded.mask == MASK).mean() > 0.98
    assert "resized" in loaded.warnings[0]


def test_image_alpha_is_the_mask():
    rgba = np.dstack([IMG, MASK.astype(np.uint8) * 255])
    loaded = load_inputs(png_bytes(rgba))
    assert (loaded.mask == MASK).all()


def test_sixteen_bit_and_palette_images():
    img16 = IMG[..., 0].astype(np.uint16) * 257
    loaded = load_inputs(_encode(Image.fromarray(img16)), MASK_PNG)
    assert (
        loaded.image.dtype == np.uint8 and abs(int(loaded.image[0, 0, 0]) - int(IMG[0, 0, 0])) <= 1
    )
    buf = io.BytesIO()
    Image.fromarray(IMG).convert("P", palette=Image.ADAPTIVE, colors=64).save(buf, format="PNG")
    loaded = load_inputs(buf.getvalue(), MASK_PNG)
    assert loaded.image.shape == IMG.shape


def test_cmyk_jpeg():
    buf = io.BytesIO()
    Image.fromarray(IMG).convert("CMYK").save(buf, format="JPEG", quality=95)
    loaded = load_inputs(buf.getvalue(), MASK_PNG)
    assert loaded.image.shape == IMG.shape
    assert np.abs(loaded.image.astype(int) - IMG.astype(int)).mean() < 12


def test_exif_rotated_jpeg_is_upright():
    # store the photo rotated on disk with EXIF orientation 6 (rotate 90 CW to view)
    stored = np.rot90(IMG, k=1)  # what a camera writes when held sideways
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(stored)).save(buf, format="JPEG", quality=95, exif=exif)
    loaded = load_inputs(buf.getvalue(), MASK_PNG)
    assert loaded.image.shape == IMG.shape  # upright: 240 wide, 180 tall, like the mask
    assert np.abs(loaded.image.astype(int) - IMG.astype(int)).mean() < 12


def test_image_over_pixel_limit_is_downscaled_and_reported():
    loaded = load_inputs(IMG_PNG, MASK_PNG, max_pixels=10_000)
    h, w = loaded.image.shape[:2]
    assert w * h <= 10_000 and loaded.mask.shape == (h, w)
    assert "downscaled" in loaded.warnings[-1]


def test_accepted_variants_through_http(backend):
    """The unusual-but-valid inputs pass intake on the real server (202 with a job id)."""
    for kind, mask in _mask_variants().items():
        resp = backend.submit(
            IMG_PNG,
            mask,
            target_faces=500,
            texture_size=256,
            bake=False,
            seed=hash(kind) % 1000 + 10,
        )
        assert resp.status_code == 202, (kind, resp.text)
        assert len(resp.json()["id"]) == 32
    small = png_bytes((MASK[::2, ::2]).astype(np.uint8) * 255)
    resp = backend.submit(IMG_PNG, small, bake=False)
    assert resp.status_code == 202 and "resized" in json.dumps(resp.json()["warnings"])


def test_upload_over_the_size_limit(tmp_path):
    from tests.backend.conftest import start_backend

    b = start_backend(tmp_path, extra_args=["--max-upload-mb", "0.05"])
    try:
        noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
        big = png_bytes(noise)
        assert len(big) > 0.05 * 2**20
        body = _err(b.submit(big, MASK_PNG), 413, "upload_too_large")
        assert "MB" in body["message"]
        assert b.get("/health").status_code == 200
    finally:
        b.stop()


def test_openapi_docs_need_the_token(backend):
    import requests

    for path in ("/docs", "/openapi.json"):
        r = requests.get(backend.url + path, timeout=10)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    spec = backend.get("/openapi.json").json()
    assert "/jobs/{job_id}/result" in spec["paths"]
    page = requests.get(f"{backend.url}/docs?token={backend.token}", timeout=10)
    assert page.status_code == 200 and f"/openapi.json?token={backend.token}" in page.text
    r = requests.get(f"{backend.url}/openapi.json?token={backend.token}", timeout=10)
    assert r.status_code == 200


def test_docs_page_never_runs_the_token_parameter_as_script(backend):
    """The token query value goes into the page's script only percent-encoded (a header
    token makes any query value reach the page)."""
    import requests

    evil = "x';alert(1)//</script><script>alert(2)</script>"
    page = requests.get(
        backend.url + "/docs", params={"token": evil}, headers=backend.headers, timeout=10
    )
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "';alert" not in page.text
    assert "x%27%3Balert%281%29" in page.text


def test_no_token_is_refused_before_the_upload_is_read(backend):
    import requests

    big = b"x" * (3 * 2**20)
    r = requests.post(backend.url + "/jobs", files={"image": ("i.png", big)}, timeout=30)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


def test_request_over_the_body_limit_is_refused_from_its_length(tmp_path):
    from tests.backend.conftest import start_backend

    b = start_backend(tmp_path, extra_args=["--max-upload-mb", "0.05"])
    try:
        big = b"x" * (2 * 2**20)
        _err(b.submit(big, MASK_PNG), 413, "upload_too_large")
    finally:
        b.stop()


def test_a_huge_photo_is_downscaled_without_huge_memory(tmp_path):
    """A 90 MP PNG is tiny on the wire; decoding must not blow up to gigabytes of floats."""
    import subprocess
    import sys

    code = """
import io, resource
from PIL import Image
img = io.BytesIO(); Image.new("RGB", (11000, 8200), (90, 120, 30)).save(img, format="PNG")
mask = io.BytesIO(); m = Image.new("L", (11000, 8200), 0); m.paste(255, (3000, 3000, 6000, 6000)); m.save(mask, format="PNG")
img, mask = img.getvalue(), mask.getvalue()
import gc; gc.collect()
from backend.jobs.images import load_inputs
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
li = load_inputs(img, mask)
print("GROWTH_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, li.image.shape[1] * li.image.shape[0])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    line = next(x for x in r.stdout.splitlines() if x.startswith("GROWTH_MB"))
    growth, pixels = float(line.split()[1]), int(line.split()[2])
    assert pixels <= 16_000_000
    assert growth < 1024, f"decoding a 90 MP photo grew memory by {growth:.0f} MiB"
