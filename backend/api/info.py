"""``GET /info``: the backend's version, engines, GPUs, workers and limits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from backend import API_VERSION, __version__
from backend.api.dependencies import StateDep, verify_token
from backend.engines.registry import resolve_engine
from backend.storage import free_bytes

router = APIRouter(dependencies=[Depends(verify_token)])


@router.get("/info")
def info(state: StateDep) -> dict[str, Any]:
    settings, report = state.settings, state.machine.engines()
    limits = settings.connection_limits
    return {
        "version": __version__,
        "api_version": API_VERSION,
        "default_engine": resolve_engine("auto", report),
        "engines": {k: {"available": v.available, "reason": v.reason} for k, v in report.items()},
        "gpu": state.machine.gpus(),
        "workers": state.pool.size,
        "slots": state.pool.slots(),
        "worker_pids": state.pool.worker_pids(),
        "worker_restarts": state.pool.restarts,
        "queued": state.pool.queued_count(),
        "data_dir": str(state.store.root),
        "limits": {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_request_bytes": settings.max_request_bytes,
            "max_pixels": settings.max_pixels,
            "min_free_bytes": settings.min_free_bytes,
            "header_timeout_s": limits.header_timeout_s,
            "body_timeout_s": limits.body_timeout_s,
            "max_connections": limits.max_connections,
        },
        "data_dir_free_bytes": free_bytes(state.store.root),
        **settings.extra_info,
    }
