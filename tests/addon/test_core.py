"""The add-on's bpy-free ``core/``: messages, job options, masks, backend choice,
installer runner, frame math, the batch's manifest and report. (That nothing in ``core/``
imports bpy is ``tests/test_architecture.py``.)"""

from __future__ import annotations

import dataclasses
import sys
import time
import typing
from pathlib import Path

import numpy as np
import pytest

from backend.errors import ERROR_STATUS
from backend.options import JobOptions as BackendJobOptions
from backend.options import QualityPreset
from backend.reconstruction import Intrinsics, Pose
from sam3d_blender.core import messages, placement
from sam3d_blender.core.installer import InstallerRun, InstallProgress, InstallState
from sam3d_blender.core.masks import MASK_SUFFIXES, mask_files_in
from sam3d_blender.core.options import ENGINES, QUALITIES, TEXTURE_SIZES, JobOptions
from sam3d_blender.core.settings import PreferenceValues, resolve
from sam3d_blender.core.subprocesses import pid_alive
from tests.addon.helpers import REPO


def test_job_options_match_the_backends_model():
    """The add-on's typed options are a subset of the backend's model with the backend's
    defaults and allowed values, and every value the add-on can send validates there."""
    ours = dataclasses.fields(JobOptions)
    theirs = BackendJobOptions.model_fields
    assert {f.name for f in ours} <= set(theirs)
    for f in ours:
        assert f.default == theirs[f.name].default, f.name
    assert set(QUALITIES) == set(typing.get_args(QualityPreset))
    assert JobOptions().engine in ENGINES and "auto" in ENGINES
    for size in TEXTURE_SIZES:
        BackendJobOptions.model_validate({"texture_size": size})
    for engine, quality in zip(ENGINES, QUALITIES, strict=True):
        opts = JobOptions(engine=engine, quality=quality, target_faces=None, bake=False)
        assert (
            BackendJobOptions.model_validate(opts.to_json()).model_dump(include=set(opts.to_json()))
            == opts.to_json()
        )


def test_job_options_read_as_overrides_and_back_from_json():
    base = JobOptions(engine="preview", target_faces=5000)
    row = {"id": "x", "image": "a.png", "seed": "7", "bake": "no", "engine": " SAM3D ", "x": 1}
    got = base.updated(row)
    assert got == JobOptions(engine="sam3d", seed=7, target_faces=5000, bake=False)
    assert base.updated({"target_faces": "0"}).target_faces is None  # 0 keeps every face
    assert base.updated({"target_faces": "", "engine": None}) == base  # not given
    with pytest.raises(ValueError):
        base.updated({"seed": "seven"})
    kept_all = JobOptions(target_faces=None)
    assert JobOptions.from_json(kept_all.to_json()) == kept_all  # null survives the trip
    assert JobOptions.from_json({"fill_holes": True, "seed": 4}) == JobOptions(seed=4)


def test_mask_folder_reader_takes_numbered_files_of_every_image_type(tmp_path):
    for name in ("10.png", "2.jpg", "0.JPEG", "1.webp", "3.exr", "notes.txt", "x.png", "4.gif"):
        (tmp_path / name).write_bytes(b"")
    got = [p.name for p in mask_files_in(tmp_path)]
    assert got == ["0.JPEG", "1.webp", "2.jpg", "3.exr", "10.png"]
    assert ".jpg" in MASK_SUFFIXES and ".jpeg" in MASK_SUFFIXES
    with pytest.raises(messages.InputError) as err:
        mask_files_in(tmp_path / "nowhere")
    assert err.value.code == "no_mask" and "not found" in err.value.sentence()
    (tmp_path / "empty").mkdir()
    with pytest.raises(messages.InputError, match="0.png"):
        mask_files_in(tmp_path / "empty")


def test_mask_folders_mean_the_same_to_the_addon_and_the_backend(tmp_path):
    """``python -m backend generate --masks DIR`` takes the files the add-on takes."""
    from backend.jobs import intake

    assert intake.MASK_SUFFIXES == MASK_SUFFIXES
    for name in ("10.png", "2.jpg", "0.JPEG", "1.webp", "3.tif", "notes.txt", "x.png", "4.gif"):
        (tmp_path / name).write_bytes(b"")
    assert intake.mask_files_in(tmp_path) == mask_files_in(tmp_path)


def test_every_backend_error_code_has_a_sentence():
    missing = sorted(set(ERROR_STATUS) - set(messages.MESSAGES))
    assert missing == []
    for code in [*ERROR_STATUS, "backend_not_installed", "backend_unreachable", "backend_died"]:
        text = messages.describe(code)
        assert text.endswith((".", ")")) and len(text) > 20, code


