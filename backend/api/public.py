"""Routes without the router-wide token: ``/health`` (no token at all), and the
interactive docs (``/docs?token=...`` and ``/openapi.json``: the token, from the header or
the query, is checked by ``backend.api.middleware.RequestGuard``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from backend import API_VERSION, __version__

router = APIRouter()


@router.get("/openapi.json", include_in_schema=False)
def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    """Interactive API docs: open /docs?token=<token> in a browser."""
    # The page's script quotes this URL: only a percent-encoded token goes into it.
    token = quote(request.query_params.get("token", ""), safe="")
    return get_swagger_ui_html(openapi_url=f"/openapi.json?token={token}", title=request.app.title)


@router.get("/health")
async def health() -> dict[str, Any]:
    """On the event loop itself: it answers while every thread is busy."""
    return {"status": "ok", "version": __version__, "api_version": API_VERSION}
