"""Floods of huge-image uploads on the real server: memory stays bounded by what is decoded
at once (sizes are checked from the file headers first), freed memory is given back, and
/health and status polls keep answering throughout. Bounded in count and time."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from tests.backend.conftest import disk_scene, png_bytes, start_backend

MIB = 2**20


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _memory_mib(pid: int) -> dict[str, float]:
    """Resident memory now and at its peak (VmHWM), MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class _Poller:
    """Polls /health and one job's status every 50 ms and keeps the slowest answers."""

    def __init__(self, b, job_id: str) -> None:
        self.b, self.job_id = b, job_id
        self.worst = {"health": 0.0, "status": 0.0}
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        s = requests.Session()
        while not self._stop.is_set():
            for name, path in (("health", "/health"), ("status", f"/jobs/{self.job_id}")):
                t0 = time.perf_counter()
                r = s.get(self.b.url + path, headers=self.b.headers, timeout=60)
                assert r.status_code == 200
                self.worst[name] = max(self.worst[name], time.perf_counter() - t0)
            self.count += 1
            time.sleep(0.05)

    def __enter__(self) -> _Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _post(b, image: bytes, mask: bytes, seed: int) -> requests.Response:
    return requests.post(
        b.url + "/jobs",
        headers=b.headers,
        files=[("image", ("i.png", image)), ("mask", ("m.png", mask))],
        data={"options": json.dumps({"engine": "preview", "seed": seed})},
        timeout=300,
    )


def _small_job(b) -> str:
    img, mask = disk_scene(seed=50)
    r = b.submit(png_bytes(img), png_bytes(mask.astype(np.uint8) * 255), engine="preview", seed=50)
    return r.json()["id"]


def test_a_flood_of_100_megapixel_headers_decodes_nothing(tmp_path):
    """The issue's flood: a 0.3 MB PNG declaring 10000x10000 with a 960x720 mask, many at
    once. Each used to be decoded in full (0.6 GiB) before its shape check failed."""
    big = _png(Image.new("RGB", (10_000, 10_000), (10, 20, 30)))
    mask = _png(Image.new("L", (960, 720), 0))
    b = start_backend(tmp_path)
    try:
        job = _small_job(b)
        with _Poller(b, job) as poll, ThreadPoolExecutor(30) as ex:
            answers = list(ex.map(lambda i: _post(b, big, mask, i), range(30)))
        assert {(r.status_code, r.json()["code"]) for r in answers} == {(400, "mask_size_mismatch")}
        assert poll.count > 0
        assert poll.worst["health"] < 2.0 and poll.worst["status"] < 2.0, poll.worst
        assert _memory_mib(b.proc.pid)["VmHWM"] < 400  # one full decode alone is ~400 MiB
    finally:
        b.stop()


def test_concurrent_huge_photos_are_decoded_a_few_at_a_time_and_memory_returns(tmp_path):
    """Valid 100 MP uploads must be decoded: at most two at once, and the memory they took
    goes back to the system afterwards."""
    big = _png(Image.new("RGB", (10_000, 10_000), (10, 20, 30)))
    m = Image.new("L", (10_000, 10_000), 0)
    m.paste(255, (3000, 3000, 6000, 6000))
    mask = _png(m)
    b = start_backend(tmp_path)
    try:
        job = _small_job(b)
        with _Poller(b, job) as poll, ThreadPoolExecutor(5) as ex:
            answers = list(ex.map(lambda i: _post(b, big, mask, 100 + i), range(5)))
        assert [r.status_code for r in answers] == [202] * 5, answers[0].text
        assert "downscaled" in " ".join(answers[0].json()["warnings"])
        for r in answers:
            b.delete(f"/jobs/{r.json()['id']}")
        mem = _memory_mib(b.proc.pid)
        assert mem["VmHWM"] < 1.5 * 1024, mem  # two decodes at ~0.5 GiB each, not five
        assert mem["VmRSS"] < 500, mem  # and given back
        assert poll.worst["health"] < 2.0 and poll.worst["status"] < 2.0, poll.worst
    finally:
        b.stop()
