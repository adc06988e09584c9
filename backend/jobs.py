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

The job id is a content hash, so an identical request maps to the same directory. A job
directory is built under a temporary name and renamed into place: it is complete or absent.

When the disk refuses a status write (full, read-only), the status is kept in memory - this
server answers it - and written as soon as the disk allows (``JobStore.flush_unsaved``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from backend import __version__
from backend.errors import BackendError
from backend.storage import storage_error

log = logging.getLogger("sam3d.jobs")

JobState = Literal["queued", "running", "done", "partial", "failed", "cancelled", "interrupted"]
FINAL_STATES = ("done", "partial", "failed", "cancelled", "interrupted")
#: Final states that come with a result (``partial``: a scene some of whose objects failed).
RESULT_STATES = ("done", "partial")
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
#: Name prefixes of job directories being built or thrown away (never listed as jobs).
_INCOMING, _TRASH = ".incoming-", ".trash-"
_STALE_S = 3600.0


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
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, self.root) or exc from None
        self._lock = threading.RLock()
        self._unsaved: dict[str, JobStatus] = {}  # statuses the disk refused, newest per job
        self._remove_stale_builds()

    def _remove_stale_builds(self) -> None:
        """Job directories left half-built or half-deleted by a crash (after an hour: another
        server sharing this folder may be building one right now)."""
        now = time.time()
        for p in self.root.glob(".*-*"):
            if p.name.startswith((_INCOMING, _TRASH)):
                try:
                    if now - p.stat().st_mtime > _STALE_S:
                        shutil.rmtree(p, ignore_errors=True)
                except OSError:
                    continue

    def dir(self, job_id: str) -> Path:
        return self.root / validate_job_id(job_id)

    def exists(self, job_id: str) -> bool:
        return job_id in self._unsaved or (self.dir(job_id) / "status.json").is_file()

    def read_status(self, job_id: str) -> JobStatus:
        # No lock: writers hold it through disk writes, and entries are replaced, not changed.
        pending = self._unsaved.get(validate_job_id(job_id))
        if pending is not None:
            return pending.model_copy(deep=True)
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
        """Persist ``status``; when the disk refuses (full, not writable), keep it in memory
        instead - readers of this store see it - until ``flush_unsaved`` can write it."""
        with self._lock:
            status.updated = time.time()
            try:
                write_json_atomic(
                    self.dir(status.id) / "status.json", status.model_dump(mode="json")
                )
            except OSError as exc:
                if storage_error(exc, self.root) is None:
                    raise
                if status.id not in self._unsaved:
                    log.warning(
                        "job %s: status kept in memory until the disk allows: %s", status.id, exc
                    )
                self._unsaved[status.id] = status.model_copy(deep=True)
            else:
                self._unsaved.pop(status.id, None)
        return status

    def flush_unsaved(self) -> int:
        """Write the statuses the disk refused earlier; returns how many still wait."""
        with self._lock:
            for status in list(self._unsaved.values()):
                try:
                    write_json_atomic(
                        self.dir(status.id) / "status.json", status.model_dump(mode="json")
                    )
                except OSError:
                    continue
                self._unsaved.pop(status.id, None)
                log.warning("job %s: status written again", status.id)
            return len(self._unsaved)

    def update(self, job_id: str, **fields: Any) -> JobStatus:
        with self._lock:
            status = self.read_status(job_id)
            for k, v in fields.items():
                setattr(status, k, v)
            return self.write_status(status)

    def create(
        self, status: JobStatus, request: dict[str, Any], files: dict[str, bytes]
    ) -> JobStatus:
        """Build the job's directory (inputs, request, status) under a temporary name and
        rename it into place, replacing an earlier run's directory (whose log is kept). A disk
        that refuses raises ``disk_full`` / ``data_dir_not_writable`` and leaves nothing."""
        final = self.dir(status.id)
        build: Path | None = None
        trash: Path | None = None
        try:
            build = Path(tempfile.mkdtemp(prefix=f"{_INCOMING}{status.id}-", dir=self.root))
            for name, data in files.items():
                p = build / name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
            write_json_atomic(build / "request.json", request)
            if (final / "job.log").is_file():
                shutil.copyfile(final / "job.log", build / "job.log")
            status.updated = time.time()
            write_json_atomic(build / "status.json", status.model_dump(mode="json"))
            with self._lock:
                if final.exists():
                    trash = self.root / f"{_TRASH}{status.id}-{uuid.uuid4().hex[:8]}"
                    os.rename(final, trash)
                os.rename(build, final)
                build = None
                self._unsaved.pop(status.id, None)
        except OSError as exc:
            err = storage_error(exc, self.root)
            if err is None:
                raise
            raise err from None
        finally:
            for leftover in (build, trash):
                if leftover is not None:
                    shutil.rmtree(leftover, ignore_errors=True)
        return status

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
        """Append to the job's log; a disk that refuses costs the line, never the job."""
        try:
            with open(self.dir(job_id) / "job.log", "a", encoding="utf-8") as f:
                f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line.rstrip("\n") + "\n")
        except OSError:
            pass

    def request_cancel(self, job_id: str) -> bool:
        """Leave the ``cancel`` mark a worker (of any server sharing this folder) polls;
        False when the disk refuses it (the pool then cancels through the worker itself)."""
        try:
            (self.dir(job_id) / "cancel").touch()
            return True
        except OSError:
            return False

    def cancel_requested(self, job_id: str) -> bool:
        return (self.dir(job_id) / "cancel").exists()
