"""Blender images as pixels and PNG bytes (images and masks leaving Blender); mask coverage.

Blender stores ``Image.pixels`` bottom row first, RGBA floats. For byte images the floats
are the stored 8-bit values / 255 (sRGB-encoded for colour images); float images hold
scene-linear values and are converted to sRGB before they are written as 8-bit PNG.
PNGs are written by Blender itself, so painted, generated and packed images work just like
files on disk.

Frames: Blender shows and holds a photo's pixels as its file stores them, ignoring the
EXIF orientation. A mask made in Blender for a photo is therefore in the photo's stored
frame and its PNG says so (``core/frames.py``); a mask image loaded from a file made
elsewhere is taken as upright, as the file is (:func:`mask_frame`).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

from .core import frames
from .core.provenance import PROP_PREFIX

#: File types sent as they are (the backend decodes them); anything else goes through PNG.
PASSTHROUGH_SUFFIXES = {".png", ".jpg", ".jpeg"}


def pixels(image: bpy.types.Image) -> np.ndarray:
    """(H, W, 4) float32 RGBA, bottom row first, as Blender holds them."""
    w, h = image.size
    if w == 0 or h == 0:
        raise ValueError(f"image {image.name!r} has no pixels (missing file?)")
    buf = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(buf)
    return buf.reshape(h, w, 4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def encode_png(rgba: np.ndarray, name: str = "sam3d_tmp") -> bytes:
    """PNG bytes of ``rgba`` ((H, W, 4) float in 0..1, bottom row first), written by Blender.

    A temporary image datablock is created and removed again.
    """
    h, w = rgba.shape[:2]
    tmp = bpy.data.images.new(name, w, h, alpha=True)
    fd, path = tempfile.mkstemp(suffix=".png", prefix="sam3d_")
    os.close(fd)
    try:
        tmp.pixels.foreach_set(np.ascontiguousarray(rgba, dtype=np.float32).reshape(-1))
        tmp.filepath_raw = path
        tmp.file_format = "PNG"
        tmp.save()
        return Path(path).read_bytes()
    finally:
        bpy.data.images.remove(tmp)
        Path(path).unlink(missing_ok=True)


def _file_of(image: bpy.types.Image) -> Path | None:
    """The image's file on disk when it is unmodified there, else None."""
    if image.source != "FILE" or image.packed_file is not None or image.is_dirty:
        return None
    if not image.filepath:
        return None
    path = Path(bpy.path.abspath(image.filepath, library=image.library))
    return path if path.is_file() else None


def _packed_file_of(image: bpy.types.Image) -> bytes | None:
    """The bytes of an unmodified packed PNG or JPEG (the original file, EXIF included)."""
    packed = image.packed_file
    if packed is None or image.is_dirty or image.source != "FILE":
        return None
    if image.file_format not in ("PNG", "JPEG") or len(image.packed_files) != 1:
        return None
    return bytes(packed.data)


def image_png(image: bpy.types.Image) -> bytes:
    """The image as bytes for the backend: the file itself when it is an unmodified PNG or
    JPEG, on disk or packed (so its EXIF orientation reaches the backend, which then sees
    the photo upright), else a PNG written from its pixels (8-bit sRGB, alpha kept; the
    pixels as Blender holds them, in their stored frame)."""
    path = _file_of(image)
    if path is not None and path.suffix.lower() in PASSTHROUGH_SUFFIXES:
        return path.read_bytes()
    packed = _packed_file_of(image)
    if packed is not None:
        return packed
    px = pixels(image)
    if image.is_float:
        px = px.copy()
        px[..., :3] = _linear_to_srgb(px[..., :3])
    return encode_png(px, f"{image.name}_png")


