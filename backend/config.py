"""Where the backend keeps things, and the environment variables that steer it.

| variable                | meaning                                                   |
|-------------------------|-----------------------------------------------------------|
| SAM3D_BACKEND_TOKEN     | bearer token the server requires (``serve``)              |
| SAM3D_DATA_DIR          | job store root (default: user data dir / jobs)            |
| SAM3D_CHECKPOINTS       | SAM 3D weights folder (holds ``pipeline.yaml``)           |
| SAM3D_VRAM_BUDGET_GB    | GPU memory budget for staged residency (float, GiB)       |
| SAM3D_IDLE_UNLOAD_S     | seconds of idleness after which a worker unloads models   |
| SAM3D_ENABLE_TEST_ENGINES | "1" registers the test-only ``crashtest`` engine        |
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_data_root() -> Path:
    """Per-user data folder for the backend (not the add-on's folder)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "sam3d-blender"


def data_dir() -> Path:
    return Path(os.environ.get("SAM3D_DATA_DIR") or user_data_root() / "jobs")


def checkpoints_dir() -> Path:
    return Path(os.environ.get("SAM3D_CHECKPOINTS") or user_data_root() / "checkpoints")


def vram_budget_gb() -> float | None:
    v = os.environ.get("SAM3D_VRAM_BUDGET_GB")
    return float(v) if v else None


def idle_unload_s() -> float:
    return float(os.environ.get("SAM3D_IDLE_UNLOAD_S", "600"))


def test_engines_enabled() -> bool:
    return os.environ.get("SAM3D_ENABLE_TEST_ENGINES") == "1"
