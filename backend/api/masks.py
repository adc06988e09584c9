"""``POST /masks`` (docs/API.md): a photo and clicks (points, an optional box) -> a mask
PNG, with its score and the method in response headers; ``GET /masks/engines``. The mask
is in the prompts' frame: upright (the photo's EXIF orientation applied), or the file's
stored frame with ``"frame": "stored"`` (``backend.jobs.orientation``).

The server only checks the request; the mask is made by the mask worker process
(``backend.masking.worker``), one long-lived process for every method: the server never
imports torch, SAM 2's model and per-photo image embeddings stay loaded between clicks,
and a native crash (OpenCV, CUDA) costs that worker, never the server. GrabCut runs there
too, so both methods share one path, one photo cache and one crash boundary.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import anyio
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from backend.api.dependencies import StateDep, verify_token
from backend.api.state import ServerState
from backend.api.submission import read_upload
from backend.errors import BackendError
from backend.masking.engines import mask_engine_report, resolve_mask_engine
from backend.masking.prompts import prompt_from_text
from backend.masking.worker_client import MaskWorker

router = APIRouter(prefix="/masks", dependencies=[Depends(verify_token)])

#: Threads that may wait for the mask worker at once (the rest wait as coroutines).
MASK_THREADS = 4
_IMAGE_ID = re.compile(r"[0-9a-f]{32}")
_setup_lock = threading.Lock()


class _MaskService:
    def __init__(self, state: ServerState) -> None:
        self.worker = MaskWorker(max_pixels=state.settings.max_pixels)
        self.threads = anyio.CapacityLimiter(MASK_THREADS)


def _service(request: Request, state: ServerState) -> _MaskService:
    with _setup_lock:
        svc = getattr(request.app.state, "masks", None)
        if svc is None:
            svc = request.app.state.masks = _MaskService(state)
        return svc


@router.get("/engines")
async def engines(state: StateDep) -> dict[str, Any]:
    report = await state.in_thread(mask_engine_report)
    return {
        "auto": resolve_mask_engine("auto", report),
        "engines": {k: {"available": v.available, "reason": v.reason} for k, v in report.items()},
    }


@router.post("")
async def create_mask(
    request: Request,
    state: StateDep,
    image: UploadFile | None = File(None, description="The photo (or give image_id)"),
    image_id: str | None = Form(None, description="X-Image-Id of an earlier answer"),
    prompts: str | None = Form(
        None,
        description='{"points":[{"x","y","positive"}],"box":[x0,y0,x1,y1],'
        '"frame":"upright"|"stored"}',
    ),
    engine: str = Form("auto", description="auto | grabcut | sam2"),
) -> Response:
    prompt = prompt_from_text(prompts)
    if image is None and not image_id:
        raise BackendError(
            "bad_image", "Send the photo as `image` (or the image_id an earlier answer gave)."
        )
    if image is None and not _IMAGE_ID.fullmatch(image_id or ""):
        raise BackendError(
            "bad_image", "image_id must be the 32 hex digits an earlier answer's X-Image-Id gave."
        )
    name = resolve_mask_engine(engine, await state.in_thread(mask_engine_report))
    data = None
    if image is not None:
        data = await read_upload(image, "image", state.settings.max_upload_bytes)
    svc = _service(request, state)
    msg = {"cmd": "segment", "prompt": prompt, "engine": name, "image": data, "image_id": image_id}
    ans = await anyio.to_thread.run_sync(svc.worker.request, msg, limiter=svc.threads)
    w, h = ans["size"]
    fw, fh = ans["full_size"]
    return Response(
        content=ans["png"],
        media_type="image/png",
        headers={
            "X-Mask-Score": f"{ans['score']:.4f}",
            "X-Mask-Engine": ans["engine"],
            "X-Image-Id": ans["image_id"],
            "X-Mask-Size": f"{w}x{h}",
            "X-Image-Size": f"{fw}x{fh}",
            "X-Mask-Frame": ans["frame"],
            "X-Mask-Cached": "1" if ans["cached"] else "0",
            "X-Mask-Ms": f"{ans['timings_ms']['total']:.1f}",
        },
    )
