"""What a click-to-mask request asks for: positive and negative points, an optional box.

Coordinates are pixels of the photo at its full size (see ``backend.masking``): origin
top-left, x right, y down, floats allowed, in the upright frame (the photo's EXIF
orientation applied) unless ``frame`` is ``"stored"``: the file's pixels as stored, as
Blender shows them (``backend.jobs.orientation``). A point (x, y) lies in the image when
``0 <= x < width`` and ``0 <= y < height``; a box ``(x0, y0, x1, y1)`` spans pixel edges,
so ``0 <= x0 < x1 <= width`` and likewise for y, at least one pixel each way.

Bad prompts are ``bad_prompt`` (422) errors whose ``details.reason`` says which rule:
``no_prompts``, ``too_many_points``, ``outside_image``, ``empty_box``, ``malformed``.
No pydantic here: the mask worker imports this on lean GPU environments.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from backend.errors import BackendError, shorten
from backend.jobs.orientation import FRAMES, UPRIGHT, point_to_upright, upright_size

#: Most points one request may carry (SAM 2 is trained with a handful; more is a client bug).
MAX_POINTS = 64


def bad_prompt(reason: str, message: str, **details: Any) -> BackendError:
    return BackendError("bad_prompt", message, reason=reason, **details)


def _too_many(n: int) -> BackendError:
    return bad_prompt(
        "too_many_points",
        f"{n} points were given; at most {MAX_POINTS} are accepted.",
        points=n,
        max_points=MAX_POINTS,
    )


@dataclass(frozen=True)
class Point:
    """A click at pixel (x, y); ``positive``: on the object, else on the background."""

    x: float
    y: float
    positive: bool = True


@dataclass(frozen=True)
class Box:
    """A box around the object, pixel edges ``x0 < x1``, ``y0 < y1``."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True)
class MaskPrompt:
    """Points and a box in ``frame``: ``"upright"`` (default) or ``"stored"``."""

    points: tuple[Point, ...] = ()
    box: Box | None = None
    frame: str = UPRIGHT

    @property
    def positives(self) -> list[Point]:
        return [p for p in self.points if p.positive]

    def check(self) -> MaskPrompt:
        """The rules that need no image: something given, not too many points, a box
        with area. Returns self."""
        if not self.points and self.box is None:
            raise bad_prompt("no_prompts", "Give at least one point or a box around the object.")
        if len(self.points) > MAX_POINTS:
            raise _too_many(len(self.points))
        if self.box is not None and (self.box.width < 1 or self.box.height < 1):
            b = self.box
            raise bad_prompt(
                "empty_box",
                f"The box ({b.x0:g}, {b.y0:g}) - ({b.x1:g}, {b.y1:g}) has no area; drag a box "
                "at least one pixel wide and high, from its top-left to its bottom-right corner.",
            )
        if self.box is None and not self.positives:
            raise bad_prompt(
                "no_prompts",
                "Only negative points were given; click on the object at least once, or draw "
                "a box around it.",
            )
        return self

    def check_inside(self, width: int, height: int) -> MaskPrompt:
        """Every point and the box inside a ``width`` x ``height`` image. Returns self."""
        for i, p in enumerate(self.points):
            if not (0 <= p.x < width and 0 <= p.y < height):
                raise bad_prompt(
                    "outside_image",
                    f"Point {i} ({p.x:g}, {p.y:g}) is outside the image, which is "
                    f"{width}x{height} pixels (x from 0 to {width}, y from 0 to {height}, "
                    "origin top-left).",
                    point=i,
                    image_size=[width, height],
                )
        b = self.box
        if b is not None and not (0 <= b.x0 and 0 <= b.y0 and b.x1 <= width and b.y1 <= height):
            raise bad_prompt(
                "outside_image",
                f"The box ({b.x0:g}, {b.y0:g}) - ({b.x1:g}, {b.y1:g}) reaches outside the "
                f"image, which is {width}x{height} pixels.",
                image_size=[width, height],
            )
        return self

    def scaled(self, s: float) -> MaskPrompt:
        """The prompt in an image scaled by ``s`` (pixel edges scale exactly)."""
        pts = tuple(Point(p.x * s, p.y * s, p.positive) for p in self.points)
        b = self.box
        box = None if b is None else Box(b.x0 * s, b.y0 * s, b.x1 * s, b.y1 * s)
        return MaskPrompt(pts, box, self.frame)

    def upright(self, stored_size: tuple[int, int], orientation: int) -> MaskPrompt:
        """This stored-frame prompt on a photo of ``stored_size`` (width, height) and EXIF
        ``orientation``, in the upright frame (a box stays a box: its corners are mapped
        and ordered again)."""

        def move(x: float, y: float) -> tuple[float, float]:
            return point_to_upright(x, y, stored_size, orientation)

        w, h = upright_size(stored_size, orientation)

        def inside(x: float, y: float) -> tuple[float, float]:
            # a point on a left or top pixel edge lands on the right or bottom one when the
            # picture is flipped: keep it in the last pixel (points are inside: x < width)
            return (min(x, math.nextafter(w, 0)), min(y, math.nextafter(h, 0)))

        pts = tuple(Point(*inside(*move(p.x, p.y)), p.positive) for p in self.points)
        box = None
        if self.box is not None:
            b = self.box
            (ax, ay), (bx, by) = move(b.x0, b.y0), move(b.x1, b.y1)
            box = Box(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
        return MaskPrompt(pts, box, UPRIGHT)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "points": [{"x": p.x, "y": p.y, "positive": p.positive} for p in self.points]
        }
        if self.box is not None:
            b = self.box
            out["box"] = [b.x0, b.y0, b.x1, b.y1]
        if self.frame != UPRIGHT:
            out["frame"] = self.frame
        return out


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise bad_prompt("malformed", f"{where} must be a finite number, not {shorten(v, 40)!r}.")
    return float(v)