def file_bytes(path: str | Path) -> bytes:
    """A file chosen by path, as bytes for the backend: PNG/JPEG as they are; other formats
    (EXR, TIFF, WebP, ...) loaded by Blender and written as PNG."""
    p = Path(bpy.path.abspath(str(path)))
    if not p.is_file():
        raise FileNotFoundError(str(p))
    if p.suffix.lower() in PASSTHROUGH_SUFFIXES:
        return p.read_bytes()
    with loaded_image(p) as image:
        return image_png(image)


class loaded_image:  # noqa: N801 (used as a context manager, reads like a function)
    """``with loaded_image(path) as img:`` - a file loaded as a Blender image; removed again
    afterwards unless it already was in ``bpy.data``."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._created = False
        self.image: bpy.types.Image | None = None

    def __enter__(self) -> bpy.types.Image:
        before = set(bpy.data.images)
        self.image = bpy.data.images.load(self.path, check_existing=True)
        self._created = self.image not in before
        return self.image

    def __exit__(self, *exc: object) -> None:
        if self._created and self.image is not None:
            bpy.data.images.remove(self.image)


# -- masks ------------------------------------------------------------------------------


def mask_from_pixels(px: np.ndarray) -> np.ndarray:
    """(H, W) bool, True = object, from an RGBA mask image, the way the backend reads masks:
    the alpha when it is not fully opaque, otherwise brightness > 50%."""
    m = alpha_mask(px)
    return m if m is not None else px[..., :3].mean(axis=2) > 0.5


def alpha_mask(px: np.ndarray) -> np.ndarray | None:
    """(H, W) bool from the image's alpha (> 50%), or None when fully opaque."""
    alpha = px[..., 3]
    if float(alpha.min()) >= 1.0:
        return None
    return alpha > 0.5


def mask_png(mask: np.ndarray, frame: str = frames.UPRIGHT) -> bytes:
    """A black/white opaque PNG (white = object) from a (H, W) bool mask, bottom row first;
    a ``frames.STORED`` mask's PNG declares that frame (``core/frames.py``)."""
    h, w = mask.shape
    rgba = np.ones((h, w, 4), dtype=np.float32)
    rgba[..., :3] = mask.astype(np.float32)[..., None]
    png = encode_png(rgba, "sam3d_mask_tmp")
    return png if frame == frames.UPRIGHT else frames.declare_frame(png, frame)


#: Custom property naming the frame a Blender mask image is in (``core/frames.py``).
PROP_MASK_FRAME = PROP_PREFIX + "mask_frame"


def mark_frame(image: bpy.types.Image, frame: str) -> None:
    """Record on ``image`` (saved with the .blend, kept by Save As) which frame it is in."""
    image[PROP_MASK_FRAME] = frame


def mask_frame(image: bpy.types.Image) -> str:
    """The frame of a Blender image used as a mask: the one recorded by :func:`mark_frame`
    (New mask, Click to mask: the photo's stored frame, as Blender shows the photo); else
    ``UPRIGHT`` for an image loaded from a file (made by another tool from the photo as it
    is viewed) and ``STORED`` for one made in Blender (painted over the photo as shown)."""
    frame = image.get(PROP_MASK_FRAME)
    if frame in (frames.UPRIGHT, frames.STORED):
        return frame
    return frames.UPRIGHT if image.source == "FILE" and image.filepath else frames.STORED


def new_mask_image(name: str, width: int, height: int) -> bpy.types.Image:
    """A black, opaque image to paint the object white on in the Image Editor, the size of
    the photo as Blender shows it (its stored frame, recorded on the image)."""
    img = bpy.data.images.new(name, width, height, alpha=False)
    img.generated_color = (0.0, 0.0, 0.0, 1.0)
    img.colorspace_settings.name = "Non-Color"
    mark_frame(img, frames.STORED)
    return img


# -- coverage shown in the panel --------------------------------------------------------

_coverage_cache: dict[tuple, tuple[float, float | None, str]] = {}


