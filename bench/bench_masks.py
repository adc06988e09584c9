"""Click-to-mask quality and speed per method: IoU against known masks, and latency of the
first click on a photo (decoding + the method's per-photo preparation, e.g. SAM 2's image
encoder) and of the next clicks (the photo cached).

    .venv/bin/python bench/bench_masks.py [--engines grabcut,sam2] [--large]

Photos with known masks: the demo's example (``scripts/make_example.py``: a banded ball
and a box on a wooden floor, 960x720) and the tests' synthetic scenes
(``tests/scene_fixture.synthetic_photo``: shaded ellipses on a floor, 1600x1200, 3
objects, three seeds); ``--large`` adds the example scaled to 4000x3000 (12 MP). From each
known mask come a box (its bounding box, 2 px margin) and one click (the mask pixel
farthest from its edge). Three prompts per object: the click alone, the box alone, the
box and the click. Every request goes through the real mask worker process
(``backend.masking.worker_client.MaskWorker``), as ``POST /masks`` does, minus HTTP.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from make_example import make_example  # noqa: E402

from backend.errors import BackendError  # noqa: E402
from backend.masking.engines import mask_engine_report  # noqa: E402
from backend.masking.prompts import Box, MaskPrompt, Point  # noqa: E402
from backend.masking.worker_client import MaskWorker  # noqa: E402
from tests.scene_fixture import synthetic_photo  # noqa: E402


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def photos(large: bool) -> list[tuple[str, bytes, list[np.ndarray]]]:
    """(name, PNG bytes, known masks (H, W) bool)."""
    out = []
    img, masks = make_example()
    out.append(("example 960x720", _png(img), masks))
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (1, 2, 3):
            p = synthetic_photo(Path(tmp) / str(seed), seed=seed, n_objects=3, size=(1600, 1200))
            ms = [
                np.asarray(Image.open(m)) > 127 for m in sorted((p.parent / "masks").glob("*.png"))
            ]
            out.append((f"synthetic #{seed} 1600x1200", p.read_bytes(), ms))
    if large:
        big = cv2.resize(img, (4000, 3000), interpolation=cv2.INTER_CUBIC)
        bm = [
            cv2.resize(m.astype(np.uint8), (4000, 3000), interpolation=cv2.INTER_NEAREST) > 0
            for m in masks
        ]
        out.append(("example 4000x3000", _png(big), bm))
    return out


def prompts_for(mask: np.ndarray) -> dict[str, MaskPrompt]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    box = Box(
        max(0, xs.min() - 2), max(0, ys.min() - 2), min(w, xs.max() + 3), min(h, ys.max() + 3)
    )
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    click = Point(float(x) + 0.5, float(y) + 0.5, True)
    return {
        "click": MaskPrompt((click,)),
        "box": MaskPrompt((), box),
        "box+click": MaskPrompt((click,), box),
    }


def iou(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        a = (
            cv2.resize(
                a.astype(np.uint8), (b.shape[1], b.shape[0]), interpolation=cv2.INTER_NEAREST
            )
            > 0
        )
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def run(engine: str, sets, max_pixels: int) -> dict:
    worker = MaskWorker(max_pixels=max_pixels)
    ious: dict[str, list[float]] = {"click": [], "box": [], "box+click": []}
    first, nxt, rows = [], [], []
    try:
        for name, data, masks in sets:
            image_id = None
            for oi, known in enumerate(masks):
                for kind, prompt in prompts_for(known).items():
                    msg = {
                        "cmd": "segment",
                        "prompt": prompt,
                        "engine": engine,
                        "image": None if image_id else data,
                        "image_id": image_id,
                    }
                    t0 = time.perf_counter()
                    ans = worker.request(msg)
                    ms = (time.perf_counter() - t0) * 1e3
                    (nxt if image_id else first).append(ms)
                    image_id = ans["image_id"]
                    got = np.asarray(Image.open(io.BytesIO(ans["png"]))) > 127
                    v = iou(got, known)
                    ious[kind].append(v)
                    rows.append((name, oi, kind, v, ms, ans["cached"]))
    finally:
        worker.close()
    return {"ious": ious, "first": first, "next": nxt, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engines", default="grabcut,sam2")
    ap.add_argument("--large", action="store_true", help="also a 12 MP photo")
    ap.add_argument("--max-megapixels", type=float, default=16)
    ap.add_argument("--per-object", action="store_true", help="print every request")
    args = ap.parse_args()
    report = mask_engine_report()
    sets = photos(args.large)
    print(f"{len(sets)} photos, {sum(len(m) for _, _, m in sets)} objects, 3 prompts each")
    results = {}
    for engine in args.engines.split(","):
        if not report[engine].available:
            print(f"{engine}: skipped - {report[engine].reason}")
            continue
        try:
            results[engine] = run(engine, sets, int(args.max_megapixels * 1e6))
        except BackendError as exc:
            print(f"{engine}: failed [{exc.code}] {exc.message}")
    if args.per_object:
        for engine, r in results.items():
            for name, oi, kind, v, ms, cached in r["rows"]:
                print(
                    f"{engine:8} {name:28} obj {oi} {kind:10} IoU {v:.3f} {ms:8.1f} ms cached={cached}"
                )
    head = f"{'engine':8} | {'IoU click':>9} | {'IoU box':>9} | {'IoU box+click':>13} | {'first click ms':>14} | {'next click ms (median)':>22} | {'next p90':>8}"
    print(head)
    print("-" * len(head))
    for engine, r in results.items():
        i = r["ious"]
        nx = sorted(r["next"])
        print(
            f"{engine:8} | {statistics.mean(i['click']):9.3f} | {statistics.mean(i['box']):9.3f} | "
            f"{statistics.mean(i['box+click']):13.3f} | {statistics.median(r['first']):14.0f} | "
            f"{statistics.median(nx):22.0f} | {nx[int(0.9 * (len(nx) - 1))]:8.0f}"
        )
    if len(results) == 2:
        a, b = (results[e] for e in ("grabcut", "sam2"))
        print(
            f"sam2 / grabcut: next-click latency x{statistics.median(b['next']) / statistics.median(a['next']):.2f}, "
            f"first-click x{statistics.median(b['first']) / statistics.median(a['first']):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
