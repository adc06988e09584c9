"""The steps of ``POST /jobs``: options, uploads, the job id, an existing job's answer,
intake, the new job's folder.

Staying answerable under load: uploads are decoded a few at a time
(``ServerState.intake_slots``) while the other submissions wait as coroutines, not threads;
hashing, lookups and writing hold at most ``SUBMIT_THREADS`` threads, so status polls always
find a free one and ``/health`` needs none. Decoding and checking the inputs is the intake
shared with the CLI (``backend.jobs.intake``).
"""

from __future__ import annotations

import anyio
from fastapi import UploadFile
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from backend.api.error_handlers import validation_message
from backend.api.state import ServerState
from backend.engines.registry import resolve_engine
from backend.errors import BackendError
from backend.jobs.intake import Submission, check_mask_count
from backend.jobs.job_dir import JobInputs
from backend.jobs.status import RESULT_STATES, JobStatus, PartStatus
from backend.options import JobOptions
from backend.storage import require_free_space


def parse_options(text: str | None) -> JobOptions:
    """The ``options`` form field -> JobOptions (strict JSON types; nesting depth is bounded
    by the JSON parser)."""
    try:
        return JobOptions.model_validate_json(text or "{}")
    except ValidationError as exc:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            raise BackendError(
                "bad_options", "The options are not valid JSON: " + validation_message(exc)
            ) from None
        raise BackendError(
            "bad_options", "Some options are out of range: " + validation_message(exc)
        ) from None


async def read_upload(upload: UploadFile, what: str, max_bytes: int) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BackendError(
            "upload_too_large", f"The {what} is over {max_bytes // 2**20} MB; save it smaller."
        )
    return data


async def submit(
    state: ServerState,
    image: UploadFile,
    mask: UploadFile | None,
    masks: list[UploadFile] | None,
    options: str | None,
    artist: str | None = None,
) -> JSONResponse:
    """A new job, or the answer of the job this request already is (202 either way).
    ``artist`` (a tokens file's name) becomes one of the job's owners in the same step that
    finds or creates it, so no other owner can act on the job before it is theirs too."""
    opts = parse_options(options)
    engine = resolve_engine(opts.engine, await state.in_thread(state.machine.engines))
    if masks and mask is not None:
        raise BackendError("bad_mask", "Send either one mask or several masks, not both.")
    if masks:
        check_mask_count(len(masks))
    limit = state.settings.max_upload_bytes
    image_bytes = await read_upload(image, "image", limit)
    mask_bytes: bytes | list[bytes] | None = None
    if masks:
        mask_bytes = [await read_upload(m, "mask", limit) for m in masks]
    elif mask is not None:
        mask_bytes = await read_upload(mask, "mask", limit)
    sub = Submission(
        image_bytes,
        mask_bytes,
        opts.model_copy(update={"engine": engine}),
        state.settings.max_pixels,  # the working resolution is part of the job's identity
    )
    job_id = await state.in_thread(lambda: sub.job_id)
    answer = await state.in_thread(_existing_locked, state, job_id, artist)
    if answer is not None:
        return answer
    # decoding big photos takes memory: a few at a time
    inputs = await anyio.to_thread.run_sync(_prepare, state, sub, limiter=state.intake_slots)
    return await state.in_thread(_create, state, job_id, inputs, artist)


def _existing_locked(state: ServerState, job_id: str, artist: str | None) -> JSONResponse | None:
    with state.id_lock(job_id):
        answer = _existing(state, job_id)
        if answer is not None:
            _own(state, job_id, artist)
        return answer


def _own(state: ServerState, job_id: str, artist: str | None) -> None:
    """Record ``artist`` among the job's owners (under the job's id lock)."""
    if artist is not None:
        state.artists.add(state.store.dir(job_id).path, artist)


def _existing(state: ServerState, job_id: str) -> JSONResponse | None:
    """The answer for a request whose job already exists and is usable, else None."""
    store = state.store
    if not store.exists(job_id):
        return None
    try:
        st = store.read_status(job_id)
    except BackendError:
        return None  # a damaged record: the job is simply created again
    if st.state in RESULT_STATES and store.dir(job_id).has_result():
        return _accepted(store.update(job_id, cached=True), cached=True)
    if st.state in ("queued", "running"):
        if store.dir(job_id).cancel_requested():
            raise BackendError(
                "not_ready",
                "This job is being cancelled; submit it again once its state is cancelled.",
            )
        return _accepted(st, cached=False)
    return None  # failed / cancelled / interrupted: run it again


def _accepted(st: JobStatus, cached: bool) -> JSONResponse:
    body = {"id": st.id, "state": st.state, "cached": cached, "warnings": st.warnings}
    return JSONResponse(status_code=202, content=body)


def _prepare(state: ServerState, sub: Submission) -> JobInputs:
    """Intake, refused at once when the disk has no room for a new job."""
    require_free_space(state.store.root, state.settings.min_free_bytes)
    return sub.prepare()


def _create(state: ServerState, job_id: str, inputs: JobInputs, artist: str | None) -> JSONResponse:
    """The new job's folder, queued; or the job an identical request created meanwhile."""
    req = inputs.request
    status = JobStatus(
        id=job_id,
        owner=state.owner.id,
        kind=req.kind,
        engine=req.engine,
        warnings=inputs.warnings,
        parts=[PartStatus(index=i) for i in range(req.parts)] if req.kind == "scene" else [],
    )
    with state.id_lock(job_id):
        answer = _existing(state, job_id)
        if answer is not None:
            _own(state, job_id, artist)
            return answer
        require_free_space(state.store.root, inputs.nbytes + state.settings.min_free_bytes)
        state.store.create(status, inputs)
        _own(state, job_id, artist)  # before the queue sees it
        state.store.dir(job_id).log(f"queued ({req.kind}, engine {req.engine})")
        state.pool.submit(job_id)
    return _accepted(status, cached=False)
