"""One click-to-mask session, bpy-free: the clicks and box on a photo, the request to the
backend in a background thread (never more than one in flight; clicks made meanwhile are
sent together once it returns), and the latest answer.

Frames: pixels of the photo as Blender shows it - origin at the top-left, x right, y
down - with the Image Editor's view coordinates (u, v in 0..1, v up) converted by
:func:`view_to_pixel`. Blender shows a photo's pixels as stored, ignoring its EXIF
orientation, while the backend reads photos upright; so the prompts say they are in the
photo's stored frame (``"frame": "stored"``, ``core/frames.py``), the backend turns them
upright with the photo's own orientation, and the mask comes back in the stored frame
too: it lies over the photo exactly as the Image Editor shows it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core import frames
from ..core.client import BackendClient, BackendClientError, MaskAnswer
from ..core.threads import BackgroundCall

__all__ = ["ClickMask", "MaskShown", "view_to_pixel"]

#: A press and release farther apart than this (region pixels) is a drag: a box.
DRAG_PIXELS = 6


def view_to_pixel(u: float, v: float, size: tuple[int, int]) -> tuple[float, float]:
    """Image Editor view coordinates (0..1 over the image, v up) -> pixels (top-left
    origin, y down) of an image of ``size`` (width, height)."""
    w, h = size
    return (u * w, (1.0 - v) * h)


@dataclass
class MaskShown:
    """An answer made ready for Blender: the PNG written to ``path`` (a temporary file,
    read by Blender on the main thread, then removed) and the answer's figures."""

    path: str
    answer: MaskAnswer


@dataclass
class ClickMask:
    """``image``: the photo's bytes as the backend gets them; ``size``: (width, height)
    in pixels as Blender shows it; ``engine``: auto | grabcut | sam2."""

    image: bytes
    size: tuple[int, int]
    engine: str = "auto"
    points: list[tuple[float, float, bool]] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    image_id: str | None = None
    shown: MaskShown | None = None
    error: BackendClientError | None = None
    requests: int = 0
    _call: BackgroundCall | None = None
    _sent: dict[str, Any] | None = None

    # -- prompts -----------------------------------------------------------------------
    def inside(self, x: float, y: float) -> bool:
        return 0 <= x < self.size[0] and 0 <= y < self.size[1]

    def add_point(self, x: float, y: float, positive: bool = True) -> bool:
        """A click (pixels); False when it is outside the photo (ignored)."""
        if not self.inside(x, y):
            return False
        self.points.append((float(x), float(y), bool(positive)))
        return True

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """A dragged box (any two corners, pixels), clipped to the photo; False when
        nothing of it is left."""
        w, h = self.size
        a0, a1 = sorted((max(0.0, min(w, x0)), max(0.0, min(w, x1))))
        b0, b1 = sorted((max(0.0, min(h, y0)), max(0.0, min(h, y1))))
        if a1 - a0 < 1 or b1 - b0 < 1:
            return False
        self.box = (a0, b0, a1, b1)
        return True

    def undo(self) -> bool:
        """Take back the last click (or the box when no click is left)."""
        if self.points:
            self.points.pop()
            return True
        if self.box is not None:
            self.box = None
            return True
        return False

    def prompts(self) -> dict[str, Any]:
        """The ``prompts`` of ``POST /masks``, in the photo's stored frame."""
        out: dict[str, Any] = {
            "points": [{"x": x, "y": y, "positive": p} for x, y, p in self.points],
            "frame": frames.STORED,
        }
        if self.box is not None:
            out["box"] = list(self.box)
        return out

    @property
    def has_prompt(self) -> bool:
        return self.box is not None or any(p for _, _, p in self.points)

    @property
    def busy(self) -> bool:
        return self._call is not None

    @property
    def up_to_date(self) -> bool:
        """The shown mask answers the current prompts."""
        return self._sent == self.prompts() and self._call is None and self.shown is not None

    # -- the exchange ------------------------------------------------------------------
    def step(self, client: Callable[[], BackendClient | None]) -> bool:
        """Non-blocking: take a finished answer, start the next request when the prompts
        changed. ``client()`` gives a client, or None while the backend is not ready.
        Returns True when a new answer (or error) arrived."""
        arrived = False
        if self._call is not None and self._call.done:
            call, self._call = self._call, None
            arrived = True
            try:
                shown = call.result()
            except BackendClientError as exc:
                self.error = exc
            else:
                self.error = None
                self._drop_shown()
                self.shown = shown
                self.image_id = shown.answer.image_id
        wanted = self.prompts()
        if self._call is None and self.has_prompt and wanted != self._sent:
            c = client()
            if c is not None:
                self._sent = wanted
                self.requests += 1
                image, image_id, engine = self.image, self.image_id, self.engine
                self._call = BackgroundCall(
                    "mask", lambda: _fetch(c, wanted, image, image_id, engine)
                )
        return arrived

    def wait(self, client: Callable[[], BackendClient | None], timeout: float = 60.0) -> bool:
        """Blocking (background mode, tests): step until the shown mask answers the
        current prompts or an error came. Returns True on success."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.step(client)
            if self.error is not None and self._call is None:
                return False
            if self.up_to_date:
                return True
            if self._call is not None:
                self._call.wait(0.05)
            else:
                time.sleep(0.05)
        return False

    def _drop_shown(self) -> None:
        if self.shown is not None:
            try:
                os.unlink(self.shown.path)
            except OSError:
                pass
            self.shown = None

    def close(self) -> None:
        """Forget the answer's temporary file (a request still in flight is left to end
        in its daemon thread)."""
        self._drop_shown()


def _fetch(
    client: BackendClient,
    prompts: dict[str, Any],
    image: bytes,
    image_id: str | None,
    engine: str,
) -> MaskShown:
    """In the background thread: the request, and the PNG into a temporary file."""
    answer = client.create_mask(prompts, image=image, image_id=image_id, engine=engine)
    fd, path = tempfile.mkstemp(prefix="sam3d_mask_", suffix=".png")
    with os.fdopen(fd, "wb") as fh:
        fh.write(answer.png)
    return MaskShown(path, answer)
