"""An object's asset preview: a small render of the textured object itself (bpy).

Blender's own ``asset_generate_preview`` (and any Eevee or Workbench render) needs a GPU
context: in ``blender --background`` it finds none, and a Blender without EGL aborts the
whole process (seen with Debian's Blender 4.3). So the preview is rendered with Cycles on
the CPU, which works the same in the UI, in ``--background`` and in the bpy module:

* a temporary scene holds the object (linked, not copied), a camera, a key light and a
  grey world; the artist's scenes are not touched and the temporary data (and the
  "Render Result" image, when the render made it) is removed;
* the camera looks at the object's bounding sphere from where the photo was taken (its
  front), 20 degrees from above, and frames it; the film is transparent;
* the render (``size`` px square, few samples, no denoiser: Debian's build has none) is
  written to a temporary PNG, read back and stored as the object's preview image
  (``ID.preview``), which Blender saves in the .blend and the Asset Browser shows. Set
  from Python, it is marked as edited by the user, so Blender never replaces it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from array import array

import bpy
from mathutils import Vector

from .placing import world_bounds

__all__ = ["PreviewError", "render_preview"]

#: Cycles samples per pixel: enough for a 256 px thumbnail without a denoiser.
SAMPLES = 16
#: How far above the horizontal the preview camera looks down at the object (degrees).
ELEVATION_DEG = 20.0
#: The preview camera's lens (mm, 36 mm sensor): a "normal" lens, little distortion.
LENS_MM = 50.0
#: The image Blender keeps the last render in.
RENDER_RESULT = "Render Result"


class PreviewError(RuntimeError):
    """The preview could not be rendered (the reason in the message)."""


def _bounding_sphere(obj: bpy.types.Object) -> tuple[Vector, float]:
    """World-space centre and radius (metres) of the sphere around ``obj``'s box."""
    lo, hi = world_bounds(obj)
    centre = (lo + hi) / 2
    return centre, max((hi - lo).length / 2, 1e-4)


def _view_direction(centre: Vector, view_from: Vector | None) -> Vector:
    """Unit vector from the object towards the preview camera: horizontally towards
    ``view_from`` (where the photo was taken) or the front view (-Y), raised by
    :data:`ELEVATION_DEG`."""
    flat = Vector((0.0, -1.0, 0.0))
    if view_from is not None:
        d = Vector(view_from) - centre
        d.z = 0.0
        if d.length > 1e-6:
            flat = d.normalized()
    e = math.radians(ELEVATION_DEG)
    return (flat * math.cos(e) + Vector((0.0, 0.0, math.sin(e)))).normalized()


def _setup(
    scene: bpy.types.Scene, obj: bpy.types.Object, size: int, view_from: Vector | None
) -> list[bpy.types.ID]:
    """Fill the temporary ``scene``: the object, camera, light and world; returns the new
    data-blocks (to remove afterwards)."""
    scene.collection.objects.link(obj)
    centre, radius = _bounding_sphere(obj)
    direction = _view_direction(centre, view_from)

    cam_data = bpy.data.cameras.new("SAM 3D preview camera")
    cam_data.lens = LENS_MM
    cam_data.sensor_fit = "HORIZONTAL"
    half_fov = math.atan(cam_data.sensor_width / (2 * LENS_MM))
    distance = radius / math.sin(half_fov) * 1.05
    cam_data.clip_start = max(distance - radius * 2, 1e-3)
    cam_data.clip_end = distance + radius * 2
    cam = bpy.data.objects.new("SAM 3D preview camera", cam_data)
    cam.location = centre + direction * distance
    cam.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(cam)
    scene.camera = cam

    light_data = bpy.data.lights.new("SAM 3D preview light", "SUN")
    light_data.energy = 2.5
    light_data.angle = math.radians(20)
    light = bpy.data.objects.new("SAM 3D preview light", light_data)
    # from the camera's side, above and to the left: the front is lit, the shape shows
    key = (direction + Vector((0, 0, 1.0)) + direction.cross(Vector((0, 0, 1))) * 0.6).normalized()
    light.rotation_euler = (-key).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(light)

    world = bpy.data.worlds.new("SAM 3D preview world")
    world.use_nodes = True
    background = world.node_tree.nodes.get("Background")
    if background is not None:
        background.inputs["Color"].default_value = (0.55, 0.55, 0.55, 1.0)
        background.inputs["Strength"].default_value = 1.0
    scene.world = world

    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x = r.resolution_y = int(size)
    r.resolution_percentage = 100
    r.film_transparent = True
    r.use_compositing = False
    r.use_sequencer = False
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    r.image_settings.color_depth = "8"
    r.image_settings.compression = 0
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    c = scene.cycles
    c.device = "CPU"
    c.samples = SAMPLES
    c.use_denoising = False
    c.max_bounces = 2
    c.diffuse_bounces = 1
    c.glossy_bounces = 1
    c.transmission_bounces = 1
    c.transparent_max_bounces = 2
    return [cam, light, cam_data, light_data, world]


def render_preview(
    obj: bpy.types.Object, size: int = 256, view_from: Vector | None = None
) -> float:
    """Render ``obj`` (as it is placed, textured, with its modifiers) into its preview
    image, ``size`` px square; ``view_from``: a world point (metres) on the side the
    object should be seen from, e.g. the photo's camera (default: the front, -Y).
    Returns the seconds it took. Raises :class:`PreviewError` when Blender renders
    nothing (e.g. it is rendering something else)."""
    t0 = time.perf_counter()
    scene = bpy.data.scenes.new("SAM 3D preview")
    made: list[bpy.types.ID] = []
    fd, png = tempfile.mkstemp(prefix="sam3d-preview-", suffix=".png")
    os.close(fd)
    image = None
    had_result = RENDER_RESULT in bpy.data.images
    try:
        if not hasattr(scene, "cycles"):
            raise PreviewError("the Cycles add-on is disabled (Preferences > Add-ons > Cycles)")
        made = _setup(scene, obj, size, view_from)
        scene.render.filepath = png
        result = bpy.ops.render.render(write_still=True, scene=scene.name)
        if "FINISHED" not in result or os.path.getsize(png) == 0:
            raise PreviewError(f"Blender did not render the preview ({sorted(result)})")
        image = bpy.data.images.load(png, check_existing=False)
        w, h = image.size
        pixels = array("f", bytes(4 * w * h * 4))
        image.pixels.foreach_get(pixels)
        preview = obj.preview_ensure()
        preview.image_size = (w, h)
        preview.image_pixels_float.foreach_set(pixels)
    finally:
        if image is not None:
            bpy.data.images.remove(image)
        result_image = bpy.data.images.get(RENDER_RESULT)
        if not had_result and result_image is not None:  # rendering made it: no trace left
            bpy.data.images.remove(result_image)
        bpy.data.scenes.remove(scene)
        for block in made:
            _remove(block)
        try:
            os.unlink(png)
        except OSError:
            pass
    return time.perf_counter() - t0


def _remove(block: bpy.types.ID) -> None:
    """Remove one temporary data-block (objects come first in the list, before their
    data)."""
    for kind, blocks in (
        (bpy.types.Object, bpy.data.objects),
        (bpy.types.Camera, bpy.data.cameras),
        (bpy.types.Light, bpy.data.lights),
        (bpy.types.World, bpy.data.worlds),
    ):
        if isinstance(block, kind):
            blocks.remove(block)
            return