def coverage_text(fraction: float | None, reason: str = "") -> tuple[str, bool]:
    """('mask: 12% of image', warn?) for the panel."""
    if fraction is None:
        return (f"mask: {reason}" if reason else "mask: unknown", bool(reason))
    if fraction <= 0.0:
        return ("mask: empty - paint the object white", True)
    if fraction >= 0.995:
        return ("mask: covers the whole image - nothing to separate", True)
    pct = fraction * 100
    text = f"mask: {pct:.0f}% of image" if pct >= 1 else f"mask: {pct:.2f}% of image"
    return (text, fraction < 0.001)


#: Above this many pixels a dirty (being painted) image's coverage is not re-read while
#: drawing (a read costs ~0.75 s at 24 MP): "painting..." is shown until it is saved or
#: the artist presses Refresh (``sam3d.mask_coverage``).
LARGE_DIRTY_PIXELS = 4_000_000
PAINTING = "painting... (Refresh, or save the image, to update)"


def image_coverage(
    image: bpy.types.Image, use_alpha: bool, force: bool = False
) -> tuple[float | None, str]:
    """Fraction of pixels in the mask (0..1) of a Blender image, cached.

    ``use_alpha``: the image's alpha is the mask (else the image IS the mask). Dirty
    (being painted) images are re-read at most every 1.5 s, and large ones (over
    :data:`LARGE_DIRTY_PIXELS`) only with ``force`` (a button). Returns (None, reason)
    when there is no usable mask (or while a large image is being painted).
    """
    try:
        w, h = image.size
    except ReferenceError:
        return (None, "image was removed")
    dirty = image.is_dirty
    key = (image.name_full, w, h, use_alpha, dirty, image.filepath, image.source)
    now = time.monotonic()
    if dirty:
        # The clean value is stale once the image is painted on (it may be saved later).
        _coverage_cache.pop((*key[:4], False, *key[5:]), None)
    hit = _coverage_cache.get(key)
    if not force and hit is not None:
        if not dirty or now - hit[0] < 1.5 or w * h > LARGE_DIRTY_PIXELS:
            return (hit[1], hit[2])
    if not force and dirty and w * h > LARGE_DIRTY_PIXELS:
        return (None, PAINTING)
    if w == 0 or h == 0:
        result: tuple[float | None, str] = (None, "image has no pixels (file missing?)")
    else:
        result = _coverage_of(pixels(image), use_alpha)
    if len(_coverage_cache) > 64:
        _coverage_cache.clear()
    _coverage_cache[key] = (now, result[0], result[1])
    return result


def _coverage_of(px: np.ndarray, use_alpha: bool) -> tuple[float | None, str]:
    """(fraction of the mask's pixels, "") of RGBA pixels, or (None, why) without a mask."""
    if not use_alpha:
        return (float(mask_from_pixels(px).mean()), "")
    m = alpha_mask(px)
    return (None, "image has no alpha; choose a mask") if m is None else (float(m.mean()), "")


def file_coverage(path: str, use_alpha: bool) -> tuple[float | None, str]:
    """Like :func:`image_coverage` for a file on disk (loads it; not for draw callbacks)."""
    p = Path(bpy.path.abspath(path))
    if not p.is_file():
        return (None, "file not found")
    key = ("file", str(p), p.stat().st_mtime, use_alpha)
    hit = _coverage_cache.get(key)
    if hit is not None:
        return (hit[1], hit[2])
    with loaded_image(p) as img:
        result = _coverage_of(pixels(img), use_alpha)
    _coverage_cache[key] = (time.monotonic(), result[0], result[1])
    return result


def cached_file_coverage(path: str, use_alpha: bool) -> tuple[float | None, str] | None:
    """The cached file coverage without loading anything (safe in draw callbacks)."""
    p = Path(bpy.path.abspath(path))
    try:
        mtime = p.stat().st_mtime
    except OSError:
        return (None, "file not found")
    hit = _coverage_cache.get(("file", str(p), mtime, use_alpha))
    return None if hit is None else (hit[1], hit[2])
