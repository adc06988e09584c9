"""Shared helpers for the add-on tests (imported by tests/addon and tests/e2e/test_addon_*).

Nothing here replaces a component of ours: the backend is the real ``python -m backend
serve`` started by the add-on's own supervision code, Blender is the real bpy module.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
EXT_ID = "sam3d"
REPO_MODULE = "sam3d_tests"
ADDON_MODULE = f"bl_ext.{REPO_MODULE}.{EXT_ID}"

# The add-on starts its backend with the test run's Python (the repo venv), and the
# backend registers the test-only "crashtest" engine (seed 1 crashes, seed 3 is slow).
os.environ["SAM3D_BACKEND_PYTHON"] = sys.executable
os.environ["SAM3D_ENABLE_TEST_ENGINES"] = "1"
for _var in ("SAM3D_BACKEND_URL", "SAM3D_BACKEND_TOKEN"):
    os.environ.pop(_var, None)


def make_photo(folder: Path, width: int = 320, height: int = 240) -> tuple[Path, Path, np.ndarray]:
    """A synthetic photo (a textured ellipse on grey), its mask PNG and the mask (H, W) bool,
    top row first. Written with Pillow (test data, not add-on code)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = width * 0.55, height * 0.5
    mask = ((xx - cx) ** 2 / (width * 0.22) ** 2 + (yy - cy) ** 2 / (height * 0.37) ** 2) < 1
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = (90, 110, 130)
    img[mask, 0] = 200
    img[mask, 1] = ((xx[mask] % 50) * 4).astype(np.uint8)
    img[mask, 2] = ((yy[mask] % 40) * 5).astype(np.uint8)
    photo, mask_path = folder / "photo.png", folder / "photo_mask.png"
    Image.fromarray(img).save(photo)
    Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
    return photo, mask_path, mask


_enabled = {"done": False}


def enable_addon() -> str:
    """Enable the extension the way Blender does: a user repository whose folder contains
    the extension folder (a link named after the manifest id to the repo root), then
    ``addon_utils.enable``. Idempotent. Returns the add-on's module name."""
    import addon_utils
    import bpy

    prefs = bpy.context.preferences
    if prefs.extensions.repos.get(REPO_MODULE) is None and not any(
        r.module == REPO_MODULE for r in prefs.extensions.repos
    ):
        parent = Path(tempfile.mkdtemp(prefix="sam3d-ext-repo-"))
        (parent / EXT_ID).symlink_to(REPO, target_is_directory=True)
        prefs.extensions.repos.new(
            name=REPO_MODULE, module=REPO_MODULE, custom_directory=str(parent), source="USER"
        )
    if ADDON_MODULE not in prefs.addons:
        mod = addon_utils.enable(ADDON_MODULE, default_set=True, handle_error=_raise)
        assert mod is not None, "addon_utils.enable returned None"
    return ADDON_MODULE


def fresh_file(cache: Path) -> None:
    """The add-on enabled, an empty file, the managed local backend with its cache in
    ``cache`` (what every end-to-end test starts from)."""
    import bpy

    enable_addon()
    bpy.ops.wm.read_homefile(use_empty=True)
    preferences().cache_dir = str(cache)
    preferences().backend_mode = "LOCAL"


def disable_addon() -> None:
    import addon_utils

    addon_utils.disable(ADDON_MODULE, default_set=True, handle_error=_raise)


def _raise(exc: BaseException) -> None:
    raise exc


def addon(name: str):
    """A submodule of the enabled add-on, e.g. ``addon("session")``, ``addon("core.jobs")``."""
    return importlib.import_module(f"{ADDON_MODULE}.sam3d_blender.{name}")


def preferences():
    import bpy

    return bpy.context.preferences.addons[ADDON_MODULE].preferences


