"""Fixtures that start the REAL backend: ``python -m backend serve`` on a loopback port."""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from backend.jobs.status import FINAL_STATES

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningBackend:
    proc: subprocess.Popen
    url: str
    token: str
    data_dir: Path
    _stderr: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stderr_text(self) -> str:
        """What the server wrote to stderr so far (read continuously: a full pipe would
        block a server that logs a lot)."""
        return "".join(self._stderr)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, headers=self.headers, timeout=30, **kw)

    def delete(self, path: str) -> requests.Response:
        return requests.delete(self.url + path, headers=self.headers, timeout=30)

    def submit(
        self, image: bytes, mask: bytes | None = None, masks: list[bytes] | None = None, **options
    ) -> requests.Response:
        files: list = [("image", ("image.png", image, "application/octet-stream"))]
        if mask is not None:
            files.append(("mask", ("mask.png", mask, "application/octet-stream")))
        for i, m in enumerate(masks or []):
            files.append(("masks", (f"{i}.png", m, "application/octet-stream")))
        return requests.post(
            self.url + "/jobs",
            headers=self.headers,
            files=files,
            data={"options": json.dumps(options)} if options else None,
            timeout=60,
        )

    def wait(
        self,
        job_id: str,
        timeout: float = 120.0,
        states=FINAL_STATES,
    ) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.get(f"/jobs/{job_id}").json()
            if st["state"] in states:
                return st
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not reach {states} in {timeout} s: {st}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_backend(
    data_dir: Path,
    workers: int = 1,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    token: str | None = None,
    open_files: int | None = None,
) -> RunningBackend:
    """``python -m backend serve`` on a free loopback port; ``open_files`` sets its
    RLIMIT_NOFILE (soft and hard), as a stingy ``ulimit -n`` would."""
    token = token or secrets.token_hex(16)
    full_env = {
        **os.environ,
        "SAM3D_BACKEND_TOKEN": token,
        "SAM3D_ENABLE_TEST_ENGINES": "1",
        "SAM3D_CHECKPOINTS": str(data_dir / "no-checkpoints"),
        **(env or {}),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--workers",
            str(workers),
            *(extra_args or []),
        ],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if open_files is None else (lambda: _limit_open_files(open_files)),
    )
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("backend did not start: " + proc.stderr.read())
    ready = json.loads(line)
    assert ready["event"] == "ready"
    b = RunningBackend(proc, f"http://127.0.0.1:{ready['port']}", token, data_dir)
    threading.Thread(target=_drain, args=(proc.stderr, b._stderr), daemon=True).start()
    return b


def _drain(stream, into: list[str]) -> None:
    for line in stream:
        into.append(line)
        if len(into) > 5000:
            del into[:1000]


def _limit_open_files(n: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> RunningBackend:
    b = start_backend(tmp_path_factory.mktemp("jobs"), workers=2)
    yield b
    b.stop()


# -- test images ----------------------------------------------------------------------------
def png_bytes(array: np.ndarray, mode: str | None = None, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=save.pop("format", "PNG"), **save)
    return buf.getvalue()


def disk_scene(w: int = 240, h: int = 180, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A coloured disk on a grey background; returns (RGB uint8, mask bool)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    mask = (xx - w * 0.5) ** 2 + (yy - h * 0.6) ** 2 < (h * 0.3) ** 2
    img = np.full((h, w, 3), 120, np.uint8)
    img[mask] = [200, 60 + seed % 100, 40]
    img += rng.integers(0, 5, img.shape, dtype=np.uint8)
    return img, mask


@pytest.fixture
def disk_png() -> tuple[bytes, bytes]:
    img, mask = disk_scene()
    return png_bytes(img), png_bytes(mask.astype(np.uint8) * 255)
