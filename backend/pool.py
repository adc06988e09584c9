"""The worker pool, living in the HTTP server process: a queue, N slots, one worker each.

Each slot is a thread that owns one ``backend.worker`` process: it hands the worker a job,
turns the worker's events into ``status.json`` updates, and watches for its death. A worker
that dies mid-job (native crash, OOM kill) fails that job with ``worker_crashed``; the slot
starts a fresh worker and carries on. A running job asked to cancel gets ``cancel_grace_s``
to stop at its next stage boundary; after that its worker is killed and replaced.

Every event a worker sends names its job, and a slot reads a worker's events up to that
job's final one before giving it the next job; anything unexpected in between costs the
worker (killed, replaced), so no job ever reads another job's events. Statuses the disk
refuses are kept in memory by the store and written again every second (``_flush_loop``).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.gpu.assignment import worker_env
from backend.jobs.status import FINAL_STATES, ErrorInfo, JobStatus, PartStatus, WorkerPlace
from backend.jobs.store import JobStore

log = logging.getLogger("sam3d.pool")

_BACKEND_ROOT = str(Path(__file__).resolve().parents[1])


def _signal_name(rc: int | None) -> str:
    if rc is None:
        return "unknown"
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit code {rc}"


class WorkerProcess:
    """One ``python -m backend.worker`` child and a thread reading its events."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_BACKEND_ROOT, full_env.get("PYTHONPATH", "")) if p
        )
        full_env["PYTHONUNBUFFERED"] = "1"
        self.log_path = log_path
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(log_path, "ab")
        except OSError:  # a full or read-only data folder: the worker logs to ours instead
            self._log = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=full_env,
            text=True,
            encoding="utf-8",
        )
        self.events: queue.Queue = queue.Queue()
        threading.Thread(
            target=self._read, daemon=True, name=f"worker-{self.proc.pid}-reader"
        ).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        self.events.put(None)

    def send(self, **msg: Any) -> bool:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self._log is not None:
            self._log.close()

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


@dataclass
class _Running:
    """A job a slot is running: its worker, and when its cancel was asked (monotonic s)."""

    worker: WorkerProcess | None = None  # None: claimed, not yet handed to a worker
    cancel_asked: float | None = None


class _WorkerSpoiled(Exception):
    """A worker that must not run another job (its job's events were not read to the end)."""