def prompt_from_json(data: Any) -> MaskPrompt:
    """``{"points": [{"x", "y", "positive"?}...], "box": [x0, y0, x1, y1]?, "frame":
    "upright"|"stored"?}`` -> MaskPrompt (checked with :meth:`MaskPrompt.check`). A point
    may also be ``[x, y]`` or ``[x, y, 1|0]``."""
    if not isinstance(data, dict):
        raise bad_prompt(
            "malformed", 'The prompts must be a JSON object: {"points": [...], "box": [...]}.'
        )
    unknown = set(data) - {"points", "box", "frame"}
    if unknown:
        raise bad_prompt(
            "malformed",
            f"Unknown prompt fields: {shorten(', '.join(sorted(map(str, unknown))), 80)}; "
            "use points, box and frame.",
        )
    frame = data.get("frame", UPRIGHT)
    if frame not in FRAMES:
        raise bad_prompt(
            "malformed",
            f"frame must be {' or '.join(map(repr, FRAMES))} (the photo's pixels as stored, "
            f"before its EXIF orientation), not {shorten(frame, 40)!r}.",
        )
    raw_points = data.get("points") or []
    if not isinstance(raw_points, list):
        raise bad_prompt("malformed", "points must be a list.")
    if len(raw_points) > MAX_POINTS:
        raise _too_many(len(raw_points))
    points = []
    for i, p in enumerate(raw_points):
        if isinstance(p, dict):
            extra = set(p) - {"x", "y", "positive"}
            if extra or "x" not in p or "y" not in p:
                raise bad_prompt(
                    "malformed", f'Point {i} must be {{"x": .., "y": .., "positive": true|false}}.'
                )
            positive = p.get("positive", True)
            if not isinstance(positive, bool):
                raise bad_prompt("malformed", f"Point {i}: positive must be true or false.")
            points.append(
                Point(_number(p["x"], f"point {i} x"), _number(p["y"], f"point {i} y"), positive)
            )
        elif isinstance(p, list) and len(p) in (2, 3):
            label = p[2] if len(p) == 3 else 1
            if label not in (0, 1) or isinstance(label, bool):
                raise bad_prompt(
                    "malformed", f"Point {i}: the label must be 1 (object) or 0 (background)."
                )
            points.append(
                Point(_number(p[0], f"point {i} x"), _number(p[1], f"point {i} y"), label == 1)
            )
        else:
            raise bad_prompt(
                "malformed", f"Point {i} must be an object {{x, y, positive}} or [x, y, 1|0]."
            )
    box = None
    raw_box = data.get("box")
    if raw_box is not None:
        if not isinstance(raw_box, list) or len(raw_box) != 4:
            raise bad_prompt("malformed", "box must be [x0, y0, x1, y1] (pixels, top-left origin).")
        box = Box(*(_number(v, f"box[{i}]") for i, v in enumerate(raw_box)))
    return MaskPrompt(tuple(points), box, frame).check()


def prompt_from_text(text: str | None) -> MaskPrompt:
    """The ``prompts`` form field (JSON text) -> MaskPrompt."""
    if not text:
        raise bad_prompt("no_prompts", "Give at least one point or a box around the object.")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise bad_prompt(
            "malformed", f"The prompts are not valid JSON ({shorten(exc, 120)})."
        ) from None
    return prompt_from_json(data)


def parse_point_arg(text: str) -> Point:
    """The CLI's ``--point X,Y[,+|-]`` (``+`` object, the default; ``-`` background)."""
    parts = [t.strip() for t in text.split(",")]
    sign = "+"
    if len(parts) == 3:
        sign = parts.pop()
    if len(parts) != 2 or sign not in ("+", "-"):
        raise bad_prompt(
            "malformed", f"--point {shorten(text, 40)!r}: write X,Y or X,Y,+ or X,Y,-."
        )
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise bad_prompt(
            "malformed", f"--point {shorten(text, 40)!r}: X and Y must be numbers."
        ) from None
    return Point(x, y, sign == "+")


def parse_box_arg(text: str) -> Box:
    """The CLI's ``--box X0,Y0,X1,Y1``."""
    try:
        vals = [float(t) for t in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 4:
        raise bad_prompt(
            "malformed", f"--box {shorten(text, 40)!r}: write X0,Y0,X1,Y1 (four numbers)."
        )
    return Box(*vals)
