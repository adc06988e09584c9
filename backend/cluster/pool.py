"""``RayPool``: the server's executor on a Ray cluster, behind ``WorkerPool``'s interface.

The server keeps the queue and every job's status (``WorkerPool``'s bookkeeping is reused
as is: claiming, cancel, final states); a slot here owns one Ray actor instead of one worker
process. GPU slots (one per GPU of the cluster) run every engine; CPU slots run every engine
but sam3d. A slot takes a job only once its actor has been placed on a node, so when a node
is gone its slots simply wait until the cluster has room again.

Faults:

* A node that dies mid-job (its raylet killed, the machine lost): its actors die with it;
  the job goes back to the front of the queue and runs again on another actor. It costs
  nothing but the time spent (up to ``max_node_losses`` times for one job).
* A job whose actor dies while its node lives (a native crash, an OOM kill) runs once more
  on a fresh actor; when it kills that one too it fails with ``worker_crashed``.
* Cancel reaches the actor at once (its ``cancel`` method, served by another thread); an
  actor that has not stopped after ``cancel_grace_s`` is killed and replaced.
* A server that stops kills its actors (they are its children in Ray's terms): jobs they
  were running stay ``running`` on disk and the next start queues them again, as with
  local workers.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, ObjectLostError, RayActorError

from backend.cluster.actor import FINAL_EVENTS, actor_class, pack_inputs, unpack
from backend.jobs.status import ErrorInfo, WorkerPlace
from backend.jobs.store import JobStore
from backend.machine import MachineProbe
from backend.pool import WorkerPool

log = logging.getLogger("sam3d.cluster")

#: Engines that need a GPU slot (everything else runs on any slot).
GPU_ENGINES = frozenset({"sam3d"})
#: Seconds between progress polls of a running job's actor.
POLL_S = 0.5


@dataclass
class _Slot:
    """One actor the pool keeps: its kind ("gpu" | "cpu"), its handle (None: to be made)
    and, once placed, where it lives (``JobActor.ready``)."""

    index: int
    kind: str
    actor: Any = None
    ready_ref: Any = None
    info: dict[str, Any] | None = None
    waiting_since: float | None = None


class _ActorLink:
    """What ``WorkerPool.cancel`` tells a running job's worker, passed on to its actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def send(self, **msg: Any) -> bool:
        if msg.get("cmd") == "cancel":
            self.actor.cancel.remote(msg["job_id"])
        return True


