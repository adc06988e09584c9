"""Cameras that see like the photo (bpy).

The photo's pinhole intrinsics (pixels) become a Blender camera's lens, sensor and shift
and the render resolution (the math is ``core/placement.py``:
``camera_params_from_intrinsics``). A Blender camera's local frame is the OpenGL camera
frame the backend's poses map into (+X right, +Y up, looking down -Z).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bpy
from mathutils import Matrix

from ..core import placement
from ..core.orientation import background_turn
from ..core.provenance import PROP_PREFIX

CAMERA_NAME = "SAM 3D Camera"
#: The photo's intrinsics, as JSON, on a scene's camera.
PROP_INTRINSICS = PROP_PREFIX + "intrinsics"


def apply_intrinsics(
    camera: bpy.types.Object, intrinsics: Mapping[str, Any], scene: bpy.types.Scene | None = None
) -> None:
    """Make ``camera`` see like the photo's pinhole ``intrinsics`` (lens, sensor, shift);
    with ``scene``, also set its render resolution and pixel aspect to the photo's."""
    params = placement.camera_params_from_intrinsics(intrinsics)
    cam = camera.data
    cam.type = "PERSP"
    cam.sensor_fit = params["sensor_fit"]
    cam.sensor_width = params["sensor_width"]
    cam.sensor_height = params["sensor_height"]
    cam.lens = params["lens"]
    cam.shift_x = params["shift_x"]
    cam.shift_y = params["shift_y"]
    if scene is not None:
        r = scene.render
        r.resolution_x = params["resolution_x"]
        r.resolution_y = params["resolution_y"]
        r.resolution_percentage = 100
        r.pixel_aspect_x = params["pixel_aspect_x"]
        r.pixel_aspect_y = params["pixel_aspect_y"]


def ensure_camera(
    context: bpy.types.Context,
    intrinsics: Mapping[str, Any] | None,
    collection: bpy.types.Collection | None = None,
) -> bpy.types.Object:
    """The scene's camera; when there is none, a new "SAM 3D Camera" at the origin looking
    along +Y (Blender's front view), matched to ``intrinsics``, made the scene camera."""
    scene = context.scene
    if scene.camera is not None:
        return scene.camera
    data = bpy.data.cameras.new(CAMERA_NAME)
    cam = bpy.data.objects.new(CAMERA_NAME, data)
    (collection or scene.collection).objects.link(cam)
    cam.matrix_world = camera_world_matrix(0.0)
    if intrinsics:
        apply_intrinsics(cam, intrinsics, scene)
    scene.camera = cam
    context.view_layer.update()
    return cam


def camera_world_matrix(height: float) -> Matrix:
    """A level camera at ``(0, 0, height)`` looking along world +Y (Blender's front view):
    its local -Z (the viewing direction) is world +Y, its local +Y is world +Z."""
    return Matrix.Translation((0.0, 0.0, float(height))) @ Matrix.Rotation(
        math.radians(90.0), 4, "X"
    )


def create_scene_camera(
    context: bpy.types.Context,
    intrinsics: Mapping[str, Any],
    collection: bpy.types.Collection,
    *,
    name: str,
    height: float = 0.0,
    make_scene_camera: bool = True,
) -> bpy.types.Object:
    """A new camera object matching the photo's pinhole ``intrinsics`` (pixels), level at
    ``height`` metres, linked into ``collection``; with ``make_scene_camera`` it becomes
    the scene's camera and the scene's render resolution becomes the photo's."""
    data = bpy.data.cameras.new(name)
    cam = bpy.data.objects.new(name, data)
    collection.objects.link(cam)
    cam.matrix_world = camera_world_matrix(height)
    scene = context.scene
    apply_intrinsics(cam, intrinsics, scene if make_scene_camera else None)
    data.clip_start = 0.01
    data.clip_end = max(data.clip_end, 1000.0)
    cam[PROP_INTRINSICS] = json.dumps(dict(intrinsics), sort_keys=True)
    if make_scene_camera:
        scene.camera = cam
    return cam


def load_photo(path: str | Path, *, pack: bool = True) -> bpy.types.Image:
    """The photo file as a Blender image (an already loaded one is reused); packed into the
    .blend with ``pack`` so the file stays complete when the photo moves."""
    img = bpy.data.images.load(str(path), check_existing=True)
    if pack and img.packed_file is None:
        img.pack()
    return img


def set_background_image(
    camera: bpy.types.Object, image: bpy.types.Image, orientation: int = 1
) -> None:
    """Show the photo ``image`` behind the scene in ``camera``'s view, upright and fitted
    to the camera frame, so it lines up pixel for pixel with the frame (the upright
    photo's aspect).

    Blender shows the photo's pixels as stored; ``orientation`` is its EXIF orientation
    (1..8, ``core/scene_result.py: photo_orientation``), by which the background is turned,
    mirrored and scaled upright (``core/orientation.py: background_turn``)."""
    turn = background_turn(orientation, (int(image.size[0]), int(image.size[1])))
    data = camera.data
    bg = next((b for b in data.background_images if b.image == image), None)
    if bg is None:
        bg = data.background_images.new()
    bg.source = "IMAGE"
    bg.image = image
    bg.alpha = 1.0
    bg.display_depth = "BACK"
    bg.frame_method = "FIT"
    bg.rotation = turn.rotation
    bg.use_flip_x = turn.use_flip_x
    bg.use_flip_y = False
    bg.scale = turn.scale
    bg.offset = (0.0, 0.0)
    bg.show_background_image = True
    data.show_background_images = True
