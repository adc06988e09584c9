"""Headless scenarios in the real Blender (``blender --background``), as pipelines use it.

    scripts/blender.sh --background --python-exit-code 3 --python headless.py -- \
        --scenario generate|reopen|bad_input --result R.json [inputs]

* ``generate``: in the default file (cube at the origin, 3D cursor inside it),
  ``sam3d.generate`` imports one object; ``sam3d.generate_scene`` imports every masked
  object of a photo under one camera; the file is saved as ``--blend``. (Blender keeps no
  undo steps in ``--background``: undo is checked in a window, see ``gui.py``.)
* ``reopen``: that .blend opened in a new Blender: objects, provenance, packed textures,
  the History; a History re-import.
* ``bad_input``: each bad input the panel can meet, and the sentence it reports; the scene
  is untouched and a good job still works afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ADDON, Facts, addon, object_facts, parse_args, run_background, sam3d_objects  # noqa: E402

#: Small jobs: the tier proves behaviour, not quality.
FAST = {"engine": "preview", "target_faces": 3000, "texture_size": 256}


def _args():
    def extra(p):
        p.add_argument("--scenario", required=True)
        p.add_argument("--photo")
        p.add_argument("--mask")
        p.add_argument("--masks")
        p.add_argument("--blend")
        p.add_argument("--bad-dir", help="folder with the bad inputs (see test_headless.py)")
        p.add_argument("--python-without-backend", help="an interpreter lacking uvicorn")

    return parse_args(extra)


def _scene_state() -> dict:
    return {
        "objects": sorted(o.name for o in bpy.data.objects),
        "meshes": len(bpy.data.meshes),
        "images": len(bpy.data.images),
    }


def scenario_generate(facts: Facts, args) -> None:
    facts["addon_enabled"] = ADDON in bpy.context.preferences.addons
    scene = bpy.context.scene
    cube = bpy.data.objects.get("Cube")
    facts["cube"] = None if cube is None else {"min": [-1, -1, -1], "max": [1, 1, 1]}
    facts["cursor"] = list(scene.cursor.location)
    facts["before"] = _scene_state()
    facts.note("sam3d.generate (blocking, as in background mode)")
    result = bpy.ops.sam3d.generate(image_path=args.photo, mask_path=args.mask, **FAST)
    facts["generate_result"] = sorted(result)
    objs = sam3d_objects()
    facts["generated"] = [object_facts(o) for o in objs]
    facts["history"] = [(h.state, h.job_id, h.object_name) for h in scene.sam3d.history]
    facts.note("sam3d.generate_scene")
    before = {o.name for o in bpy.data.objects}
    result = bpy.ops.sam3d.generate_scene(image_path=args.photo, mask_dir=args.masks, **FAST)
    facts["scene_result"] = sorted(result)
    new = [o for o in bpy.data.objects if o.name not in before]
    facts["scene_new"] = {
        "meshes": [object_facts(o) for o in new if o.type == "MESH"],
        "cameras": [o.name for o in new if o.type == "CAMERA"],
        "scene_camera": scene.camera.name if scene.camera else None,
    }
    facts.note(f"save {args.blend}")
    bpy.ops.wm.save_as_mainfile(filepath=args.blend)
    facts["saved"] = os.path.isfile(args.blend)
    facts["saved_state"] = _scene_state()
    facts["backend_pid"] = addon("session").get().backend.pid


def scenario_reopen(facts: Facts, args) -> None:
    bpy.ops.wm.open_mainfile(filepath=args.blend)
    scene = bpy.context.scene
    facts["state"] = _scene_state()
    facts["objects"] = [object_facts(o) for o in sam3d_objects()]
    facts["history"] = [
        {"state": h.state, "job_id": h.job_id, "object": h.object_name, "label": h.label}
        for h in scene.sam3d.history
    ]
    facts["cameras"] = sorted(o.name for o in scene.objects if o.type == "CAMERA")
    done = [h for h in scene.sam3d.history if h.state == "done" and h.job_id]
    if done:
        facts.note("History re-import")
        before = {o.name for o in bpy.data.objects}
        result = bpy.ops.sam3d.import_result("EXEC_DEFAULT", True, job_id=done[0].job_id)
        facts["reimport_result"] = sorted(result)
        facts["reimported"] = [
            object_facts(o) for o in bpy.data.objects if o.name not in before and o.type == "MESH"
        ]


def scenario_bad_input(facts: Facts, args) -> None:
    messages = addon("core.messages")
    bad = Path(args.bad_dir)
    # An image without alpha, loaded in Blender, used with "mask from alpha".
    opaque = bpy.data.images.load(str(bad / "opaque.png"))
    cases = [
        ("no_image", dict(image_path=str(bad / "missing.png"), mask_path=args.mask)),
        ("no_mask", dict(image_path=args.photo, mask_path=str(bad / "missing_mask.png"))),
        ("no_alpha", dict(image_name=opaque.name, use_alpha=True)),
        ("bad_image", dict(image_path=str(bad / "not_an_image.png"), mask_path=args.mask)),
        ("empty_file", dict(image_path=str(bad / "empty.png"), mask_path=args.mask)),
        ("empty_mask", dict(image_path=args.photo, mask_path=str(bad / "black.png"))),
        ("full_mask", dict(image_path=args.photo, mask_path=str(bad / "white.png"))),
        (
            "mask_size_mismatch",
            dict(image_path=args.photo, mask_path=str(bad / "other_aspect.png")),
        ),
        ("unknown_engine", dict(image_path=args.photo, mask_path=args.mask, engine="nope")),
    ]
    results = []
    before = _scene_state()
    for code, kwargs in cases:
        results.append(_expect_error(facts, code, kwargs, messages))
    # The managed backend's interpreter lacks the backend's packages (the symptom of a
    # resolved venv link): the start fails with its sentence, then a good one comes back.
    saved = os.environ.get("SAM3D_BACKEND_PYTHON", "")
    os.environ["SAM3D_BACKEND_PYTHON"] = args.python_without_backend
    results.append(
        _expect_error(
            facts,
            "backend_start_failed",
            dict(image_path=args.photo, mask_path=args.mask, **FAST),
            messages,
        )
    )
    os.environ["SAM3D_BACKEND_PYTHON"] = "/nonexistent/venv/bin/python"
    results.append(
        _expect_error(
            facts,
            "backend_not_installed",
            dict(image_path=args.photo, mask_path=args.mask, **FAST),
            messages,
        )
    )
    os.environ["SAM3D_BACKEND_PYTHON"] = saved
    facts["cases"] = results
    facts["unchanged"] = _scene_state() == before
    facts["state_before"], facts["state_after"] = before, _scene_state()
    # Every code the panel can show has its own sentence (the fallback names the code).
    facts["sentences"] = {code: messages.describe(code) for code in messages.MESSAGES}
    facts.note("a good job after the bad ones")
    result = bpy.ops.sam3d.generate(image_path=args.photo, mask_path=args.mask, **FAST)
    facts["good_after"] = sorted(result)
    facts["good_objects"] = len(sam3d_objects())


def _expect_error(facts: Facts, code: str, kwargs: dict, messages) -> dict:
    facts.note(f"bad input, expecting {code}")
    sentence = messages.MESSAGES[code]
    try:
        result = bpy.ops.sam3d.generate(**kwargs)
        return {"code": code, "raised": False, "result": sorted(result), "sentence": sentence}
    except RuntimeError as exc:
        text = str(exc)
        return {
            "code": code,
            "raised": True,
            "message": text,
            "sentence": sentence,
            "has_sentence": sentence in text,
            "traceback_free": "Traceback" not in text,
        }


SCENARIOS = {
    "generate": scenario_generate,
    "reopen": scenario_reopen,
    "bad_input": scenario_bad_input,
}


def main() -> None:
    args = _args()
    facts = Facts(args.result)
    facts["scenario"] = args.scenario
    run_background(lambda f: SCENARIOS[args.scenario](f, args), facts)
    addon("session").reset()  # stop the backend before Blender exits


main()
