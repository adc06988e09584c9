"""The add-on in Blender 4.3's GUI under Xvfb (Mesa): the real event loop, timers, modal
drawing, mouse clicks and keys from X events (xdotool). Screenshots of every step go to
``out/blender/<test>/`` for people to look at.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.blender.blender_run import run_scenario
from tests.scene_fixture import synthetic_photo

pytestmark = pytest.mark.slow

#: Seconds within which quitting Blender must leave no backend process behind.
QUIT_GRACE_S = 5.0


@pytest.fixture
def photo(tmp_path) -> dict[str, Path]:
    big = synthetic_photo(tmp_path / "in", seed=11, n_objects=3, size=(1600, 1200))
    return {"photo": big, "masks": big.parent / "masks", "mask": big.parent / "masks" / "0.png"}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _left_behind(processes: dict) -> list[int]:
    """The backend and its workers still running after Blender quit (waits up to
    QUIT_GRACE_S)."""
    pids = [p for p in [processes["backend_pid"], *processes["children"]] if p]
    deadline = time.monotonic() + QUIT_GRACE_S
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _overlap(a: dict, b: dict, eps: float = 1e-4) -> bool:
    """True when boxes ``a`` and ``b`` share volume (more than ``eps`` metres deep)."""
    return all(
        a["min"][i] < b["max"][i] - eps and a["max"][i] > b["min"][i] + eps for i in range(3)
    )


def test_artist_session_generate_cancel_generate_undo_quit(user_dir, photo, tmp_path, shots):
    t0 = time.monotonic()
    facts, proc = run_scenario(
        "gui.py",
        [
            "--scenario",
            "session",
            "--shots",
            str(shots),
            "--photo",
            str(photo["photo"]),
            "--mask",
            str(photo["mask"]),
        ],  # fmt: skip
        tmp_path / "session.json",
        user_dir=user_dir,
        gui=True,
        timeout=400,
        log=shots / "blender.log",
    )
    print("\n".join(facts["log"]))
    print(f"GUI session: {time.monotonic() - t0:.1f} s; screenshots in {shots}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    # the SAM 3D tab, opened with N and a click on its tab
    assert facts["sidebar_shown"] and facts["tab"] == "SAM 3D"
    # Generate pressed with the mouse started a job whose progress advanced
    assert facts["generate_button"] and facts["job_started"]
    progress = [p for _, p, _ in facts["progress_before_cancel"]]
    assert progress == sorted(progress) and len({p for p in progress if p > 0}) >= 2, progress
    # Cancel mid-job: the panel is idle again, nothing was imported
    assert facts["cancel_button"] is not None
    assert 0 < progress[-1] < 1
    cancel = facts["cancel"]
    assert cancel["idle"] and cancel["phase"] == "CANCELLED", cancel
    assert cancel["objects"] == facts["objects_at_start"]
    assert cancel["notice"] == "Generation cancelled."
    assert cancel["history"] == [["cancelled", "photo"]]
    after, before = facts["generate_button_after_cancel"], facts["generate_button"]
    assert after is not None and abs(after[1] - before[1]) <= 30, (after, before)
    # Generate again: the object arrives selected, active, framed, not inside the cube
    obj = facts["imported"]
    assert obj["name"] == "photo" and obj["selected"] and obj["active"]
    assert obj["selected_names"] == ["photo"]
    assert facts["notice_after_import"].startswith("'photo' added to the scene on top of 'Cube'")
    assert not _overlap(obj["bbox"], facts["cube_bbox"]), obj["bbox"]
    frame = facts["frame"]
    assert frame["now"]["inside"], frame  # every corner of its box is in the view
    assert frame["now"]["fraction"] > 0.25, frame  # and it fills a good part of it
    assert frame["now"]["fraction"] > 3 * frame["before"]["fraction"], frame
    # Ctrl+Z removed it
    assert facts["after_undo"] == facts["objects_at_start"]
    # quitting Blender left no backend process
    processes = facts["processes"]
    assert processes["backend_pid"], processes
    assert _left_behind(processes) == [], processes
    assert len(facts["screenshots"]) == 5
    assert all(os.path.getsize(p) > 10_000 for p in facts["screenshots"])


def test_undo_and_redo_of_generate_and_generate_scene(user_dir, photo, tmp_path, shots):
    """``blender --background`` has no undo stack, so undo is checked in a window: the
    operators called as a script in the UI calls them, the imports done by the timers."""
    small = synthetic_photo(tmp_path / "small", seed=11, n_objects=3)
    facts, proc = run_scenario(
        "gui.py",
        [
            "--scenario",
            "undo",
            "--shots",
            str(shots),
            "--photo",
            str(small),
            "--mask",
            str(small.parent / "masks" / "0.png"),
            "--masks",
            str(small.parent / "masks"),
        ],  # fmt: skip
        tmp_path / "undo.json",
        user_dir=user_dir,
        gui=True,
        timeout=300,
        log=shots / "blender.log",
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    base = facts["base"]
    assert facts["generate_result"] == ["FINISHED"]
    assert facts["after_generate"] == sorted([*base, "photo"])
    assert facts["generated"]["selected"] and facts["generated"]["active"]
    assert facts["after_undo"] == base
    assert facts["after_redo"] == facts["after_generate"]
    new = set(facts["after_scene"]) - set(facts["before_scene"])
    assert len(facts["scene_objects"]) == 3 and len(new) == 4  # three objects + a camera
    assert facts["after_scene_undo"] == facts["before_scene"]
    assert facts["after_scene_redo"] == facts["after_scene"]
    assert _left_behind(facts["processes"]) == []
