"""The HTTP API (FastAPI). Thin routes; the work happens in ``JobStore`` and ``WorkerPool``.

This process never imports torch and never runs an engine: it validates uploads (Pillow),
stores jobs, and supervises worker processes. See docs/API.md for the contract.

Staying answerable under load: uploads are decoded a few at a time (``INTAKE_SLOTS``) while
the other submissions wait as coroutines, not threads, so status polls always find a free
thread and ``/health`` needs none; a request body is counted as it streams (FastAPI's
``max_body_size``); an unexpected error is answered like any other, on a connection that
stays usable. Slow or too many connections are handled below, in ``backend.http_protocol``.
"""

from __future__ import annotations

import ctypes
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
from urllib.parse import quote

import anyio
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend import API_VERSION, __version__
from backend.engines.registry import engine_report, resolve_engine
from backend.errors import BackendError, shorten
from backend.http_protocol import ConnectionLimits
from backend.imageio import (
    MAX_UPLOAD_BYTES,
    MAX_WORK_PIXELS,
    check_mask_coverage,
    encode_png,
    load_inputs,
)
from backend.instance import ServerInstance
from backend.jobs import (
    FINAL_STATES,
    RESULT_STATES,
    ErrorInfo,
    JobStatus,
    JobStore,
    PartStatus,
    job_id_for,
)
from backend.options import JobOptions
from backend.pool import WorkerPool
from backend.storage import free_bytes, require_free_space, storage_error

log = logging.getLogger("sam3d.server")
MAX_SCENE_MASKS = 32
#: Uploads decoded at once; the rest wait (a 100 MP photo takes ~0.5 GB while decoding).
INTAKE_SLOTS = 2
#: Threads the other steps of submissions may hold at once (hashing, lookups, writing), so
#: that status polls always find one of the thread pool's 40 free.
SUBMIT_THREADS = 4
#: Free space a new job needs on the data folder's disk besides its inputs: its results.
MIN_FREE_BYTES = 64 * 2**20


@dataclass
class ServerSettings:
    data_dir: Path
    token: str | None
    workers: int = 1
    cancel_grace_s: float = 3.0
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_WORK_PIXELS
    min_free_bytes: int = MIN_FREE_BYTES
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    on_ready: Any = None  # called once the pool is up (the CLI prints the ready line)
    extra_info: dict[str, Any] = field(default_factory=dict)

    @property
    def max_request_bytes(self) -> int:
        """A whole POST /jobs body: the photo, a few masks' worth, and the form around them."""
        return self.max_upload_bytes * 4 + 2**20


def _release_freed_memory() -> None:
    """Hand the memory a big decode freed back to the operating system. glibc keeps freed
    blocks in per-thread arenas, so after a few 100 MP decodes on pool threads the process
    would keep holding a gigabyte it no longer uses. No-op without glibc."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def _error(exc: BackendError) -> JSONResponse:
    return JSONResponse(status_code=exc.http_status, content=exc.to_dict())


def _validation_message(exc: ValidationError | RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(shorten(x, 40) for x in e.get("loc", ()) if x not in ("body",))
        parts.append(f"{loc or 'options'}: {shorten(e.get('msg', ''), 200)}")
    return "; ".join(parts)


def _parse_options(text: str | None) -> JobOptions:
    """The ``options`` form field -> JobOptions (strict JSON types; nesting depth is bounded
    by the JSON parser)."""
    try:
        return JobOptions.model_validate_json(text or "{}")
    except ValidationError as exc:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            raise BackendError(
                "bad_options", "The options are not valid JSON: " + _validation_message(exc)
            ) from None
        raise BackendError(
            "bad_options", "Some options are out of range: " + _validation_message(exc)
        ) from None


_UNAUTHORIZED = BackendError(
    "unauthorized",
    "Missing or wrong access token. The add-on sets it when it starts the backend; "
    "for a remote backend, copy the token the server was started with.",
)


def token_ok(settings: ServerSettings, request: Request, allow_query: bool = False) -> bool:
    if settings.token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" and allow_query:
        given = request.query_params.get("token", "")
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), settings.token.encode())


class _Guard:
    """Token, then declared size, checked before any request body is read."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            return await self.app(scope, receive, send)
        request = Request(scope)
        if not token_ok(self.settings, request, scope["path"] in ("/docs", "/openapi.json")):
            return await _error(_UNAUTHORIZED)(scope, receive, send)
        length = request.headers.get("content-length", "")
        limit = self.settings.max_request_bytes
        if length.isdigit() and int(length) > limit:
            too_large = BackendError(
                "upload_too_large",
                f"The request is {int(length) / 2**20:.0f} MB; the backend accepts files of "
                f"up to {self.settings.max_upload_bytes // 2**20} MB.",
            )
            return await _error(too_large)(scope, receive, send)
        await self.app(scope, receive, send)


