"""End to end: real Blender (bpy), the add-on enabled like Blender does, the add-on's own
supervision starting the real backend subprocess (preview / crashtest engines), real HTTP,
the real glTF importer. Timers don't fire in module mode, so the UI path is driven by
calling the add-on's timer body (``timer.tick``) exactly as the timer would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from tests.addon.helpers import (
    REPO,
    RecordingLayout,
    addon,
    fresh_file,
    make_photo,
)


@pytest.fixture
def blender(tmp_path):
    fresh_file(tmp_path / "cache")
    photo, mask_path, mask = make_photo(tmp_path / "in")
    yield {"photo": photo, "mask_path": mask_path, "mask": mask, "tmp": tmp_path}
    addon("session").get().shutdown()


def _sam3d_objects():
    coll = bpy.data.collections.get("SAM 3D")
    return [] if coll is None else [o for o in coll.objects if o.type == "MESH"]


def test_generate_from_files_blocking_then_undo(blender):
    ctx = bpy.context
    ctx.scene.cursor.location = (0.5, -1.0, 0.0)
    # Blender's UI starts with an undo step for the loaded file; module mode has none.
    bpy.ops.ed.undo_push(message="before generate")
    t0 = time.perf_counter()
    result = bpy.ops.sam3d.generate(
        image_path=str(blender["photo"]),
        mask_path=str(blender["mask_path"]),
        engine="preview",
        seed=3,
        target_faces=5000,
        texture_size=512,
        bake=True,
    )
    seconds = time.perf_counter() - t0
    print(f"Generate -> object (preview, 5k faces, 512 px, cold backend): {seconds:.2f} s")
    assert result == {"FINISHED"}
    objs = _sam3d_objects()
    assert len(objs) == 1
    obj = objs[0]
    assert obj.name == "photo"
    # textured material, texture connected and packed into the .blend
    image = addon("importing.gltf").textured_image(obj)
    assert image is not None and image.packed_file is not None and image.size[0] == 512
    assert 4000 <= len(obj.data.polygons) <= 5000
    # provenance
    options = json.loads(obj["sam3d_options"])
    assert options["seed"] == 3 and options["target_faces"] == 5000 and options["bake"] is True
    assert obj["sam3d_engine"] == "preview" and obj["sam3d_seed"] == 3
    assert len(obj["sam3d_job_id"]) == 32
    assert (
        obj["sam3d_source_sha256"]
        == __import__("hashlib").sha256(blender["photo"].read_bytes()).hexdigest()
    )
    assert obj.modifiers.get("SAM 3D Simplify") is not None
    # placed on the 3D cursor
    corners = np.array([tuple(obj.matrix_world @ Vector(c)) for c in obj.bound_box])
    assert np.allclose(
        [corners[:, 0].mean(), corners[:, 1].mean(), corners[:, 2].min()],
        (0.5, -1.0, 0.0),
        atol=1e-4,
    )
    # history of this file
    hist = ctx.scene.sam3d.history
    assert len(hist) == 1 and hist[0].job_id == obj["sam3d_job_id"] and hist[0].state == "done"
    assert os.path.isfile(hist[0].glb_path)
    job_id = hist[0].job_id
    # Re-import from the history makes a second copy (called like the button does:
    # top level, with an undo push)
    assert bpy.ops.sam3d.import_result("EXEC_DEFAULT", True, job_id=job_id) == {"FINISHED"}
    assert len(_sam3d_objects()) == 2
    # Undo removes the re-import, then the generated object
    bpy.ops.ed.undo()
    assert len(_sam3d_objects()) == 1
    bpy.ops.ed.undo()
    assert _sam3d_objects() == []
    assert "photo" not in bpy.data.objects


def test_generate_ui_path_with_packed_image_painted_mask_and_camera(blender):
    ctx = bpy.context
    s = ctx.scene.sam3d
    image = bpy.data.images.load(str(blender["photo"]))
    image.pack()
    h, w = blender["mask"].shape
    mask_img = addon("blender_images").new_mask_image("painted", w, h)
    rgba = np.zeros((h, w, 4), np.float32)
    rgba[..., 3] = 1.0
    rgba[blender["mask"][::-1], :3] = 1.0  # Blender rows go bottom-up: "paint" the object white
    mask_img.pixels.foreach_set(rgba.ravel())
    s.image, s.mask_source, s.mask_image = image, "IMAGE", mask_img
    s.engine, s.texture_size, s.target_faces, s.placement = "preview", "256", 4000, "CAMERA"

    t0 = time.perf_counter()
    assert bpy.ops.sam3d.generate(blocking=False) == {"FINISHED"}
    assert time.perf_counter() - t0 < 1.0  # returns at once; the timer does the rest
    timer = addon("timer")
    rt = addon("session").get()
    job = rt.manager.jobs[-1]
    assert job.request.mask is not None and job.request.mask[:4] == b"\x89PNG"
    phases, progress = [], []
    while not _sam3d_objects():
        wait = timer.tick()
        phases.append(job.phase.value)
        progress.append(job.progress)
        assert time.perf_counter() - t0 < 120, job.status_line()
        time.sleep(min(wait or 0.05, 0.25))
    print(f"Generate -> object (UI path, 4k faces, 256 px): {time.perf_counter() - t0:.2f} s")
    assert {"waiting_backend", "running"} <= set(phases)
    assert progress == sorted(progress)  # the bar only moves forward
    obj = _sam3d_objects()[0]
    assert obj.name == "photo"
    assert job.request.mask is None and job.request.mask_count == 1  # bytes dropped once sent
    # Camera-aligned: seen from the (new) camera, the object covers the mask's pixels.
    cam = ctx.scene.camera
    assert cam is not None and (ctx.scene.render.resolution_x, ctx.scene.render.resolution_y) == (
        w,
        h,
    )
    inside = 0
    verts = obj.data.vertices
    for v in verts:
        ndc = world_to_camera_view(ctx.scene, cam, obj.matrix_world @ v.co)
        u, vv = int(ndc.x * w), int((1.0 - ndc.y) * h)
        if (
            0 <= u < w
            and 0 <= vv < h
            and blender["mask"][max(0, vv - 2) : vv + 3, max(0, u - 2) : u + 3].any()
        ):
            inside += 1
    assert inside / len(verts) > 0.95, inside / len(verts)
    assert ctx.scene.sam3d.history[-1].seconds > 0
    # With the new object active, the panel offers its Decimate ratio.
    rec = RecordingLayout()
    for cls in addon("ui.panels").classes:
        cls.draw(SimpleNamespace(layout=rec), ctx)
    assert "Object.modifiers" not in rec.props  # drawn through the modifier itself
    assert "DecimateModifier.ratio" in rec.props
    assert "Sam3DSettings.engine" in rec.props


def _start_and_wait_running(engine_seed=3):
    timer = addon("timer")
    rt = addon("session").get()
    assert bpy.ops.sam3d.generate(engine="crashtest", seed=engine_seed, blocking=False) == {
        "FINISHED"
    }
    job = rt.manager.jobs[-1]
    assert timer.wait_for(lambda: job.state == "running" or job.finished, 60)
    assert job.state == "running", job.status_line()
    return timer, rt, job


def test_cancel_mid_job(blender):
    s = bpy.context.scene.sam3d
    s.image = bpy.data.images.load(str(blender["photo"]))
    s.mask_image = bpy.data.images.load(str(blender["mask_path"]))
    timer, rt, job = _start_and_wait_running()
    t0 = time.perf_counter()
    assert bpy.ops.sam3d.cancel() == {"FINISHED"}
    assert timer.wait_for(lambda: job.finished and job.delivery.value == "delivered", 30)
    print(f"cancel took {time.perf_counter() - t0:.2f} s")
    assert job.phase.value == "cancelled"
    assert _sam3d_objects() == []
    assert "cancelled" in rt.notice.text.lower()
    assert bpy.context.scene.sam3d.history[-1].state == "cancelled"


def test_backend_killed_mid_job_then_next_job_works(blender):
    s = bpy.context.scene.sam3d
    s.image = bpy.data.images.load(str(blender["photo"]))
    s.mask_image = bpy.data.images.load(str(blender["mask_path"]))
    timer, rt, job = _start_and_wait_running()
    pid = rt.backend.pid
    os.killpg(pid, signal.SIGKILL)
    assert timer.wait_for(lambda: job.finished and job.delivery.value == "delivered", 30)
    assert job.phase.value == "failed" and job.error.code == "backend_died"
    assert rt.notice.level == "ERROR"
    assert "stopped unexpectedly" in rt.notice.text and "Traceback" not in rt.notice.text
    # next job: the backend is restarted and the object arrives
    assert bpy.ops.sam3d.generate(engine="preview", texture_size=256, target_faces=2000) == {
        "FINISHED"
    }
    assert rt.backend.pid != pid
    assert len(_sam3d_objects()) == 1


def test_script_overrides_and_bad_inputs(blender):
    s = bpy.context.scene.sam3d
    s.engine, s.seed, s.bake = "sam3d", 1, True  # the panel asks for what this machine lacks
    # operator properties win over the panel's settings
    assert bpy.ops.sam3d.generate(
        image_path=str(blender["photo"]),
        mask_path=str(blender["mask_path"]),
        engine="preview",
        seed=42,
        target_faces=1500,
        bake=False,
        label="scripted",
    ) == {"FINISHED"}
    obj = bpy.data.objects["scripted"]
    opts = json.loads(obj["sam3d_options"])
    assert opts["engine"] == "preview" and opts["seed"] == 42 and opts["bake"] is False
    assert addon("importing.gltf").textured_image(obj) is None  # vertex colours, as asked
    assert obj.data.color_attributes  # ... which the importer brought in
    # the panel's engine is unavailable here: a sentence, not a traceback
    with pytest.raises(RuntimeError) as err:
        bpy.ops.sam3d.generate(
            image_path=str(blender["photo"]), mask_path=str(blender["mask_path"]), engine="sam3d"
        )
    text = str(err.value)
    assert "Traceback" not in text
    assert any(w in text for w in ("GPU", "weights", "cannot run")), text
    # an image without alpha and no mask: explained before anything is sent
    s.image = bpy.data.images.load(str(blender["photo"]))
    s.mask_source = "ALPHA"
    with pytest.raises(RuntimeError, match="no transparent pixels"):
        bpy.ops.sam3d.generate()
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.sam3d.generate(image_path=str(blender["tmp"] / "nope.png"))


def test_remote_wrong_token_and_unreachable(blender):
    bp = addon("core.backend_process")
    cfg = addon("session").launch_config(addon("session").settings())
    server = bp.ManagedBackend(cfg)  # a real backend standing in for a GPU server
    assert server.wait_ready(60) == bp.BackendState.READY
    try:
        args = dict(
            image_path=str(blender["photo"]),
            mask_path=str(blender["mask_path"]),
            engine="preview",
            target_faces=1500,
            texture_size=256,
        )
        os.environ["SAM3D_BACKEND_URL"] = server.url
        os.environ["SAM3D_BACKEND_TOKEN"] = "wrong"
        with pytest.raises(RuntimeError, match="refused the access token"):
            bpy.ops.sam3d.generate(**args)
        os.environ["SAM3D_BACKEND_TOKEN"] = server.token
        assert bpy.ops.sam3d.generate(**args) == {"FINISHED"}
        assert addon("session").get().backend.kind == "remote"
        os.environ["SAM3D_BACKEND_URL"] = "http://127.0.0.1:9"
        t0 = time.perf_counter()
        with pytest.raises(RuntimeError, match="Cannot reach the SAM 3D backend"):
            bpy.ops.sam3d.generate(**args)
        assert time.perf_counter() - t0 < 5
    finally:
        os.environ.pop("SAM3D_BACKEND_URL", None)
        os.environ.pop("SAM3D_BACKEND_TOKEN", None)
        server.stop()


CHILD = textwrap.dedent(
    """
    import os, sys, tempfile
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp()
    sys.path.insert(0, {repo!r})
    import bpy
    from tests.addon import helpers
    helpers.enable_addon()
    helpers.preferences().cache_dir = {cache!r}
    assert bpy.ops.sam3d.backend_start(blocking=True) == {{"FINISHED"}}
    backend = helpers.addon("session").get().backend
    print("BACKEND_PID", backend.pid, flush=True)
    if {graceful!r}:
        helpers.disable_addon()   # what Blender does on quit: unregister
    os._exit(0)                   # no atexit, no cleanup: like a crash or a kill
    """
)


@pytest.mark.parametrize("graceful", [False, True], ids=["hard-exit", "clean-quit"])
def test_blender_exit_leaves_no_backend(blender, graceful):
    script = CHILD.format(repo=str(REPO), cache=str(blender["tmp"] / "child"), graceful=graceful)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BACKEND_PID")), None)
    assert line, out.stdout + out.stderr
    pid = int(line.split()[1])
    sp = addon("core.subprocesses")
    t0 = time.monotonic()
    while sp.pid_alive(pid) and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    gone_after = time.monotonic() - t0
    print(
        f"backend gone {gone_after:.2f} s after Blender exited ({'clean' if graceful else 'hard'})"
    )
    assert not sp.pid_alive(pid)
    assert gone_after < 5


def test_history_reimport_damaged_json_then_async_download(blender):
    """A damaged result.json is a sentence, not a traceback; with the local files gone,
    the History re-import downloads in the background and the timer imports it."""
    import shutil

    ctx = bpy.context
    assert bpy.ops.sam3d.generate(
        image_path=str(blender["photo"]),
        mask_path=str(blender["mask_path"]),
        engine="preview",
        target_faces=2000,
        texture_size=256,
    ) == {"FINISHED"}
    item = ctx.scene.sam3d.history[-1]
    job_id = item.job_id
    glb = addon("session").results_files(job_id).glb
    assert str(glb) == item.glb_path
    glb.with_name("result.json").write_text('{"pose": ')  # truncated
    with pytest.raises(RuntimeError) as err:
        bpy.ops.sam3d.import_result(job_id=job_id)
    assert "damaged" in str(err.value) and "Traceback" not in str(err.value)
    with pytest.raises(RuntimeError) as err:
        bpy.ops.sam3d.import_scene(job_id=job_id)
    assert "damaged" in str(err.value) and "Traceback" not in str(err.value)

    shutil.rmtree(glb.parent)
    timer = addon("timer")
    rt = addon("session").get()
    t0 = time.perf_counter()
    assert bpy.ops.sam3d.import_result(job_id=job_id, blocking=False) == {"FINISHED"}
    assert time.perf_counter() - t0 < 0.5  # the download runs in the background
    assert len(_sam3d_objects()) == 1
    worst = 0.0
    deadline = time.monotonic() + 60
    while len(_sam3d_objects()) < 2:
        t = time.perf_counter()
        wait = timer.tick()
        worst = max(worst, time.perf_counter() - t)
        assert time.monotonic() < deadline, rt.notice
        time.sleep(wait or 0.05)
    assert glb.is_file() and glb.with_name("result.json").is_file()
    assert len(ctx.scene.sam3d.history) == 1  # the entry was updated, not duplicated
    assert item.object_name in bpy.data.objects


def test_opening_another_file_mid_job_does_not_import_into_it(blender):
    ctx = bpy.context
    s = ctx.scene.sam3d
    s.image_source, s.image_path = "FILE", str(blender["photo"])
    s.mask_source, s.mask_path = "FILE", str(blender["mask_path"])
    assert bpy.ops.sam3d.generate(engine="crashtest", seed=3, blocking=False) == {"FINISHED"}
    timer = addon("timer")
    rt = addon("session").get()
    job = rt.manager.jobs[-1]
    assert timer.wait_for(lambda: job.state == "running", 60), job.error
    bpy.ops.wm.read_homefile(use_empty=True)  # the artist opens another file
    assert job.delivery.value == "dropped" and job.cancel_requested
    assert rt.notice is not None and "previous file" in rt.notice.text
    assert timer.wait_for(lambda: job.finished, 30)
    assert job.phase.value == "cancelled"
    assert rt.manager.step() is None
    assert not [o for o in bpy.data.objects if o.type == "MESH"]
    assert len(bpy.context.scene.sam3d.history) == 0
