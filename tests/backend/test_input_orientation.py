"""A job records its photo's EXIF orientation (``request.json`` and ``result.json``:
``input`` > ``orientation``), so a client that shows the stored pixels (Blender) can turn
them upright; jobs written before it was recorded read as 1."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from backend.jobs.intake import Submission
from backend.jobs.request import JobRequest
from backend.options import JobOptions
from tests.backend.conftest import RunningBackend, start_backend
from tests.backend.test_exif_frames import jpeg_with_orientation, png, stored_scene, upright


@pytest.mark.parametrize("o", range(1, 9))
def test_intake_records_the_photos_orientation(o):
    img, mask = stored_scene()
    sub = Submission(
        jpeg_with_orientation(img, o), png(upright(mask, o)), JobOptions(engine="preview")
    )
    facts = sub.prepare().request.input
    assert facts.orientation == o
    h, w = upright(mask, o).shape
    assert facts.original_size == [w, h] == facts.size  # sizes stay upright


def test_a_photo_without_exif_is_orientation_1_and_older_requests_read_as_1():
    img, mask = stored_scene()
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    sub = Submission(buf.getvalue(), png(mask), JobOptions(engine="preview"))
    assert sub.prepare().request.input.orientation == 1
    older = {"engine": "preview", "input": {"size": [4, 3], "original_size": [4, 3]}}
    assert JobRequest.model_validate(older).input.orientation == 1


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningBackend:
    b = start_backend(tmp_path_factory.mktemp("orientation"))
    yield b
    b.stop()


def test_the_result_of_a_scene_job_carries_the_orientation(server):
    img, mask = stored_scene()
    r = server.submit(
        jpeg_with_orientation(img, 6), masks=[png(upright(mask, 6))], engine="preview"
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert server.wait(job_id)["state"] == "done"
    result = server.get(f"/jobs/{job_id}/result.json").json()
    assert result["input"]["orientation"] == 6
    # the camera is the upright photo's: 180 wide, 240 high for a 240x180 stored photo
    assert (result["camera"]["width"], result["camera"]["height"]) == (180, 240)
    assert np.isfinite(result["camera"]["fx"])
