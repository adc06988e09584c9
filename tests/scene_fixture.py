"""A photo with a KNOWN layout, rendered by Blender, for the photo-to-scene tests.

Run it as a script (it needs the ``bpy`` module or Blender itself)::

    python tests/scene_fixture.py --out DIR [--width 480 --height 360 --samples 16]
    blender --background --python tests/scene_fixture.py -- --out DIR

It writes ``DIR/photo.png`` (Cycles CPU render), ``DIR/masks/0.png, 1.png, ...`` (one
mask per object, white = visible object pixels, computed by casting one ray through each
pixel centre, so occlusion is exact) and ``DIR/layout.json`` (the truth: camera, objects,
their world positions and camera-space depths).

The camera matches the preview engine's stated monocular assumption exactly
(``backend/engines/preview.py``): level (optical axis horizontal), 1.2 m above a flat
ground plane, 55 degrees horizontal field of view, square pixels, principal point at the
image centre. Every object rests on the ground plane, at clearly different depths, and no
object hides another, so the mask of each object is its whole silhouette.

Frames: Blender world, Z up, metres. The camera sits at (0, 0, 1.2) looking along +Y, so
an object's depth along the optical axis is its world Y coordinate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The preview engine's assumption (kept equal to backend/engines/preview.py; a test checks).
CAMERA_HEIGHT_M = 1.2
FOV_X_DEG = 55.0


@dataclass
class FixtureObject:
    """One object of the layout. ``location``: world position of the object's origin
    (its geometric centre), metres; ``depth_m``: distance of that centre along the
    camera's optical axis; ``size``: the primitive's main dimension (radius or edge), metres."""

    name: str
    kind: str  # "sphere" | "cube" | "cylinder" | "cone"
    location: tuple[float, float, float]
    size: float
    height: float
    yaw_deg: float
    color: tuple[float, float, float]
    depth_m: float = 0.0
    mask: str = ""
    mask_pixels: int = 0


@dataclass
class Layout:
    """The truth written to ``layout.json``."""

    width: int
    height: int
    fov_x_deg: float
    camera_height_m: float
    camera_location: tuple[float, float, float]
    photo: str
    masks_dir: str
    objects: list[FixtureObject] = field(default_factory=list)
    render_seconds: float = 0.0


#: Four primitives on the ground, nearest first; none overlaps another in the image.
DEFAULT_OBJECTS: tuple[FixtureObject, ...] = (
    FixtureObject("ball", "sphere", (-0.9, 3.5, 0.35), 0.35, 0.7, 0.0, (0.80, 0.12, 0.10)),
    FixtureObject("box", "cube", (0.8, 5.0, 0.3), 0.6, 0.6, 30.0, (0.10, 0.25, 0.80)),
    FixtureObject("post", "cylinder", (-0.1, 7.0, 0.5), 0.3, 1.0, 0.0, (0.15, 0.65, 0.20)),
    FixtureObject("cone", "cone", (3.2, 9.5, 0.45), 0.4, 0.9, 0.0, (0.85, 0.70, 0.10)),
)


def _material(bpy, name: str, color: tuple[float, float, float]):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.5
    return mat


def _add_object(bpy, spec: FixtureObject):
    ops = bpy.ops.mesh
    if spec.kind == "sphere":
        ops.primitive_uv_sphere_add(radius=spec.size, segments=48, ring_count=24)
    elif spec.kind == "cube":
        ops.primitive_cube_add(size=spec.size)
    elif spec.kind == "cylinder":
        ops.primitive_cylinder_add(radius=spec.size, depth=spec.height, vertices=48)
    elif spec.kind == "cone":
        ops.primitive_cone_add(radius1=spec.size, depth=spec.height, vertices=48)
    else:
        raise ValueError(f"unknown primitive {spec.kind!r}")
    obj = bpy.context.active_object
    obj.name = spec.name
    obj.location = spec.location
    obj.rotation_euler = (0.0, 0.0, math.radians(spec.yaw_deg))
    if spec.kind == "sphere":
        bpy.ops.object.shade_smooth()
    obj.data.materials.append(_material(bpy, spec.name, spec.color))
    return obj


def build_scene(bpy, width: int, height: int, objects: tuple[FixtureObject, ...]):
    """Empty the file and build ground, light, camera and objects. Returns the camera."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_plane_add(size=60.0, location=(0.0, 20.0, 0.0))
    ground = bpy.context.active_object
    ground.name = "ground"
    ground.data.materials.append(_material(bpy, "ground", (0.55, 0.50, 0.45)))
    for spec in objects:
        _add_object(bpy, spec)
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(40.0), math.radians(-25.0), math.radians(20.0))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("sky")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.6, 0.7, 0.85, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.8
    scene.world = world
    cam_data = bpy.data.cameras.new("camera")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    cam_data.angle = math.radians(FOV_X_DEG)  # horizontal FOV (HORIZONTAL fit)
    cam = bpy.data.objects.new("camera", cam_data)
    cam.location = (0.0, 0.0, CAMERA_HEIGHT_M)
    cam.rotation_euler = (math.radians(90.0), 0.0, 0.0)  # level, looking along +Y
    scene.collection.objects.link(cam)
    scene.camera = cam
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    bpy.context.view_layer.update()
    return cam