class RecordingLayout:
    """Stands in for ``bpy.types.UILayout`` when drawing headless (Blender can't draw
    panels in module mode). It checks what real layouts would check: that every ``prop``
    names an existing RNA property and every ``operator`` an existing operator whose
    properties are assigned by their real names. Records labels for assertions."""

    def __init__(self, root: RecordingLayout | None = None) -> None:
        self.root = root or self
        if root is None:
            self.labels: list[str] = []
            self.props: list[str] = []
            self.operators: list[str] = []
            self.progress_calls: list[dict] = []
        self.enabled = True
        self.alert = False
        self.active = True
        self.scale_y = 1.0
        self.scale_x = 1.0
        self.use_property_split = False
        self.use_property_decorate = False

    def _child(self) -> RecordingLayout:
        return RecordingLayout(self.root)

    def row(self, **kw) -> RecordingLayout:
        return self._child()

    def column(self, **kw) -> RecordingLayout:
        return self._child()

    def box(self) -> RecordingLayout:
        return self._child()

    def split(self, **kw) -> RecordingLayout:
        return self._child()

    def separator(self, **kw) -> None:
        pass

    def label(self, text: str = "", icon: str = "NONE", **kw) -> None:
        _check_icon(icon)
        assert isinstance(text, str)
        self.root.labels.append(text)

    def prop(self, data, prop: str, **kw) -> None:
        assert prop in data.bl_rna.properties, f"{type(data).__name__} has no property {prop!r}"
        _check_icon(kw.get("icon", "NONE"))
        self.root.props.append(f"{type(data).__name__}.{prop}")

    def operator(self, idname: str, **kw):
        import bpy

        _check_icon(kw.get("icon", "NONE"))
        cat, _, name = idname.partition(".")
        op = getattr(getattr(bpy.ops, cat), name)
        rna = op.get_rna_type()
        self.root.operators.append(idname)
        return _OperatorProps(rna)

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "") -> None:
        assert 0.0 <= factor <= 1.0, factor
        assert type in {"BAR", "RING"}
        self.root.progress_calls.append({"factor": factor, "text": text})
        self.root.labels.append(text)


class _OperatorProps:
    def __init__(self, rna) -> None:
        object.__setattr__(self, "_rna", rna)

    def __setattr__(self, key: str, value) -> None:
        assert key in self._rna.properties, f"operator {self._rna.identifier} has no {key!r}"


def _check_icon(icon: str) -> None:
    import bpy

    items = bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items
    assert icon in items, f"unknown icon {icon!r}"


def glb_with_node_extras(glb: bytes, extras: dict) -> bytes:
    """Put ``extras`` on the GLB's first mesh node (as the backend does with its pose).

    Rewrites the JSON chunk of a binary glTF; the BIN chunk is copied unchanged.
    """
    import json
    import struct

    magic, version, _ = struct.unpack_from("<4sII", glb, 0)
    assert magic == b"glTF" and version == 2
    json_len, json_type = struct.unpack_from("<I4s", glb, 12)
    assert json_type == b"JSON"
    doc = json.loads(glb[20 : 20 + json_len])
    rest = glb[20 + json_len :]
    node = next(n for n in doc["nodes"] if "mesh" in n)
    node["extras"] = extras
    data = json.dumps(doc, separators=(",", ":")).encode()
    data += b" " * (-len(data) % 4)
    body = struct.pack("<I4s", len(data), b"JSON") + data + rest
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def make_textured_glb(
    path: Path, subdivisions: int = 5, texture: int = 1024, extras: dict | None = None
) -> Path:
    """A UV-mapped textured icosphere GLB (subdivisions 5 -> 20,480 faces) with a
    ``texture``-square base-colour image, written with trimesh (test data)."""
    import io

    import trimesh
    from PIL import Image

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.5)
    v = mesh.vertices
    uv = np.stack(
        [
            0.5 + np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi),
            0.5 + np.arcsin(np.clip(v[:, 1] / 0.5, -1, 1)) / np.pi,
        ],
        axis=1,
    )
    yy, xx = np.mgrid[0:texture, 0:texture]
    tex = np.stack(
        [(xx * 255 // texture), (yy * 255 // texture), ((xx // 64 + yy // 64) % 2) * 255], axis=2
    ).astype(np.uint8)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(tex))
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    buf = io.BytesIO()
    mesh.export(buf, file_type="glb")
    data = buf.getvalue()
    if extras is not None:
        data = glb_with_node_extras(data, extras)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
