"""The preview engine: a CPU-only, weight-free stand-in that inflates the mask's silhouette.

It lets every machine (and CI) run the whole product path for real, and gives artists a
quick blocking shape.

Method
------
1. The mask is cleaned: specks smaller than 0.5% of the largest island (and under 64 px)
   are removed, pin-holes under 16 px are filled; several islands and real holes are kept.
2. On a grid of at most ``GRID`` cells along the crop's long side, a signed distance to the
   silhouette is inflated into a half-thickness ``h(x, y) = THICKNESS * sqrt(d * (2 D - d))``
   per island (``D`` = the island's largest inner distance: a disk becomes a sphere).
3. The surface ``|z| = h(x, y)`` is extracted by marching cubes from the field
   ``f = h - |z|`` (outside the silhouette ``h`` is minus the distance to it), which is
   closed, watertight and consistently oriented (outward normals) by construction.
4. Every vertex is placed on the camera ray through its pixel, so the mesh reprojects onto
   the mask exactly; colours are sampled from the photo at that pixel (front and back alike,
   with the background replaced by the nearest object colour, so no edge bleeds and the
   back is never black).

Monocular assumption (stated, used for poses and scenes)
---------------------------------------------------------
* Pinhole camera, square pixels, principal point at the image centre, horizontal field of
  view ``FOV_X_DEG`` = 55 degrees (a typical phone/normal lens).
* The camera is level (optical axis horizontal) ``CAMERA_HEIGHT_M`` = 1.2 m above a flat
  ground plane, and every object stands on that plane: the lowest pixel of its silhouette
  touches the ground, which fixes its distance ``Z = CAMERA_HEIGHT_M * fy / (v_bottom - cy)``.
  Relative sizes and depth order of objects in one photo follow from this; the absolute
  scale follows from the assumed camera height.
* An object whose silhouette ends above the horizon (no visible ground contact) is placed
  at ``FALLBACK_DEPTH_M`` and the job reports it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from backend.engines.base import Availability
from backend.errors import BackendError
from backend.job_context import Cancelled, JobContext
from backend.memory import trim_heap
from backend.options import JobOptions
from backend.parallel import ordered_map
from backend.reconstruction import Intrinsics, Pose, Reconstruction

FOV_X_DEG = 55.0
CAMERA_HEIGHT_M = 1.2
FALLBACK_DEPTH_M = 3.0
#: Grid cells along the long side of the object's crop (mesh density).
GRID = 144
#: Half-thickness relative to a sphere's (1.0 = a disk inflates into a full sphere).
THICKNESS = 0.75
#: Horizon margin in pixels: ground contact must be this far below the principal point.
HORIZON_MARGIN_PX = 2.0
#: Objects of one photo reconstructed at a time (at most the CPUs this process may use).
OBJECT_THREADS = 2


class PreviewEngine:
    """Silhouette inflation on the CPU (see module doc)."""

    name = "preview"

    def availability(self) -> Availability:
        return Availability(
            True, "CPU preview engine: inflates the mask's silhouette; no weights needed."
        )

    def unload(self) -> None:
        """Nothing is held between jobs."""

    # -- public API -----------------------------------------------------------------------
    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        seed: int,
        options: JobOptions,
        ctx: JobContext,
        intrinsics: Intrinsics | None = None,
    ) -> Reconstruction:
        ctx.stage("reconstruct")
        intr = intrinsics or self.intrinsics_for(image)
        return self._reconstruct_one(image, mask, intr, ctx)

    def reconstruct_many(
        self,
        image: np.ndarray,
        masks: Sequence[np.ndarray],
        seed: int,
        options: JobOptions,
        ctx: JobContext,
    ) -> list[Reconstruction | Exception]:
        """Several objects of one photo, ``OBJECT_THREADS`` at a time (the per-object work is
        numpy/scipy/Pillow/scikit-image that releases the GIL for its large arrays). Each
        mask is read from ``masks`` only when its object starts, so a sequence that loads
        masks on access keeps one or two of them in memory. A failing mask yields its
        exception in its own slot; cancelling stops the objects not yet started."""
        ctx.stage("reconstruct")
        intr = self.intrinsics_for(image)  # one camera for every part
        n = len(masks)

        def one(i: int) -> Reconstruction | Exception:
            ctx.check_cancel()  # before the mask is read
            try:
                return self._reconstruct_one(image, masks[i], intr, ctx, index=i)
            except Cancelled:
                raise
            except Exception as exc:  # one mask's failure is its part's, not the scene's
                return exc

        try:
            return ordered_map(
                one, n, OBJECT_THREADS, lambda i, _: ctx.progress((i + 1) / n), "preview"
            )
        finally:
            trim_heap()

    @staticmethod
    def intrinsics_for(image: np.ndarray) -> Intrinsics:
        h, w = image.shape[:2]
        return Intrinsics.from_fov(w, h, FOV_X_DEG)

    # -- implementation -------------------------------------------------------------------
    def _reconstruct_one(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        intr: Intrinsics,
        ctx: JobContext,
        index: int | None = None,
    ) -> Reconstruction:
        t0 = time.perf_counter()
        name = "mask" if index is None else f"mask {index}"
        speck_error = BackendError(
            "empty_mask",
            f"The {name} holds only specks too small to build an object from; "
            "paint the whole object.",
        )
        # Everything per object runs on the mask's window (its bounding box grown by one
        # pixel), never on the whole frame: see clean_mask.
        win = mask_window(np.asarray(mask, dtype=bool))
        if win is None:
            raise speck_error
        clean = _clean_window(np.asarray(mask[win], dtype=bool))
        origin = (win[0].start, win[1].start)
        area = int(np.count_nonzero(clean))
        if area == 0:
            raise speck_error
        if area >= 0.995 * mask.shape[0] * mask.shape[1]:
            raise BackendError("full_mask", f"The {name} covers the whole image.")
        ctx.check_cancel()
        rows = np.flatnonzero(clean.any(axis=1))
        depth, warn = depth_from_bottom(origin[0] + float(rows[-1]) + 1.0, intr)
        try:
            verts_px, faces = inflate_silhouette(clean, origin=origin)
        except (ValueError, RuntimeError):  # no iso-surface: nothing solid at this scale
            verts_px, faces = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        if len(faces) == 0:
            raise BackendError(
                "empty_mask",
                f"The {name} holds no solid region to build an object from (only scattered or "
                "hair-thin pixels); paint the object as one filled shape.",
            )
        ctx.check_cancel()
        # verts_px: (u, v, t) - pixel coordinates and half-thickness offset in pixels.
        u, v, t = verts_px[:, 0], verts_px[:, 1], verts_px[:, 2]
        # Offset toward the camera is +t; metres per pixel at the object's depth = depth / fx.
        d = depth - t * depth / intr.fx
        x = (u - intr.cx) * d / intr.fx
        y = -(v - intr.cy) * d / intr.fy
        p_cam = np.stack([x, y, -d], axis=1)
        colors = sample_colors(image, clean, u, v, origin=origin)
        lo, hi = p_cam.min(axis=0), p_cam.max(axis=0)
        centre = (lo + hi) / 2
        verts = (p_cam - centre).astype(np.float32)
        meta = {
            "engine": self.name,
            "assumption": (
                f"level camera {CAMERA_HEIGHT_M} m above the ground, {FOV_X_DEG} deg horizontal "
                "field of view, object standing on the ground"
            ),
            "depth_m": float(depth),
            "timings": {"reconstruct": time.perf_counter() - t0},
        }
        rec = Reconstruction(
            vertices=verts,
            faces=faces.astype(np.int32),
            vertex_colors=colors,
            pose=Pose(translation=centre.astype(np.float64)),
            intrinsics=intr,
            meta=meta,
        )
        if warn:
            meta["warnings"] = [warn if index is None else f"{name}: {warn}"]
        return rec


def mask_window(mask: np.ndarray, pad: int = 1) -> tuple[slice, slice] | None:
    """Row and column slices of the mask's bounding box grown by ``pad`` pixels (clipped to
    the image); None for an empty mask. Per-object work runs on this window, not the frame."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    # Columns only over the rows that hold the mask (a fraction of a large photo).
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    h, w = mask.shape
    return (
        slice(max(0, rows[0] - pad), min(h, rows[-1] + 1 + pad)),
        slice(max(0, cols[0] - pad), min(w, cols[-1] + 1 + pad)),
    )


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Drop specks and fill pin-holes; keep real islands and holes. bool (H, W) -> bool.

    Works on the mask's bounding box grown by one pixel: every island lies inside it, and a
    background region is a hole exactly when it does not reach that window's border (the
    ring around the box is background connected to the rest of the frame or is the frame's
    edge), so the result equals the whole-frame computation at the window's cost.
    """
    mask = np.asarray(mask, dtype=bool)
    win = mask_window(mask)
    if win is None:
        return mask.copy()
    out = np.zeros_like(mask)
    out[win] = _clean_window(mask[win])
    return out


def _clean_window(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    min_size = max(1.0, min(64.0, 0.005 * sizes.max()))
    if sizes.max() < 16:  # nothing but specks
        return np.zeros_like(mask)
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = sizes >= min_size
    out = keep[labels]
    holes = ~out
    hl, hn = ndimage.label(holes)
    if hn:
        hsizes = np.bincount(hl.ravel(), minlength=hn + 1)[1:]
        small = np.zeros(hn + 1, dtype=bool)
        small[1:] = hsizes < 16
        # the background touching the window's border is never a hole
        border = np.unique(np.concatenate([hl[0], hl[-1], hl[:, 0], hl[:, -1]]))
        small[border] = False
        out |= small[hl]
    return out


def ground_depth(mask: np.ndarray, intr: Intrinsics) -> tuple[float, str | None]:
    """Distance (metres, along the optical axis) of an object standing on the ground plane,
    from its whole-frame mask (H, W) bool; see ``depth_from_bottom``."""
    rows = np.nonzero(mask.any(axis=1))[0]
    return depth_from_bottom(float(rows.max()) + 1.0, intr)


def depth_from_bottom(v_bottom: float, intr: Intrinsics) -> tuple[float, str | None]:
    """Distance (metres, along the optical axis) of an object whose silhouette ends at image
    row ``v_bottom`` (pixels, the lower edge of its lowest pixel row), standing on the
    ground plane; a warning when that is not below the horizon."""
    below = v_bottom - intr.cy
    if below <= HORIZON_MARGIN_PX:
        return FALLBACK_DEPTH_M, (
            f"the object does not reach below the horizon, so its ground contact is not visible; "
            f"it was placed {FALLBACK_DEPTH_M} m from the camera"
        )
    return CAMERA_HEIGHT_M * intr.fy / below, None


def inflate_silhouette(
    mask: np.ndarray, grid: int = GRID, origin: tuple[int, int] = (0, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """Closed mesh of the inflated silhouette ``mask`` (bool; the whole frame, or a window of
    it whose top-left pixel is (row, col) ``origin`` of the frame).

    Returns vertices (n, 3) float64 as (u, v, t): pixel coordinates in the full image and the
    offset toward the camera in pixels; faces (m, 3) int64 with outward normals in the
    camera-frame mapping used by ``PreviewEngine`` (u right, v down, t toward the camera).
    """
    from skimage.measure import marching_cubes

    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    crop = mask[r0:r1, c0:c1]
    scale = min(1.0, grid / max(crop.shape))  # cells per pixel
    gh, gw = max(2, round(crop.shape[0] * scale)), max(2, round(crop.shape[1] * scale))
    cov = np.asarray(
        Image.fromarray(crop.astype(np.float32)).resize((gw, gh), Image.BOX), dtype=np.float32
    )
    pad = 3
    inside = np.pad(cov > 0.5, pad)
    if not inside.any():  # thin object vanished at this resolution: keep its densest cells
        inside = np.pad(cov >= cov.max() * 0.5, pad)
    d_in = ndimage.distance_transform_edt(inside)
    d_out = ndimage.distance_transform_edt(~inside)
    sdf = np.where(inside, d_in - 0.5, -(d_out - 0.5)).astype(np.float32)
    # per-island inflation profile: sphere-like for round islands
    labels, n = ndimage.label(inside)
    dmax = np.asarray(ndimage.maximum(sdf, labels, index=np.arange(1, n + 1)), dtype=np.float32)
    big_d = np.zeros(n + 1, dtype=np.float32)
    big_d[1:] = np.maximum(dmax, 0.5)
    dd = big_d[labels]
    din = np.clip(sdf, 0, None)
    height = THICKNESS * np.sqrt(np.clip(din * (2 * dd - din), 0, None))
    height = np.maximum(height, 0.75)  # every pixel of the silhouette has some thickness
    h2d = np.where(inside, height, sdf)
    h2d = ndimage.gaussian_filter(h2d, 0.6)
    zmax = int(np.ceil(max(h2d.max(), 1.0))) + 2
    z = np.arange(-zmax, zmax + 1, dtype=np.float32)
    # volume axes: (row, col, z); f > 0 inside
    vol = h2d[:, :, None] - np.abs(z)[None, None, :]
    verts, faces, _normals, _ = marching_cubes(vol, level=0.0, allow_degenerate=False)
    # index space -> (u, v, t) in full-image pixels
    cell = 1.0 / scale
    u = origin[1] + c0 + (verts[:, 1] - pad + 0.5) * cell * (crop.shape[1] / (gw * cell))
    v = origin[0] + r0 + (verts[:, 0] - pad + 0.5) * cell * (crop.shape[0] / (gh * cell))
    t = (verts[:, 2] - zmax) * cell
    out = np.stack([u, v, t], axis=1)
    faces = faces.astype(np.int64)
    # Orientation: make normals point outward in the (x right, y up, z toward camera) frame.
    p = np.stack([u, -v, t], axis=1)
    tri = p[faces]
    signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()
    if signed < 0:
        faces = faces[:, ::-1].copy()
    return out, faces


def sample_colors(
    image: np.ndarray,
    mask: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Bilinear photo colours at pixel coordinates, background replaced by the nearest
    object colour (no edge bleed). Returns (n, 3) float32 sRGB in [0, 1].

    ``mask`` is the whole frame's mask, or a window of it whose top-left pixel is (row, col)
    ``origin`` of the frame (the frame being ``image``; outside the window the mask is
    empty). Only the window holding the mask and every sample (plus the bilinear
    neighbours) is filled and converted: the nearest object pixel of any point lies among
    the mask's pixels, all inside that window, so the colours equal a whole-frame fill.
    """
    h, w = image.shape[:2]
    if len(u) == 0:
        return np.zeros((0, 3), np.float32)
    local = mask_window(mask, pad=0)
    if local is None:
        rows, cols = slice(0, h), slice(0, w)
    else:
        rows = slice(local[0].start + origin[0], local[0].stop + origin[0])
        cols = slice(local[1].start + origin[1], local[1].stop + origin[1])
    r0 = max(0, min(rows.start, int(np.floor(np.min(v) - 0.5)) - 1))
    r1 = min(h, max(rows.stop, int(np.ceil(np.max(v) - 0.5)) + 2))
    c0 = max(0, min(cols.start, int(np.floor(np.min(u) - 0.5)) - 1))
    c1 = min(w, max(cols.stop, int(np.ceil(np.max(u) - 0.5)) + 2))
    # The mask on [r0:r1, c0:c1] of the frame (the window may be larger than ``mask``).
    sub = np.zeros((r1 - r0, c1 - c0), bool)
    mr0, mc0 = max(r0, origin[0]), max(c0, origin[1])
    mr1 = min(r1, origin[0] + mask.shape[0])
    mc1 = min(c1, origin[1] + mask.shape[1])
    if mr1 > mr0 and mc1 > mc0:
        sub[mr0 - r0 : mr1 - r0, mc0 - c0 : mc1 - c0] = mask[
            mr0 - origin[0] : mr1 - origin[0], mc0 - origin[1] : mc1 - origin[1]
        ]
    _, idx = ndimage.distance_transform_edt(~sub, return_indices=True)
    filled = image[r0:r1, c0:c1][idx[0], idx[1]].astype(np.float32) / 255.0
    # clip in frame coordinates first (as a whole-frame sampler does), then shift
    coords = [np.clip(v - 0.5, 0, h - 1) - r0, np.clip(u - 0.5, 0, w - 1) - c0]
    cols_out = [
        ndimage.map_coordinates(filled[..., c], coords, order=1, mode="nearest") for c in range(3)
    ]
    return np.clip(np.stack(cols_out, axis=1), 0, 1).astype(np.float32)
