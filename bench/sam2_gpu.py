"""SAM 2 click-to-mask on the GPU machine, through the real path: the mask worker process
(``python -m backend.masking.worker``, as ``POST /masks`` starts it) running our ``sam2``
method, built from the config the ``sam2`` package ships, with RANDOM weights (no
checkpoint, no network). It proves the path, the embedding cache and the timing - not the
masks' quality, which random weights cannot have.

Prints, per model size: the first click on a photo (decode + image encoder), the next
clicks (prompt encoder + mask decoder only), whether the embedding cache was hit (the
worker's ``cached`` flag and the time ratio), and a second photo's first click.

Wheels to carry (Python 3.12, next to the GPU image's torch/torchvision/numpy/Pillow/
opencv/tqdm/pyyaml/portalocker, which are there already), built or fetched on a machine
with PyPI:

    mkdir -p .whl && cd .whl
    SAM2_BUILD_CUDA=0 pip wheel --no-deps --no-build-isolation sam2==1.1.0
    pip wheel --no-deps antlr4-python3-runtime==4.9.3 iopath==0.1.10
    pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        hydra-core==1.3.2 omegaconf==2.3.0
    # the backend's own needs on the worker path that the image may lack:
    pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 psutil

(sam2's optional CUDA extension only fills small holes in masks; without it SAM 2 prints
a warning and skips that step.) Then on the GPU machine, in the repo root:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:. python3 bench/sam2_gpu.py [--models tiny,base_plus] [--clicks 10]

Without CUDA it runs on the CPU (slowly) and says so; ``--device cpu`` forces that.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from backend.masking.prompts import Box, MaskPrompt, Point  # noqa: E402
from backend.masking.worker_client import MaskWorker  # noqa: E402

#: Tells the worker's sam2 method to build the model without a checkpoint (random weights).
RANDOM_WEIGHTS_ENV = "SAM3D_SAM2_RANDOM_WEIGHTS"


def photo(seed: int, size: tuple[int, int] = (1920, 1080)) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = (rng.random((h, w, 3)) * 60 + 90).astype(np.uint8)
    m = (xx - w * 0.5) ** 2 / (w * 0.2) ** 2 + (yy - h * 0.55) ** 2 / (h * 0.3) ** 2 < 1
    img[m] = (200, 80, 40)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny,base_plus,large")
    ap.add_argument("--clicks", type=int, default=10, help="next clicks per photo")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when present)")
    args = ap.parse_args()
    try:
        import torch

        cuda = torch.cuda.is_available()
        print(
            f"torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name(0) if cuda else 'no'}"
        )
        import sam2  # noqa: F401

        print(f"sam2 from {Path(sam2.__file__).parent}")
    except ImportError as exc:
        print(f"error: {exc}; carry the wheels listed at the top of this file", file=sys.stderr)
        return 2
    if args.device:
        os.environ["SAM3D_SAM2_DEVICE"] = args.device
    elif not cuda:
        print("note: no CUDA: running SAM 2 on the CPU (timings are the CPU's)")
    os.environ[RANDOM_WEIGHTS_ENV] = "1"
    # the engine must look available: a checkpoint path that exists (it is not read)
    placeholder = Path("/tmp/sam2-random-weights.pt")
    placeholder.touch()
    os.environ["SAM3D_SAM2_CHECKPOINT"] = str(placeholder)
    from backend.masking.engines import resolve_mask_engine

    print(f"auto resolves to: {resolve_mask_engine('auto')}")
    rows = []
    for model in args.models.split(","):
        os.environ["SAM3D_SAM2_MODEL"] = model
        worker = MaskWorker(max_pixels=16_000_000, timeout_s=600)
        try:
            pics = [photo(1), photo(2)]
            rng = np.random.default_rng(0)
            first, nxt, cached, second_first = [], [], [], None
            for pi, data in enumerate(pics):
                image_id = None
                for c in range(args.clicks + 1):
                    pts = tuple(
                        Point(
                            float(rng.uniform(700, 1200)),
                            float(rng.uniform(400, 800)),
                            bool(k % 3 != 2),
                        )
                        for k in range(1 + c % 4)
                    )
                    box = Box(500, 250, 1400, 900) if c % 2 else None
                    msg = {"cmd": "segment", "prompt": MaskPrompt(pts, box), "engine": "sam2",
                           "image": None if image_id else data, "image_id": image_id}  # fmt: skip
                    t0 = time.perf_counter()
                    ans = worker.request(msg)
                    ms = (time.perf_counter() - t0) * 1e3
                    image_id = ans["image_id"]
                    if c == 0:
                        assert not ans["cached"], "a new photo must compute its embedding"
                        if pi == 0:
                            first.append(ms)
                        else:
                            second_first = ms
                    else:
                        nxt.append(ms)
                        cached.append(ans["cached"])
                    m = np.asarray(Image.open(io.BytesIO(ans["png"])))
                    assert m.shape == (1080, 1920), m.shape
        finally:
            worker.close()
        hits = sum(cached)
        rows.append(
            (model, first[0], second_first, statistics.median(nxt), max(nxt), hits, len(cached))
        )
    head = f"{'model':10} | {'first click ms':>14} | {'2nd photo first ms':>18} | {'next click ms (median)':>22} | {'next max':>8} | {'cache hits':>10} | first/next"
    print(head)
    print("-" * len(head))
    ok = True
    for model, f, f2, n, nmax, hits, total in rows:
        print(
            f"{model:10} | {f:14.0f} | {f2:18.0f} | {n:22.1f} | {nmax:8.1f} | {hits:>4}/{total:<5} | x{f / n:.1f}"
        )
        ok &= hits == total
    print("embedding cache:", "every next click hit it" if ok else "MISSED on some next clicks")
    print("random weights: the masks mean nothing; the path, the cache and the timings do.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
