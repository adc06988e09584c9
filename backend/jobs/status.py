"""Where a job stands: ``JobStatus``, the content of ``status.json`` and the answer of
``GET /jobs/{id}`` (see docs/API.md). Only the server writes it (``JobStore``); workers
report events that the pool turns into status changes.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.jobs.request import JobKind

JobState = Literal["queued", "running", "done", "partial", "failed", "cancelled", "interrupted"]
FINAL_STATES = ("done", "partial", "failed", "cancelled", "interrupted")
#: Final states that come with a result (``partial``: a scene some of whose objects failed).
RESULT_STATES = ("done", "partial")


class ErrorInfo(BaseModel):
    """A failure as a job's status records it: the code and sentence of a
    ``backend.errors.BackendError``, as data."""

    code: str
    message: str
    details: dict[str, Any] | None = None


class PartStatus(BaseModel):
    """One object (mask) of a scene job."""

    index: int
    state: JobState = "queued"
    error: ErrorInfo | None = None


class WorkerPlace(BaseModel):
    """Where a job ran: the pool's slot, its worker's pid, and the GPU (nvidia-smi index) the
    worker was pinned to (None: not pinned, see ``serve --gpus``)."""

    slot: int
    pid: int
    gpu: int | None = None


class JobStatus(BaseModel):
    """What ``GET /jobs/{id}`` answers; also the content of ``status.json``."""

    id: str
    kind: JobKind = "object"
    state: JobState = "queued"
    stage: str = ""
    progress: float = Field(0.0, ge=0.0, le=1.0)
    error: ErrorInfo | None = None
    cached: bool = False
    engine: str = ""
    created: float = Field(default_factory=time.time)
    updated: float = Field(default_factory=time.time)
    attempts: int = 0
    started: float | None = Field(None, description="Unix time its latest attempt began")
    finished: float | None = Field(None, description="Unix time it reached a final state")
    worker: WorkerPlace | None = None
    owner: str | None = Field(None, description="id of the backend server that runs this job")
    warnings: list[str] = Field(default_factory=list)
    parts: list[PartStatus] = Field(default_factory=list)
