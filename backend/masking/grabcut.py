"""GrabCut (OpenCV) seeded by the box and the points: a mask without model weights.

Two passes. The coarse pass runs on a copy whose longest side is ``COARSE_SIDE`` pixels:
outside the box is background, inside probably object. Without a box, the pixels of about
the clicked colour connected to each positive click (a flood fill), widened a little, are
probably object, and an implicit box around them (grown by their own size, at least
``MIN_IMPLICIT_GROW`` of the image) bounds the rest. Every click is a small disk of sure
object (positive) or sure background (negative). The refinement runs at the working size
on a crop around the coarse mask: only a thin band along its edge is left open, so it
costs little and the edge follows the full-resolution picture. Only the parts connected to a positive click
(or, without one, the largest part in the box) are kept.

``score`` in [0, 1]: how well the refined mask agrees with the coarse one (IoU) - a
stability figure, not a learned confidence like SAM 2's.
All coordinates are pixels of the working-size image (x right, y down, top-left origin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from backend.masking.photo import Photo
from backend.masking.prompts import MaskPrompt

#: Longest side of the coarse pass (pixels).
COARSE_SIDE = 512
#: Largest crop the refinement works on (pixels); bigger crops are refined scaled down.
REFINE_MAX_PIXELS = 1_000_000
COARSE_ITERATIONS = 5
#: Clicks alone: the clicked colour region is widened by this fraction of the longest side.
CLICK_AREA_FRACTION = 0.04
#: Colour difference (per channel, 0..255) within which the flood fill from a click goes.
FLOOD_TOLERANCE = 24
#: Clicks alone: the implicit box reaches at least this fraction of the longest side
#: beyond the likely region.
MIN_IMPLICIT_GROW = 0.25
#: Half the side of the window a click's flood fill stays in (fraction of the longest side).
FLOOD_WINDOW = 0.3
REFINE_ITERATIONS = 2


@dataclass
class GrabCutPhoto:
    """What one photo needs for every click: its BGR copies (coarse and working size)."""

    coarse: np.ndarray  # (h, w, 3) uint8 BGR
    coarse_scale: float  # coarse pixels per working pixel
    work: np.ndarray  # (H, W, 3) uint8 BGR


class GrabCutSegmenter:
    name = "grabcut"

    def prepare(self, photo: Photo) -> GrabCutPhoto:
        h, w = photo.rgb.shape[:2]
        s = min(1.0, COARSE_SIDE / max(h, w))
        work = np.ascontiguousarray(photo.rgb[..., ::-1])
        if s < 1.0:
            size = (max(1, round(w * s)), max(1, round(h * s)))
            coarse = cv2.resize(work, size, interpolation=cv2.INTER_AREA)
            s = size[0] / w
        else:
            coarse = work
        return GrabCutPhoto(coarse, s, work)

    def segment(self, prep: GrabCutPhoto, prompt: MaskPrompt) -> tuple[np.ndarray, float]:
        """Mask (H, W) bool at the working size, and the score."""
        small = prompt.scaled(prep.coarse_scale)
        coarse = _grabcut(prep.coarse, _seed(prep.coarse, small), COARSE_ITERATIONS)
        coarse = _keep_clicked(coarse, small)
        if prep.coarse is prep.work:
            return coarse, 1.0
        h, w = prep.work.shape[:2]
        up = cv2.resize(coarse.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR)
        up = up > 127
        if not up.any():
            return up, 0.0
        band = max(2, math.ceil(2 / prep.coarse_scale))
        refined = _refine(prep.work, up, prompt, band)
        refined = _keep_clicked(refined, prompt)
        inter = np.count_nonzero(refined & up)
        union = np.count_nonzero(refined | up)
        return refined, (inter / union if union else 0.0)


def _disk_radius(shape: tuple[int, int]) -> int:
    return max(2, round(0.01 * max(shape)))


def _seed(bgr: np.ndarray, prompt: MaskPrompt) -> np.ndarray:
    """The GrabCut label image (GC_*) the prompt gives before any iteration."""
    h, w = shape = bgr.shape[:2]
    if prompt.box is not None:
        b = prompt.box
        m = np.full((h, w), cv2.GC_BGD, np.uint8)
        x0, y0 = max(0, math.floor(b.x0)), max(0, math.floor(b.y0))
        x1, y1 = min(w, math.ceil(b.x1)), min(h, math.ceil(b.y1))
        m[y0:y1, x0:x1] = cv2.GC_PR_FGD
    else:
        # Clicks alone: an implicit box, the likely region grown by its own size each way.
        likely = _similar_around_clicks(bgr, prompt)
        ys, xs = np.nonzero(likely)
        grow = MIN_IMPLICIT_GROW * max(h, w)
        pw = max(grow, xs.max() - xs.min() + 1)
        ph = max(grow, ys.max() - ys.min() + 1)
        m = np.full((h, w), cv2.GC_BGD, np.uint8)
        m[
            max(0, round(ys.min() - ph)) : min(h, round(ys.max() + 1 + ph)),
            max(0, round(xs.min() - pw)) : min(w, round(xs.max() + 1 + pw)),
        ] = cv2.GC_PR_BGD
        m[likely] = cv2.GC_PR_FGD
    if not np.isin(m, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():  # a box over the whole image
        m[[0, -1], :] = cv2.GC_PR_BGD
        m[:, [0, -1]] = cv2.GC_PR_BGD
    _draw_points(m, prompt, _disk_radius(shape))
    return m


def _similar_around_clicks(bgr: np.ndarray, prompt: MaskPrompt) -> np.ndarray:
    """Clicks alone: the pixels of about the clicked colour connected to each positive
    click (flood fill on a smoothed copy, within ``FLOOD_WINDOW`` of the longest side),
    widened by ``CLICK_AREA_FRACTION`` of it - the region GrabCut starts from as "probably
    object". A fill that reaches its window's edge has leaked into the background: that
    click contributes its disk only."""
    h, w = bgr.shape[:2]
    smooth = cv2.GaussianBlur(bgr, (5, 5), 0)
    r = max(3, round(CLICK_AREA_FRACTION * max(h, w)))
    half = max(8, round(FLOOD_WINDOW * max(h, w)))
    tol = (FLOOD_TOLERANCE,) * 3
    region = np.zeros((h, w), np.uint8)
    for p in prompt.positives:
        cx, cy = min(w - 1, int(p.x)), min(h - 1, int(p.y))
        x0, y0, x1, y1 = max(0, cx - half), max(0, cy - half), min(w, cx + half), min(h, cy + half)
        win = np.ascontiguousarray(smooth[y0:y1, x0:x1])
        fill = np.zeros((y1 - y0 + 2, x1 - x0 + 2), np.uint8)
        cv2.floodFill(
            win, fill, (cx - x0, cy - y0), (0, 0, 0), tol, tol,
            4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8),
        )  # fmt: skip
        f = fill[1:-1, 1:-1]
        edges = [f[0, :] if y0 > 0 else None, f[-1, :] if y1 < h else None,
                 f[:, 0] if x0 > 0 else None, f[:, -1] if x1 < w else None]  # fmt: skip
        if any(e is not None and e.any() for e in edges):
            cv2.circle(region, (cx, cy), r, 1, thickness=-1)
        else:
            region[y0:y1, x0:x1] |= f
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(region, k) > 0


def _draw_points(m: np.ndarray, prompt: MaskPrompt, radius: int) -> None:
    for p in prompt.points:
        label = cv2.GC_FGD if p.positive else cv2.GC_BGD
        cv2.circle(m, (int(p.x), int(p.y)), radius, int(label), thickness=-1)


def _grabcut(bgr: np.ndarray, seed: np.ndarray, iterations: int) -> np.ndarray:
    """GrabCut from the label image ``seed``; (h, w) bool, object = True."""
    m = seed.copy()
    fg = np.isin(m, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if fg.all() or not fg.any():
        return fg
    if np.isin(m, (cv2.GC_PR_FGD, cv2.GC_PR_BGD)).any():
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(bgr, m, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # a degenerate colour model (e.g. a single colour): keep the seed
            m = seed
    return np.isin(m, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _refine(work: np.ndarray, up: np.ndarray, prompt: MaskPrompt, band: int) -> np.ndarray:
    """GrabCut at the working size, on a crop around ``up`` with only a ``band``-pixel
    strip along its edge left open."""
    h, w = up.shape
    ys, xs = np.nonzero(up)
    margin = 3 * band
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)
    crop = work[y0:y1, x0:x1]
    cup = up[y0:y1, x0:x1].astype(np.uint8)
    local = MaskPrompt(
        tuple(type(p)(p.x - x0, p.y - y0, p.positive) for p in prompt.points),
        None
        if prompt.box is None
        else type(prompt.box)(
            prompt.box.x0 - x0, prompt.box.y0 - y0, prompt.box.x1 - x0, prompt.box.y1 - y0
        ),
    )
    ch, cw = cup.shape
    f = min(1.0, math.sqrt(REFINE_MAX_PIXELS / (ch * cw)))
    if f < 1.0:
        size = (max(1, round(cw * f)), max(1, round(ch * f)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        cup = cv2.resize(cup, size, interpolation=cv2.INTER_NEAREST)
        local = local.scaled(size[0] / cw)
        band = max(2, round(band * f))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    inner = cv2.erode(cup, k)
    outer = cv2.dilate(cup, k)
    m = np.full(cup.shape, cv2.GC_BGD, np.uint8)
    m[outer > 0] = cv2.GC_PR_BGD
    m[cup > 0] = cv2.GC_PR_FGD
    m[inner > 0] = cv2.GC_FGD
    if local.box is not None:  # outside the box stays background
        b = local.box
        keep = np.zeros(m.shape, bool)
        keep[
            max(0, math.floor(b.y0)) : math.ceil(b.y1), max(0, math.floor(b.x0)) : math.ceil(b.x1)
        ] = True
        m[~keep] = cv2.GC_BGD
    _draw_points(m, local, max(2, round(_disk_radius(up.shape) * (f if f < 1 else 1))))
    out = _grabcut(crop, m, REFINE_ITERATIONS).astype(np.uint8)
    if f < 1.0:
        out = cv2.resize(out * 255, (cw, ch), interpolation=cv2.INTER_LINEAR) > 127
    full = np.zeros((h, w), bool)
    full[y0:y1, x0:x1] = out > 0
    return full


def _keep_clicked(mask: np.ndarray, prompt: MaskPrompt) -> np.ndarray:
    """Only the connected parts of ``mask`` under a positive click; without one, the
    largest part."""
    if not mask.any():
        return mask
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    h, w = mask.shape
    keep = {int(labels[min(h - 1, int(p.y)), min(w - 1, int(p.x))]) for p in prompt.positives} - {0}
    if not keep:
        counts = np.bincount(labels.ravel(), minlength=n)
        counts[0] = 0
        keep = {int(counts.argmax())}
    return np.isin(labels, list(keep))
