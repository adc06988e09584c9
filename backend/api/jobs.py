"""The ``/jobs`` routes (docs/API.md): submit, list, status, results, log, cancel. Thin:
the submission's steps are in ``backend.api.submission``, the jobs themselves in the job
store (``backend.jobs.store``) and the worker pool (``backend.pool``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from backend.api import submission
from backend.api.dependencies import StateDep, verify_token
from backend.api.state import ServerState
from backend.errors import BackendError
from backend.jobs.status import FINAL_STATES, RESULT_STATES

router = APIRouter(prefix="/jobs", dependencies=[Depends(verify_token)])


@router.post("", status_code=202)
async def submit(
    state: StateDep,
    image: UploadFile = File(..., description="The photo"),
    mask: UploadFile | None = File(None, description="Mask (else the image's alpha)"),
    masks: list[UploadFile] | None = File(None, description="Several masks: a scene job"),
    options: str | None = Form(None, description="JobOptions as JSON"),
) -> JSONResponse:
    return await submission.submit(state, image, mask, masks, options)


@router.get("")
def list_jobs(state: StateDep) -> dict[str, Any]:
    return {"jobs": [s.model_dump(mode="json") for s in state.store.list()]}


@router.get("/{job_id}")
async def get_job(job_id: str, state: StateDep) -> dict[str, Any]:
    """The route clients poll: on the event loop (one small file read, or the status
    held in memory), so it answers whatever the thread pool is doing."""
    return state.store.read_status(job_id).model_dump(mode="json")


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
def get_result(job_id: str, state: StateDep) -> FileResponse:
    path = _finished_file(state, job_id, state.store.dir(job_id).result_glb)
    return FileResponse(path, media_type="model/gltf-binary", filename=f"{job_id}.glb")


@router.get("/{job_id}/result.json")
def get_result_json(job_id: str, state: StateDep) -> JSONResponse:
    job = state.store.dir(job_id)
    _finished_file(state, job_id, job.result_json)
    data = job.read_result()
    data["cached"] = state.store.read_status(job_id).cached
    return JSONResponse(data)


@router.get("/{job_id}/parts/{index}/result")
def get_part_result(job_id: str, index: int, state: StateDep) -> FileResponse:
    st = state.store.read_status(job_id)
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
def get_log(job_id: str, state: StateDep) -> PlainTextResponse:
    state.store.read_status(job_id)
    return PlainTextResponse(state.store.dir(job_id).read_log())


@router.delete("/{job_id}")
def cancel(job_id: str, state: StateDep) -> dict[str, Any]:
    return state.pool.cancel(job_id).model_dump(mode="json")
