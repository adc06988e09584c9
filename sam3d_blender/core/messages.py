"""Error codes -> sentences a person can act on; the add-on's error types.

The backend's codes (``backend/errors.py``) are stable; the add-on adds a few of its own for
things only it can see (no backend installed, backend unreachable, the backend process
died). Reports shown to artists use :func:`describe`; tracebacks never reach them.

:class:`ErrorInfo` is a failure as the add-on shows it (the backend's wire model of the
same shape lives in the backend process: Blender never imports the backend);
:class:`InputError` is the one exception for bad input found before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: code -> what happened and what to do, in the add-on's own words.
MESSAGES: dict[str, str] = {
    # add-on side
    "backend_not_installed": (
        "The SAM 3D backend is not installed. Press 'Install backend' in the SAM 3D panel "
        "(or in Preferences > Add-ons > SAM 3D, where the backend's Python can also be set)."
    ),
    "backend_stopped": (
        "The SAM 3D backend is stopped. Press 'Start backend' in the SAM 3D panel, or turn on "
        "'Start automatically' in the add-on preferences."
    ),
    "backend_start_failed": (
        "The SAM 3D backend could not start. The last lines of its log are shown in the panel."
    ),
    "backend_start_timeout": (
        "The SAM 3D backend did not become ready in time. The last lines of its log are "
        "shown in the panel."
    ),
    "backend_died": (
        "The SAM 3D backend stopped unexpectedly. It will be restarted on the next request."
    ),
    "backend_unreachable": (
        "Cannot reach the SAM 3D backend. For a remote backend check the URL and that the "
        "server is running; for a local one, start it again from the panel."
    ),
    "api_mismatch": (
        "The SAM 3D backend speaks a different API version than this add-on. Update the "
        "add-on and the backend to the same release."
    ),
    "bad_response": "The SAM 3D backend sent an answer this add-on does not understand.",
    "timeout": "The SAM 3D backend did not answer in time.",
    "no_image": "Choose an image first (an image in Blender or a file).",
    "image_unreadable": "The image could not be read by Blender.",
    "no_mask": "Choose a mask image, or use an image whose alpha channel marks the object.",
    "no_alpha": (
        "The image has no transparent pixels, so its alpha cannot be the mask. Choose a mask "
        "image, or create one with 'New mask' and paint the object white."
    ),
    "no_result": "This job's result is no longer available; generate it again.",
    "cache_unwritable": (
        "Cannot write to the SAM 3D cache folder. Check that it exists and that you may write "
        "to it, or choose another one in the add-on preferences."
    ),
    "import_failed": "Blender could not import the generated model.",
    "installer_failed": "Installing the backend failed; the SAM 3D panel shows the installer's output.",
    "asset_catalog_failed": (
        "The asset library's catalog file (blender_assets.cats.txt) could not be read or "
        "written; the objects are assets without that catalog. Make the file writable, or "
        "choose another library or catalog."
    ),
    "preview_failed": (
        "Blender could not render the asset's preview; the object is an asset without one."
    ),
    "asset_library_unwritable": (
        "The asset library folder cannot be written. Make it writable, or choose another "
        "folder for --asset-library."
    ),
    "export_unavailable": (
        "This Blender cannot write that format: it was built without its exporter (Debian's "
        "Blender has no USD). Ask for another format (e.g. --export fbx), or use an official "
        "Blender build."
    ),
    "export_failed": "Blender's exporter could not write this object; the message says why.",
    # backend codes (backend/errors.py)
    "bad_image": "The image file cannot be read. Save it as PNG or JPEG and try again.",
    "empty_file": "The image or mask file is empty.",
    "bad_mask": "The mask cannot be read. Use a black-and-white image (white = object).",
    "mask_size_mismatch": (
        "The mask does not have the image's size or shape. Make the mask from the same image."
    ),
    "empty_mask": "The mask is empty: paint the object white (or give it alpha) and try again.",
    "full_mask": (
        "The mask covers the whole image: paint only the object white, leaving background black."
    ),
    "image_too_large": "The image is too large. Scale it down and try again.",
    "upload_too_large": "The upload is too large. Scale the image down and try again.",
    "bad_options": "Some generation options are invalid.",
    "unknown_engine": "The requested engine does not exist in this backend.",
    "engine_unavailable": "The requested engine cannot run on this backend.",
    "bad_job_id": "That job id is not valid.",
    "not_found": "The backend does not know this job (its cache may have been cleared).",
    "not_ready": "The job's result is not ready yet.",
    "unauthorized": (
        "The backend refused the access token. For a remote backend, check the token in the "
        "add-on preferences (or SAM3D_BACKEND_TOKEN)."
    ),
    "worker_crashed": (
        "The backend's worker crashed while generating. The backend restarted it; try again, "
        "maybe with a smaller image or texture size."
    ),
    "cancelled": "The job was cancelled.",
    "interrupted": "The job was interrupted because the backend stopped. Generate it again.",
    "out_of_memory": (
        "The GPU ran out of memory. Close other GPU programs, lower the texture size or "
        "quality, or use a smaller image."
    ),
    "weights_missing": (
        "The SAM 3D model weights are missing. Download them and set the checkpoints folder "
        "in the add-on preferences."
    ),
    "no_gpu": (
        "SAM 3D needs an NVIDIA GPU with CUDA, and none was found. Use the preview engine, or "
        "a remote backend on a GPU machine."
    ),
    "bad_prompt": (
        "The clicks or box can't make a mask: put at least one click or a box on the photo, "
        "inside its edges."
    ),
    "bad_gpus": (
        "The backend was started with a GPU list it cannot read. Give 'all' or GPU numbers "
        "as nvidia-smi shows them, like 0,1."
    ),
    "gpu_not_found": (
        "The backend was asked for a GPU this machine does not have. Check nvidia-smi and "
        "start it with the GPUs it lists."
    ),
    "stage_failed": "A generation step failed. The job log has the details.",
    "degenerate_mesh": (
        "The reconstruction produced no usable surface. Try a cleaner mask or another seed."
    ),
    "internal_error": "The backend hit an unexpected error. The job log has the details.",
    "disk_full": (
        "The backend's disk is full. Free some space on it (or choose another cache folder) "
        "and generate again."
    ),
    "data_dir_not_writable": (
        "The backend cannot write to its cache folder. Make it writable (or choose another "
        "cache folder) and generate again."
    ),
    "output_not_writable": "The output file cannot be written. Choose another place for it.",
    "partial": (
        "Some objects of the scene could not be made; the others were imported. The job's "
        "parts say why."
    ),
}


#: Failure codes that a second try may not repeat (the backend was away, a worker crashed,
#: time ran out): a batch re-run retries them; every other failure is the input's own.
RETRYABLE_CODES = frozenset(
    {
        "backend_unreachable",
        "backend_stopped",
        "backend_start_failed",
        "backend_start_timeout",
        "backend_died",
        "backend_not_installed",
        "timeout",
        "interrupted",
        "cancelled",
        "worker_crashed",
        "out_of_memory",
        "import_failed",
        "internal_error",
        "bad_response",
    }
)


class InputError(Exception):
    """Bad input found before anything is sent (a missing file, an empty mask, no mask
    folder): a stable ``code`` (a key of :data:`MESSAGES`) and a specific ``message``."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message

    def sentence(self) -> str:
        return describe(self.code, self.message)


