"""SAM 2 (the ``sam2`` package, Apache-2.0) as a click-to-mask method.

Imported only where it runs: in the mask worker process (or the CLI), never in the HTTP
server; torch and sam2 are imported inside :class:`Sam2Segmenter`'s methods. The model is
built from the config the package ships (``configs/sam2.1/sam2.1_hiera_<size>.yaml``) and
the checkpoint that ``python -m backend weights sam2`` puts in place
(``backend.masking.engines.sam2_checkpoint``).

Each photo's image embedding is computed once (``prepare``) and kept by the caller
(``backend.masking.service.Masker`` caches it per image id), so a further click only runs
the prompt encoder and mask decoder. The model sees the photo with its longest side at
most ``EMBED_SIDE`` pixels (it resizes to 1024 anyway); the mask logits are scaled back to
the working size before thresholding, so edges stay smooth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from backend.masking.photo import Photo
from backend.masking.prompts import MaskPrompt

#: Longest side of the picture handed to SAM 2 (it encodes 1024 x 1024).
EMBED_SIDE = 2048

#: Model sizes -> the config the sam2 package ships, and the checkpoint file name.
MODELS = {
    "tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "base_plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}


@dataclass
class Sam2Embedding:
    """One photo's image features on the model's device, and the size SAM 2 saw."""

    features: dict[str, Any]
    orig_hw: list[tuple[int, int]]
    embed_scale: float  # embedded pixels per working pixel
    work_hw: tuple[int, int]


class Sam2Segmenter:
    name = "sam2"

    def __init__(self, model: str, checkpoint: Path | None, device: str | None = None) -> None:
        """``checkpoint`` None builds the model with random weights (tests and the GPU
        path check only: the masks mean nothing)."""
        self.model_name = model
        self.checkpoint = checkpoint
        self.device_name = device
        self._predictor: Any = None

    @property
    def predictor(self) -> Any:
        if self._predictor is None:
            import torch
            from sam2.build_sam import build_sam2
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            device = self.device_name or ("cuda" if torch.cuda.is_available() else "cpu")
            config = MODELS[self.model_name][0]
            ckpt = str(self.checkpoint) if self.checkpoint is not None else None
            model = build_sam2(config, ckpt, device=device)
            self._predictor = SAM2ImagePredictor(model)
        return self._predictor

    @property
    def device(self) -> str:
        return str(self.predictor.device)

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.predictor.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, photo: Photo) -> Sam2Embedding:
        """The photo's image embedding (the expensive part: the image encoder)."""
        import torch

        h, w = photo.rgb.shape[:2]
        s = min(1.0, EMBED_SIDE / max(h, w))
        img = photo.rgb
        if s < 1.0:
            size = (max(1, round(w * s)), max(1, round(h * s)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            s = size[0] / w
        p = self.predictor
        with torch.inference_mode(), self._autocast():
            p.set_image(img)
        emb = Sam2Embedding(p._features, list(p._orig_hw), s, (h, w))
        return emb

    def segment(self, emb: Sam2Embedding, prompt: MaskPrompt) -> tuple[np.ndarray, float]:
        """Mask (H, W) bool at the working size and SAM 2's predicted IoU of it."""
        import torch

        p = self.predictor
        # The cached embedding becomes the predictor's current image (no encoder run).
        p._features, p._orig_hw = emb.features, list(emb.orig_hw)
        p._is_image_set, p._is_batch = True, False
        small = prompt.scaled(emb.embed_scale)
        coords = labels = box = None
        if small.points:
            coords = np.array([[q.x, q.y] for q in small.points], np.float32)
            labels = np.array([1 if q.positive else 0 for q in small.points], np.int32)
        if small.box is not None:
            b = small.box
            box = np.array([b.x0, b.y0, b.x1, b.y1], np.float32)
        # One click alone is ambiguous (part or whole): let SAM 2 offer three, keep the best.
        multi = small.box is None and len(small.points) == 1
        with torch.inference_mode(), self._autocast():
            logits, scores, _low = p.predict(
                point_coords=coords,
                point_labels=labels,
                box=box,
                multimask_output=multi,
                return_logits=True,
            )
        best = int(np.argmax(scores))
        lg = np.asarray(logits[best], np.float32)
        h, w = emb.work_hw
        if lg.shape != (h, w):
            lg = cv2.resize(lg, (w, h), interpolation=cv2.INTER_LINEAR)
        score = float(scores[best])
        return lg > 0.0, (score if math.isfinite(score) else 0.0)
