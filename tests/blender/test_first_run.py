"""First run as a newcomer in the real Blender GUI (Debian 13's Blender 4.3, whose Python
is 3.13 with no Python 3.11 beside it), from a fresh user profile with the extension zip
installed: the panel shows the install profile this computer gets, Install backend makes
the backend's venv from Blender's own Python, and Generate then just works. A forced GPU
profile on this GPU-less machine is refused and the panel offers the CPU preview in one
click.

The installer downloads the backend's dependencies from the package index with pip. pip's
cache lives in the Blender chroot (``<chroot>/root/.cache/pip``, kept like the chroot
itself), so only the first run on a machine downloads (~100 MB); the machine's CA bundle
is handed to pip (``PIP_CERT``), as the host's pip uses it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.blender.blender_run import run_scenario
from tests.blender.test_gui import _left_behind
from tests.scene_fixture import synthetic_photo

pytestmark = pytest.mark.slow

#: The host's CA bundle (it may hold a TLS-inspecting proxy's CA that pip must trust).
HOST_CA = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture
def first_run_args(tmp_path) -> list[str]:
    photo = synthetic_photo(tmp_path / "in", seed=5, n_objects=1)
    args = ["--photo", str(photo), "--mask", str(photo.parent / "masks" / "0.png")]
    if HOST_CA.is_file():
        ca = tmp_path / "ca.crt"  # /tmp is visible inside Blender's chroot
        shutil.copy(HOST_CA, ca)
        args += ["--pip-cert", str(ca)]
    if os.environ.get("SAM3D_FIRST_RUN_PIP_CACHE"):  # e.g. an empty folder: a cold install
        args += ["--pip-cache", os.environ["SAM3D_FIRST_RUN_PIP_CACHE"]]
    return args


def test_fresh_profile_install_backend_then_generate(user_dir, first_run_args, tmp_path, shots):
    t0 = time.monotonic()
    facts, proc = run_scenario(
        "first_run.py",
        ["--scenario", "fresh", "--shots", str(shots), *first_run_args],
        tmp_path / "fresh.json",
        user_dir=user_dir,
        gui=True,
        timeout=1700,
        log=shots / "blender.log",
    )
    print("\n".join(facts["log"]))
    print(f"first run: {time.monotonic() - t0:.1f} s; clicks {facts['clicks']}")
    print(f"times: {facts['times_s']}; install samples: {facts['install']['samples']}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    # Debian's Blender: Python 3.13, no backend anywhere, the profile left to the machine
    assert facts["python"].startswith("3.13") and facts["blender_python"].endswith("3.13")
    assert facts["state_at_start"] == "not_installed"
    assert facts["backend_python_setting"] == "None"
    assert facts["profile_preference"] == "auto"
    line = facts["panel_before_install"][0]
    assert (
        line.startswith("cpu - no NVIDIA GPU found") and "preview engine will be installed" in line
    )
    # Install backend: step i of n with Cancel while it ran, made from Blender's own Python
    install = facts["install"]
    assert install["state"] == "succeeded", install["last_lines"]
    assert install["python"] == facts["blender_python"]
    steps = [(step, total) for _, step, total, _, _ in install["samples"] if total]
    assert steps[0] == (1, 2) and (2, 2) in steps, install["samples"]
    assert any(text.startswith("Step 2 of 2: backend") for *_, text in install["samples"])
    assert facts["cancel_button_while_installing"]
    assert "Python 3.13" in " ".join(install["last_lines"]) or any(
        "3.13" in s for s in install["last_lines"]
    )
    after = facts["backend_after_install"]
    assert after["python"].endswith("venv/bin/python") and after["state"] == "stopped"
    # Generate just works: the backend starts on demand, the object arrives framed
    obj = facts["imported"]
    assert obj["name"] == "photo" and obj["selected"] and obj["active"]
    assert obj["engine"] == "preview" and obj["texture_packed"]
    frame = facts["frame"]
    assert frame["now"]["inside"] and frame["now"]["fraction"] > 0.25, frame
    assert facts["backend_info"]["python"] == after["python"]
    # the clicks a newcomer needs, counted
    assert facts["clicks"] == ["N (sidebar)", "SAM 3D tab", "Install backend", "Generate 3D"]
    assert _left_behind(facts["processes"]) == [], facts["processes"]


def test_forced_gpu_profile_is_refused_and_the_cpu_preview_is_one_click(
    user_dir, first_run_args, tmp_path, shots
):
    facts, proc = run_scenario(
        "first_run.py",
        ["--scenario", "refused", "--shots", str(shots), *first_run_args],
        tmp_path / "refused.json",
        user_dir=user_dir,
        gui=True,
        timeout=400,
        log=shots / "blender.log",
    )
    print("\n".join(facts["log"]))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert facts["profile_preference"] == "cuda"
    before = facts["panel_before_install"]
    assert before[0].startswith("cuda121 - no NVIDIA GPU found")
    assert facts["cpu_offered_before_install"]  # offered before anything ran
    refused = facts["refused"]
    assert refused["returncode"] == 3 and refused["fallback"] == "cpu"
    assert refused["summary"].startswith("This computer can't take the cuda121 profile")
    assert "venv" not in refused["files"]  # nothing was installed
    for text in [refused["summary"], refused["notice"] or "", *facts["panel_after_refusal"]]:
        assert "python -m" not in text and "--profile" not in text, text  # no terminal command
    # one click on "Install the CPU preview instead": the cpu profile installs, and is now
    # the preference
    assert facts["after_fallback"] == {
        "profile": "cpu",
        "preference": "cpu",
        "summary": facts["after_fallback"]["summary"],
    }
    assert facts["after_fallback"]["summary"].startswith("Step ")
    assert facts["cancelled"] == {"stopped": True, "summary": "Install cancelled."}
    assert facts["clicks"][-2:] == ["Install the CPU preview instead", "Cancel"]
