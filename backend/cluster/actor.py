"""The Ray actor that runs jobs on a cluster node, and how a job travels to it and back.

One ``JobActor`` per GPU (``num_gpus=1``, or one unit of a custom resource) keeps its
engines loaded between jobs (``backend.jobs.run.get_engine``, with the sam3d engine's staged
residency); CPU actors run the preview engine. A job travels as bytes: its input files
(``pack_inputs``) go to the actor through Ray's object store, the actor runs it in a
temporary job folder of its own with the worker's code (``backend.worker.run_one``), and the
finished files (``pack_results``) come back the same way into the server's job folder
(``unpack_results``). Nothing needs a shared disk.

The actor is threaded (``max_concurrency``): while ``run`` works, ``events`` hands the
server the job's progress so far and ``cancel`` raises the job's cancel flag at once.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import ray

from backend.jobs.job_dir import JobDir
from backend.storage import atomic_path

#: Calls an actor serves at once: a running job, progress polls, a cancel.
ACTOR_CONCURRENCY = 4
#: Final events of a job (``backend.worker``'s protocol).
FINAL_EVENTS = ("done", "failed", "cancelled")


def _files(job: JobDir, patterns: tuple[str, ...]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for pattern in patterns:
        for p in sorted(job.path.glob(pattern)):
            if p.is_file():
                out[p.relative_to(job.path).as_posix()] = p.read_bytes()
    return out


def pack_inputs(job: JobDir) -> dict[str, bytes]:
    """What a run needs of a job folder: the request, the photo, the mask(s)."""
    masks = job.mask_file(0).parent.relative_to(job.path).as_posix()  # a scene's masks
    names = (job.request_file.name, job.image_file.name, job.mask_file().name, f"{masks}/*.png")
    return _files(job, names)


def pack_results(job: JobDir) -> dict[str, bytes]:
    """What a finished run wrote: ``result.json``, ``result.glb`` and the parts' GLBs."""
    parts = JobDir.part_glb_name(0).replace("/0/", "/*/")  # every part's GLB
    return _files(job, (job.result_json.name, job.result_glb.name, parts))


def unpack(files: dict[str, bytes], job: JobDir) -> None:
    """Write ``files`` (relative paths) into ``job``, each whole or not at all, the main
    GLB last (a job folder with ``result.glb`` has all its results)."""
    root = job.path.resolve()
    for rel in sorted(files, key=lambda r: r == job.result_glb.name):
        dest = (job.path / rel).resolve()
        if root not in dest.parents:
            raise ValueError(f"refusing to write {rel!r} outside the job folder")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:
            Path(tmp).write_bytes(files[rel])


class JobActor:
    """Runs jobs one at a time (see the module doc); ``kind`` is "gpu" or "cpu"."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._flags: dict[str, threading.Event] = {}
        import backend.jobs.run  # noqa: F401 - warm the imports every job needs

    def ready(self) -> dict[str, Any]:
        """Where this actor lives: its pid, its node, its GPUs (as Ray assigned them)."""
        ctx = ray.get_runtime_context()
        gpus = ray.get_gpu_ids()
        return {
            "pid": os.getpid(),
            "node": ctx.get_node_id(),
            "gpu": int(gpus[0]) if gpus else None,
            "kind": self.kind,
        }

    def machine(self) -> dict[str, Any]:
        """What can run here: ``{"engines": {name: Availability}, "gpus": [...]}`` as this
        node's ``backend.machine`` sees it."""
        from backend.engines.registry import engine_report
        from backend.machine import gpu_summary

        return {"engines": engine_report(), "gpus": gpu_summary()}

    def run(self, job_id: str, inputs: dict[str, bytes]) -> dict[str, Any]:
        """Run the job from its ``inputs``; returns ``{"events", "files", "log"}``: every
        event (the last one final), the result files when done, and the job's log lines."""
        from backend.worker import Channel, run_one

        flag = threading.Event()
        events: list[dict[str, Any]] = []
        with self._lock:
            self._flags[job_id], self._events[job_id] = flag, events
        folder = Path(tempfile.mkdtemp(prefix=f"sam3d-job-{job_id[:12]}-"))
        try:
            job = JobDir(folder)
            unpack(inputs, job)
            channel = Channel(events.append)
            channel.job_id = job_id
            run_one(channel, job, flag)
            done = bool(events) and events[-1].get("event") == "done"
            return {
                "events": list(events),
                "files": pack_results(job) if done else {},
                "log": job.read_log(),
            }
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            with self._lock:
                self._flags.pop(job_id, None)
                self._events.pop(job_id, None)

    def events(self, job_id: str, since: int) -> list[dict[str, Any]]:
        """The job's events from index ``since`` on (the server polls while it runs)."""
        with self._lock:
            return list(self._events.get(job_id, [])[since:])

    def cancel(self, job_id: str) -> bool:
        """Ask the job to stop at its next stage boundary; False when it is not running here."""
        with self._lock:
            flag = self._flags.get(job_id)
        if flag is not None:
            flag.set()
        return flag is not None


@functools.cache  # one class per kind: a replaced actor reuses it (Ray exports it once)
def actor_class(kind: str, gpu_resource: str) -> Any:
    """``JobActor`` as a Ray actor class: a GPU actor takes one ``gpu_resource`` ("GPU":
    ``num_gpus=1``, so Ray sets ``CUDA_VISIBLE_DEVICES``; another name: a custom resource,
    e.g. GPU slots simulated on machines without one) and no CPU; a CPU actor one CPU."""
    if kind == "gpu":
        needs: dict[str, Any] = (
            {"num_gpus": 1} if gpu_resource == "GPU" else {"resources": {gpu_resource: 1}}
        )
        needs["num_cpus"] = 0
    else:
        needs = {"num_cpus": 1}
    return ray.remote(max_concurrency=ACTOR_CONCURRENCY, max_restarts=0, **needs)(JobActor)
