"""The worker process: runs jobs one at a time, isolated from the HTTP server.

Started by ``backend.pool.WorkerPool`` as ``python -m backend.worker``. Protocol: JSON lines.

* stdin (from the pool): ``{"cmd": "run", "job_id": ..., "job_dir": ...}``,
  ``{"cmd": "cancel", "job_id": ...}`` (acted on at once, even mid-job), ``{"cmd": "unload"}``,
  ``{"cmd": "exit"}``. End of input means the server is gone: exit.
* stdout (to the pool): ``{"event": "ready", "pid": ...}``, then for each job, every event
  carrying its ``job_id``: ``{"event": "progress", "stage": s, "progress": p}``,
  ``{"event": "part", "index": i, "state": s, "error": e}``, and last one of
  ``{"event": "done"}`` | ``{"event": "failed", "code", "message", "details"}`` |
  ``{"event": "cancelled"}``.

A job is cancelled by the ``cancel`` command or by the ``cancel`` mark in its folder
(``JobDir.cancel_requested``: another server sharing the data folder, or a disk that refuses
the file: then the command). The job itself runs in ``backend.jobs.run``.

Libraries that print would corrupt that channel, so at start the real stdout is moved to a
private descriptor and file descriptor 1 is pointed at stderr (the worker log).
Models stay loaded between jobs and are unloaded after ``SAM3D_IDLE_UNLOAD_S`` idle seconds.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from backend.config import idle_unload_s
from backend.job_context import Cancelled, JobContext
from backend.jobs.job_dir import JobDir


def _protocol_stream() -> TextIO:
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


class Channel:
    """A job's events, stamped with its id, to ``emit`` (one event at a time; progress at
    most every 0.1 s per stage). The worker process emits JSON lines to the pool; a Ray actor
    (``backend.cluster.actor``) keeps them for the server to fetch."""

    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._last_progress = 0.0
        self._last_stage = ""
        self.job_id: str | None = None  # stamped on every event of the running job

    def send(self, **event: Any) -> None:
        if self.job_id is not None:
            event["job_id"] = self.job_id
        with self._lock:
            self._emit(event)

    def progress(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage != self._last_stage or now - self._last_progress >= 0.1 or fraction >= 1.0:
            self._last_stage = stage
            self._last_progress = now
            self.send(event="progress", stage=stage, progress=round(fraction, 4))


def _stdin_reader(q: queue.Queue) -> None:
    """Commands in order onto ``q``; a ``cancel`` is acted on here at once (the main thread
    is busy running the job), and only for the job most recently handed over."""
    current: tuple[str, threading.Event] | None = None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("cmd") == "cancel":
            if current is not None and current[0] == msg.get("job_id"):
                current[1].set()
            continue
        if msg.get("cmd") == "run":
            current = (str(msg.get("job_id")), threading.Event())
            msg["cancel_flag"] = current[1]
        q.put(msg)
    # The server is gone (its end of the pipe closed). Leave at once, even mid-job: a
    # restarted server re-queues the job, and an orphan would hold the GPU and run it twice.
    os._exit(0)


def run_one(channel: Channel, job: JobDir, flag: threading.Event) -> None:
    from backend.jobs.run import classify_exception, run_job

    ctx = JobContext(
        on_update=channel.progress,
        is_cancelled=lambda: flag.is_set() or job.cancel_requested(),
        log=job.log,
    )
    try:
        run_job(
            job,
            ctx,
            on_part=lambda i, state, err: channel.send(
                event="part", index=i, state=state, error=err
            ),
        )
    except Cancelled as exc:
        job.log(str(exc))
        channel.send(event="cancelled")
        return
    except BaseException as exc:  # report every failure with a code; the worker lives on
        err = classify_exception(exc, ctx.current, job.path.parent)
        job.log(f"failed [{err.code}]: {err.message}")
        if "traceback" in err.details:
            job.log(err.details.pop("traceback"))
        channel.send(event="failed", **err.to_dict())
        return
    job.log("done")
    channel.send(event="done")


def _json_lines(stream: TextIO) -> Callable[[dict[str, Any]], None]:
    def emit(event: dict[str, Any]) -> None:
        stream.write(json.dumps(event, default=str) + "\n")
        stream.flush()

    return emit


def main() -> int:
    channel = Channel(_json_lines(_protocol_stream()))
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_stdin_reader, args=(q,), daemon=True).start()
    # Warm up the imports every job needs so the first job starts fast.
    import backend.jobs.run  # noqa: F401

    channel.send(event="ready", pid=os.getpid())
    loaded = False
    while True:
        try:
            msg = q.get(timeout=idle_unload_s() if loaded else None)
        except queue.Empty:
            from backend.jobs.run import unload_engines

            unload_engines()
            loaded = False
            continue
        cmd = msg.get("cmd")
        if cmd == "exit":
            return 0
        if cmd == "unload":
            from backend.jobs.run import unload_engines

            unload_engines()
            loaded = False
        elif cmd == "run":
            channel.job_id = str(msg["job_id"])
            try:
                run_one(channel, JobDir(Path(msg["job_dir"])), msg["cancel_flag"])
            finally:
                channel.job_id = None
            loaded = True


if __name__ == "__main__":
    sys.exit(main())
