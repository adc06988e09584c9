"""The HTTP API (FastAPI). Thin routes; the work happens in ``JobStore`` and ``WorkerPool``.

This process never imports torch and never runs an engine: it validates uploads (Pillow),
stores jobs, and supervises worker processes. See docs/API.md for the contract.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import API_VERSION, __version__
from backend.engines.registry import engine_report, resolve_engine
from backend.errors import BackendError
from backend.imageio import (
    MAX_UPLOAD_BYTES,
    MAX_WORK_PIXELS,
    check_mask_coverage,
    encode_png,
    load_inputs,
)
from backend.instance import ServerInstance
from backend.jobs import FINAL_STATES, ErrorInfo, JobStatus, JobStore, PartStatus, job_id_for
from backend.options import JobOptions
from backend.pool import WorkerPool

log = logging.getLogger("sam3d.server")
MAX_SCENE_MASKS = 32


@dataclass
class ServerSettings:
    data_dir: Path
    token: str | None
    workers: int = 1
    cancel_grace_s: float = 3.0
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_WORK_PIXELS
    on_ready: Any = None  # called once the pool is up (the CLI prints the ready line)
    extra_info: dict[str, Any] = field(default_factory=dict)


def _error(exc: BackendError) -> JSONResponse:
    return JSONResponse(status_code=exc.http_status, content=exc.to_dict())


def _validation_message(exc: ValidationError | RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",))
        parts.append(f"{loc or 'options'}: {e.get('msg')}")
    return "; ".join(parts)


def recover_jobs(store: JobStore, pool: WorkerPool, instance: ServerInstance) -> dict[str, int]:
    """After a restart: re-queue queued jobs and jobs that were running (once); a job that
    was already running twice is marked ``interrupted`` instead of looping forever. Jobs of
    another backend that is still running on the same data directory are left to it."""
    counts = {"requeued": 0, "interrupted": 0, "left_to_other_server": 0}
    for st in sorted(store.list(), key=lambda s: s.created):
        if st.state in ("queued", "running") and instance.owner_alive(st.owner):
            counts["left_to_other_server"] += 1
            continue
        if st.state in ("queued", "running"):
            st = store.update(st.id, owner=instance.id)
        if st.state == "queued":
            pool.submit(st.id)
            counts["requeued"] += 1
        elif st.state == "running":
            if st.attempts >= 2:
                store.update(
                    st.id,
                    state="interrupted",
                    error=ErrorInfo(
                        code="interrupted",
                        message="The backend stopped twice while running this job; submit it again.",
                    ),
                )
                store.log(st.id, "marked interrupted after a second restart")
                counts["interrupted"] += 1
            else:
                note = "The backend restarted while this job was running; it was queued again."
                store.update(
                    st.id, state="queued", stage="", progress=0.0, warnings=st.warnings + [note]
                )
                store.log(st.id, note)
                pool.submit(st.id)
                counts["requeued"] += 1
    return counts


def create_app(settings: ServerSettings) -> FastAPI:
    store = JobStore(settings.data_dir)
    instance = ServerInstance(store.root)
    pool = WorkerPool(store, size=settings.workers, cancel_grace_s=settings.cancel_grace_s)
    id_locks = [threading.Lock() for _ in range(64)]
    intake_slots = threading.BoundedSemaphore(2)

    def _id_lock(job_id: str) -> threading.Lock:
        return id_locks[int(job_id[:4], 16) % len(id_locks)]

    probe_cache: dict[str, Any] = {}
    probe_lock = threading.Lock()

    def probe() -> dict[str, Any]:
        """Engine availability and GPUs: cheap but not free (file checks, nvidia-smi), so
        refreshed at most every 30 s; warmed in the background at start-up."""
        with probe_lock:
            if not probe_cache or time.monotonic() - probe_cache["t"] > 30:
                probe_cache["engines"] = engine_report()
                probe_cache["gpu"] = gpu_summary()
                probe_cache["t"] = time.monotonic()
            return probe_cache

    def engines() -> dict[str, Any]:
        return probe()["engines"]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool.start()
        threading.Thread(target=probe, daemon=True, name="probe-warmup").start()
        app.state.recovered = recover_jobs(store, pool, instance)
        if settings.on_ready:
            settings.on_ready()
        yield
        pool.shutdown()
        instance.close()

    app = FastAPI(
        title="SAM 3D for Blender backend",
        version=__version__,
        lifespan=lifespan,
        description="Local service that turns a photo + mask into a textured GLB.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.store, app.state.pool = store, pool

    @app.exception_handler(BackendError)
    async def _backend_error(request: Request, exc: BackendError):
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return _error(
            BackendError("bad_options", "The request is malformed: " + _validation_message(exc))
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 401: "unauthorized"}.get(exc.status_code, "bad_options")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"There is no API route {request.url.path}; see /docs for the routes."
        return JSONResponse(status_code=exc.status_code, content={"code": code, "message": message})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error")
        return _error(
            BackendError(
                "internal_error",
                f"The backend hit an unexpected error: {type(exc).__name__}: {exc}",
            )
        )

    def token_ok(request: Request, allow_query: bool = False) -> bool:
        if settings.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" and allow_query:
            given = request.query_params.get("token", "")
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), settings.token.encode())

    unauthorized = BackendError(
        "unauthorized",
        "Missing or wrong access token. The add-on sets it when it starts the backend; "
        "for a remote backend, copy the token the server was started with.",
    )

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """Token and size checks before any request body is read."""
        path = request.url.path
        if path != "/health":
            if not token_ok(request, allow_query=path in ("/docs", "/openapi.json")):
                return _error(unauthorized)
            length = request.headers.get("content-length")
            limit = settings.max_upload_bytes * 4 + 2**20
            if length and length.isdigit() and int(length) > limit:
                return _error(
                    BackendError(
                        "upload_too_large",
                        f"The request is {int(length) / 2**20:.0f} MB; the backend accepts "
                        f"files of up to {settings.max_upload_bytes // 2**20} MB.",
                    )
                )
        return await call_next(request)

    def require_token(request: Request) -> None:
        if not token_ok(request):
            raise unauthorized

    auth = [Depends(require_token)]

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        """Interactive API docs: open /docs?token=<token> in a browser."""
        from fastapi.openapi.docs import get_swagger_ui_html

        token = request.query_params.get("token", "")
        return get_swagger_ui_html(openapi_url=f"/openapi.json?token={token}", title=app.title)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "api_version": API_VERSION}

    @app.get("/info", dependencies=auth)
    def info() -> dict[str, Any]:
        report = engines()
        return {
            "version": __version__,
            "api_version": API_VERSION,
            "default_engine": resolve_engine("auto", report),
            "engines": {
                k: {"available": v.available, "reason": v.reason} for k, v in report.items()
            },
            "gpu": probe()["gpu"],
            "workers": pool.size,
            "worker_pids": pool.worker_pids(),
            "worker_restarts": pool.restarts,
            "queued": pool.queued_count(),
            "data_dir": str(store.root),
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_pixels": settings.max_pixels,
            },
            **settings.extra_info,
        }

    def _read(upload: UploadFile, what: str) -> bytes:
        data = upload.file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise BackendError(
                "upload_too_large",
                f"The {what} is over {settings.max_upload_bytes // 2**20} MB; save it smaller.",
            )
        return data

    @app.post("/jobs", status_code=202, dependencies=auth)
    def submit(
        image: UploadFile = File(..., description="The photo"),
        mask: UploadFile | None = File(None, description="Mask (else the image's alpha)"),
        masks: list[UploadFile] | None = File(None, description="Several masks: a scene job"),
        options: str | None = Form(None, description="JobOptions as JSON"),
    ) -> JSONResponse:
        # A plain (sync) route: FastAPI runs it in its thread pool, so decoding, hashing and
        # writing never block the event loop that answers /health and status polls.
        try:
            opts = JobOptions.model_validate(json.loads(options) if options else {})
        except json.JSONDecodeError as exc:
            raise BackendError("bad_options", f"The options are not valid JSON: {exc}") from None
        except ValidationError as exc:
            raise BackendError(
                "bad_options", "Some options are out of range: " + _validation_message(exc)
            ) from None
        engine = resolve_engine(opts.engine, engines())
        if masks and mask is not None:
            raise BackendError("bad_mask", "Send either one mask or several masks, not both.")
        if masks and len(masks) > MAX_SCENE_MASKS:
            raise BackendError("bad_mask", f"A scene takes at most {MAX_SCENE_MASKS} masks.")
        image_bytes = _read(image, "image")
        mask_list = [_read(m, "mask") for m in masks] if masks else None
        mask_bytes = _read(mask, "mask") if mask is not None else None
        return _create(image_bytes, mask_bytes, mask_list, engine, opts)

    def _existing(job_id: str) -> JSONResponse | None:
        """The answer for a request whose job already exists and is usable, else None."""
        if not store.exists(job_id):
            return None
        try:
            st = store.read_status(job_id)
        except BackendError:
            return None  # a damaged record: the job is simply created again
        if st.state == "done" and (store.dir(job_id) / "result.glb").is_file():
            st = store.update(job_id, cached=True)
            body = {"id": job_id, "state": st.state, "cached": True, "warnings": st.warnings}
            return JSONResponse(status_code=202, content=body)
        if st.state in ("queued", "running"):
            if store.cancel_requested(job_id):
                raise BackendError(
                    "not_ready",
                    "This job is being cancelled; submit it again once its state is cancelled.",
                )
            body = {"id": job_id, "state": st.state, "cached": False, "warnings": st.warnings}
            return JSONResponse(status_code=202, content=body)
        return None  # failed / cancelled / interrupted: run it again

    def _create(image_bytes, mask_bytes, mask_list, engine, opts) -> JSONResponse:
        scene = mask_list is not None
        opt_dict = opts.model_dump(mode="json")
        opt_dict["engine"] = engine
        job_id = job_id_for(
            image_bytes,
            mask_list if scene else ([mask_bytes] if mask_bytes is not None else []),
            engine,
            {**opt_dict, "max_pixels": settings.max_pixels},  # the working resolution too
            opts.seed,
        )
        with _id_lock(job_id):
            answer = _existing(job_id)
        if answer is not None:
            return answer
        with intake_slots:  # decoding big photos takes memory: a few at a time
            loaded = load_inputs(
                image_bytes, mask_list if scene else mask_bytes, settings.max_pixels
            )
            files = {"image.png": encode_png(loaded.image)}
            coverage: list[float | None] = []
            if scene:
                for i, m in enumerate(loaded.masks):
                    try:
                        coverage.append(check_mask_coverage(m, i))
                    except BackendError:
                        coverage.append(float(m.mean()))
                    files[f"masks/{i}.png"] = encode_png(m)
            else:
                files["mask.png"] = encode_png(loaded.mask)
                coverage.append(float(loaded.mask.mean()))
        request = {
            "id": job_id,
            "kind": "scene" if scene else "object",
            "engine": engine,
            "seed": opts.seed,
            "options": opt_dict,
            "parts": len(loaded.masks) if scene else 1,
            "input": {
                "image_sha256": hashlib.sha256(image_bytes).hexdigest(),
                "original_size": list(loaded.original_size),
                "size": [int(loaded.image.shape[1]), int(loaded.image.shape[0])],
                "mask_coverage": coverage,
            },
        }
        status = JobStatus(
            id=job_id,
            owner=instance.id,
            kind=request["kind"],
            engine=engine,
            warnings=loaded.warnings,
            parts=[PartStatus(index=i) for i in range(len(loaded.masks))] if scene else [],
        )
        with _id_lock(job_id):  # an identical request may have created it meanwhile
            answer = _existing(job_id)
            if answer is not None:
                return answer
            store.create(status, request, files)
            store.log(job_id, f"queued ({request['kind']}, engine {engine})")
            pool.submit(job_id)
        return JSONResponse(
            status_code=202,
            content={"id": job_id, "state": "queued", "cached": False, "warnings": loaded.warnings},
        )

    @app.get("/jobs", dependencies=auth)
    def list_jobs() -> dict[str, Any]:
        return {"jobs": [s.model_dump(mode="json") for s in store.list()]}

    @app.get("/jobs/{job_id}", dependencies=auth)
    def get_job(job_id: str) -> dict[str, Any]:
        return store.read_status(job_id).model_dump(mode="json")

    def _result_path(job_id: str, name: str) -> Path:
        st = store.read_status(job_id)
        path = store.dir(job_id) / name
        if st.state != "done" or not path.is_file():
            if st.state in FINAL_STATES:
                err = st.error.message if st.error else "it has no result"
                raise BackendError("not_ready", f"Job {job_id} ended as {st.state}: {err}")
            raise BackendError(
                "not_ready",
                f"Job {job_id} is {st.state} ({st.stage or 'waiting'}); its result is not ready yet.",
            )
        return path

    @app.get("/jobs/{job_id}/result", dependencies=auth)
    def get_result(job_id: str) -> FileResponse:
        return FileResponse(
            _result_path(job_id, "result.glb"),
            media_type="model/gltf-binary",
            filename=f"{job_id}.glb",
        )

    @app.get("/jobs/{job_id}/result.json", dependencies=auth)
    def get_result_json(job_id: str) -> JSONResponse:
        data = json.loads(_result_path(job_id, "result.json").read_text(encoding="utf-8"))
        data["cached"] = store.read_status(job_id).cached
        return JSONResponse(data)

    @app.get("/jobs/{job_id}/parts/{index}/result", dependencies=auth)
    def get_part_result(job_id: str, index: int) -> FileResponse:
        st = store.read_status(job_id)
        part = next((p for p in st.parts if p.index == index), None)
        if part is None:
            raise BackendError(
                "not_found", f"Job {job_id} has no part {index} (it has {len(st.parts)})."
            )
        if part.state == "failed":
            msg = part.error.message if part.error else "it failed"
            raise BackendError("not_found", f"Part {index} of job {job_id} has no result: {msg}")
        path = _result_path(job_id, f"parts/{index}/result.glb")
        return FileResponse(path, media_type="model/gltf-binary", filename=f"{job_id}-{index}.glb")

    @app.get("/jobs/{job_id}/log", dependencies=auth)
    def get_log(job_id: str) -> PlainTextResponse:
        store.read_status(job_id)
        path = store.dir(job_id) / "job.log"
        return PlainTextResponse(path.read_text(encoding="utf-8") if path.is_file() else "")

    @app.delete("/jobs/{job_id}", dependencies=auth)
    def cancel(job_id: str) -> dict[str, Any]:
        return pool.cancel(job_id).model_dump(mode="json")

    return app


def gpu_summary() -> list[dict[str, Any]]:
    """GPUs seen by nvidia-smi (no torch in this process); [] when none."""
    from backend.gpu.probe import probe_gpus

    try:
        probe = probe_gpus()
    except Exception:
        return []
    return [
        {"name": g.name, "memory_total_mb": g.memory_total_mb, "memory_free_mb": g.memory_free_mb}
        for g in probe.gpus
    ]