def ray_cast_masks(bpy, cam, width: int, height: int, names: list[str]):
    """(H, W) int16 label image, top row first: index into ``names`` of the object hit
    by the ray through each pixel centre, -1 for anything else (ground, sky)."""
    import numpy as np
    from mathutils import Vector

    scene = bpy.context.scene
    depsgraph = bpy.context.evaluated_depsgraph_get()
    f = 0.5 * width / math.tan(math.radians(FOV_X_DEG) / 2)
    cx, cy = width / 2.0, height / 2.0
    mw = cam.matrix_world
    origin = mw.translation.copy()
    rot = mw.to_3x3()
    index = {n: i for i, n in enumerate(names)}
    labels = np.full((height, width), -1, dtype=np.int16)
    for v in range(height):
        y = -(v + 0.5 - cy) / f
        for u in range(width):
            d = rot @ Vector(((u + 0.5 - cx) / f, y, -1.0))
            hit, _loc, _n, _i, obj, _m = scene.ray_cast(depsgraph, origin, d.normalized())
            if hit and obj is not None and obj.name in index:
                labels[v, u] = index[obj.name]
    return labels


def render_fixture(
    out_dir: Path,
    width: int = 480,
    height: int = 360,
    samples: int = 16,
    objects: tuple[FixtureObject, ...] = DEFAULT_OBJECTS,
) -> Layout:
    """Build, render and write the fixture into ``out_dir``; returns the layout (truth).

    Empties the current Blender file (``read_homefile(use_empty=True)``): run it in its
    own process (see :func:`render_in_subprocess`) when the caller has a scene to keep.
    """
    import bpy
    import numpy as np
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    specs = [FixtureObject(**asdict(o)) for o in objects]
    cam = build_scene(bpy, width, height, tuple(specs))
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 4
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    photo = out_dir / "photo.png"
    scene.render.filepath = str(photo)
    t0 = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    seconds = time.perf_counter() - t0
    labels = ray_cast_masks(bpy, cam, width, height, [s.name for s in specs])
    masks_dir = out_dir / "masks"
    masks_dir.mkdir(exist_ok=True)
    for i, spec in enumerate(specs):
        m = labels == i
        path = masks_dir / f"{i}.png"
        Image.fromarray((m * 255).astype(np.uint8)).save(path)
        spec.mask = str(path)
        spec.mask_pixels = int(m.sum())
        spec.depth_m = float(spec.location[1] - cam.location[1])
    layout = Layout(
        width=width,
        height=height,
        fov_x_deg=FOV_X_DEG,
        camera_height_m=CAMERA_HEIGHT_M,
        camera_location=tuple(cam.location),
        photo=str(photo),
        masks_dir=str(masks_dir),
        objects=specs,
        render_seconds=seconds,
    )
    (out_dir / "layout.json").write_text(json.dumps(asdict(layout), indent=1))
    return layout


def load_layout(out_dir: Path) -> Layout:
    """Read ``layout.json`` written by :func:`render_fixture`."""
    d = json.loads((Path(out_dir) / "layout.json").read_text())
    d["objects"] = [FixtureObject(**o) for o in d["objects"]]
    return Layout(**d)


def render_in_subprocess(
    out_dir: Path, width: int = 480, height: int = 360, samples: int = 16, timeout: float = 300
) -> Layout:
    """Render the fixture with a separate ``python`` (this interpreter, bpy module), so the
    caller's Blender data stays untouched. Returns the layout."""
    import subprocess

    env = dict(os.environ)
    env.setdefault("BLENDER_USER_RESOURCES", str(Path(out_dir) / ".blender-user"))
    subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--out",
            str(out_dir),
            "--width",
            str(width),
            "--height",
            str(height),
            "--samples",
            str(samples),
        ],
        check=True,
        timeout=timeout,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return load_layout(out_dir)


