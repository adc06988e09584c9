"""A job's image and masks as bytes for the backend, from files or Blender images (bpy).

Every problem is an :class:`~.core.messages.InputError` with its code, found before
anything is sent. PNG and JPEG files go as they are; other formats, and Blender images
(loaded, packed, painted), are written as PNG by Blender (:mod:`.blender_images`). A mask is the
image's alpha when it has transparency, else its brightness (white = object), exactly as
the backend reads masks.

Frames (``core/frames.py``): mask files go as they are and are read upright; a Blender
image used as a mask goes in its frame (:func:`.blender_images.mask_frame`): a mask painted
or clicked in Blender is in the photo's stored frame and its PNG says so, and the backend
turns it upright with the photo's own EXIF orientation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import bpy

from . import blender_images
from .core.jobs import ImportSettings, JobKind, JobRequest
from .core.messages import InputError
from .core.options import JobOptions

__all__ = [
    "file_bytes",
    "image_bytes",
    "label_for",
    "mask_bytes",
    "require_alpha",
    "scene_request_from_files",
]


def label_for(path_or_name: str) -> str:
    """An object's name from its image: the file or datablock name without extension."""
    return Path(path_or_name).stem or path_or_name or "SAM 3D object"


def file_bytes(path: str | Path, what: str) -> bytes:
    """The ``what`` ("image" or "mask") file at ``path`` (Blender's ``//`` relative paths
    allowed) as bytes for the backend."""
    p = bpy.path.abspath(str(path))
    try:
        return blender_images.file_bytes(p)
    except FileNotFoundError:
        code = "no_image" if what == "image" else "no_mask"
        raise InputError(code, f"{what} file not found: {p}") from None
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError("image_unreadable", f"{p}: {exc}") from None


def image_bytes(img: bpy.types.Image) -> bytes:
    """A Blender image as bytes for the backend."""
    try:
        return blender_images.image_png(img)
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError("image_unreadable", f"{img.name}: {exc}") from None


def mask_bytes(img: bpy.types.Image) -> bytes:
    """A Blender image used as a mask -> black/white PNG bytes (white = object), declaring
    the photo's stored frame when the mask was made in Blender (see module doc)."""
    try:
        mask = blender_images.mask_from_pixels(blender_images.pixels(img))
    except (RuntimeError, ValueError) as exc:
        raise InputError("bad_mask", f"{img.name}: {exc}") from None
    if not mask.any():
        raise InputError("empty_mask", f"the mask image {img.name!r} is empty")
    return blender_images.mask_png(mask, blender_images.mask_frame(img))


def require_alpha(img: bpy.types.Image) -> None:
    """``no_alpha`` unless the image has transparent pixels (its alpha is the mask)."""
    if blender_images.alpha_mask(blender_images.pixels(img)) is None:
        raise InputError("no_alpha")


def scene_request_from_files(
    image_path: str | Path,
    mask_paths: Sequence[str | Path],
    options: JobOptions,
    settings: ImportSettings,
    *,
    label: str = "",
) -> JobRequest:
    """A scene job from a photo file and mask files (object order = ``mask_paths`` order);
    the photo becomes the camera's background."""
    if not mask_paths:
        raise InputError("no_mask", "no mask files given")
    photo = Path(bpy.path.abspath(str(image_path)))
    settings.source = settings.photo_path = str(photo)
    return JobRequest(
        image=file_bytes(photo, "image"),
        masks=[file_bytes(m, "mask") for m in mask_paths],
        options=options,
        label=label or photo.stem,
        kind=JobKind.SCENE,
        settings=settings,
    )
