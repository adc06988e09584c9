"""The photo of a mask request, decoded the way ``/jobs`` decodes it.

``Photo.rgb`` is the upright picture (EXIF orientation applied) at the working size: the
full size, or smaller when the photo has more than ``max_pixels`` pixels. ``scale`` maps
full-size pixel coordinates (the prompts' frame) to working pixels: ``x_work = x * scale``.
``orientation`` is the file's EXIF orientation, which relates the upright frame to the
stored one (``backend.jobs.orientation``: prompts and masks may be in either).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# The intake's own decoding (format allow-list, decompression-bomb guard, EXIF, two-step
# downscale), so a photo is read here exactly as /jobs reads it.
from backend.jobs.images import MAX_WORK_PIXELS, decode_photo, open_inputs
from backend.jobs.orientation import upright_size


def image_id(data: bytes) -> str:
    """A photo's id: the first 32 hex digits of the SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass
class Photo:
    id: str
    rgb: np.ndarray  # (h, w, 3) uint8, upright, working size
    full_size: tuple[int, int]  # (width, height) upright, before any downscale
    orientation: int = 1  # the file's EXIF orientation (1..8)

    @property
    def stored_size(self) -> tuple[int, int]:
        """(width, height) of the file's stored frame, full size."""
        return upright_size(self.full_size, self.orientation)  # its own inverse

    @property
    def work_size(self) -> tuple[int, int]:
        return (self.rgb.shape[1], self.rgb.shape[0])

    @property
    def scale(self) -> float:
        """Working pixels per full-size pixel (<= 1)."""
        return self.work_size[0] / self.full_size[0]


def load_photo(data: bytes, max_pixels: int = MAX_WORK_PIXELS) -> Photo:
    """Decode ``data`` (PNG, JPEG, WebP, TIFF, BMP) into a :class:`Photo`; raises the
    intake's ``bad_image`` / ``empty_file`` / ``image_too_large`` errors."""
    opened = open_inputs(data, None)
    rgb, _alpha = decode_photo(opened, max_pixels)
    return Photo(image_id(data), np.ascontiguousarray(rgb), opened.size, opened.orientation)
