"""``python -m backend mask`` (a photo + clicks -> a mask PNG, in this process) and
``python -m backend weights sam2`` (SAM 2's checkpoint, for the ``sam2`` method).

Only argparse at import: the CLI's parser also serves ``install``, which runs on Pythons
without the backend's packages.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_mask(args: argparse.Namespace) -> int:
    from backend.cli import _check_writable, _output_errors
    from backend.errors import BackendError
    from backend.jobs.intake import read_input_file
    from backend.masking.engines import resolve_mask_engine
    from backend.masking.prompts import MaskPrompt, parse_box_arg, parse_point_arg
    from backend.masking.service import Masker
    from backend.storage import atomic_path

    out = Path(args.out)
    try:
        prompt = MaskPrompt(
            tuple(parse_point_arg(p) for p in args.point or ()),
            parse_box_arg(args.box) if args.box else None,
            args.frame,
        ).check()
        engine = resolve_mask_engine(args.engine)
        image = read_input_file(args.image, "image")
        _check_writable(out, "output file")
        masker = Masker()
        result = masker.segment(prompt, engine, image=image)
    except BackendError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 1 if exc.http_status >= 500 else 2
    with _output_errors("output file", out), atomic_path(out) as tmp:
        tmp.write_bytes(result.png())
    h, w = result.mask.shape
    print(
        f"mask {w}x{h} (photo {result.full_size[0]}x{result.full_size[1]}): engine {engine}, "
        f"score {result.score:.3f}, {result.mask.mean():.1%} of the image, "
        f"{result.timings_ms['total']:.0f} ms",
        file=sys.stderr,
    )
    print(str(out.resolve()))
    return 0


def cmd_weights_sam2(args: argparse.Namespace) -> int:
    from backend.masking.weights import download_sam2

    return download_sam2(args.model, Path(args.dest) if args.dest else None)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``mask`` to the backend CLI, and ``sam2`` under ``weights`` when it exists."""
    m = subparsers.add_parser(
        "mask",
        help="photo + clicks (points, a box) -> mask PNG (white = object)",
        description=(
            "Coordinates are pixels of the photo as /jobs reads it: origin at the top-left, "
            "x right, y down, in the upright picture (EXIF orientation applied), at its full "
            "size; with --frame stored, in the file's pixels as stored (before its EXIF "
            "orientation: what Blender shows). The mask PNG is in the same frame, at the "
            "photo's size (its working size when the photo is over 16 MP)."
        ),
    )
    m.add_argument("--image", required=True, help="photo (PNG, JPEG, WebP, TIFF, BMP)")
    m.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box around the object (pixels)")
    m.add_argument(
        "--point",
        action="append",
        metavar="X,Y[,+|-]",
        help="a click: + on the object (default), - on the background; repeat for more",
    )
    m.add_argument(
        "--frame",
        choices=("upright", "stored"),
        default="upright",
        help="the frame of --box, --point and the mask: upright (default; EXIF orientation "
        "applied) or stored (the file's pixels as stored)",
    )
    m.add_argument("--out", required=True, help="output mask .png")
    m.add_argument("--engine", default="auto", help="auto | grabcut | sam2 (default auto)")
    m.set_defaults(func=cmd_mask)

    weights = subparsers.choices.get("weights")
    if weights is not None:
        for action in weights._actions:
            if isinstance(action, argparse._SubParsersAction):
                w = action.add_parser(
                    "sam2", help="fetch a SAM 2.1 checkpoint for click-to-mask (~300 MB)"
                )
                w.add_argument(
                    "--model",
                    default=None,
                    help="tiny | small | base_plus | large (default SAM3D_SAM2_MODEL or base_plus)",
                )
                w.add_argument("--dest", help="the checkpoint file (default SAM3D_SAM2_CHECKPOINT)")
                w.set_defaults(func=cmd_weights_sam2)
    return m
