"""The ``/jobs`` routes (docs/API.md): submit, list, status, results, log, cancel. Thin:
the submission's steps are in ``backend.api.submission``, the jobs themselves in the job
store (``backend.jobs.store``) and the executor (``backend.pool``, ``backend.cluster``).

With artists (``serve --tokens-file``) every route sees only the caller's jobs: another
artist's job answers ``not_found``, exactly like a job that does not exist. A job two artists
asked for (the same request: one job, run once) belongs to both; when one of them cancels
it, it keeps running for the other, and only the last owner's cancel stops it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from backend.api import submission
from backend.api.dependencies import Caller, CallerDep, StateDep, verify_token
from backend.api.state import ServerState
from backend.errors import BackendError
from backend.jobs.status import FINAL_STATES, RESULT_STATES, ErrorInfo, JobStatus

router = APIRouter(prefix="/jobs", dependencies=[Depends(verify_token)])


def _owned(state: ServerState, caller: Caller, job_id: str) -> JobStatus:
    """The job's status when ``caller`` may see it; ``not_found`` otherwise."""
    st = state.store.read_status(job_id)
    if caller.artist is not None and caller.artist not in state.artists.of(
        state.store.dir(job_id).path
    ):
        raise BackendError("not_found", f"No job with id {job_id} exists on this backend.")
    return st


@router.post("", status_code=202)
async def submit(
    state: StateDep,
    caller: CallerDep,
    image: UploadFile = File(..., description="The photo"),
    mask: UploadFile | None = File(None, description="Mask (else the image's alpha)"),
    masks: list[UploadFile] | None = File(None, description="Several masks: a scene job"),
    options: str | None = Form(None, description="JobOptions as JSON"),
) -> JSONResponse:
    # the job (new, running or cached) is the caller's too
    return await submission.submit(state, image, mask, masks, options, caller.artist)


@router.get("")
def list_jobs(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    jobs = state.store.list()
    if caller.artist is not None:
        jobs = [s for s in jobs if caller.artist in state.artists.of(state.store.dir(s.id).path)]
    return {"jobs": [s.model_dump(mode="json") for s in jobs]}


@router.get("/{job_id}")
async def get_job(job_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """The route clients poll: on the event loop (small file reads, or the status held
    in memory), so it answers whatever the thread pool is doing."""
    return _owned(state, caller, job_id).model_dump(mode="json")


def _finished_file(state: ServerState, job_id: str, path: Path) -> Path:
    """``path`` of a job that ended with a result; ``not_ready`` otherwise."""
    st = state.store.read_status(job_id)
    if st.state not in RESULT_STATES or not path.is_file():
        if st.state in FINAL_STATES:
            err = st.error.message if st.error else "it has no result"
            raise BackendError("not_ready", f"Job {job_id} ended as {st.state}: {err}")
        raise BackendError(
            "not_ready",
            f"Job {job_id} is {st.state} ({st.stage or 'waiting'}); its result is not ready yet.",
        )
    return path


@router.get("/{job_id}/result")
def get_result(job_id: str, state: StateDep, caller: CallerDep) -> FileResponse:
    _owned(state, caller, job_id)
    path = _finished_file(state, job_id, state.store.dir(job_id).result_glb)
    return FileResponse(path, media_type="model/gltf-binary", filename=f"{job_id}.glb")


@router.get("/{job_id}/result.json")
def get_result_json(job_id: str, state: StateDep, caller: CallerDep) -> JSONResponse:
    _owned(state, caller, job_id)
    job = state.store.dir(job_id)
    _finished_file(state, job_id, job.result_json)
    data = job.read_result()
    data["cached"] = state.store.read_status(job_id).cached
    return JSONResponse(data)


@router.get("/{job_id}/parts/{index}/result")
def get_part_result(job_id: str, index: int, state: StateDep, caller: CallerDep) -> FileResponse:
    st = _owned(state, caller, job_id)
    part = next((p for p in st.parts if p.index == index), None)
    if part is None:
        raise BackendError(
            "not_found", f"Job {job_id} has no part {index} (it has {len(st.parts)})."
        )
    if part.state == "failed":
        msg = part.error.message if part.error else "it failed"
        raise BackendError("not_found", f"Part {index} of job {job_id} has no result: {msg}")
    path = _finished_file(state, job_id, state.store.dir(job_id).part_glb(index))
    return FileResponse(path, media_type="model/gltf-binary", filename=f"{job_id}-{index}.glb")


@router.get("/{job_id}/log")
def get_log(job_id: str, state: StateDep, caller: CallerDep) -> PlainTextResponse:
    _owned(state, caller, job_id)
    return PlainTextResponse(state.store.dir(job_id).read_log())


@router.delete("/{job_id}")
def cancel(job_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    st = _owned(state, caller, job_id)
    if caller.artist is not None and st.state not in FINAL_STATES:
        job = state.store.dir(job_id)
        with state.id_lock(job_id):  # against an identical submission adding an owner
            others = [a for a in state.artists.of(job.path) if a != caller.artist]
            if others:
                state.artists.remove(job.path, caller.artist)
        if others:  # it runs on for them; for the caller it is over (and no longer theirs)
            job.log(f"{caller.artist} withdrew; it runs on for {', '.join(others)}")
            st.state = "cancelled"
            st.error = ErrorInfo(code="cancelled", message="The job was cancelled.")
            return st.model_dump(mode="json")
    return state.pool.cancel(job_id).model_dump(mode="json")
