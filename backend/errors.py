"""Stable error codes shared by the CLI, the HTTP API, the worker and the add-on.

Every failure a person can meet carries one of these codes plus a sentence they can act on.
The add-on maps codes to its own wording; never rename a code, only add new ones.
"""

from __future__ import annotations

from typing import Any

# code -> HTTP status used when the error answers a request directly.
ERROR_STATUS: dict[str, int] = {
    # input problems (4xx)
    "bad_image": 400,
    "empty_file": 400,
    "bad_mask": 400,
    "mask_size_mismatch": 400,
    "empty_mask": 400,
    "full_mask": 400,
    "image_too_large": 413,
    "upload_too_large": 413,
    "bad_options": 422,
    "bad_prompt": 422,  # POST /masks: no prompts, a point outside the photo, an empty box
    "unknown_engine": 422,
    "engine_unavailable": 409,
    "bad_job_id": 400,
    "not_found": 404,
    "not_ready": 409,
    "unauthorized": 401,
    "output_not_writable": 400,  # the CLI's --out / --report
    # the backend's own disk (its data folder): 507 Insufficient Storage
    "disk_full": 507,
    "data_dir_not_writable": 507,
    # job failures (reported in the job status, not as an HTTP status)
    "worker_crashed": 500,
    "cancelled": 409,
    "interrupted": 500,
    "out_of_memory": 507,
    "weights_missing": 409,
    "no_gpu": 409,
    # how the server was started (``serve --gpus``); never an answer to a request
    "bad_gpus": 400,
    "gpu_not_found": 409,
    "stage_failed": 500,
    "degenerate_mesh": 422,
    "internal_error": 500,
    # a scene job some of whose objects failed: its result holds the others (never an HTTP
    # answer; 207 Multi-Status for the record)
    "partial": 207,
}

#: The longest message an error carries: messages may quote what a client sent, and an
#: answer must never grow with the input.
MAX_MESSAGE_CHARS = 1000


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (for quoting client input)."""
    text = str(text)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


class BackendError(Exception):
    """An error with a stable ``code`` and a human ``message`` (no tracebacks for users).

    ``details`` carries machine-readable extras (sizes, VRAM figures, paths).
    """

    def __init__(self, code: str, message: str, **details: Any) -> None:
        message = shorten(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        if code not in ERROR_STATUS:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.message = message
        self.details = details

    @property
    def http_status(self) -> int:
        return ERROR_STATUS[self.code]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out

    def __reduce__(self):  # picklable across process boundaries
        return (_rebuild_error, (self.code, self.message, self.details))


def _rebuild_error(code: str, message: str, details: dict[str, Any]) -> BackendError:
    return BackendError(code, message, **details)