class _ErrorBoundary:
    """An unexpected exception becomes a JSON answer like any other - ``disk_full`` /
    ``data_dir_not_writable`` for a disk that refuses, else ``internal_error`` - and the
    connection stays usable (Starlette's own 500 re-raises, and uvicorn then drops the
    connection under the client's next request)."""

    def __init__(self, app: ASGIApp, data_dir: Path) -> None:
        self.app, self.data_dir = app, data_dir

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        except Exception as exc:
            if started:
                raise  # half an answer is out: only closing the connection is honest
            err = storage_error(exc, self.data_dir)
            if err is None:
                log.exception("unexpected error")
                err = BackendError(
                    "internal_error",
                    f"The backend hit an unexpected error: {type(exc).__name__}: {exc}",
                )
            await _error(err)(scope, receive, send)


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
    """The app; raises ``data_dir_not_writable`` / ``disk_full`` when the data folder can't
    even hold the server's own records."""
    store = JobStore(settings.data_dir)
    try:
        instance = ServerInstance(store.root)
    except OSError as exc:
        raise storage_error(exc, store.root) or exc from None
    pool = WorkerPool(store, size=settings.workers, cancel_grace_s=settings.cancel_grace_s)
    id_locks = [threading.Lock() for _ in range(64)]
    intake_slots = anyio.CapacityLimiter(INTAKE_SLOTS)
    submit_threads = anyio.CapacityLimiter(SUBMIT_THREADS)

    async def in_thread(fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=submit_threads)

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
    app.add_middleware(_Guard, settings=settings)
    app.add_middleware(_ErrorBoundary, data_dir=store.root)  # outermost of ours

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
        if exc.status_code == 413:  # the body grew past the limit while streaming
            return _error(
                BackendError(
                    "upload_too_large",
                    f"The request is over {settings.max_request_bytes / 2**20:.0f} MB; the "
                    f"backend accepts files of up to {settings.max_upload_bytes // 2**20} MB.",
                )
            )
        code = {404: "not_found", 401: "unauthorized"}.get(exc.status_code, "bad_options")
        message = shorten(exc.detail, 300)
        path = shorten(request.url.path, 100)
        if exc.status_code == 404:
            message = f"There is no API route {path}; see /docs for the routes."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {path}; see /docs for the routes."
        return JSONResponse(status_code=exc.status_code, content={"code": code, "message": message})

    async def require_token(request: Request) -> None:
        """(Also checked by ``_Guard``.) Async: a check this cheap needs no thread hop."""
        if not token_ok(settings, request):
            raise _UNAUTHORIZED

    auth = [Depends(require_token)]

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        """Interactive API docs: open /docs?token=<token> in a browser."""
        from fastapi.openapi.docs import get_swagger_ui_html

        # The page's script quotes this URL: only a percent-encoded token goes into it.
        token = quote(request.query_params.get("token", ""), safe="")
        return get_swagger_ui_html(openapi_url=f"/openapi.json?token={token}", title=app.title)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """On the event loop itself: it answers while every thread is busy."""
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
                "max_request_bytes": settings.max_request_bytes,
                "max_pixels": settings.max_pixels,
                "min_free_bytes": settings.min_free_bytes,
                "header_timeout_s": settings.connection_limits.header_timeout_s,
                "body_timeout_s": settings.connection_limits.body_timeout_s,
                "max_connections": settings.connection_limits.max_connections,
            },
            "data_dir_free_bytes": free_bytes(store.root),
            **settings.extra_info,
        }

    async def _read(upload: UploadFile, what: str) -> bytes:
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise BackendError(
                "upload_too_large",
                f"The {what} is over {settings.max_upload_bytes // 2**20} MB; save it smaller.",
            )
        return data

    @app.post("/jobs", status_code=202, dependencies=auth, max_body_size=settings.max_request_bytes)
    async def submit(
        image: UploadFile = File(..., description="The photo"),
        mask: UploadFile | None = File(None, description="Mask (else the image's alpha)"),
        masks: list[UploadFile] | None = File(None, description="Several masks: a scene job"),
        options: str | None = Form(None, description="JobOptions as JSON"),
    ) -> JSONResponse:
        # Hashing, decoding and writing run in threads; waiting for an intake slot does not
        # hold one, so status polls always find a free thread.
        opts = _parse_options(options)
        engine = resolve_engine(opts.engine, await in_thread(engines))
        if masks and mask is not None:
            raise BackendError("bad_mask", "Send either one mask or several masks, not both.")
        if masks and len(masks) > MAX_SCENE_MASKS:
            raise BackendError("bad_mask", f"A scene takes at most {MAX_SCENE_MASKS} masks.")
        image_bytes = await _read(image, "image")
        mask_list = [await _read(m, "mask") for m in masks] if masks else None
        mask_bytes = await _read(mask, "mask") if mask is not None else None
        scene = mask_list is not None
        opt_dict = opts.model_dump(mode="json")
        opt_dict["engine"] = engine
        job_id = await in_thread(
            job_id_for,
            image_bytes,
            mask_list if scene else ([mask_bytes] if mask_bytes is not None else []),
            engine,
            {**opt_dict, "max_pixels": settings.max_pixels},  # the working resolution too
            opts.seed,
        )
        answer = await in_thread(_existing_locked, job_id)
        if answer is not None:
            return answer
        # decoding big photos takes memory: a few at a time
        intake = await anyio.to_thread.run_sync(
            _intake, image_bytes, mask_list if scene else mask_bytes, limiter=intake_slots
        )
        return await in_thread(_store_job, job_id, engine, opts, opt_dict, scene, *intake)

    def _existing_locked(job_id: str) -> JSONResponse | None:
        with _id_lock(job_id):
            return _existing(job_id)

    def _existing(job_id: str) -> JSONResponse | None:
        """The answer for a request whose job already exists and is usable, else None."""
        if not store.exists(job_id):
            return None
        try:
            st = store.read_status(job_id)
        except BackendError:
            return None  # a damaged record: the job is simply created again
        if st.state in RESULT_STATES and (store.dir(job_id) / "result.glb").is_file():
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

    def _intake(
        image_bytes: bytes, mask_input: bytes | list[bytes] | None
    ) -> tuple[bytes, Any, dict[str, bytes], list[float | None]]:
        """Decode, validate and re-encode the inputs -> (image bytes, loaded, files,
        mask coverage). Refuses at once when the disk has no room for a new job."""
        require_free_space(store.root, settings.min_free_bytes)
        try:
            loaded = load_inputs(image_bytes, mask_input, settings.max_pixels)
            files = {"image.png": encode_png(loaded.image)}
            coverage: list[float | None] = []
            if isinstance(mask_input, list):
                for i, m in enumerate(loaded.masks):
                    try:
                        coverage.append(check_mask_coverage(m, i))
                    except BackendError:
                        coverage.append(float(m.mean()))
                    files[f"masks/{i}.png"] = encode_png(m)
            else:
                files["mask.png"] = encode_png(loaded.mask)
                coverage.append(float(loaded.mask.mean()))
        finally:
            _release_freed_memory()
        return image_bytes, loaded, files, coverage

    def _store_job(
        job_id: str,
        engine: str,
        opts: JobOptions,
        opt_dict: dict[str, Any],
        scene: bool,
        image_bytes: bytes,
        loaded: Any,
        files: dict[str, bytes],
        coverage: list[float | None],
    ) -> JSONResponse:
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
        needed = sum(len(b) for b in files.values()) + settings.min_free_bytes
        with _id_lock(job_id):  # an identical request may have created it meanwhile
            answer = _existing(job_id)
            if answer is not None:
                return answer
            require_free_space(store.root, needed)
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
    async def get_job(job_id: str) -> dict[str, Any]:
        """The route clients poll: on the event loop (one small file read, or the status
        held in memory), so it answers whatever the thread pool is doing."""
        return store.read_status(job_id).model_dump(mode="json")

    def _result_path(job_id: str, name: str) -> Path:
        st = store.read_status(job_id)
        path = store.dir(job_id) / name
        if st.state not in RESULT_STATES or not path.is_file():
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