class WorkerPool:
    """Queue + ``size`` slots. ``submit`` queues a job id whose status.json says queued.

    With ``gpus`` (nvidia-smi indices), there is one slot per GPU and slot ``i``'s worker
    sees only ``gpus[i]`` (``backend.gpu.assignment``): N GPUs run N jobs at once, and a
    further job waits in the queue for the first GPU that frees up."""

    def __init__(
        self,
        store: JobStore,
        size: int = 1,
        cancel_grace_s: float = 3.0,
        start_timeout_s: float = 120.0,
        flush_interval_s: float = 1.0,
        gpus: list[int] | None = None,
    ) -> None:
        self.store = store
        self.gpus = list(gpus) if gpus else None
        self.size = len(self.gpus) if self.gpus else max(1, int(size))
        self.cancel_grace_s = cancel_grace_s
        self.start_timeout_s = start_timeout_s
        self.flush_interval_s = flush_interval_s
        self.queue: queue.Queue[str | None] = queue.Queue()
        self._running: dict[str, _Running] = {}
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._slots: list[threading.Thread] = []
        self._workers: dict[int, WorkerProcess | None] = {}
        self.restarts = 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.size):
            t = threading.Thread(target=self._slot_loop, args=(i,), daemon=True, name=f"slot-{i}")
            self._slots.append(t)
            t.start()
        threading.Thread(target=self._flush_loop, daemon=True, name="status-flush").start()

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop every worker within one shared deadline (busy ones are killed). Jobs they
        were running stay ``running`` on disk, so the next start re-queues them."""
        self._stopping.set()
        for _ in self._slots:
            self.queue.put(None)
        with self._lock:
            workers = [w for w in self._workers.values() if w is not None]
        for w in workers:
            w.send(cmd="exit")
        deadline = time.monotonic() + timeout
        for w in workers:
            try:
                w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for w in workers:
            w.kill()
        for t in self._slots:
            t.join(timeout=5)
        self.store.flush_unsaved()

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._workers.values() if w is not None and w.alive()]

    def slot_gpu(self, slot: int) -> int | None:
        """The GPU (nvidia-smi index) slot ``slot``'s worker is pinned to, or None."""
        return self.gpus[slot] if self.gpus else None

    def slots(self) -> list[dict[str, Any]]:
        """Each slot: its GPU, its worker's pid (None: not running) and its job (or None)."""
        with self._lock:
            busy = {id(r.worker): job for job, r in self._running.items() if r.worker}
            return [
                {
                    "slot": i,
                    "gpu": self.slot_gpu(i),
                    "pid": w.proc.pid if w is not None and w.alive() else None,
                    "job": busy.get(id(w)) if w is not None else None,
                }
                for i in range(self.size)
                for w in [self._workers.get(i)]
            ]

    def _flush_loop(self) -> None:
        while not self._stopping.wait(self.flush_interval_s):
            try:
                self.store.flush_unsaved()
            except Exception:  # never let the flusher die
                log.exception("flushing unsaved statuses")

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, job_id: str) -> None:
        """Queue a job whose status.json says queued (a job already waiting is not doubled)."""
        with self._lock:
            if job_id in self._queued or job_id in self._running:
                return
            self._queued.add(job_id)
        self.queue.put(job_id)

    def queued_count(self) -> int:
        with self._lock:
            return len(self._queued)

    def cancel(self, job_id: str) -> JobStatus:
        """Cancel a queued job at once; ask a running one to stop (killed after the grace).
        Works whatever the disk does: the worker is told directly, not only by a file."""
        with self._lock:  # atomic with the queued -> running claim in ``_claim``
            status = self.store.read_status(job_id)
            if status.state in FINAL_STATES:
                return status
            self.store.dir(job_id).request_cancel()
            run = self._running.get(job_id)
            if run is not None:
                if run.cancel_asked is None:
                    run.cancel_asked = time.monotonic()
                    if run.worker is not None:
                        run.worker.send(cmd="cancel", job_id=job_id)
                return status
            if status.state == "queued":
                self.store.dir(job_id).log("cancelled while queued")
                return self.store.update(
                    job_id,
                    state="cancelled",
                    finished=time.time(),
                    error=ErrorInfo(
                        code="cancelled", message="The job was cancelled before it started."
                    ),
                )
            return status  # running on another server sharing this data dir: it sees the file

    def _cancel_asked(self, job_id: str) -> bool:
        with self._lock:
            run = self._running.get(job_id)
        asked = run is not None and run.cancel_asked is not None
        return asked or self.store.dir(job_id).cancel_requested()

    # -- slots ----------------------------------------------------------------------------
    def _spawn(self, slot: int) -> WorkerProcess | None:
        try:
            w = WorkerProcess(self.store.worker_log(slot), env=worker_env(self.slot_gpu(slot)))
        except OSError:
            return None
        with self._lock:
            self._workers[slot] = w
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            try:
                ev = w.events.get(timeout=0.25)
            except queue.Empty:
                continue
            if ev is None:
                break
            if ev.get("event") == "ready":
                return w
        w.kill()
        with self._lock:
            self._workers[slot] = None
        return None

    def _slot_loop(self, slot: int) -> None:
        worker = self._spawn(slot)
        while not self._stopping.is_set():
            job_id = self.queue.get()
            if job_id is None or self._stopping.is_set():
                break
            try:
                if worker is None or not worker.alive():
                    worker = self._spawn(slot)
                if worker is None:
                    if self._claim(job_id) is not None:
                        self._fail(
                            job_id,
                            "worker_crashed",
                            "The worker process could not start; see the backend log "
                            f"({self.store.worker_log(slot).parent}).",
                        )
                    continue
                status = self._claim(job_id)
                if status is None:
                    continue  # cancelled while queued, deleted, or already handled
                worker = self._run(slot, worker, job_id)
            except Exception as exc:  # a slot must never die: the queue would stall
                log.exception("slot %d, job %s", slot, job_id)
                if worker is not None:  # it may hold this job's unread events: never reuse it
                    worker.kill()
                    worker = None
                self._internal_failure(job_id, exc)
            finally:
                with self._lock:
                    self._queued.discard(job_id)
                    self._running.pop(job_id, None)

    def _claim(self, job_id: str) -> JobStatus | None:
        """queued -> running, atomically with ``cancel``; None if the job is not queued."""
        with self._lock:
            self._queued.discard(job_id)
            try:
                status = self.store.read_status(job_id)
            except Exception:
                return None
            if status.state != "queued":
                return None
            status.state, status.stage, status.progress = "running", "starting", 0.0
            status.attempts += 1
            status.error = None
            status.finished = None
            self._running[job_id] = _Running()
            return self.store.write_status(status)

    def _internal_failure(self, job_id: str, exc: Exception) -> None:
        try:
            st = self.store.read_status(job_id)
            if st.state in FINAL_STATES:
                return  # the job had its answer; only the worker was lost
            self._fail(
                job_id,
                "internal_error",
                f"The backend could not run this job: {type(exc).__name__}: {exc}",
            )
        except Exception:
            log.exception("job %s: could not record its failure", job_id)

    def _fail(self, job_id: str, code: str, message: str, **details: Any) -> None:
        self.store.dir(job_id).log(f"failed [{code}]: {message}")
        self._end(job_id, "failed", ErrorInfo(code=code, message=message, details=details or None))

    def _run(self, slot: int, worker: WorkerProcess, job_id: str) -> WorkerProcess | None:
        """Hand ``job_id`` to ``worker`` and turn its events into status updates up to the
        job's final event. Returns the worker to reuse (None: it died and none replaced it)."""
        gpu = self.slot_gpu(slot)
        where = f"worker {slot}" + (f" on GPU {gpu}" if gpu is not None else "")
        self.store.dir(job_id).log(f"running on {where} (pid {worker.proc.pid})")
        self.store.update(
            job_id,
            started=time.time(),
            worker=WorkerPlace(slot=slot, pid=worker.proc.pid, gpu=gpu),
        )
        with self._lock:
            run = self._running[job_id]
            run.worker = worker
            sent = worker.send(cmd="run", job_id=job_id, job_dir=str(self.store.dir(job_id).path))
            if sent and run.cancel_asked is not None:  # asked between the claim and now
                worker.send(cmd="cancel", job_id=job_id)
        if not sent:
            worker.kill()
        while True:
            with self._lock:
                asked = run.cancel_asked
            if (
                asked is not None
                and time.monotonic() - asked > self.cancel_grace_s
                and worker.alive()
            ):
                self.store.dir(job_id).log("worker did not stop after cancel; killing it")
                worker.kill()
            try:
                ev = worker.events.get(timeout=0.25)
            except queue.Empty:
                continue
            if ev is None:  # the worker died
                return self._worker_died(slot, worker, job_id)
            if ev.get("job_id") != job_id:
                raise _WorkerSpoiled(f"worker sent an event of job {ev.get('job_id')}: {ev}")
            kind = ev.get("event")
            if kind in ("done", "cancelled", "failed"):
                try:
                    self._finished(job_id, ev)
                except Exception as exc:  # the worker is clean: its job's events were all read
                    log.exception("job %s: recording its end", job_id)
                    self._internal_failure(job_id, exc)
                return worker
            try:
                self._progress(job_id, ev)
            except Exception:  # e.g. the job's folder was deleted: keep reading to its end
                log.exception("job %s: event %s", job_id, kind)

    def _progress(self, job_id: str, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "progress":
            self.store.update(
                job_id, stage=ev.get("stage", ""), progress=float(ev.get("progress", 0.0))
            )
        elif kind == "part":
            st = self.store.read_status(job_id)
            parts = {p.index: p for p in st.parts}
            err = ev.get("error")
            parts[int(ev["index"])] = PartStatus(
                index=int(ev["index"]),
                state=ev["state"],
                error=ErrorInfo(**err) if err else None,
            )
            self.store.update(job_id, parts=[parts[k] for k in sorted(parts)])

    def _finished(self, job_id: str, ev: dict[str, Any]) -> None:
        """The job's final event -> its final state."""
        kind = ev["event"]
        if kind == "cancelled":
            self._end(
                job_id, "cancelled", ErrorInfo(code="cancelled", message="The job was cancelled.")
            )
        elif kind == "failed":
            self._end(
                job_id,
                "failed",
                ErrorInfo(code=ev["code"], message=ev["message"], details=ev.get("details")),
            )
        elif not self.store.dir(job_id).has_result():
            self._fail(
                job_id,
                "internal_error",
                "The worker reported this job finished but its result file is missing "
                f"({self.store.dir(job_id).result_glb}); submit it again.",
            )
        else:
            result = self._result(job_id)
            st = self.store.read_status(job_id)
            warnings = [str(w) for w in result.get("warnings", [])]
            failed = [int(i) for i in result.get("failed_parts", [])]
            error = None
            if failed:
                why = {p.index: p.error.code for p in st.parts if p.error is not None}
                error = ErrorInfo(
                    code="partial",
                    message=(
                        f"{len(failed)} of {len(st.parts)} objects failed ("
                        + "; ".join(f"mask {i}: {why.get(i, 'failed')}" for i in failed)
                        + "); the result holds the others."
                    ),
                    details={"failed_parts": failed},
                )
            self.store.update(
                job_id,
                state="partial" if failed else "done",
                stage="done",
                progress=1.0,
                error=error,
                warnings=list(dict.fromkeys(st.warnings + warnings)),
                finished=time.time(),
            )

    def _end(self, job_id: str, state: str, error: ErrorInfo) -> None:
        """Final failed/cancelled state; scene parts still waiting end the same way."""
        st = self.store.read_status(job_id)
        parts = [
            p
            if p.state in ("done", "failed")
            else PartStatus(index=p.index, state=state, error=error)
            for p in st.parts
        ]
        self.store.update(job_id, state=state, error=error, parts=parts, finished=time.time())

    def _worker_died(self, slot: int, worker: WorkerProcess, job_id: str) -> WorkerProcess | None:
        rc = worker.proc.wait()
        tail = worker.log_tail()
        worker.kill()
        if self._stopping.is_set():
            # The server is shutting down and stopped this worker: the job is not lost, it
            # stays "running" on disk and the next start queues it again.
            self.store.dir(job_id).log("backend stopped while this job was running")
            return None
        self.restarts += 1
        if self._cancel_asked(job_id):
            self._end(
                job_id, "cancelled", ErrorInfo(code="cancelled", message="The job was cancelled.")
            )
        else:
            stage = self.store.read_status(job_id).stage
            if tail:
                self.store.dir(job_id).log("worker log tail:\n" + tail)
            error = ErrorInfo(
                code="worker_crashed",
                message=(
                    f"The worker process stopped unexpectedly ({_signal_name(rc)}) during "
                    f"the {stage or 'start'} stage. The backend is still running and has "
                    "started a fresh worker; try again, and if it repeats, try another "
                    "engine or lower settings."
                ),
                details={"stage": stage, "exit": _signal_name(rc)},
            )
            self.store.dir(job_id).log(f"failed [worker_crashed]: {error.message}")
            self._end(job_id, "failed", error)
        return self._spawn(slot)

    def _result(self, job_id: str) -> dict[str, Any]:
        try:
            return self.store.dir(job_id).read_result()
        except (OSError, ValueError):
            return {}
