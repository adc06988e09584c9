"""Click-to-mask answers in Blender: the backend's mask PNG -> a Blender image (loaded and
packed, so the .blend keeps it), the overlay's pixels, and accepting the mask as the
panel's mask or as one more mask of the "Photo to scene" list."""

from __future__ import annotations

import bpy
import numpy as np

from .. import blender_images
from ..core import frames
from .clicks import MaskShown

#: Longest side of the overlay texture drawn over the photo (pixels).
OVERLAY_SIDE = 512
#: The overlay's colour (RGBA, straight alpha) over the object.
OVERLAY_RGBA = (0.1, 0.6, 1.0, 0.45)
PREVIEW_NAME = "SAM 3D click mask"


def load_mask_image(shown: MaskShown, previous: bpy.types.Image | None) -> bpy.types.Image:
    """The answer's PNG as a packed Blender image (replacing ``previous``, a former
    preview of this session, which is removed), in the photo's stored frame like the
    clicks that made it (``clicks.ClickMask.prompts``)."""
    img = bpy.data.images.load(shown.path, check_existing=False)
    img.name = PREVIEW_NAME
    blender_images.mark_frame(img, frames.STORED)
    img.colorspace_settings.name = "Non-Color"
    img.pack()
    img.filepath_raw = ""
    if previous is not None and previous.name in bpy.data.images:
        bpy.data.images.remove(previous)
    return img


def mask_of(img: bpy.types.Image) -> np.ndarray:
    """(H, W) bool, top row first, True = object."""
    px = blender_images.pixels(img)
    return (px[..., 0] > 0.5)[::-1]


def overlay_rgba(mask: np.ndarray) -> np.ndarray:
    """(h, w, 4) float32, bottom row first (a texture), at most ``OVERLAY_SIDE`` per side:
    the overlay colour where the mask is, transparent elsewhere."""
    step = max(1, int(np.ceil(max(mask.shape) / OVERLAY_SIDE)))
    small = mask[::step, ::step][::-1]
    out = np.zeros((*small.shape, 4), np.float32)
    out[small] = OVERLAY_RGBA
    return out


def accept(
    context: bpy.types.Context, preview: bpy.types.Image, photo: bpy.types.Image, target: str
) -> bpy.types.Image:
    """Make ``preview`` the mask of ``photo``: ``target`` "PANEL" sets the panel's image
    and mask, "SCENE_LIST" adds it to the photo-to-scene list. Returns the mask image."""
    preview.name = f"{photo.name} mask"
    if target == "SCENE_LIST":
        item = context.scene.sam3d_scene.masks.add()
        item.image = preview
        context.scene.sam3d_scene.mask_source = "LIST"
    else:
        s = context.scene.sam3d
        s.image_source = "IMAGE"
        s.image = photo
        s.mask_source = "IMAGE"
        s.mask_image = preview
    return preview
