"""Make the demo's example photo and mask (no downloads; deterministic).

Draws a shaded, patterned ball and a box-like object standing on a wooden floor, lit from the
upper left, with contact shadows - enough colour detail to see the baked texture. Writes
``example_image.png`` (RGB) and ``example_mask.png`` (L: white = the ball) into ``--out``,
plus ``example_masks/0.png, 1.png`` (one mask per object) for scene jobs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def make_example(width: int = 960, height: int = 720) -> tuple[np.ndarray, list[np.ndarray]]:
    """Return (image (H, W, 3) uint8, [mask of the ball, mask of the box] as bool (H, W))."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = height * 0.42
    img = np.zeros((height, width, 3), np.float32)
    # wall: soft gradient; floor: wood planks receding toward the horizon
    wall = np.clip(0.75 - 0.25 * yy / horizon, 0, 1)[..., None] * np.array([0.80, 0.78, 0.74])
    depth = np.maximum(yy - horizon, 1.0)
    plank = np.floor((xx - width / 2) / depth * 6.0)
    grain = 0.5 + 0.5 * np.sin(200.0 / depth + plank * 1.7)
    floor = (0.45 + 0.1 * grain + 0.05 * (plank % 2))[..., None] * np.array([0.72, 0.50, 0.30])
    img[:] = np.where((yy < horizon)[..., None], wall, floor)

    masks = []
    # ball: a sphere with coloured bands, Lambert + specular shading
    cx, cy, r = width * 0.38, height * 0.62, height * 0.2
    dx, dy = (xx - cx) / r, (yy - cy) / r
    inside = dx**2 + dy**2 < 1.0
    dz = np.sqrt(np.clip(1 - dx**2 - dy**2, 0, 1))
    light = np.array([-0.5, -0.6, 0.62])
    light /= np.linalg.norm(light)
    lam = np.clip(dx * light[0] + dy * light[1] + dz * light[2], 0, 1)
    lat = np.arcsin(np.clip(-dy, -1, 1))
    lon = np.arctan2(dx, dz)
    band = (np.floor(lat * 4 / np.pi) % 3).astype(int)
    palette = np.array([[0.85, 0.15, 0.12], [0.95, 0.80, 0.15], [0.15, 0.35, 0.85]])
    base = palette[band] * (0.85 + 0.15 * np.cos(lon * 8))[..., None]
    spec = (np.clip(lam, 0, 1) ** 40)[..., None]
    ball = base * (0.25 + 0.75 * lam)[..., None] + 0.6 * spec
    shadow = np.exp(
        -(((xx - cx - 0.3 * r) / (1.1 * r)) ** 2 + ((yy - cy - 0.95 * r) / (0.18 * r)) ** 2)
    )
    img *= (1 - 0.5 * shadow)[..., None]
    # box: a cuboid seen from the front-left, right of the ball
    bx0, bx1, by0, by1 = width * 0.62, width * 0.84, height * 0.48, height * 0.80
    front = (xx >= bx0) & (xx <= bx1) & (yy >= by0) & (yy <= by1)
    top = (
        (yy < by0)
        & (yy >= by0 - 40)
        & (xx >= bx0 + (by0 - yy) * 0.8)
        & (xx <= bx1 + (by0 - yy) * 0.8)
    )
    side = (
        (xx > bx1)
        & (xx <= bx1 + 32)
        & (yy >= by0 - (xx - bx1) * 1.25)
        & (yy <= by1 - (xx - bx1) * 0.3)
    )
    stripes = 0.8 + 0.2 * (np.floor((xx - bx0) / 18) % 2)
    img[front] = (np.array([0.20, 0.55, 0.30]) * stripes[..., None])[front]
    img[top] = [0.35, 0.75, 0.45]
    img[side] = [0.12, 0.35, 0.18]
    img[inside] = ball[inside]
    rng = np.random.default_rng(7)
    img += rng.normal(0, 0.01, img.shape)
    box = front | top | side
    masks = [inside, box & ~inside]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), masks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    image, masks = make_example()
    Image.fromarray(image).save(args.out / "example_image.png")
    Image.fromarray(masks[0].astype(np.uint8) * 255).save(args.out / "example_mask.png")
    (args.out / "example_masks").mkdir(exist_ok=True)
    for i, m in enumerate(masks):
        Image.fromarray(m.astype(np.uint8) * 255).save(args.out / "example_masks" / f"{i}.png")
    print(f"example photo and masks written to {args.out}")


if __name__ == "__main__":
    main()