def synthetic_photo(folder: Path, seed: int, n_objects: int, size=(320, 240)) -> Path:
    """A quick synthetic photo (no rendering) of ``n_objects`` shaded ellipses standing on a
    floor below the horizon, with their masks: ``folder/photo.png`` and
    ``folder/masks/0.png, ...``. Deterministic per ``seed``. Returns the photo's path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    horizon = h / 2
    img = np.where(
        (yy < horizon)[..., None],
        np.array([150, 170, 200], np.float32),
        np.array([120, 100, 80], np.float32) * (0.7 + 0.3 * (yy - horizon) / horizon)[..., None],
    )
    slots = np.linspace(0.15, 0.85, n_objects)
    for i in range(n_objects):
        cx = w * (slots[i] + rng.uniform(-0.04, 0.04))
        bottom = horizon + rng.uniform(0.25, 0.9) * (h - horizon - 4)
        rx = w * rng.uniform(0.04, 0.07)
        ry = rx * rng.uniform(0.8, 1.6)
        cy = bottom - ry
        m = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1.0
        shade = np.clip(
            1.1 - 0.6 * ((xx - cx + rx * 0.4) ** 2 + (yy - cy + ry * 0.4) ** 2) / (rx * ry * 2.5),
            0.35,
            1.0,
        )
        colour = rng.uniform(40, 230, size=3)
        img[m] = colour * shade[m][:, None]
        Image.fromarray((m * 255).astype(np.uint8)).save(folder / "masks" / f"{i}.png")
    photo = folder / "photo.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(photo)
    return photo


def make_batch_set(folder: Path, fixture: Path) -> tuple[Path, dict[str, tuple[str, Any]]]:
    """Ten batch items, two of them deliberately broken, and a JSON manifest for them.

    ``fixture``: a folder written by :func:`render_fixture` (photo + 4 masks + layout).
    Returns (manifest path, expected outcome per item id: ("done", object count) or
    ("failed", error code)).
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    fx = Path(fixture)
    items: list[dict[str, Any]] = []
    expected: dict[str, tuple[str, Any]] = {}

    def subset(name: str, idx: list[int]) -> None:
        d = folder / name
        d.mkdir(exist_ok=True)
        files = []
        for k, i in enumerate(idx):
            dst = d / f"{k}.png"
            dst.write_bytes((fx / "masks" / f"{i}.png").read_bytes())
            files.append(dst)
        items.append({"id": name, "image": str(fx / "photo.png"), "masks": str(d)})
        expected[name] = ("done", len(idx))

    subset("render_all", [0, 1, 2, 3])
    subset("render_near", [0, 1])
    subset("render_far", [2, 3])
    items.append(
        {"id": "render_box", "image": str(fx / "photo.png"), "mask": str(fx / "masks" / "1.png")}
    )
    expected["render_box"] = ("done", 1)
    for k, n in enumerate((3, 2, 3, 1)):
        d = folder / f"synthetic_{k}"
        photo = synthetic_photo(d, seed=100 + k, n_objects=n)
        items.append({"id": d.name, "image": str(photo), "masks": str(d / "masks")})
        expected[d.name] = ("done", n)
    # broken 1: the photo is not an image at all
    bad = folder / "broken_image"
    bad.mkdir(exist_ok=True)
    (bad / "photo.png").write_bytes(b"this is not a PNG file" * 10)
    (bad / "masks").mkdir(exist_ok=True)
    (bad / "masks" / "0.png").write_bytes((fx / "masks" / "0.png").read_bytes())
    items.append(
        {"id": "broken_image", "image": str(bad / "photo.png"), "masks": str(bad / "masks")}
    )
    expected["broken_image"] = ("failed", "bad_image")
    # broken 2: the only mask is empty (all black)
    empty = folder / "broken_mask"
    (empty / "masks").mkdir(parents=True, exist_ok=True)
    with Image.open(fx / "masks" / "0.png") as im:
        Image.new("L", im.size, 0).save(empty / "masks" / "0.png")
    items.append(
        {"id": "broken_mask", "image": str(fx / "photo.png"), "masks": str(empty / "masks")}
    )
    expected["broken_mask"] = ("failed", "empty_mask")
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"items": items}, indent=1))
    return manifest, expected


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--width", type=int, default=480)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--samples", type=int, default=16)
    args = p.parse_args(argv)
    layout = render_fixture(Path(args.out), args.width, args.height, args.samples)
    print(
        f"rendered {layout.width}x{layout.height} in {layout.render_seconds:.1f} s: "
        + ", ".join(f"{o.name} at {o.depth_m:.1f} m ({o.mask_pixels} px)" for o in layout.objects),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    rc = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    if "bpy" in sys.modules and not getattr(sys.modules["bpy"].app, "binary_path", ""):
        os._exit(rc)  # bpy module: avoid the interpreter-exit hang (see tests/conftest.py)
    sys.exit(rc)
