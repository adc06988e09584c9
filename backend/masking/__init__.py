"""Click-to-mask: points and an optional box on a photo become a mask (``POST /masks``,
``python -m backend mask``).

Frames: prompt coordinates are pixels of the photo as ``/jobs`` reads it - origin at the
top-left, x to the right, y down, in the upright picture (EXIF orientation applied, as
``backend.jobs.images`` does), at the file's full size (not the working size); or, with
``"frame": "stored"``, in the file's pixels as stored, before its EXIF orientation (what
Blender shows; ``backend.jobs.orientation``). The mask comes back in the prompts' frame
(a stored-frame one says so in its PNG), so it can be sent to ``/jobs`` with the same
photo.

Modules: ``prompts`` (the prompt model and its checks), ``photo`` (the decoded photo and
the scale between its full and working size), ``grabcut`` and ``sam2_engine`` (the two
methods), ``engines`` (names, availability without torch, ``auto``), ``service``
(``Masker``: photos and SAM 2 image embeddings cached per image id), ``worker`` (the
long-lived mask worker process the HTTP server talks to), ``worker_client`` (the server's
side of it), ``cli`` (``python -m backend mask`` and ``python -m backend weights sam2``).
"""

from __future__ import annotations

from backend.masking.cli import register

__all__ = ["register"]