@dataclass
class ErrorInfo:
    """A failure as the add-on shows it: a stable ``code``, the backend's own ``message``
    (may be empty) and optional ``log_tail`` lines (the backend log's end, for the panel)."""

    code: str
    message: str = ""
    log_tail: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def sentence(self) -> str:
        return describe(self.code, self.message)


def cache_error(folder: Path, exc: OSError) -> ErrorInfo:
    """The error for a results/cache folder that cannot be written."""
    return ErrorInfo("cache_unwritable", f"cannot write to the cache folder {folder}: {exc}")


def describe(code: str, message: str = "") -> str:
    """One or two sentences for a person: our wording for ``code``, plus the backend's own
    specific sentence when it adds information (e.g. figures) and is not a traceback."""
    base = MESSAGES.get(code)
    detail = _clean(message)
    if base is None:
        return detail or f"Something went wrong ({code})."
    if detail and detail.lower() not in base.lower():
        return f"{base} ({detail})"
    return base


def _clean(message: str) -> str:
    """Drop anything that looks like a traceback; keep the first line, at most 300 chars."""
    if not message:
        return ""
    text = message.strip()
    if "Traceback (most recent call last)" in text:
        text = text.split("Traceback (most recent call last)", 1)[0].strip()
    first = text.splitlines()[0].strip() if text else ""
    return first[:300]
