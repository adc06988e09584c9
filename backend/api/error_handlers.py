"""Every error answer is JSON ``{"code", "message", "details"}`` with a stable code (see
``backend.errors``): our own errors, malformed requests, and Starlette's 404/405/413."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.errors import BackendError, shorten


def error_response(exc: BackendError) -> JSONResponse:
    return JSONResponse(status_code=exc.http_status, content=exc.to_dict())


def validation_message(exc: ValidationError | RequestValidationError) -> str:
    """The first few problems of a validation error, each cut short (client input)."""
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(shorten(x, 40) for x in e.get("loc", ()) if x not in ("body",))
        parts.append(f"{loc or 'options'}: {shorten(e.get('msg', ''), 200)}")
    return "; ".join(parts)


async def _backend_error(request: Request, exc: BackendError) -> JSONResponse:
    return error_response(exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(
        BackendError("bad_options", "The request is malformed: " + validation_message(exc))
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 413:  # the body grew past the limit while streaming
        settings = request.app.state.server.settings
        return error_response(
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


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BackendError, _backend_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
