"""The job manager: every job of the session advanced by small steps (no bpy).

``JobManager.step()`` never waits for the network: every HTTP exchange (upload, status
poll, cancel, download, result.json) runs in a daemon thread (:class:`BackgroundCall`),
and ``step`` only starts one or looks whether it has finished and applies its answer. It
returns the seconds until it wants to be called again (None when nothing is left to do).
In the UI the add-on's timer calls it on the main thread; in ``bpy.app.background``, in
tests and in the batch :func:`run_to_completion` calls the very same step in a loop.

A job's phases are in :class:`~.jobs.Phase`. Its files land in the results folder
(:class:`~.results.ResultFiles`: the GLB, result.json and a scene job's part GLBs);
bringing them into Blender is ``sam3d_blender/finish.py``'s work (it needs bpy). Once the
backend has a job, its image and mask bytes are dropped (only their SHA-256 is kept).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .backend_process import Backend, BackendState
from .client import BackendClientError, ResultDownload
from .jobs import Delivery, Job, JobRequest, Phase
from .messages import ErrorInfo, cache_error
from .results import ResultFiles, write_json
from .threads import BackgroundCall

__all__ = ["JobManager", "run_to_completion"]

#: Seconds between status polls while a job runs.
POLL_INTERVAL = 0.25
#: Consecutive failed polls tolerated before a job is given up (transient hiccups).
MAX_POLL_FAILURES = 3
#: Seconds between looks at an HTTP exchange still running in its thread.
CALL_CHECK_INTERVAL = 0.03


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
        installing: Callable[[], bool] = lambda: False,
    ) -> None:
        """``installing``: whether the backend is being installed now (a job that finds it
        not installed then waits for the install instead of failing)."""
        self._backend = backend
        self._installing = installing
        self._results_dir = results_dir if callable(results_dir) else (lambda: Path(results_dir))
        self._auto_start = auto_start if callable(auto_start) else (lambda: bool(auto_start))
        self.jobs: list[Job] = []
        self._ids = itertools.count(1)
        # Backend job ids we gave up on because the backend died or vanished. A restarted
        # backend re-queues jobs that were running when it died; the artist was already
        # told this one failed, so it is cancelled as soon as the backend answers again
        # (otherwise it would hold the queue in front of the next job).
        self.orphans: set[str] = set()
        self._orphan_call: BackgroundCall | None = None

    # -- public API -----------------------------------------------------------------------

    def submit(self, request: JobRequest, delivery: Delivery = Delivery.TIMER) -> Job:
        """Queue a request; nothing blocks here, the next ``step`` starts work.
        ``delivery``: who brings it into the scene once it has finished."""
        job = Job(next(self._ids), request, delivery=delivery)
        self.jobs.append(job)
        return job

    def fetch(
        self, backend_id: str, request: JobRequest, delivery: Delivery = Delivery.TIMER
    ) -> Job:
        """Queue the download of a job the backend already finished (a re-import whose
        local files are gone); it ends DONE like a generated job."""
        job = Job(
            next(self._ids),
            request,
            phase=Phase.DOWNLOADING,
            delivery=delivery,
            backend_id=backend_id,
        )
        job.submitted_at = time.time()
        self.jobs.append(job)
        return job

    def get(self, local_id: int) -> Job | None:
        return next((j for j in self.jobs if j.local_id == local_id), None)

    def active(self) -> list[Job]:
        return [j for j in self.jobs if not j.finished]

    def to_deliver(self) -> list[Job]:
        """Finished jobs the timer is to bring into the scene (oldest first)."""
        return [j for j in self.jobs if j.finished and j.delivery == Delivery.TIMER]

    def drop_undelivered(self) -> int:
        """A file is being opened: cancel the active jobs and let nothing that was meant
        for the old file be imported later. Returns how many jobs were dropped."""
        dropped = 0
        for job in self.jobs:
            if job.delivery not in (Delivery.TIMER, Delivery.CALLER):
                continue
            if not job.finished:
                self.cancel(job)
            job.delivery = Delivery.DROPPED
            dropped += 1
        return dropped

    def cancel(self, job: Job) -> None:
        """Ask to cancel. Before the backend has the job it is cancelled at once; after,
        the next step sends DELETE and the job ends when the backend confirms."""
        if job.finished:
            return
        job.cancel_requested = True
        # An upload still in flight: its answer is collected later and the backend's job
        # cancelled then (see _collect). A download in flight notices and aborts itself.
        if job.phase in (Phase.WAITING_BACKEND, Phase.SUBMITTING, Phase.DOWNLOADING):
            self._end(job, Phase.CANCELLED)

    def abandon(self, job: Job, error: ErrorInfo) -> None:
        """Stop following ``job`` without waiting for the backend (it may still run)."""
        if not job.finished:
            self._fail(job, error)

    def cancel_all(self, client: Any = None, wait_s: float = 0.0) -> None:
        """Cancel every active job. With ``client`` (the backend is about to stop), jobs
        the backend has are sent DELETE in background threads (waiting at most ``wait_s``
        seconds for the answers) and every job ends CANCELLED at once."""
        if client is None:
            for job in self.active():
                self.cancel(job)
            return
        calls = []
        for job in self.active():
            job.cancel_requested = True
            if job.backend_id is not None and job.phase == Phase.RUNNING and not job.cancel_sent:
                job.cancel_sent = True
                backend_id = job.backend_id
                calls.append(BackgroundCall("cancel", partial(client.cancel, backend_id)))
            self._end(job, Phase.CANCELLED)
        deadline = time.monotonic() + wait_s
        for call in calls:
            call.wait(max(0.0, deadline - time.monotonic()))

    def busy(self) -> bool:
        """True while a job is active or an exchange with the backend is still in flight."""
        return bool(self.active()) or any(j._call is not None for j in self.jobs)

    def step(self) -> float | None:
        """Advance every active job a little; never waits for the network (see module
        docstring). Returns seconds until the next call, or None when nothing is left."""
        waits: list[float] = []
        if self.orphans or self._orphan_call is not None:
            if self._cancel_orphans():
                waits.append(POLL_INTERVAL)
        for job in [j for j in self.jobs if not j.finished or j._call is not None]:
            if job.finished:  # ended locally while an exchange was in flight
                self._collect(job)
                if job._call is not None:
                    waits.append(CALL_CHECK_INTERVAL)
                continue
            try:
                self._step_job(job)
            except BackendClientError as exc:
                self._client_error(job, exc)
            except OSError as exc:  # disk full, permissions on the results folder
                self._fail(job, cache_error(self._results_dir(), exc))
            if not job.finished or job._call is not None:
                waits.append(max(0.0, job._next_poll - time.monotonic()))
        if not waits:
            return None
        return min(max(min(waits), 0.02), POLL_INTERVAL)

    def _collect(self, job: Job) -> None:
        """A finished job's exchange has ended: an upload that the artist cancelled while it
        was in flight left a job on the backend, which is cancelled there too."""
        call = job._call
        if call is None or not call.done:
            return
        job._call = None
        job._download = None
        try:
            answer = call.result()
        except Exception:
            return
        if call.kind == "submit" and isinstance(answer, dict) and answer.get("id"):
            job.backend_id = str(answer["id"])
            self.orphans.add(job.backend_id)
            job.request.drop_payload()

    # -- the state machine ----------------------------------------------------------------

    def _step_job(self, job: Job) -> None:
        now = time.monotonic()
        if job._call is not None:
            if not job._call.done:
                job._next_poll = now + CALL_CHECK_INTERVAL
                return
            call, job._call = job._call, None
            self._apply(job, call.kind, call.result())
            return
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
                job.waiting_for_install = False
                job.phase = Phase.SUBMITTING
            elif state == BackendState.STARTING:
                job._next_poll = now + 0.05
                return
            elif state == BackendState.NOT_INSTALLED and self._installing():
                job.waiting_for_install = True
                job.start_tried = False  # started once the install has made the venv
                job._next_poll = now + 0.25
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
            image, mask, masks = req.image, req.mask, req.masks
            job._call = BackgroundCall(
                "submit",
                lambda: client.submit_job(
                    image,
                    mask=mask,
                    masks=masks,
                    options=req.options.to_json(),
                    image_name=f"{req.label}.png",
                ),
            )
            return
        assert job.backend_id is not None
        backend_id = job.backend_id
        if job.phase == Phase.RUNNING:
            if job.cancel_requested and not job.cancel_sent:
                job.cancel_sent = True
                job._call = BackgroundCall("status", lambda: client.cancel(backend_id))
            else:
                job._call = BackgroundCall("status", lambda: client.job(backend_id))
            return
        if job.phase == Phase.DOWNLOADING:
            files = ResultFiles.of(self._results_dir(), backend_id)
            job._download = ResultDownload(client, backend_id, files.glb)
            download = job._download
            job._call = BackgroundCall(
                "download", lambda: _download_job(client, files, download, job)
            )

    def _apply(self, job: Job, kind: str, answer: Any) -> None:
        """Main thread: take the answer of a finished exchange into the job."""
        if kind == "submit":
            job.backend_id = str(answer["id"])
            job.cached = bool(answer.get("cached"))
            job.warnings = list(answer.get("warnings") or [])
            job.state = str(answer.get("state", "queued"))
            job.submitted_at = time.time()
            job.phase = Phase.RUNNING
            job.request.drop_payload()
            job._next_poll = time.monotonic()  # a cached job is done already: look now
        elif kind == "status":
            self._apply_status(job, answer)
            job._poll_failures = 0
            if job.phase == Phase.RUNNING:
                job._next_poll = time.monotonic() + POLL_INTERVAL
        elif kind == "download":
            download = job._download
            job._download = None
            if answer is None or download is None:  # aborted: the job ended meanwhile
                return
            job.files = ResultFiles(download.dest.parent)
            job.result = answer
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
        if job.state in ("done", "partial"):  # partial: a scene with some objects failed
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

    def _cancel_orphans(self) -> bool:
        """Cancel orphaned backend jobs in a background exchange. True while there is
        something to wait for (an exchange in flight, or orphans and a reachable backend)."""
        call = self._orphan_call
        if call is not None:
            if not call.done:
                return True
            self._orphan_call = None
            try:
                self.orphans -= call.result()
            except Exception:
                pass
        for backend_id in list(self.orphans):
            if any(j.backend_id == backend_id for j in self.active()):
                self.orphans.discard(backend_id)  # asked for again meanwhile: keep it
        client = self._backend().client()
        if client is None or not self.orphans:
            return False
        ids = set(self.orphans)

        def cancel_them() -> set[str]:
            gone: set[str] = set()
            for backend_id in ids:
                try:
                    client.cancel(backend_id)
                except BackendClientError as exc:
                    if exc.code in ("backend_unreachable", "timeout"):
                        continue  # try again on a later step
                gone.add(backend_id)
            return gone

        self._orphan_call = BackgroundCall("cancel-orphans", cancel_them)
        return True

    def _fail(self, job: Job, error: ErrorInfo) -> None:
        # A download still running in its thread sees the job end and aborts itself.
        job.error = error
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


def _download_job(
    client: Any, files: ResultFiles, download: ResultDownload, job: Job
) -> dict[str, Any] | None:
    """Background thread (no bpy): the GLB, result.json and a scene job's part GLBs.
    Returns the result, or None when the job ended (cancelled, failed) meanwhile."""

    def fetch(dl: ResultDownload) -> bool:
        try:
            while not dl.step(budget_s=0.25):
                if job.finished:
                    dl.abort()
                    return False
        except BaseException:
            dl.abort()
            raise
        return True

    if not fetch(download):
        return None
    job_id = download.job_id
    result = client.result_json(job_id)
    for i in files.missing_parts(result):
        if not fetch(ResultDownload(client, job_id, files.part_glb(i), part=i)):
            return None
    write_json(files.json, result)
    return result
