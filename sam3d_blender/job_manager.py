"""Jobs as a state machine advanced by small steps, bpy-free.

``JobManager.step()`` never waits for the network: every HTTP exchange (upload, status
poll, cancel, download, result.json) runs in a daemon thread (:class:`BackgroundCall`,
bpy-free), and ``step`` only starts one or looks whether it has finished and applies its
answer. It returns the seconds until it wants to be called again (None when nothing is
left to do). In the UI a ``bpy.app.timers`` callback calls it on the main thread; in
``bpy.app.background``, in tests and in batch scripts :func:`run_to_completion` calls the
very same step in a loop.

Phases: ``waiting_backend`` (start/check the backend) -> ``submitting`` (POST /jobs) ->
``running`` (GET /jobs/{id} until done) -> ``downloading`` (GLB in chunks + result.json) ->
``done``; or ``failed`` (with an :class:`~.messages.ErrorInfo`) / ``cancelled``.
The GLB lands in ``<results_dir>/<job id>/result.glb`` (a scene job's part GLBs in
``parts/<index>/result.glb`` beside it); importing it is the caller's job (it needs bpy).
Once the backend has a job, its image and mask bytes are dropped (only their SHA-256 is
kept).
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
from .background import BackgroundCall
from .client import BackendClientError, ResultDownload
from .messages import ErrorInfo

#: Seconds between status polls while a job runs.
POLL_INTERVAL = 0.25
#: Consecutive failed polls tolerated before a job is given up (transient hiccups).
MAX_POLL_FAILURES = 3
#: Seconds between looks at an HTTP exchange still running in its thread.
CALL_CHECK_INTERVAL = 0.03


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
    #: SHA-256 of the image bytes (computed when not given); kept after the bytes are gone.
    sha256: str = ""
    #: How many masks a scene job sent (kept after the bytes are gone).
    mask_count: int = 0

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.image).hexdigest()
        if not self.mask_count:
            self.mask_count = len(self.masks) if self.masks else int(self.mask is not None)

    @property
    def source_sha256(self) -> str:
        """SHA-256 of the image bytes sent (provenance: which photo made this object)."""
        return self.sha256

    def drop_payload(self) -> None:
        """Forget the image/mask bytes (the backend has them; a re-import needs only the
        result files)."""
        self.image = b""
        self.mask = None
        self.masks = None


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
    _call: BackgroundCall | None = field(default=None, repr=False)
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
            dl = self._download
            if dl is not None and dl.bytes_total:
                return f"Downloading result ({dl.fraction * 100:.0f}%)..."
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
        self._orphan_call: BackgroundCall | None = None

    # -- public API -----------------------------------------------------------------------

    def submit(self, request: JobRequest) -> Job:
        """Queue a request; nothing blocks here, the next ``step`` starts work."""
        job = Job(next(self._ids), request)
        self.jobs.append(job)
        return job

    def fetch(self, backend_id: str, request: JobRequest) -> Job:
        """Queue the download of a job the backend already finished (a History re-import
        whose local files are gone); it ends DONE like a generated job."""
        job = Job(next(self._ids), request, phase=Phase.DOWNLOADING, backend_id=backend_id)
        job.submitted_at = time.time()
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
                calls.append(BackgroundCall("cancel", lambda b=backend_id: client.cancel(b)))
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
            image, mask, masks = req.image, req.mask, req.masks
            job._call = BackgroundCall(
                "submit",
                lambda: client.submit_job(
                    image,
                    mask=mask,
                    masks=masks,
                    options=req.options,
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
            dest = self._results_dir() / backend_id / "result.glb"
            job._download = ResultDownload(client, backend_id, dest)
            download = job._download
            job._call = BackgroundCall(
                "download", lambda: _download_job(client, backend_id, download, job)
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
            job.glb_path = download.dest
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


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically (a temporary file, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any]:
    """A result.json written by :func:`write_json`; ValueError with a sentence when the
    file is not a JSON object (truncated, edited by hand)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is damaged ({exc}); generate the object again") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is damaged (not a JSON object); generate the object again")
    return data


def cache_error(folder: Path, exc: OSError) -> ErrorInfo:
    """The error for a results/cache folder that cannot be written."""
    return ErrorInfo("cache_unwritable", f"cannot write to the cache folder {folder}: {exc}")


def part_glb_path(folder: Path, index: int) -> Path:
    """Where a scene job's part ``index`` GLB is kept: ``<folder>/parts/<index>/result.glb``
    (the backend's own layout)."""
    return Path(folder) / "parts" / str(int(index)) / "result.glb"


def done_part_indices(result: dict[str, Any]) -> list[int]:
    """Indices of a scene result's parts that finished (none for a single-object job)."""
    out = []
    for p in result.get("parts") or []:
        state = p.get("state") or ("failed" if p.get("error") else "done")
        if state == "done":
            out.append(int(p["index"]))
    return sorted(out)


def _download_job(
    client: Any, backend_id: str, download: ResultDownload, job: Job
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
    result = client.result_json(backend_id)
    folder = download.dest.parent
    for i in done_part_indices(result):
        dest = part_glb_path(folder, i)
        if dest.is_file() and dest.stat().st_size > 0:
            continue
        if not fetch(ResultDownload(client, backend_id, dest, part=i)):
            return None
    write_json(folder / "result.json", result)
    return result
