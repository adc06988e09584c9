"""Drawing a click-to-mask session over the photo in the Image Editor (``POST_PIXEL``):
the mask as a tinted texture, positive clicks green, negative ones red, the box (and the
box being dragged) as an outline. Region pixels come from the view's 0..1 image
coordinates (``View2D.view_to_region``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bpy
import gpu
import numpy as np
from gpu_extras.batch import batch_for_shader

POSITIVE = (0.2, 0.9, 0.3, 1.0)
NEGATIVE = (1.0, 0.25, 0.2, 1.0)
BOX = (1.0, 0.85, 0.2, 1.0)


@dataclass
class OverlayState:
    """What the draw callback shows; set by the operator on the main thread."""

    area: Any
    size: tuple[int, int]  # the photo's (width, height) in pixels
    rgba: np.ndarray | None = None  # bottom row first
    points: list[tuple[float, float, bool]] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    drag: tuple[float, float, float, float] | None = None  # region pixels
    _texture: Any = None
    _texture_of: int = 0
    drawn: int = 0
    drawn_mask: int = 0  # draws that showed a mask

    def set_rgba(self, rgba: np.ndarray | None) -> None:
        self.rgba = rgba
        self._texture = None


def _to_region(region: bpy.types.Region, size: tuple[int, int], x: float, y: float):
    w, h = size
    return region.view2d.view_to_region(x / w, 1.0 - y / h, clip=False)


def draw(state: OverlayState) -> None:
    ctx = bpy.context
    if ctx.area != state.area:
        return
    region = ctx.region
    gpu.state.blend_set("ALPHA")
    try:
        if state.rgba is not None:
            if state._texture is None:
                h, w = state.rgba.shape[:2]
                buf = gpu.types.Buffer("FLOAT", w * h * 4, state.rgba.ravel())
                state._texture = gpu.types.GPUTexture((w, h), format="RGBA32F", data=buf)
            x0, y0 = region.view2d.view_to_region(0.0, 0.0, clip=False)
            x1, y1 = region.view2d.view_to_region(1.0, 1.0, clip=False)
            shader = gpu.shader.from_builtin("IMAGE")
            batch = batch_for_shader(
                shader,
                "TRI_FAN",
                {
                    "pos": ((x0, y0), (x1, y0), (x1, y1), (x0, y1)),
                    "texCoord": ((0, 0), (1, 0), (1, 1), (0, 1)),
                },
            )
            shader.bind()
            shader.uniform_sampler("image", state._texture)
            batch.draw(shader)
            state.drawn_mask += 1
        flat = gpu.shader.from_builtin("UNIFORM_COLOR")
        boxes = []
        if state.box is not None:
            x0, y0, x1, y1 = state.box
            boxes.append(
                [
                    _to_region(region, state.size, x, y)
                    for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
                ]
            )
        if state.drag is not None:
            a, b, c, d = state.drag
            boxes.append([(a, b), (c, b), (c, d), (a, d)])
        gpu.state.line_width_set(2.0)
        for corners in boxes:
            batch = batch_for_shader(flat, "LINE_LOOP", {"pos": corners})
            flat.uniform_float("color", BOX)
            batch.draw(flat)
        gpu.state.point_size_set(9.0)
        for positive in (True, False):
            pts = [
                _to_region(region, state.size, x, y) for x, y, p in state.points if p == positive
            ]
            if pts:
                batch = batch_for_shader(flat, "POINTS", {"pos": pts})
                flat.uniform_float("color", POSITIVE if positive else NEGATIVE)
                batch.draw(flat)
        state.drawn += 1
    finally:
        gpu.state.blend_set("NONE")
        gpu.state.line_width_set(1.0)
        gpu.state.point_size_set(1.0)