def test_describe_never_shows_a_traceback():
    msg = 'boom\nTraceback (most recent call last):\n  File "x.py", line 1\nValueError: x'
    text = messages.describe("internal_error", msg)
    assert "Traceback" not in text and "x.py" not in text
    assert text.endswith("(boom)")
    assert messages.describe("weird_new_code", "Something specific.") == "Something specific."


def test_backend_choice_env_overrides_preferences(tmp_path):
    user = tmp_path / "user"
    prefs = PreferenceValues(backend_python="/opt/py", idle_unload_min=5, cache_dir="")
    s = resolve(prefs, {}, user)
    assert s.mode == "LOCAL" and s.python == Path("/opt/py") and s.idle_unload_s == 300
    assert s.data_dir == user / "cache" / "jobs" and s.results_dir == user / "cache" / "results"
    s = resolve(prefs, {"SAM3D_BACKEND_PYTHON": "/env/py"}, user)
    assert s.python == Path("/env/py") and s.source == "SAM3D_BACKEND_PYTHON"
    s = resolve(prefs, {"SAM3D_BACKEND_URL": "http://gpu:8765", "SAM3D_BACKEND_TOKEN": "t"}, user)
    assert (s.mode, s.url, s.token) == ("REMOTE", "http://gpu:8765", "t")
    s = resolve(
        PreferenceValues(mode="REMOTE", remote_url="http://a:1 ", remote_token="k"), {}, user
    )
    assert (s.mode, s.url, s.token) == ("REMOTE", "http://a:1", "k")
    # nothing set and no venv yet: not installed; once the installer made the venv: found
    s = resolve(PreferenceValues(idle_unload_min=0), {}, user)
    assert s.python is None and s.idle_unload_s is None
    venv_py = user / "venv" / "bin" / "python"
    venv_py.parent.mkdir(parents=True)
    venv_py.write_text("")
    assert resolve(PreferenceValues(), {}, user).python == venv_py
    assert resolve(PreferenceValues(cache_dir=str(tmp_path / "c")), {}, user).data_dir == (
        tmp_path / "c" / "jobs"
    )


def test_installer_progress_lines():
    p = InstallProgress()
    for line in [
        "creating venv",
        "STEP 1/3 venv",
        "OK venv",
        "STEP 2/3 torch (cuda 12.1)",
        "FAIL torch: no matching wheel",
    ]:
        p.feed(line)
    assert (p.step, p.total, p.name) == (2, 3, "torch (cuda 12.1)")
    assert p.fraction == pytest.approx(1 / 3)
    assert p.failures == ["FAIL torch: no matching wheel"]


def test_install_button_runs_whatever_installer_exists(tmp_path):
    """Runs the real ``python -m backend install`` (with --help, so nothing is
    downloaded): whether the installer has landed or not, the run ends, its output is
    captured for the UI and the state matches the exit code."""
    run = InstallerRun(
        sys.executable,
        REPO,
        tmp_path / "venv",
        "cpu",
        tmp_path / "install.log",
        extra_args=["--help"],
    )
    run.start()
    assert run.wait(timeout=120) in (InstallState.SUCCEEDED, InstallState.FAILED)
    assert run.progress.lines, "no output captured"
    assert (run.returncode == 0) == (run.state == InstallState.SUCCEEDED)
    assert (tmp_path / "install.log").read_text().strip()
    if run.state == InstallState.FAILED:
        assert "Install failed" in run.summary() and str(run.returncode) in run.summary()


