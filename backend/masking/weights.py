"""``python -m backend weights sam2``: a SAM 2.1 checkpoint for the ``sam2`` mask method.

Fetched from the Hub repo ``facebook/sam2.1-hiera-<size>`` (public, Apache-2.0) with the
same resumable downloader as SAM 3D's weights (``backend.weights.hub``), into the folder
of the checkpoint file the backend reads (``backend.masking.engines.sam2_checkpoint``).
"""

from __future__ import annotations

import sys
from pathlib import Path

#: model size -> Hub repo.
REPOS = {
    "tiny": "facebook/sam2.1-hiera-tiny",
    "small": "facebook/sam2.1-hiera-small",
    "base_plus": "facebook/sam2.1-hiera-base-plus",
    "large": "facebook/sam2.1-hiera-large",
}


def download_sam2(model: str | None, dest: Path | None) -> int:
    """Download the checkpoint; exit code as ``weights download`` (0 ok)."""
    from backend.errors import BackendError
    from backend.masking.engines import sam2_checkpoint, sam2_model
    from backend.weights.hub import WeightsError, download_repo, resolve_token

    try:
        model = model or sam2_model()
    except BackendError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if model not in REPOS:
        print(f"error: --model must be one of {', '.join(REPOS)}", file=sys.stderr)
        return 2
    target = (dest or sam2_checkpoint(model)).expanduser().resolve()
    try:
        download_repo(
            target.parent,
            repo_id=REPOS[model],
            token=resolve_token(None),
            subfolder="",
            log=lambda m: print(m, flush=True),
        )
    except WeightsError as err:
        print(f"error: {err.message}", file=sys.stderr, flush=True)
        return err.exit_code
    from backend.masking.sam2_engine import MODELS

    fetched = target.parent / MODELS[model][1]
    if fetched != target and fetched.is_file():
        fetched.replace(target)
    if not target.is_file():
        print(f"error: {REPOS[model]} held no {MODELS[model][1]}", file=sys.stderr)
        return 7
    print(f"SAM 2 ({model}) ready: {target}", flush=True)
    return 0
