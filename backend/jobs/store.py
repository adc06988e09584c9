"""The job store: the data folder, one job folder per job, statuses written atomically.

Layout of the data folder::

    <job id>/              a job's folder (``JobDir`` names every file in it; its
                           ``artists.json``: ``backend.jobs.owners.JobArtists``)
    .incoming-<id>-...     a job folder being built: renamed into place when complete
    .trash-<id>-...        an earlier run's folder being thrown away
    _servers/<owner>.lock  the servers using this folder (``backend.jobs.owners``)
    _workers/worker-<slot>.log   what worker processes print (``backend.pool``)

The job id is a content hash (``backend.jobs.request``), so an identical request maps to
the same folder. A job folder is built under a temporary name and renamed into place: it is
complete or absent.

When the disk refuses a status write (full, read-only), the status is kept in memory - this
server answers it - and written as soon as the disk allows (``JobStore.flush_unsaved``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from backend.errors import BackendError
from backend.jobs.job_dir import JobDir, JobInputs
from backend.jobs.owners import JobArtists
from backend.jobs.request import JOB_ID_RE, validate_job_id
from backend.jobs.status import JobStatus
from backend.storage import storage_error, write_json_atomic

log = logging.getLogger("sam3d.jobs")

#: Name prefixes of job directories being built or thrown away (never listed as jobs).
_INCOMING, _TRASH = ".incoming-", ".trash-"
_STALE_S = 3600.0


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

    # -- the data folder --------------------------------------------------------------------
    def dir(self, job_id: str) -> JobDir:
        """The folder of ``job_id`` (raises ``bad_job_id`` for anything but a job id)."""
        return JobDir(self.root / validate_job_id(job_id))

    @property
    def servers_dir(self) -> Path:
        return self.root / "_servers"

    def worker_log(self, slot: int) -> Path:
        return self.root / "_workers" / f"worker-{slot}.log"

    # -- statuses ---------------------------------------------------------------------------
    def exists(self, job_id: str) -> bool:
        return job_id in self._unsaved or self.dir(job_id).status_file.is_file()

    def read_status(self, job_id: str) -> JobStatus:
        # No lock: writers hold it through disk writes, and entries are replaced, not changed.
        pending = self._unsaved.get(validate_job_id(job_id))
        if pending is not None:
            return pending.model_copy(deep=True)
        try:
            return JobStatus.model_validate_json(
                self.dir(job_id).status_file.read_text(encoding="utf-8")
            )
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
                _write_status(self.dir(status.id), status)
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
                    _write_status(self.dir(status.id), status)
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

    # -- jobs -------------------------------------------------------------------------------
    def create(self, status: JobStatus, inputs: JobInputs) -> JobStatus:
        """Build the job's folder (inputs, request, status) under a temporary name and
        rename it into place, replacing an earlier run's folder (whose log and artists
        are kept). A disk
        that refuses raises ``disk_full`` / ``data_dir_not_writable`` and leaves nothing."""
        final = self.dir(status.id)
        build: Path | None = None
        trash: Path | None = None
        try:
            build = Path(tempfile.mkdtemp(prefix=f"{_INCOMING}{status.id}-", dir=self.root))
            job = JobDir(build)
            job.write_inputs(inputs)
            for kept in (final.log_file, JobArtists.path(final.path)):  # an earlier run's
                if kept.is_file():
                    shutil.copyfile(kept, build / kept.name)
            status.updated = time.time()
            _write_status(job, status)
            with self._lock:
                if final.path.exists():
                    trash = self.root / f"{_TRASH}{status.id}-{uuid.uuid4().hex[:8]}"
                    os.rename(final.path, trash)
                os.rename(build, final.path)
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
            if JOB_ID_RE.fullmatch(p.name) and JobDir(p).status_file.is_file():
                try:
                    out.append(self.read_status(p.name))
                except (BackendError, ValueError):
                    continue
        return sorted(out, key=lambda s: s.created, reverse=True)


def _write_status(job: JobDir, status: JobStatus) -> None:
    write_json_atomic(job.status_file, status.model_dump(mode="json"))
