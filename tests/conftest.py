"""Shared pytest setup.

bpy 4.5 from PyPI can hang at interpreter exit while classes registered by tests are still
alive: record the session's exit status and leave with os._exit once pytest is done.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Keep Blender from writing into ~/.config/blender when any test imports bpy.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="sam3d-blender-res-"))

_exit_status = {"rc": 0}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["rc"] = int(exitstatus)


def pytest_unconfigure(config):
    if "bpy" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["rc"])


def pytest_collection_modifyitems(config, items):
    cuda = _cuda_available()
    skip_gpu = pytest.mark.skip(reason="needs CUDA (run on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)


def _cuda_available() -> bool:
    try:
        import torch  # noqa: F401  (tests only; never in the add-on)
    except Exception:
        return False
    return bool(torch.cuda.is_available())
