"""``Masker``: photos, their per-method preparations (SAM 2's image embedding, GrabCut's
scaled copies) and the methods themselves, kept between clicks.

One ``Masker`` lives in the mask worker process (``backend.masking.worker``) for the HTTP
server, or in the CLI's own process. Photos are known by their id (``photo.image_id``: a
hash of the file's bytes); the last ``CACHE_PHOTOS`` photos stay decoded and prepared, so
a further click on the same photo skips decoding and SAM 2's image encoder.
"""

from __future__ import annotations

import io
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

from backend.errors import BackendError
from backend.jobs.images import MAX_WORK_PIXELS
from backend.jobs.orientation import FRAME_KEY, STORED, UPRIGHT, to_stored
from backend.masking.engines import create_segmenter
from backend.masking.photo import Photo, load_photo
from backend.masking.prompts import MaskPrompt

#: Photos kept decoded and prepared (a SAM 2 embedding is ~20 MB on the GPU).
CACHE_PHOTOS = 4


@dataclass
class MaskResult:
    """A mask of the photo in the prompt's ``frame`` (upright, or the file's stored frame):
    (h, w) bool at the working size (the full size unless the photo is over the pixel
    limit); ``full_size`` is (width, height) of the photo in that frame."""

    mask: np.ndarray
    score: float
    engine: str
    image_id: str
    full_size: tuple[int, int]
    prepared_cached: bool  # the photo's preparation (SAM 2: its embedding) was reused
    timings_ms: dict[str, float] = field(default_factory=dict)
    frame: str = UPRIGHT

    def png(self) -> bytes:
        """The mask as an 8-bit greyscale PNG: 255 object, 0 background. A stored-frame
        mask says so in a PNG text chunk (``FRAME_KEY``), so ``/jobs`` turns it upright
        with the photo when it is sent there as it is."""
        if self.frame != UPRIGHT:
            info = PngImagePlugin.PngInfo()
            info.add_text(FRAME_KEY, self.frame)
            buf = io.BytesIO()
            Image.fromarray(self.mask.astype(np.uint8) * 255).save(
                buf, format="PNG", pnginfo=info, compress_level=1
            )
            return buf.getvalue()
        ok, buf = cv2.imencode(
            ".png", self.mask.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_COMPRESSION, 1]
        )
        if not ok:
            raise BackendError("internal_error", "The mask could not be encoded as PNG.")
        return buf.tobytes()


def unknown_photo(image_id: str) -> BackendError:
    return BackendError(
        "not_found",
        f"The backend no longer holds the photo {image_id}; send the image again.",
        image_id=image_id,
    )


class Masker:
    def __init__(
        self,
        max_pixels: int = MAX_WORK_PIXELS,
        segmenters: dict[str, Any] | None = None,
        cache_photos: int = CACHE_PHOTOS,
    ) -> None:
        self.max_pixels = max_pixels
        self.cache_photos = cache_photos
        self.segmenters: dict[str, Any] = dict(segmenters or {})
        self._photos: OrderedDict[str, Photo] = OrderedDict()
        self._prepared: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def segmenter(self, engine: str) -> Any:
        if engine not in self.segmenters:
            self.segmenters[engine] = create_segmenter(engine)
        return self.segmenters[engine]

    def photo(self, image: bytes | None, image_id: str | None) -> tuple[Photo, bool]:
        """The photo of these bytes (decoded now, or found in the cache), or of this id
        (``not_found`` when it is not held any more). Returns (photo, was cached)."""
        if image is None:
            if image_id is None or image_id not in self._photos:
                raise unknown_photo(image_id or "(none given)")
            self._photos.move_to_end(image_id)
            return self._photos[image_id], True
        from backend.masking.photo import image_id as id_of

        pid = id_of(image)
        if pid in self._photos:
            self._photos.move_to_end(pid)
            return self._photos[pid], True
        photo = load_photo(image, self.max_pixels)
        self._photos[pid] = photo
        while len(self._photos) > self.cache_photos:
            old, _ = self._photos.popitem(last=False)
            for key in [k for k in self._prepared if k[1] == old]:
                del self._prepared[key]
        return photo, False

    def segment(
        self,
        prompt: MaskPrompt,
        engine: str,
        image: bytes | None = None,
        image_id: str | None = None,
    ) -> MaskResult:
        """The mask for ``prompt`` (full-size pixel coordinates, in ``prompt.frame``) on
        the photo given by bytes or id, with method ``engine`` (already resolved:
        ``grabcut`` or ``sam2``). The methods see the upright photo; a stored-frame prompt
        is turned upright first and its mask turned back, so the answer is in the
        prompt's frame."""
        t0 = time.perf_counter()
        prompt.check()
        photo, _ = self.photo(image, image_id)
        stored = prompt.frame == STORED
        size = photo.stored_size if stored else photo.full_size
        prompt.check_inside(*size)
        if stored:
            prompt = prompt.upright(photo.stored_size, photo.orientation)
        t1 = time.perf_counter()
        seg = self.segmenter(engine)
        key = (engine, photo.id)
        cached = key in self._prepared
        if not cached:
            self._prepared[key] = seg.prepare(photo)
        self._prepared.move_to_end(key)
        t2 = time.perf_counter()
        mask, score = seg.segment(self._prepared[key], prompt.scaled(photo.scale))
        if stored:
            mask = np.asarray(to_stored(Image.fromarray(mask), photo.orientation))
        t3 = time.perf_counter()
        return MaskResult(
            mask=mask,
            frame=STORED if stored else UPRIGHT,
            score=float(score),
            engine=engine,
            image_id=photo.id,
            full_size=size,
            prepared_cached=cached,
            timings_ms={
                "decode": (t1 - t0) * 1e3,
                "prepare": (t2 - t1) * 1e3,
                "predict": (t3 - t2) * 1e3,
                "total": (t3 - t0) * 1e3,
            },
        )