class RayPool(WorkerPool):
    """Jobs on Ray actors (see the module doc). ``address``: the cluster to join ("auto",
    "host:port"; None starts a Ray instance on this machine). ``gpu_actors`` /
    ``cpu_actors`` None: one per GPU (``gpu_resource`` unit) of the cluster / one per node
    with CPUs."""

    def __init__(
        self,
        store: JobStore,
        address: str | None = None,
        gpu_resource: str = "GPU",
        gpu_actors: int | None = None,
        cpu_actors: int | None = None,
        cancel_grace_s: float = 3.0,
        max_crashes: int = 2,
        max_node_losses: int = 3,
    ) -> None:
        super().__init__(store, size=1, cancel_grace_s=cancel_grace_s)
        self.address = address
        self.gpu_resource = gpu_resource
        self.gpu_actors = gpu_actors
        self.cpu_actors = cpu_actors
        self.max_crashes = max_crashes
        self.max_node_losses = max_node_losses
        self._cond = threading.Condition(self._lock)
        self._pending: deque[tuple[str, str]] = deque()  # (job id, engine), oldest first
        self._crashes: Counter[str] = Counter()
        self._node_losses: Counter[str] = Counter()
        self._slot_list: list[_Slot] = []

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        # Ray's driver takes SIGTERM (and SIGINT) for itself; the server's own handlers
        # (a graceful stop that keeps running jobs recoverable) are put back.
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            ray.init(
                address=self.address,
                namespace="sam3d",
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
                include_dashboard=False if self.address is None else None,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            log.error("cannot join the Ray cluster at %s: %s", self.address or "(local)", exc)
            raise
        if threading.current_thread() is threading.main_thread():
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
        gpu, cpu = self._actor_counts()
        self._slot_list = [_Slot(i, "gpu") for i in range(gpu)]
        self._slot_list += [_Slot(gpu + i, "cpu") for i in range(cpu)]
        self.size = len(self._slot_list)
        log.warning("ray executor: %d GPU and %d CPU actors", gpu, cpu)
        for slot in self._slot_list:
            t = threading.Thread(
                target=self._slot_loop, args=(slot,), daemon=True, name=f"ray-slot-{slot.index}"
            )
            self._slots.append(t)
            t.start()
        threading.Thread(target=self._flush_loop, daemon=True, name="status-flush").start()

    def _actor_counts(self) -> tuple[int, int]:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        gpu = self.gpu_actors
        if gpu is None:
            gpu = int(sum(n["Resources"].get(self.gpu_resource, 0) for n in nodes))
        cpu = self.cpu_actors
        if cpu is None:
            cpu = sum(1 for n in nodes if n["Resources"].get("CPU", 0) >= 1)
        if gpu + cpu == 0:
            cpu = 1  # somewhere to run: it waits until a node with a CPU joins
        return gpu, cpu

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop every actor; jobs they were running stay ``running`` on disk, so the next
        start queues them again."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for slot in self._slot_list:
            if slot.actor is not None:
                try:
                    ray.kill(slot.actor)
                except Exception:  # already gone
                    pass
        for t in self._slots:
            t.join(timeout=5)
        self.store.flush_unsaved()
        try:
            ray.shutdown()
        except Exception:
            log.exception("ray.shutdown")

    def worker_pids(self) -> list[int]:
        return [s.info["pid"] for s in self._slot_list if s.info is not None]

    def slots(self) -> list[dict[str, Any]]:
        with self._lock:
            busy = {id(r.worker.actor): job for job, r in self._running.items() if r.worker}
        return [
            {
                "slot": s.index,
                "kind": s.kind,
                "gpu": s.info.get("gpu") if s.info else None,
                "pid": s.info["pid"] if s.info else None,
                "node": s.info["node"] if s.info else None,
                "job": busy.get(id(s.actor)) if s.actor is not None else None,
            }
            for s in self._slot_list
        ]

    def machine_probe(self) -> ClusterProbe:
        return ClusterProbe(self)

    def _machine_report(self) -> dict[str, Any] | None:
        """Engines and GPUs as a placed actor sees them (a GPU actor's when one is placed),
        or None while no actor is."""
        for kind in ("gpu", "cpu"):
            for slot in self._slot_list:
                if slot.kind == kind and slot.info is not None and slot.actor is not None:
                    try:
                        return ray.get(slot.actor.machine.remote(), timeout=30.0)
                    except Exception:
                        continue
        return None

    # -- the queue ------------------------------------------------------------------------
    def submit(self, job_id: str) -> None:
        """Queue a job whose status.json says queued (a job already waiting is not doubled)."""
        self._enqueue(job_id, front=False)

    def _enqueue(self, job_id: str, front: bool) -> None:
        engine = self.store.read_status(job_id).engine
        with self._cond:
            if job_id in self._queued or job_id in self._running:
                return
            self._queued.add(job_id)
            if front:
                self._pending.appendleft((job_id, engine))
            else:
                self._pending.append((job_id, engine))
            self._cond.notify_all()

    def _take(self, slot: _Slot) -> str | None:
        """The oldest queued job ``slot`` can run (waits up to a second), or None."""
        with self._cond:
            for _ in range(2):
                for i, (job_id, engine) in enumerate(self._pending):
                    if slot.kind == "gpu" or engine not in GPU_ENGINES:
                        del self._pending[i]
                        return job_id
                if self._stopping.is_set():
                    return None
                self._cond.wait(timeout=1.0)
        return None

    # -- slots ----------------------------------------------------------------------------
    def _placed(self, slot: _Slot) -> bool:
        """Whether ``slot`` has an actor placed on a node (makes one when it has none;
        waits up to a second for its placement)."""
        if slot.actor is None:
            slot.actor = actor_class(slot.kind, self.gpu_resource).remote(slot.kind)
            slot.ready_ref = slot.actor.ready.remote()
            slot.info, slot.waiting_since = None, time.monotonic()
        if slot.info is not None:
            return True
        try:
            slot.info = ray.get(slot.ready_ref, timeout=1.0)
        except GetTimeoutError:
            return False
        except RayActorError as exc:  # its node died while it started, say: a fresh one
            log.warning("slot %d: actor lost before it was ready: %s", slot.index, exc)
            slot.actor = None
            self._stopping.wait(1.0)
            return False
        log.warning(
            "slot %d (%s): actor pid %s on node %s after %.1f s",
            slot.index,
            slot.kind,
            slot.info["pid"],
            slot.info["node"][:12],
            time.monotonic() - (slot.waiting_since or time.monotonic()),
        )
        return True

    def _slot_loop(self, slot: _Slot) -> None:  # type: ignore[override]
        while not self._stopping.is_set():
            try:
                if not self._placed(slot):
                    continue
            except Exception:  # a slot must never die
                log.exception("slot %d: making its actor", slot.index)
                slot.actor = None
                self._stopping.wait(1.0)
                continue
            job_id = self._take(slot)
            if job_id is None:
                continue
            again = False
            try:
                if self._claim(job_id) is None:
                    continue  # cancelled while queued, deleted, or already handled
                again = self._run_on(slot, job_id)
            except Exception as exc:  # a slot must never die: the queue would stall
                log.exception("slot %d, job %s", slot.index, job_id)
                self._drop_actor(slot)
                self._internal_failure(job_id, exc)
            finally:
                with self._lock:
                    self._queued.discard(job_id)
                    self._running.pop(job_id, None)
            if again:
                self._enqueue(job_id, front=True)

    def _drop_actor(self, slot: _Slot) -> None:
        if slot.actor is not None:
            try:
                ray.kill(slot.actor)
            except Exception:
                pass
        slot.actor, slot.info = None, None

    def _run_on(self, slot: _Slot, job_id: str) -> bool:
        """Run ``job_id`` on ``slot``'s actor up to its end. True: run it again (its actor
        was lost, see ``_actor_lost``)."""
        job = self.store.dir(job_id)
        info = slot.info or {}
        job.log(
            f"running on ray actor {slot.index} ({slot.kind}) on node {info['node'][:12]} "
            f"(pid {info['pid']})"
        )
        self.store.update(
            job_id,
            started=time.time(),
            worker=WorkerPlace(slot=slot.index, pid=info["pid"], gpu=info.get("gpu")),
        )
        inputs = pack_inputs(job)
        with self._lock:
            run = self._running[job_id]
            run.worker = _ActorLink(slot.actor)  # type: ignore[assignment]
            ref = slot.actor.run.remote(job_id, inputs)
            if run.cancel_asked is not None:  # asked between the claim and now
                slot.actor.cancel.remote(job_id)
        seen, next_poll, killed = 0, time.monotonic() + POLL_S, False
        while True:
            with self._lock:
                asked = run.cancel_asked
            if asked is not None and not killed and time.monotonic() - asked > self.cancel_grace_s:
                job.log("the actor did not stop after cancel; killing it")
                ray.kill(slot.actor)
                killed = True
            done, _ = ray.wait([ref], timeout=0.25)
            if done:
                break
            if time.monotonic() >= next_poll:
                seen += self._apply_events(job_id, slot, seen)
                next_poll = time.monotonic() + POLL_S
        try:
            out = ray.get(ref)
        except (RayActorError, ObjectLostError) as exc:
            return self._actor_lost(slot, job_id, exc)
        events = out["events"]
        for ev in events[seen:]:
            if ev.get("event") not in FINAL_EVENTS:
                self._progress_safe(job_id, ev)
        if out.get("log"):
            try:
                with open(job.log_file, "a", encoding="utf-8") as f:
                    f.write(out["log"])
            except OSError:
                pass
        final = events[-1] if events and events[-1].get("event") in FINAL_EVENTS else None
        if final is None:
            raise RuntimeError("the actor ended the job without a final event")
        if final["event"] == "done":
            unpack(out["files"], job)
        self._finished(job_id, final)
        self._crashes.pop(job_id, None)
        self._node_losses.pop(job_id, None)
        return False

    def _apply_events(self, job_id: str, slot: _Slot, since: int) -> int:
        try:
            events = ray.get(slot.actor.events.remote(job_id, since), timeout=5.0)
        except Exception:  # a lost actor shows in the run's own answer
            return 0
        for ev in events:
            if ev.get("event") in FINAL_EVENTS:
                return events.index(ev)
            self._progress_safe(job_id, ev)
        return len(events)

    def _progress_safe(self, job_id: str, ev: dict[str, Any]) -> None:
        try:
            self._progress(job_id, ev)
        except Exception:  # e.g. the job's folder was deleted: keep going to its end
            log.exception("job %s: event %s", job_id, ev.get("event"))

    def _node_dead(self, node: str | None, exc: Exception) -> bool:
        """Whether the node ``node`` was lost (Ray's own word, or its record)."""
        if "node has died" in str(exc) or isinstance(exc, ObjectLostError):
            return True
        deadline = time.monotonic() + 2.0
        while node:
            try:
                alive = {n["NodeID"]: n.get("Alive") for n in ray.nodes()}
            except Exception:
                return False
            if not alive.get(node, False):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
        return False

    def _actor_lost(self, slot: _Slot, job_id: str, exc: Exception) -> bool:
        """The job's actor died (or its result was lost with its node). True: run it again."""
        node = (slot.info or {}).get("node")
        self._drop_actor(slot)
        job = self.store.dir(job_id)
        if self._stopping.is_set():
            job.log("backend stopped while this job was running")
            return False
        self.restarts += 1
        if self._cancel_asked(job_id):
            self._end(
                job_id, "cancelled", ErrorInfo(code="cancelled", message="The job was cancelled.")
            )
            return False
        stage = self.store.read_status(job_id).stage or "start"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self._node_dead(node, exc):
            self._node_losses[job_id] += 1
            if self._node_losses[job_id] <= self.max_node_losses:
                job.log(
                    f"the cluster node {str(node)[:12]} was lost during the {stage} stage; "
                    "the job runs again on another actor"
                )
                self.store.update(job_id, state="queued", stage="", progress=0.0)
                return True
            self._fail(
                job_id,
                "worker_crashed",
                f"The cluster lost the node running this job {self._node_losses[job_id]} times "
                "in a row; it is not tried again. Check the cluster's machines, then submit "
                "it again.",
                stage=stage,
            )
            return False
        self._crashes[job_id] += 1
        if self._crashes[job_id] < self.max_crashes:
            job.log(
                f"its actor stopped unexpectedly during the {stage} stage ({first_line}); "
                "trying once more on a fresh actor"
            )
            self.store.update(job_id, state="queued", stage="", progress=0.0)
            return True
        self._crashes.pop(job_id, None)
        self._fail(
            job_id,
            "worker_crashed",
            f"The job stopped its worker (a Ray actor) {self.max_crashes} times, the last "
            f"time during the {stage} stage; it is not tried again. Try another engine or "
            "lower settings.",
            stage=stage,
            exit=first_line,
        )
        return False


class ClusterProbe(MachineProbe):
    """``MachineProbe`` for a server whose jobs run on the cluster: the engines and GPUs
    that the cluster's actors see (the server's own machine may have no GPU at all); this
    machine's own answer until an actor is placed."""

    def __init__(self, pool: RayPool, max_age_s: float = 30.0) -> None:
        super().__init__(max_age_s)
        self.pool = pool

    def _fresh(self) -> None:
        with self._lock:
            if self._when is not None and time.monotonic() - self._when < self.max_age_s:
                return
        report = self.pool._machine_report()
        if report is None:
            if not self._engines:  # this machine's answer meanwhile (once)
                super()._fresh()
            with self._lock:
                self._when = None  # ask the cluster again next time
            return
        with self._lock:
            self._engines, self._gpus = report["engines"], report["gpus"]
            self._when = time.monotonic()
