"""The HTTP server's app: ``create_app(settings)`` builds the FastAPI app from the routers
in ``backend.api``, with the server's state on ``app.state.server``.

This process never imports torch and never runs an engine: it validates uploads (Pillow),
stores jobs, and supervises worker processes. See docs/API.md for the contract and
``backend.api`` for where each part of it lives. A request body is counted as it streams
(``max_body_size`` on the jobs router); slow or too many connections are handled below the
app, in ``backend.http_protocol``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend import __version__
from backend.api import info, jobs, masks, public
from backend.api.error_handlers import add_error_handlers
from backend.api.middleware import ErrorBoundary, RequestGuard
from backend.api.state import ServerSettings, ServerState


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.server
    state.start()
    yield
    state.stop()


def create_app(settings: ServerSettings) -> FastAPI:
    """The app; raises ``data_dir_not_writable`` / ``disk_full`` when the data folder can't
    even hold the server's own records."""
    state = ServerState(settings)
    app = FastAPI(
        title="SAM 3D for Blender backend",
        version=__version__,
        lifespan=_lifespan,
        description="Local service that turns a photo + mask into a textured GLB.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.server = state
    app.add_middleware(RequestGuard, settings=settings)
    app.add_middleware(ErrorBoundary, data_dir=state.store.root)  # outermost of ours
    add_error_handlers(app)
    app.include_router(public.router)
    app.include_router(info.router)
    app.include_router(jobs.router, max_body_size=settings.max_request_bytes)
    app.include_router(masks.router, max_body_size=settings.max_upload_bytes + 2**20)
    return app
