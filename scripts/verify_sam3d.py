"""Check a real SAM 3D install end to end: one photo + mask through the sam3d engine.

For a user who has the weights and an NVIDIA GPU, run with the backend venv's Python::

    python scripts/verify_sam3d.py [--image photo.png --mask mask.png] [--quality fast]
                                   [--budget 8] [--out DIR] [--scene]

Without ``--image`` it uses the demo's generated photo (``scripts/make_example.py``: a ball
and a box on a floor; the ball's mask). It prints why the engine cannot run when it cannot
(exit 2), else runs the job and checks:

* the object is non-empty (hundreds of vertices and faces, finite, non-zero extent);
* texture: the vertex colours vary, the Gaussians exist, and the finished GLB (bake on)
  carries a base-colour texture;
* the pose is sane: the object is in front of the camera, its projected vertices fall on the
  mask (most of them inside the mask's bounding box grown by 25 %), its rotation is a unit
  quaternion and its size is finite;
* (``--scene``) two masks of one photo share one camera.

It prints per-stage seconds and the peak VRAM against the budget, writes ``result.glb`` and
``report.json`` into ``--out`` and exits 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from backend.engines.sam3d import Sam3DEngine  # noqa: E402
from backend.errors import BackendError  # noqa: E402
from backend.job_context import JobContext  # noqa: E402
from backend.options import JobOptions  # noqa: E402
from backend.reconstruction import Reconstruction  # noqa: E402


def load_inputs(args: argparse.Namespace) -> tuple[np.ndarray, list[np.ndarray]]:
    if args.image:
        image = np.asarray(Image.open(args.image).convert("RGB"))
        if args.mask:
            masks = [np.asarray(Image.open(args.mask).convert("L")) > 127]
        else:
            rgba = np.asarray(Image.open(args.image).convert("RGBA"))
            masks = [rgba[..., 3] > 127]
        return image, masks
    from make_example import make_example

    image, masks = make_example()
    return image, masks


def glb_has_texture(path: Path) -> bool:
    data = path.read_bytes()
    if data[:4] != b"glTF":
        return False
    length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + length])
    mats = doc.get("materials", [])
    return bool(doc.get("images")) and any(
        "baseColorTexture" in m.get("pbrMetallicRoughness", {}) for m in mats
    )


def check_object(rec: Reconstruction, mask: np.ndarray) -> dict[str, tuple[bool, str]]:
    checks: dict[str, tuple[bool, str]] = {}
    v, f = rec.vertices.astype(np.float64), rec.faces
    extent = v.max(axis=0) - v.min(axis=0) if len(v) else np.zeros(3)
    checks["non-empty"] = (
        len(v) >= 200 and len(f) >= 200 and bool(np.isfinite(v).all()) and float(extent.min()) > 0,
        f"{len(v)} vertices, {len(f)} faces, extent {np.round(extent, 3).tolist()}",
    )
    std = float(rec.vertex_colors.std(axis=0).mean()) if len(v) else 0.0
    ng = len(rec.gaussians) if rec.gaussians is not None else 0
    checks["colour"] = (std > 0.01 and ng > 0, f"vertex colour std {std:.3f}, {ng} Gaussians")
    q = np.asarray(rec.pose.rotation, float)
    cam = rec.pose.apply(v)
    centre = rec.pose.apply(v.mean(axis=0, keepdims=True))[0]
    ok_pose = abs(np.linalg.norm(q) - 1) < 1e-3 and bool(np.isfinite(cam).all()) and centre[2] < 0
    msg = f"centre in camera frame {np.round(centre, 3).tolist()} (z < 0 is in front)"
    if rec.intrinsics is not None and ok_pose:
        uv = rec.intrinsics.project(cam[cam[:, 2] < 0])
        ys, xs = np.nonzero(mask)
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        gx, gy = 0.25 * (x1 - x0), 0.25 * (y1 - y0)
        inside = (
            (uv[:, 0] >= x0 - gx)
            & (uv[:, 0] <= x1 + gx)
            & (uv[:, 1] >= y0 - gy)
            & (uv[:, 1] <= y1 + gy)
        )
        frac = float(inside.mean()) if len(uv) else 0.0
        h, w = mask.shape
        px = np.clip(uv.round().astype(int), [0, 0], [w - 1, h - 1])
        on_mask = float(mask[px[:, 1], px[:, 0]].mean()) if len(px) else 0.0
        ok_pose = ok_pose and frac >= 0.8
        msg += f"; {100 * frac:.0f}% of projected vertices in the mask's box (+25%), {100 * on_mask:.0f}% on the mask"
    elif rec.intrinsics is None:
        msg += "; no intrinsics to project with"
    checks["pose"] = (ok_pose, msg)
    return checks


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--image")
    ap.add_argument("--mask")
    ap.add_argument("--checkpoints", help="default: SAM3D_CHECKPOINTS")
    ap.add_argument("--quality", default="fast", choices=("fast", "balanced", "high"))
    ap.add_argument(
        "--budget",
        type=float,
        help="VRAM budget in GiB (default: SAM3D_VRAM_BUDGET_GB or the card)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="verify_sam3d_out")
    ap.add_argument(
        "--scene", action="store_true", help="also run two masks of one photo (shared depth)"
    )
    args = ap.parse_args()

    engine = Sam3DEngine(
        checkpoints=Path(args.checkpoints) if args.checkpoints else None, budget_gb=args.budget
    )
    av = engine.availability()
    print(f"sam3d availability: {'available' if av.available else 'UNAVAILABLE'}\n  {av.reason}")
    if not av.available:
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image, masks = load_inputs(args)
    options = JobOptions(engine="sam3d", quality=args.quality, seed=args.seed)
    ctx = JobContext(
        on_update=lambda stage, frac: print(f"  [{100 * frac:5.1f}%] {stage}", flush=True),
        log=lambda msg: print(f"  log: {msg}", flush=True),
    )
    t0 = time.perf_counter()
    try:
        rec = engine.reconstruct(image, masks[0], args.seed, options, ctx)
    except BackendError as err:
        print(f"FAILED: {err.code}: {err.message}")
        if err.details:
            print(f"  details: {json.dumps(err.details)}")
        return 1
    wall = time.perf_counter() - t0
    checks = check_object(rec, masks[0])

    from backend.finishing import finish_to_glb

    glb = out / "result.glb"
    stats = finish_to_glb(rec, options, glb, JobContext())
    checks["texture"] = (
        glb_has_texture(glb),
        f"GLB {glb.stat().st_size / 1e6:.1f} MB, textured={stats.get('textured')}",
    )

    if args.scene and len(masks) >= 2:
        parts = engine.reconstruct_many(image, masks[:2], args.seed, options, ctx)
        good = [p for p in parts if isinstance(p, Reconstruction)]
        same_cam = (
            len(good) == 2
            and good[0].intrinsics is not None
            and good[0].intrinsics == good[1].intrinsics
        )
        checks["scene"] = (
            same_cam,
            f"{len(good)}/2 objects, shared camera: {same_cam}; "
            f"timings {json.dumps(good[0].meta.get('timings') if good else {})}",
        )

    meta = rec.meta
    budget = meta.get("vram", {}).get("budget_mb")
    print(
        f"\njob wall time {wall:.1f} s (model loading {meta.get('load_models_s', 0):.1f} s of it)"
    )
    print(f"{'stage':<18}{'seconds':>9}{'load s':>8}{'peak MiB':>10}")
    for name, st in meta.get("vram", {}).get("stages", {}).items():
        print(f"{name:<18}{st['seconds']:>9.2f}{st['load_s']:>8.2f}{st['peak_reserved_mb']:>10.0f}")
    print(
        f"peak VRAM {meta.get('peak_vram_mb', 0):.0f} MiB (allocator) + CUDA context "
        f"{meta.get('vram', {}).get('cuda_context_mb')} MiB; budget {budget or 'whole card'} MiB\n"
    )
    failed = 0
    for name, (ok, msg) in checks.items():
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {msg}")
        failed += not ok
    report = {
        "checks": {k: {"ok": ok, "detail": m} for k, (ok, m) in checks.items()},
        "meta": meta,
        "pose": rec.pose.to_dict(),
        "intrinsics": rec.intrinsics.to_dict() if rec.intrinsics else None,
        "finish": stats,
        "wall_s": wall,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    print(
        f"\n{'all checks passed' if not failed else f'{failed} check(s) failed'}; wrote {glb} and {out / 'report.json'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
