"""After a server start: what happens to the jobs an earlier server left unfinished."""

from __future__ import annotations

from collections.abc import Callable

from backend.jobs.owners import ServerInstance
from backend.jobs.status import ErrorInfo
from backend.jobs.store import JobStore


def recover_jobs(
    store: JobStore, submit: Callable[[str], None], owner: ServerInstance
) -> dict[str, int]:
    """Re-queue (through ``submit``) queued jobs and jobs that were running (once); a job
    that was already running twice is marked ``interrupted`` instead of looping forever.
    Jobs of another backend that is still running on the same data folder are left to it."""
    counts = {"requeued": 0, "interrupted": 0, "left_to_other_server": 0}
    for st in sorted(store.list(), key=lambda s: s.created):
        if st.state in ("queued", "running") and owner.owner_alive(st.owner):
            counts["left_to_other_server"] += 1
            continue
        if st.state in ("queued", "running"):
            st = store.update(st.id, owner=owner.id)
        job = store.dir(st.id)
        if st.state == "queued":
            submit(st.id)
            counts["requeued"] += 1
        elif st.state == "running" and st.attempts >= 2:
            store.update(
                st.id,
                state="interrupted",
                error=ErrorInfo(
                    code="interrupted",
                    message="The backend stopped twice while running this job; submit it again.",
                ),
            )
            job.log("marked interrupted after a second restart")
            counts["interrupted"] += 1
        elif st.state == "running":
            note = "The backend restarted while this job was running; it was queued again."
            store.update(
                st.id, state="queued", stage="", progress=0.0, warnings=st.warnings + [note]
            )
            job.log(note)
            submit(st.id)
            counts["requeued"] += 1
    return counts
