"""The job store on disk: one directory per job, status written atomically.

Layout of ``<data_dir>/<job id>/``::

    request.json   engine, seed, options, kind, input hashes, warnings from intake
    image.png      the decoded, validated photo (RGB, after EXIF rotation / downscale)
    mask.png       the mask (object jobs)   |  masks/0.png, masks/1.png ... (scene jobs)
    status.json    JobStatus (see ``JobStatus``), replaced atomically on every change
    job.log        human-readable log of the run
    cancel         present when a cancel was requested (the worker polls it)
    result.glb     the finished GLB (object jobs: the object; scene jobs: the whole scene)
    result.json    pose, intrinsics, stats, timings, peak memory, warnings
    parts/<i>/result.glb   scene jobs: each object's own GLB

The job id is a content hash, so an identical request maps to the same directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from backend import __version__
from backend.errors import BackendError

JobState = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
FINAL_STATES = ("done", "failed", "cancelled", "interrupted")
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class PartStatus(BaseModel):
    index: int
    state: JobState = "queued"
    error: ErrorInfo | None = None


class JobStatus(BaseModel):
    """What ``GET /jobs/{id}`` answers; also the content of ``status.json``."""

    id: str
    kind: Literal["object", "scene"] = "object"
    state: JobState = "queued"
    stage: str = ""
    progress: float = Field(0.0, ge=0.0, le=1.0)
    error: ErrorInfo | None = None
    cached: bool = False
    engine: str = ""
    created: float = Field(default_factory=time.time)
    updated: float = Field(default_factory=time.time)
    attempts: int = 0
    owner: str | None = Field(None, description="id of the backend server that runs this job")
    warnings: list[str] = Field(default_factory=list)
    parts: list[PartStatus] = Field(default_factory=list)


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


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so readers only ever see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        for attempt in range(20):
            try:
                os.replace(tmp, path)
                break
            except PermissionError:  # Windows: a reader has the old file open; it closes soon
                if attempt == 19:
                    raise
                time.sleep(0.025)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class JobStore:
    """Job directories under ``root``; thread-safe status updates (one writer: the server)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    def dir(self, job_id: str) -> Path:
        return self.root / validate_job_id(job_id)

    def exists(self, job_id: str) -> bool:
        return (self.dir(job_id) / "status.json").is_file()

    def read_status(self, job_id: str) -> JobStatus:
        path = self.dir(job_id) / "status.json"
        try:
            return JobStatus.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackendError(
                "not_found", f"No job with id {job_id} exists on this backend."
            ) from None
        except ValueError:
            raise BackendError(
                "not_found",
                f"The record of job {job_id} is damaged; submit the request again to redo it.",
            ) from None

    def write_status(self, status: JobStatus) -> JobStatus:
        with self._lock:
            status.updated = time.time()
            write_json_atomic(self.dir(status.id) / "status.json", status.model_dump(mode="json"))
        return status

    def update(self, job_id: str, **fields: Any) -> JobStatus:
        with self._lock:
            status = self.read_status(job_id)
            for k, v in fields.items():
                setattr(status, k, v)
            return self.write_status(status)

    def create(
        self, status: JobStatus, request: dict[str, Any], files: dict[str, bytes]
    ) -> JobStatus:
        """Write the inputs, then the status last (a directory without status.json is junk)."""
        d = self.dir(status.id)
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            p = d / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        write_json_atomic(d / "request.json", request)
        for stale in ("cancel", "result.glb", "result.json"):
            (d / stale).unlink(missing_ok=True)
        return self.write_status(status)

    def list(self) -> list[JobStatus]:
        out = []
        for p in self.root.iterdir():
            if JOB_ID_RE.fullmatch(p.name) and (p / "status.json").is_file():
                try:
                    out.append(self.read_status(p.name))
                except (BackendError, ValueError):
                    continue
        return sorted(out, key=lambda s: s.created, reverse=True)

    def log(self, job_id: str, line: str) -> None:
        with open(self.dir(job_id) / "job.log", "a", encoding="utf-8") as f:
            f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line.rstrip("\n") + "\n")

    def request_cancel(self, job_id: str) -> None:
        (self.dir(job_id) / "cancel").touch()

    def cancel_requested(self, job_id: str) -> bool:
        return (self.dir(job_id) / "cancel").exists()
