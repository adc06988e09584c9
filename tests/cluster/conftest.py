"""Fixtures of the studio tier: artists' tokens (made by the real ``tokens`` command), and
the real backend started with them (``tests.backend.conftest.start_backend``)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.backend.conftest import REPO, RunningBackend, disk_scene, png_bytes, start_backend

#: Small preview jobs: seconds each on a shared 2-core machine.
FAST = {"engine": "preview", "target_faces": 2000, "texture_size": 256}


def add_token(tokens_file: Path, artist: str) -> str:
    """``python -m backend tokens add ARTIST --file F``: the token it prints once."""
    out = subprocess.run(
        [sys.executable, "-m", "backend", "tokens", "add", artist, "--file", str(tokens_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def make_artists(tokens_file: Path, names: list[str]) -> dict[str, str]:
    return {name: add_token(tokens_file, name) for name in names}


def start_studio(
    data_dir: Path,
    tokens_file: Path,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> RunningBackend:
    """The backend with a tokens file and no shared token."""
    return start_backend(
        data_dir,
        extra_args=["--tokens-file", str(tokens_file), *(extra_args or [])],
        env={"SAM3D_BACKEND_TOKEN": "", **(env or {})},
        token="-",
    )


def as_artist(backend: RunningBackend, token: str) -> RunningBackend:
    """The same server, seen with ``token``."""
    return dataclasses.replace(backend, token=token)


def photo(seed: int) -> tuple[bytes, bytes]:
    img, mask = disk_scene(seed=seed)
    return png_bytes(img), png_bytes(mask.astype(np.uint8) * 255)