def test_cancelling_the_installer_ends_its_children_without_blocking(tmp_path):
    """pip runs as the installer's child; cancel must end it too, and must not wait for a
    process that ignores SIGTERM (Blender's main thread calls cancel)."""
    import stat

    pidfile = tmp_path / "child.pid"
    fake = tmp_path / "python"  # stands in for the interpreter running pip
    fake.write_text(
        "#!/bin/sh\ntrap '' TERM\nsleep 300 &\n"
        f"echo $! > {pidfile}\necho 'STEP 1/3 pip install'\nwait\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    run = InstallerRun(fake, REPO, tmp_path / "v", "cpu", tmp_path / "i.log")
    run.start()
    deadline = time.monotonic() + 10
    while not (pidfile.is_file() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pidfile.read_text())
    leader = run.proc.pid
    t0 = time.monotonic()
    run.cancel(grace_s=1.0)
    took = time.monotonic() - t0
    assert took < 0.2, took
    assert run.state == InstallState.FAILED and "cancelled" in " ".join(run.progress.lines)
    deadline = time.monotonic() + 10
    while (pid_alive(leader) or pid_alive(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(leader) and not pid_alive(child)


def test_installer_with_a_missing_python(tmp_path):
    run = InstallerRun(tmp_path / "nope", REPO, tmp_path / "v", "cpu", tmp_path / "i.log")
    run.start()
    assert run.state == InstallState.FAILED
    assert "cannot run" in run.summary()


def test_pose_matrix_matches_the_backend():
    rng = np.random.default_rng(0)
    q = rng.normal(size=4)
    pose = {
        "rotation_wxyz": list(q / np.linalg.norm(q)),
        "translation": [0.2, -0.1, -3.0],
        "scale": [0.7, 0.9, 1.1],
    }
    pts = rng.normal(size=(20, 3))
    ours = pts @ placement.pose_matrix(pose)[:3, :3].T + placement.pose_matrix(pose)[:3, 3]
    assert np.allclose(ours, Pose.from_dict(pose).apply(pts))


def test_gltf_to_blender_axes():
    up_gltf = np.array([0, 1, 0, 0])
    front_gltf = np.array([0, 0, 1, 0])
    assert np.allclose(placement.GLTF_TO_BLENDER @ up_gltf, [0, 0, 1, 0])  # Y-up -> Z-up
    assert np.allclose(placement.GLTF_TO_BLENDER @ front_gltf, [0, -1, 0, 0])  # front -> -Y


def test_camera_params_reproduce_the_intrinsics():
    """Blender's projection with the returned lens/shift (HORIZONTAL fit, square pixels)
    gives the pixel the backend's pinhole model gives."""
    intr = {"fx": 500.0, "fy": 500.0, "cx": 310.0, "cy": 250.0, "width": 640, "height": 480}
    p = placement.camera_params_from_intrinsics(intr)
    pts = np.array([[0.3, 0.2, -4.0], [-0.5, -0.1, -2.0], [0.0, 0.0, -1.0]])
    want = Intrinsics.from_dict(intr).project(pts)
    big = intr["width"]  # a HORIZONTAL fit spans the sensor over the width
    assert p["sensor_fit"] == "HORIZONTAL"
    f = p["lens"] / p["sensor_width"] * big  # pixels
    u = intr["width"] / 2 + f * pts[:, 0] / -pts[:, 2] - p["shift_x"] * big
    v = intr["height"] / 2 - (f * pts[:, 1] / -pts[:, 2] - p["shift_y"] * big)
    assert np.allclose(np.stack([u, v], 1), want)


def test_batch_manifest_items_options_and_fingerprints(tmp_path):
    from sam3d_blender.core.batch_items import (
        UsageError,
        base_options,
        build_parser,
        fingerprint,
        load_manifest,
    )

    (tmp_path / "masks").mkdir()
    for name in ("photo.png", "masks/0.png", "masks/1.jpg", "m.png"):
        (tmp_path / name).write_bytes(name.encode())
    manifest = tmp_path / "items.csv"
    manifest.write_text(
        "id,image,mask,masks,target_faces,bake\n"
        "folder,photo.png,,masks,1500,no\n"
        "one,photo.png,m.png,,,\n"
        "gone,missing.png,m.png,,,\n"
    )
    items, defaults = load_manifest(manifest)
    assert [i.id for i in items] == ["folder", "one", "gone"] and defaults == {}
    assert [m.name for m in items[0].masks] == ["0.png", "1.jpg"]
    assert items[2].input_error[0] == "no_image"
    args = build_parser().parse_args(["--image", "x", "--out", "o", "--target-faces", "0"])
    base = base_options(args)
    assert base == JobOptions(target_faces=None)
    opts = base.updated(items[0].options)
    assert opts.target_faces == 1500 and opts.bake is False and opts.engine == "auto"
    fp = fingerprint(items[0], opts)
    assert fp == fingerprint(items[0], base.updated(items[0].options))
    assert fp != fingerprint(items[0], opts.updated({"seed": 1}))
    (tmp_path / "masks" / "0.png").write_bytes(b"changed")
    assert fp != fingerprint(items[0], opts)
    bad = tmp_path / "bad.json"
    bad.write_text('{"items": [{"image": "photo.png", "mask": "m.png", "seed": "x"}]}')
    with pytest.raises(UsageError, match="not valid"):
        load_manifest(bad)


def test_batch_report_resumes_only_what_may_pass_again(tmp_path):
    from sam3d_blender.core.batch_report import Report

    report = Report(tmp_path / "report.json")
    report.items.update(
        {
            "done": {"status": "done", "fingerprint": "a"},
            "bad": {"status": "failed", "fingerprint": "b", "error": {"code": "empty_mask"}},
            "away": {"status": "failed", "fingerprint": "c", "error": {"code": "backend_died"}},
        }
    )
    report.save()
    again = Report(tmp_path / "report.json")
    assert again.finished_before("done", "a", retry_failed=False)["status"] == "done"
    assert again.finished_before("done", "changed", retry_failed=False) is None
    assert again.finished_before("bad", "b", retry_failed=False) is not None  # the input's
    assert again.finished_before("bad", "b", retry_failed=True) is None
    assert again.finished_before("away", "c", retry_failed=False) is None  # retryable
    assert (
        "backend_died" in messages.RETRYABLE_CODES and "empty_mask" not in messages.RETRYABLE_CODES
    )
