"""``python -m backend weights download|verify --dest DIR``: SAM 3D's gated weights, offline-ready.

``download`` fetches ``facebook/sam-3d-objects`` (its ``checkpoints/`` folder) with
huggingface_hub into DIR (resumable: an interrupted run continues where it stopped), checks
free disk first, then pre-fetches the MoGe depth model and DINOv2 (code at a pinned commit
plus its weights) into the same folder, in the layout ``backend.engines.sam3d_config``
patches the pipeline to use - so a reconstruction never touches the network. ``verify``
checks the file list and sizes against the manifest the download wrote (``--hash`` also
compares SHA-256) and that every file ``pipeline.yaml`` names is present.

Errors are mapped to sentences a person can act on (see ``backend.weights.hub``).
"""

from __future__ import annotations

from backend.weights.cli import register

__all__ = ["register"]
