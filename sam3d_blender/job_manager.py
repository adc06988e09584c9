"""Jobs as a state machine advanced by small steps, bpy-free.

``JobManager.step()`` does at most a few short HTTP calls per active job and returns the
seconds until it wants to be called again (None when nothing is left to do). In the UI a
``bpy.app.timers`` callback calls it on the main thread; in ``bpy.app.background``, in
tests and in batch scripts :func:`run_to_completion` calls the very same step in a loop.

Phases: ``waiting_backend`` (start/check the backend) -> ``submitting`` (POST /jobs) ->
``running`` (GET /jobs/{id} until done) -> ``downloading`` (GLB in chunks + result.json) ->
``done``; or ``failed`` (with an :class:`~.messages.ErrorInfo`) / ``cancelled``.
The GLB lands in ``<results_dir>/<job id>/result.glb``; importing it is the caller's job
(it needs bpy).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .backend_process import Backend, BackendState
from .client import BackendClientError, ResultDownload
from .messages import ErrorInfo

#: Seconds between status polls while a job runs.
POLL_INTERVAL = 0.25
#: Consecutive failed polls tolerated before a job is given up (transient hiccups).
MAX_POLL_FAILURES = 3


class Phase(str, Enum):
    WAITING_BACKEND = "waiting_backend"
    SUBMITTING = "submitting"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (Phase.DONE, Phase.FAILED, Phase.CANCELLED)


@dataclass
class JobRequest:
    """What to generate.

    ``image``: encoded image bytes (PNG written by Blender, or the user's PNG/JPEG file).
    ``mask``: encoded mask (white = object), None = the image's alpha. ``masks``: several
    masks of the same photo (a scene job; ``mask`` must then be None). ``options``: the
    ``JobOptions`` JSON (engine, seed, quality, target_faces, bake, texture_size, ...).
    ``label``: the name the imported object gets. ``meta``: the caller's data carried to the
    import (placement, camera name, source image name), never sent to the backend.
    """

    image: bytes
    mask: bytes | None = None
    options: dict[str, Any] = field(default_factory=dict)
    label: str = "SAM 3D object"
    masks: list[bytes] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def source_sha256(self) -> str:
        """SHA-256 of the image bytes sent (provenance: which photo made this object)."""
        return hashlib.sha256(self.image).hexdigest()


@dataclass
class Job:
    """One request's journey; read by the panel, mutated only by the manager."""

    local_id: int
    request: JobRequest
    phase: Phase = Phase.WAITING_BACKEND
    backend_id: str | None = None
    state: str = ""  # the backend's JobStatus.state
    stage: str = ""
    progress: float = 0.0
    cached: bool = False
    warnings: list[str] = field(default_factory=list)
    error: ErrorInfo | None = None
    glb_path: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    submitted_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    cancel_sent: bool = False
    handled: bool = False  # set by whoever imported / reported the finished job
    start_tried: bool = False
    _download: ResultDownload | None = field(default=None, repr=False)
    _poll_failures: int = 0
    _next_poll: float = 0.0

    @property
    def finished(self) -> bool:
        return self.phase.finished

    def status_line(self) -> str:
        """'Running: reconstruct (42%)' style text for the panel."""
        if self.phase == Phase.WAITING_BACKEND:
            return "Starting backend..."
        if self.phase == Phase.SUBMITTING:
            return "Sending image..."
        if self.phase == Phase.RUNNING:
            if self.cancel_requested:
                return "Cancelling..."
            stage = self.stage or self.state or "queued"
            return f"{stage.replace('_', ' ').capitalize()} ({self.progress * 100:.0f}%)"
        if self.phase == Phase.DOWNLOADING:
            return "Downloading result..."
        if self.phase == Phase.DONE:
            return "Done (from cache)" if self.cached else "Done"
        if self.phase == Phase.CANCELLED:
            return "Cancelled"
        return self.error.sentence() if self.error else "Failed"


class JobManager:
    """Owns the jobs of one Blender session and advances them (see module docstring).

    ``backend`` is a callable returning the current backend (the preferences may switch
    between managed and remote at any time). ``results_dir`` receives the GLBs.
    """

    def __init__(
        self,
        backend: Callable[[], Backend],
        results_dir: Callable[[], Path] | Path,
        auto_start: Callable[[], bool] | bool = True,
    ) -> None:
        self._backend = backend
        self._results_dir = results_dir if callable(results_dir) else (lambda: Path(results_dir))
        self._auto_start = auto_start if callable(auto_start) else (lambda: bool(auto_start))
        self.jobs: list[Job] = []
        self._ids = itertools.count(1)
        # Backend job ids we gave up on because the backend died or vanished. A restarted
        # backend re-queues jobs that were running when it died; the artist was already
        # told this one failed, so it is cancelled as soon as the backend answers again
        # (otherwise it would hold the queue in front of the next job).
        self.orphans: set[str] = set()

    # -- public API -----------------------------------------------------------------------

    def submit(self, request: JobRequest) -> Job:
        """Queue a request; nothing blocks here, the next ``step`` starts work."""
        job = Job(next(self._ids), request)
        self.jobs.append(job)
        return job

    def get(self, local_id: int) -> Job | None:
        return next((j for j in self.jobs if j.local_id == local_id), None)

    def active(self) -> list[Job]:
        return [j for j in self.jobs if not j.finished]

    def unhandled(self) -> list[Job]:
        """Finished jobs nobody has imported or reported yet (oldest first)."""
        return [j for j in self.jobs if j.finished and not j.handled]

    def cancel(self, job: Job) -> None:
        """Ask to cancel. Before the backend has the job it is cancelled at once; after,
        the next step sends DELETE and the job ends when the backend confirms."""
        if job.finished:
            return
        job.cancel_requested = True
        if job.phase in (Phase.WAITING_BACKEND, Phase.SUBMITTING):
            self._end(job, Phase.CANCELLED)
        elif job.phase == Phase.DOWNLOADING:
            if job._download is not None:
                job._download.abort()
            self._end(job, Phase.CANCELLED)

    def abandon(self, job: Job, error: ErrorInfo) -> None:
        """Stop following ``job`` without waiting for the backend (it may still run)."""
        if not job.finished:
            self._fail(job, error)

    def cancel_all(self) -> None:
        for job in self.active():
            self.cancel(job)

    def step(self) -> float | None:
        """Advance every active job a little. Returns seconds until the next call, or None
        when no job is active."""
        waits: list[float] = []
        if self.orphans:
            self._cancel_orphans()
        for job in self.active():
            try:
                self._step_job(job)
            except BackendClientError as exc:
                self._client_error(job, exc)
            except OSError as exc:  # disk full, permissions on the results folder
                self._fail(job, ErrorInfo("no_result", f"cannot write the result: {exc}"))
            if not job.finished:
                waits.append(max(0.0, job._next_poll - time.monotonic()))
        if not waits:
            return None
        return min(max(min(waits), 0.02), POLL_INTERVAL)

    # -- the state machine ----------------------------------------------------------------

    def _step_job(self, job: Job) -> None:
        now = time.monotonic()
        if now < job._next_poll:
            return
        backend = self._backend()
        if job.phase == Phase.WAITING_BACKEND:
            state = backend.poll()
            if state in (BackendState.STOPPED, BackendState.ERROR, BackendState.NOT_INSTALLED):
                if state == BackendState.STOPPED and not self._auto_start():
                    self._fail(job, ErrorInfo("backend_stopped"))
                    return
                if not job.start_tried:
                    job.start_tried = True
                    backend.ensure_started()
                    state = backend.poll()
            if state == BackendState.READY:
                job.phase = Phase.SUBMITTING
            elif state == BackendState.STARTING:
                job._next_poll = now + 0.05
                return
            else:
                err = backend.error or ErrorInfo(
                    "backend_not_installed"
                    if state == BackendState.NOT_INSTALLED
                    else "backend_stopped"
                )
                self._fail(job, err)
                return
        client = backend.client()
        if client is None:
            self._backend_gone(job, backend)
            return
        if job.phase == Phase.SUBMITTING:
            req = job.request
            answer = client.submit_job(
                req.image,
                mask=req.mask,
                masks=req.masks,
                options=req.options,
                image_name=f"{req.label}.png",
            )
            job.backend_id = str(answer["id"])
            job.cached = bool(answer.get("cached"))
            job.warnings = list(answer.get("warnings") or [])
            job.state = str(answer.get("state", "queued"))
            job.submitted_at = time.time()
            job.phase = Phase.RUNNING
            job._next_poll = now  # a cached job is done already: look right away
            return
        assert job.backend_id is not None
        if job.phase == Phase.RUNNING:
            if job.cancel_requested and not job.cancel_sent:
                job.cancel_sent = True
                self._apply_status(job, client.cancel(job.backend_id))
            else:
                self._apply_status(job, client.job(job.backend_id))
            job._poll_failures = 0
            if job.phase == Phase.RUNNING:
                job._next_poll = now + POLL_INTERVAL
            return
        if job.phase == Phase.DOWNLOADING:
            if job._download is None:
                dest = self._results_dir() / job.backend_id / "result.glb"
                job._download = ResultDownload(client, job.backend_id, dest)
            if job._download.step(budget_s=0.05):
                job.glb_path = job._download.dest
                job._download = None
                job.result = client.result_json(job.backend_id)
                _write_json(job.glb_path.with_name("result.json"), job.result)
                job.progress = 1.0
                self._end(job, Phase.DONE)

    def _apply_status(self, job: Job, status: dict[str, Any]) -> None:
        job.state = str(status.get("state", ""))
        job.stage = str(status.get("stage") or "")
        try:
            job.progress = float(status.get("progress") or 0.0)
        except (TypeError, ValueError):
            pass
        for w in status.get("warnings") or []:
            if w not in job.warnings:
                job.warnings.append(w)
        if job.state == "done":
            if job.cancel_requested:
                self._end(job, Phase.CANCELLED)  # finished before the cancel arrived
            else:
                job.phase = Phase.DOWNLOADING
        elif job.state == "cancelled":
            self._end(job, Phase.CANCELLED)
        elif job.state in ("failed", "interrupted"):
            err = status.get("error") or {}
            code = str(
                err.get("code")
                or ("interrupted" if job.state == "interrupted" else "internal_error")
            )
            if code == "cancelled":
                self._end(job, Phase.CANCELLED)
            else:
                self._fail(
                    job,
                    ErrorInfo(
                        code, str(err.get("message") or ""), details=dict(err.get("details") or {})
                    ),
                )

    def _client_error(self, job: Job, exc: BackendClientError) -> None:
        if exc.code in ("backend_unreachable", "timeout"):
            backend = self._backend()
            state = backend.poll()
            if state != BackendState.READY:
                self._backend_gone(job, backend)
                return
            lost = getattr(backend, "connection_lost", None)
            job._poll_failures += 1
            if job._poll_failures < MAX_POLL_FAILURES:
                job._next_poll = time.monotonic() + POLL_INTERVAL * 2
                return
            if lost is not None:
                lost(exc)
            self._fail(job, ErrorInfo(exc.code, exc.message))
            return
        self._fail(job, ErrorInfo(exc.code, exc.message, details=exc.details))

    def _backend_gone(self, job: Job, backend: Backend) -> None:
        err = backend.error or ErrorInfo("backend_unreachable")
        if job.backend_id is not None:
            self.orphans.add(job.backend_id)
        self._fail(job, ErrorInfo(err.code, err.message, log_tail=list(err.log_tail)))

    def _cancel_orphans(self) -> None:
        client = self._backend().client()
        if client is None:
            return
        for backend_id in list(self.orphans):
            if any(j.backend_id == backend_id for j in self.active()):
                self.orphans.discard(backend_id)  # asked for again meanwhile: keep it
                continue
            try:
                client.cancel(backend_id)
            except BackendClientError as exc:
                if exc.code in ("backend_unreachable", "timeout"):
                    return  # try again on a later step
            self.orphans.discard(backend_id)

    def _fail(self, job: Job, error: ErrorInfo) -> None:
        job.error = error
        if job._download is not None:
            job._download.abort()
            job._download = None
        self._end(job, Phase.FAILED)

    @staticmethod
    def _end(job: Job, phase: Phase) -> None:
        job.phase = phase
        job.finished_at = time.time()


def run_to_completion(
    manager: JobManager,
    job: Job,
    timeout: float | None = None,
    on_update: Callable[[Job], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Job:
    """Blocking: step ``manager`` until ``job`` has finished (scripts, background mode).

    On ``timeout`` (seconds) the job is cancelled and the call returns once it ends.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while not job.finished:
        wait = manager.step()
        if on_update is not None:
            on_update(job)
        if deadline is not None and time.monotonic() > deadline:
            if not job.cancel_requested:
                manager.cancel(job)
            elif time.monotonic() > deadline + 15.0:  # the cancel was never confirmed
                manager.abandon(job, ErrorInfo("timeout", f"gave up after {timeout:.0f} s"))
        if not job.finished:
            sleep(wait if wait is not None else 0.05)
    return job


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)
