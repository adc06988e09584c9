"""What runs around every route, as plain ASGI middleware.

* ``RequestGuard``: the token, then the declared size, checked before any request body is
  read (a 300 MB upload without the token costs nothing).
* ``ErrorBoundary`` (outermost): an unexpected exception becomes a JSON answer like any
  other - ``disk_full`` / ``data_dir_not_writable`` for a disk that refuses, else
  ``internal_error`` - and the connection stays usable (Starlette's own 500 re-raises, and
  uvicorn then drops the connection under the client's next request).

Slow or too many connections are handled below the app, in ``backend.http_protocol``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.dependencies import token_ok, unauthorized
from backend.api.error_handlers import error_response
from backend.api.state import ServerSettings
from backend.errors import BackendError
from backend.storage import storage_error

log = logging.getLogger("sam3d.server")
#: Pages a browser opens: their token may come as ``?token=``.
_BROWSER_PAGES = ("/docs", "/openapi.json")


class RequestGuard:
    """Token, then declared size, checked before any request body is read."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            return await self.app(scope, receive, send)
        request = Request(scope)
        if not token_ok(self.settings.token, request, scope["path"] in _BROWSER_PAGES):
            return await error_response(unauthorized())(scope, receive, send)
        length = request.headers.get("content-length", "")
        limit = self.settings.max_request_bytes
        if length.isdigit() and int(length) > limit:
            too_large = BackendError(
                "upload_too_large",
                f"The request is {int(length) / 2**20:.0f} MB; the backend accepts files of "
                f"up to {self.settings.max_upload_bytes // 2**20} MB.",
            )
            return await error_response(too_large)(scope, receive, send)
        await self.app(scope, receive, send)


class ErrorBoundary:
    """An unexpected exception -> a JSON answer on a connection that stays usable (see the
    module doc); a disk error under ``data_dir`` gets its own code."""

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
            await error_response(err)(scope, receive, send)
