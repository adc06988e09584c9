"""A photo's two pixel frames and the EXIF orientation between them.

* **upright frame** - the picture as it is viewed: the file's EXIF orientation applied
  (Pillow's ``ImageOps.exif_transpose``). The backend works in this frame: jobs, masks,
  prompts and results are upright unless said otherwise.
* **stored frame** - the pixels as the file stores them, before its EXIF orientation. This
  is what Blender shows (it ignores EXIF orientation), so a mask painted or a point clicked
  in Blender is in the photo's stored frame.

Both frames have their origin at the top-left, x to the right, y down, in pixels of the
file's full size. For a photo without an EXIF orientation (or orientation 1) they are the
same. A mask or a prompt may declare that it is in its photo's stored frame (``STORED``);
it is then brought upright with *the photo's* orientation - the very transform that turns
the photo upright, taken from Pillow's own table (``ImageOps.exif_transpose``), never
written out here a second time.

How a mask declares its frame: a PNG text chunk (``tEXt``) with keyword ``FRAME_KEY`` and
value ``STORED`` (or ``UPRIGHT``, the default). The add-on writes it into every mask it
paints or clicks; mask files made elsewhere carry none and are read upright, as before.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import ExifTags, Image, ImageOps

from backend.errors import BackendError, shorten

#: PNG text keyword by which a mask names its frame (the add-on writes the same keyword:
#: ``sam3d_blender/core/frames.py``; a test holds the two together).
FRAME_KEY = "sam3d-frame"
UPRIGHT = "upright"
STORED = "stored"
FRAMES = (UPRIGHT, STORED)

_ORIENTATION = ExifTags.Base.Orientation


def orientation_of(im: Image.Image) -> int:
    """The picture's EXIF orientation (1..8; 1 when absent or unreadable), as
    ``ImageOps.exif_transpose`` reads it."""
    try:
        value = int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # broken EXIF is ignored, as when decoding
        return 1
    return value if 1 <= value <= 8 else 1


def swaps_axes(orientation: int) -> bool:
    """Whether turning a picture of this orientation upright swaps width and height."""
    return transpose_of(orientation) in (
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_270,
    )


def upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) of a stored-frame picture of ``size`` once turned upright."""
    return (size[1], size[0]) if swaps_axes(orientation) else size


def _probe() -> Image.Image:
    """A 2x2 picture whose pixels name its corners: 0 top-left, 1 top-right, 2 bottom-left,
    3 bottom-right."""
    probe = Image.new("L", (2, 2))
    probe.putdata([0, 1, 2, 3])
    return probe


@lru_cache(maxsize=8)
def transpose_of(orientation: int) -> Image.Transpose | None:
    """The ``Image.Transpose`` that turns a stored picture of this orientation upright
    (None for 1), found by letting ``ImageOps.exif_transpose`` turn a labelled 2x2 picture."""
    probe = _probe()
    probe.getexif()[_ORIENTATION] = orientation
    turned = ImageOps.exif_transpose(probe).tobytes()
    if turned == _probe().tobytes():
        return None
    plain = _probe()
    return next(t for t in Image.Transpose if plain.transpose(t).tobytes() == turned)


@lru_cache(maxsize=8)
def _inverse_of(orientation: int) -> Image.Transpose | None:
    """The ``Image.Transpose`` that undoes :func:`transpose_of` (upright -> stored)."""
    forward = transpose_of(orientation)
    if forward is None:
        return None
    plain = _probe()
    turned = plain.transpose(forward)
    return next(t for t in Image.Transpose if turned.transpose(t).tobytes() == plain.tobytes())


def to_upright(im: Image.Image, orientation: int) -> Image.Image:
    """A stored-frame picture (a mask) turned upright the way a photo of ``orientation``
    is turned upright."""
    t = transpose_of(orientation)
    return im if t is None else im.transpose(t)


def to_stored(im: Image.Image, orientation: int) -> Image.Image:
    """An upright picture (a mask) turned back into the stored frame of a photo of
    ``orientation``."""
    t = _inverse_of(orientation)
    return im if t is None else im.transpose(t)


@lru_cache(maxsize=8)
def _corner_map(orientation: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Where the stored top-left, top-right and bottom-left corners land in the upright
    picture, as (u, v) in {0, 1} (fractions of the upright width and height)."""
    turned = list(to_upright(_probe(), orientation).tobytes())
    at = {label: (i % 2, i // 2) for i, label in enumerate(turned)}
    return at[0], at[1], at[2]


def point_to_upright(
    x: float, y: float, stored_size: tuple[int, int], orientation: int
) -> tuple[float, float]:
    """A point (pixel edges: the pixel (i, j) spans x in [i, i+1)) of the stored frame of a
    photo of ``stored_size`` (width, height) -> the same spot in the upright frame."""
    w, h = stored_size
    u, v = x / w, y / h
    p0, p1, p2 = _corner_map(orientation)
    uu = p0[0] + u * (p1[0] - p0[0]) + v * (p2[0] - p0[0])
    vv = p0[1] + u * (p1[1] - p0[1]) + v * (p2[1] - p0[1])
    uw, uh = upright_size(stored_size, orientation)
    return (uu * uw, vv * uh)


def declared_frame(im: Image.Image, what: str = "mask") -> str:
    """The frame a (header-read) mask file declares: ``STORED`` or ``UPRIGHT`` (no
    declaration). An unknown value is ``bad_mask``."""
    value = im.info.get(FRAME_KEY)
    if value is None:
        return UPRIGHT
    value = str(value).strip().lower()
    if value not in FRAMES:
        raise BackendError(
            "bad_mask",
            f"The {what} declares its frame as {shorten(value, 40)!r} (PNG text "
            f"{FRAME_KEY!r}); use {STORED!r} (the photo's pixels as stored, before its EXIF "
            f"orientation) or {UPRIGHT!r}.",
        )
    return value
