"""What a job runs: its request (``request.json``) and its identity (the job id).

The request is written once, at intake (``backend.jobs.intake``), and read by the run
(``backend.jobs.run``); nothing changes it afterwards. The job id is a content hash of the
request, so an identical request maps to the same job folder and answers from its result.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from backend import __version__
from backend.errors import BackendError
from backend.options import JobOptions

#: An object job: one mask, one object. A scene job: several masks of one photo, one GLB
#: holding every object (and each object's own GLB).
JobKind = Literal["object", "scene"]
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class InputFacts(BaseModel):
    """What intake learnt about the inputs. Sizes are (width, height) in pixels of the
    upright frame (``backend.jobs.orientation``: the photo's EXIF orientation applied)."""

    image_sha256: str | None = None
    original_size: list[int] = Field(default_factory=list, description="before any downscale")
    size: list[int] = Field(default_factory=list, description="the working size of image.png")
    orientation: int = Field(
        1,
        ge=1,
        le=8,
        description="the photo's EXIF orientation (1 when it has none): how its stored pixels "
        "turn upright; a client that shows the stored pixels turns them by it",
    )
    mask_coverage: list[float] = Field(
        default_factory=list, description="fraction of the image each mask covers"
    )


class JobRequest(BaseModel):
    """The content of ``request.json``. ``options.engine`` is the engine that runs (never
    ``auto``: intake resolves it)."""

    id: str | None = None
    kind: JobKind = "object"
    engine: str
    seed: int = 0
    options: JobOptions = Field(default_factory=JobOptions)
    parts: int = Field(1, ge=1, description="masks: 1 for an object job")
    input: InputFacts = Field(default_factory=InputFacts)


def job_id_for(
    image: bytes, masks: list[bytes] | None, engine: str, options: dict[str, Any], seed: int
) -> str:
    """Content hash of a request (32 hex chars); the backend version is part of it."""
    h = hashlib.sha256()
    h.update(f"sam3d-blender {__version__}\n".encode())
    h.update(hashlib.sha256(image).digest())
    for m in masks or []:
        h.update(hashlib.sha256(m).digest())
    h.update(
        f"\nmasks={len(masks) if masks is not None else -1}\nengine={engine}\nseed={seed}\n".encode()
    )
    h.update(json.dumps(options, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()[:32]


def validate_job_id(job_id: str) -> str:
    if not JOB_ID_RE.fullmatch(job_id or ""):
        raise BackendError("bad_job_id", "That is not a valid job id (32 hexadecimal characters).")
    return job_id
