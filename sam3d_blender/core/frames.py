"""Which pixel frame a mask or a click is in, and how a mask PNG says so (no bpy).

Blender shows a photo's pixels as its file stores them: it ignores the EXIF orientation
(measured with Blender 4.5's ``bpy`` and Debian's Blender 4.3: a JPEG stored 80x40 with
orientation 6 loads as an 80x40 image, pixels as stored). The backend reads photos
upright, their EXIF orientation applied (a phone photo stored 4032x3024 with orientation
6 is a 3024x4032 picture). So a mask painted over the photo in Blender, or a point clicked
on it in the Image Editor, is in the photo's **stored frame**; a mask file made by another
tool from the photo as it is viewed is in its **upright frame**. Both frames: pixels of
the full-size file, origin top-left, x right, y down.

The add-on never turns pixels itself (Blender cannot read the orientation, and the
backend already has the one definition: ``backend/jobs/orientation.py``). It says which
frame its masks and clicks are in, and the backend applies the photo's own orientation:

* a mask PNG the add-on writes carries a PNG text chunk ``FRAME_KEY`` = ``STORED``
  (:func:`declare_frame`);
* click-to-mask prompts carry ``"frame": "stored"`` and their mask comes back in that frame.

Mask files from elsewhere carry no declaration and are read upright, as they always were.
The keyword and values match the backend's (a test holds them together).
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["FRAME_KEY", "STORED", "UPRIGHT", "declare_frame"]

FRAME_KEY = "sam3d-frame"
UPRIGHT = "upright"
STORED = "stored"

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = len(_SIGNATURE) + 8 + 13 + 4  # length, type, 13 data bytes, CRC


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type + data (PNG spec, section 5.3)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def declare_frame(png: bytes, frame: str) -> bytes:
    """``png`` with a ``tEXt`` chunk naming its frame, right after the header (before the
    pixels, so the backend reads it without decoding them). Blender's PNG writer has no
    way to add text, hence these few bytes written here."""
    if frame not in (UPRIGHT, STORED):
        raise ValueError(f"unknown frame {frame!r}")
    if not png.startswith(_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    text = _chunk(b"tEXt", FRAME_KEY.encode("latin-1") + b"\0" + frame.encode("latin-1"))
    return png[:_IHDR_END] + text + png[_IHDR_END:]
