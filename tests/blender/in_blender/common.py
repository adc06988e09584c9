"""Shared by the scripts that run INSIDE the real Blender of ``scripts/blender.sh``.

They are started as ``blender [--background] --python <script> -- --result R.json ...``;
each records what it observed (scene and process state) as "facts" in ``R.json``, which
the pytest side asserts on. An exception is recorded there too (with its traceback), so a
failure inside Blender reads like any test failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bpy

#: The module of the extension installed from the zip into the "user_default" repository.
ADDON = "bl_ext.user_default.sam3d"


def addon(name: str) -> Any:
    """A submodule of the installed add-on, e.g. ``addon("session")``."""
    return importlib.import_module(f"{ADDON}.sam3d_blender.{name}")


def parse_args(
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The script's arguments (after Blender's ``--``)."""
    p = argparse.ArgumentParser()
    p.add_argument("--result", required=True, help="where the facts go (JSON)")
    if extra is not None:
        extra(p)
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    return p.parse_args(argv)


class Facts(dict):
    """What a scenario observed; written as JSON by :meth:`write`."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(blender_version=bpy.app.version_string, python=sys.version.split()[0])
        self.path = Path(path)
        self.t0 = time.monotonic()
        self.log: list[str] = []

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:7.2f} s  {text}"
        self.log.append(line)
        print(f"[scenario] {line}", flush=True)

    def write(self) -> None:
        self["log"] = self.log
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self, indent=1, sort_keys=True, default=str))
        os.replace(tmp, self.path)


def run_background(scenario: Callable[[Facts], None], facts: Facts) -> None:
    """Run a background-mode scenario; record an exception; leave with 0 (facts decide)."""
    try:
        scenario(facts)
    except Exception:
        facts["error"] = traceback.format_exc()
        print(facts["error"], file=sys.stderr, flush=True)
    finally:
        facts.write()


def run_gui(start: Callable[[], Iterator[float]], facts: Facts, watchdog_s: float) -> None:
    """Run a GUI scenario from Blender's timer: ``start()`` makes a generator whose every
    ``next`` does one step and yields the seconds until the next one, so the UI stays live
    (and real input events arrive) in between. Past ``watchdog_s`` it stops with an error;
    an exception is recorded in the facts; either way Blender quits once the facts are
    written."""
    state: dict[str, Any] = {}

    def finish() -> None:
        facts.write()
        bpy.ops.wm.quit_blender()

    def step() -> float | None:
        try:
            if "gen" not in state:
                state["gen"] = start()
                state["deadline"] = time.monotonic() + watchdog_s
            if time.monotonic() > state["deadline"]:
                raise TimeoutError(f"the scenario took longer than {watchdog_s:g} s")
            return next(state["gen"])
        except StopIteration:
            facts.note("done; quitting Blender")
        except Exception:
            facts["error"] = traceback.format_exc()
            print(facts["error"], file=sys.stderr, flush=True)
        finish()
        return None

    bpy.app.timers.register(step, first_interval=1.0)


def sam3d_objects(scene: bpy.types.Scene | None = None) -> list[bpy.types.Object]:
    """Mesh objects of ``scene`` (default: the current one) that the add-on made."""
    scene = scene or bpy.context.scene
    return [o for o in scene.objects if o.type == "MESH" and "sam3d_job_id" in o]


def world_bbox(obj: bpy.types.Object) -> dict[str, list[float]]:
    """World-space bounding box of ``obj`` (metres): ``{"min": [x,y,z], "max": [x,y,z]}``."""
    from mathutils import Vector

    pts = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    return {
        "min": [min(p[i] for p in pts) for i in range(3)],
        "max": [max(p[i] for p in pts) for i in range(3)],
    }


def object_facts(obj: bpy.types.Object) -> dict[str, Any]:
    """Name, collection, selection, box, texture and provenance of an imported object."""
    image = addon("importing.gltf").textured_image(obj)
    layer = bpy.context.view_layer
    return {
        "name": obj.name,
        "collections": [c.name for c in obj.users_collection],
        "selected": obj.select_get(),
        "active": layer.objects.active == obj,
        "selected_names": [o.name for o in bpy.context.selected_objects],
        "bbox": world_bbox(obj),
        "faces": len(obj.data.polygons),
        "texture_packed": bool(image is not None and image.packed_file is not None),
        "texture_size": list(image.size) if image is not None else None,
        "modifiers": [m.name for m in obj.modifiers],
        "placement": obj.get("sam3d_placement"),
        "engine": obj.get("sam3d_engine"),
        "job_id": obj.get("sam3d_job_id"),
    }
