"""The click-to-mask methods, which can run here (told without importing torch), and
what ``auto`` means: ``sam2`` when the package and its weights are present, else
``grabcut`` (OpenCV, no weights, any machine).

| variable            | meaning                                                        |
|---------------------|----------------------------------------------------------------|
| SAM3D_SAM2_MODEL    | tiny, small, base_plus (default) or large                      |
| SAM3D_SAM2_CHECKPOINT | the checkpoint file (default: checkpoints/sam2/<model's file>) |
| SAM3D_SAM2_DEVICE   | cuda or cpu (default: cuda when torch sees a GPU)              |
| SAM3D_SAM2_RANDOM_WEIGHTS | "1": build SAM 2 without loading the checkpoint (the GPU path check only) |
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backend.config import checkpoints_dir
from backend.engines.base import Availability, missing_modules
from backend.errors import BackendError

MASK_ENGINES = ("grabcut", "sam2")
DEFAULT_SAM2_MODEL = "base_plus"


def sam2_model() -> str:
    from backend.masking.sam2_engine import MODELS

    name = os.environ.get("SAM3D_SAM2_MODEL") or DEFAULT_SAM2_MODEL
    if name not in MODELS:
        raise BackendError(
            "bad_options",
            f"SAM3D_SAM2_MODEL={name!r} is not a SAM 2 size; use one of {', '.join(MODELS)}.",
        )
    return name


def sam2_checkpoint(model: str | None = None) -> Path:
    """Where the SAM 2 checkpoint is read from (``python -m backend weights sam2`` puts it
    there)."""
    env = os.environ.get("SAM3D_SAM2_CHECKPOINT")
    if env:
        return Path(env)
    from backend.masking.sam2_engine import MODELS

    return checkpoints_dir() / "sam2" / MODELS[model or sam2_model()][1]


def availability(name: str) -> Availability:
    """Whether method ``name`` can run in this environment (file checks only)."""
    if name == "grabcut":
        missing = missing_modules(("cv2",))
        if missing:
            return Availability(False, "OpenCV (opencv-python-headless) is not installed.")
        return Availability(True, "")
    if name == "sam2":
        missing = missing_modules(("torch", "sam2", "hydra"))
        if missing:
            return Availability(
                False,
                f"the {', '.join(missing)} package(s) are not installed in the backend's "
                "environment (SAM 2 needs torch and the sam2 package with hydra-core and "
                "iopath).",
            )
        try:
            ckpt = sam2_checkpoint()
        except BackendError as exc:
            return Availability(False, exc.message)
        if not ckpt.is_file():
            return Availability(
                False,
                f"no SAM 2 checkpoint at {ckpt}; run `python -m backend weights sam2`.",
            )
        return Availability(True, "")
    raise unknown_engine(name)


def unknown_engine(name: str) -> BackendError:
    return BackendError(
        "unknown_engine",
        f"There is no mask engine called {name!r}; choose one of: auto, {', '.join(MASK_ENGINES)}.",
    )


def mask_engine_report() -> dict[str, Availability]:
    return {n: availability(n) for n in MASK_ENGINES}


def resolve_mask_engine(requested: str, report: dict[str, Availability] | None = None) -> str:
    """``auto`` -> ``sam2`` when it can run, else ``grabcut``; an unknown or unavailable
    name is an error."""
    if requested != "auto" and requested not in MASK_ENGINES:
        raise unknown_engine(requested)
    report = report if report is not None else mask_engine_report()
    if requested == "auto":
        return "sam2" if report["sam2"].available else "grabcut"
    if not report[requested].available:
        raise BackendError(
            "engine_unavailable",
            f"The {requested} mask engine cannot run on this backend: {report[requested].reason}",
        )
    return requested


def create_segmenter(name: str, **sam2_kwargs: Any) -> Any:
    if name == "grabcut":
        from backend.masking.grabcut import GrabCutSegmenter

        return GrabCutSegmenter()
    if name == "sam2":
        from backend.masking.sam2_engine import Sam2Segmenter

        model = sam2_kwargs.pop("model", None) or sam2_model()
        ckpt = sam2_kwargs.pop("checkpoint", sam2_checkpoint(model))
        if os.environ.get("SAM3D_SAM2_RANDOM_WEIGHTS") == "1":
            ckpt = None  # bench/sam2_gpu.py: proves the path and the timing, not quality
        device = sam2_kwargs.pop("device", None) or os.environ.get("SAM3D_SAM2_DEVICE") or None
        return Sam2Segmenter(model, ckpt, device=device, **sam2_kwargs)
    raise unknown_engine(name)
