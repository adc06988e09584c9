"""What the routes share: the server's settings and its state, built once per app and kept
on ``app.state.server`` (``backend.api.dependencies.get_state`` hands it to a route)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from backend.api.artists import TokenBook
from backend.http_protocol import ConnectionLimits
from backend.jobs.images import MAX_UPLOAD_BYTES, MAX_WORK_PIXELS
from backend.jobs.owners import JobArtists, ServerInstance
from backend.jobs.recovery import recover_jobs
from backend.jobs.store import JobStore
from backend.machine import MachineProbe
from backend.pool import WorkerPool
from backend.storage import storage_error

#: Uploads decoded at once; the rest wait (a 100 MP photo takes ~0.5 GB while decoding).
INTAKE_SLOTS = 2
#: Threads the other steps of submissions may hold at once (hashing, lookups, writing), so
#: that status polls always find one of the thread pool's 40 free.
SUBMIT_THREADS = 4
#: Free space a new job needs on the data folder's disk besides its inputs: its results.
MIN_FREE_BYTES = 64 * 2**20


@dataclass
class ServerSettings:
    """How ``python -m backend serve`` was started (bytes, pixels, seconds)."""

    data_dir: Path
    token: str | TokenBook | None  # one shared token, artists' tokens, or None: no token
    workers: int = 1
    gpus: list[int] | None = None  # one worker pinned to each (nvidia-smi indices); None: unpinned
    cancel_grace_s: float = 3.0
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_WORK_PIXELS
    min_free_bytes: int = MIN_FREE_BYTES
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    on_ready: Callable[[], None] | None = None  # called once the pool is up (the ready line)
    extra_info: dict[str, Any] = field(default_factory=dict)
    #: "local": worker processes of this machine (``backend.pool``); "ray": actors of a Ray
    #: cluster (``backend.cluster``), never imported otherwise.
    executor: str = "local"
    ray_address: str | None = None  # None: start a Ray instance on this machine
    ray_gpu_resource: str = "GPU"  # the resource one GPU actor takes one of
    ray_gpu_actors: int | None = None  # None: as many as the cluster has GPUs
    ray_cpu_actors: int | None = None  # None: one per node with CPUs

    @property
    def max_request_bytes(self) -> int:
        """A whole POST /jobs body: the photo, a few masks' worth, and the form around them."""
        return self.max_upload_bytes * 4 + 2**20


class ServerState:
    """The job store, this server's identity in the data folder, the jobs' artists, the
    executor (local worker pool or Ray actors), the machine probe, and the limits
    submissions share. Raises ``data_dir_not_writable`` / ``disk_full`` when the data folder
    can't even hold the server's own records."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.store = JobStore(settings.data_dir)
        try:
            self.owner = ServerInstance(self.store.servers_dir)
        except OSError as exc:
            raise storage_error(exc, self.store.root) or exc from None
        self.artists = JobArtists()
        if settings.executor == "ray":
            from backend.cluster.pool import RayPool

            ray_pool = RayPool(
                self.store,
                address=settings.ray_address,
                gpu_resource=settings.ray_gpu_resource,
                gpu_actors=settings.ray_gpu_actors,
                cpu_actors=settings.ray_cpu_actors,
                cancel_grace_s=settings.cancel_grace_s,
            )
            self.machine: MachineProbe = ray_pool.machine_probe()  # what the actors see
            self.pool: WorkerPool = ray_pool
        else:
            self.machine = MachineProbe()
            self.pool = WorkerPool(
                self.store,
                size=settings.workers,
                cancel_grace_s=settings.cancel_grace_s,
                gpus=settings.gpus,
            )
        self.intake_slots = anyio.CapacityLimiter(INTAKE_SLOTS)
        self.submit_threads = anyio.CapacityLimiter(SUBMIT_THREADS)
        self._id_locks = [threading.Lock() for _ in range(64)]
        self.recovered: dict[str, int] = {}

    def start(self) -> None:
        """Start the workers, warm the probe, take over unfinished jobs, say ready."""
        self.pool.start()
        self.machine.warm_up()
        self.recovered = recover_jobs(self.store, self.pool.submit, self.owner)
        if self.settings.on_ready:
            self.settings.on_ready()

    def stop(self) -> None:
        self.pool.shutdown()
        self.owner.close()

    def id_lock(self, job_id: str) -> threading.Lock:
        """The lock that serialises creating and looking up ``job_id``."""
        return self._id_locks[int(job_id[:4], 16) % len(self._id_locks)]

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on one of the threads submissions may hold (``SUBMIT_THREADS``)."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.submit_threads)
