"""A job's data: what was asked, how it goes, and who brings it into Blender (no bpy).

* :class:`JobRequest` - what to generate (image, masks, :class:`~.options.JobOptions`),
  the :class:`JobKind`, and :class:`ImportSettings`: how the finished job is brought into
  Blender (never sent to the backend).
* :class:`Job` - one request's journey through the :class:`Phase` s, advanced by
  :class:`~.job_manager.JobManager`; its :class:`Delivery` says who brings it into the
  scene once it has finished: the timer (the UI) or the caller that waits for it (a
  blocking operator, the batch). ``sam3d_blender/finish.py`` does it in both cases.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .asset_metadata import AssetSettings
from .client import ResultDownload
from .messages import ErrorInfo
from .options import JobOptions
from .results import ResultFiles, read_json
from .threads import BackgroundCall

__all__ = ["Delivery", "ImportSettings", "Job", "JobKind", "JobRequest", "Phase"]


class JobKind(str, Enum):
    """What a job makes: one object from one mask, or the objects of one photo's masks
    posed under one camera (a scene)."""

    OBJECT = "object"
    SCENE = "scene"


class Phase(str, Enum):
    """``waiting_backend`` (start/check the backend) -> ``submitting`` (POST /jobs) ->
    ``running`` (GET /jobs/{id} until done) -> ``downloading`` (GLBs + result.json) ->
    ``done``; or ``failed`` (with an :class:`ErrorInfo`) / ``cancelled``."""

    WAITING_BACKEND = "waiting_backend"
    SUBMITTING = "submitting"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (Phase.DONE, Phase.FAILED, Phase.CANCELLED)


class Delivery(str, Enum):
    """Who brings a finished job into the scene (imports it, or reports why not)."""

    TIMER = "timer"  # the UI timer, as soon as the job has finished
    CALLER = "caller"  # whoever waits for it (a blocking operator, the batch)
    DELIVERED = "delivered"  # done: imported, or its failure reported
    DROPPED = "dropped"  # the file it was meant for was closed before it finished


@dataclass
class ImportSettings:
    """How a finished job is brought into Blender; never sent to the backend. Blender data
    is named, never referenced: a job may outlive the file it was started in.

    All jobs: ``scene`` (Blender scene name, "" = the current one), ``source`` (the photo's
    path or Blender image name, for provenance), ``decimate`` (add a Decimate modifier),
    ``started`` (``time.monotonic()`` at Generate; seconds to the object are measured from
    it), ``reimport`` (a History re-import: its entry is updated, not added), ``asset``
    (mark the objects as assets, :class:`~.asset_metadata.AssetSettings`; None: don't).
    Object jobs: ``placement`` ("CURSOR" | "CAMERA"), ``camera`` (the camera object's name
    for "CAMERA"; "" = the scene camera, or a new one).
    Scene jobs: ``photo_path`` or ``photo_image`` (the camera's background: a file, or a
    Blender image by name), ``names`` (object name per mask; "" = "<label> <index>"),
    ``camera_height`` (metres above z = 0; None = the engine's assumption),
    ``make_scene_camera`` (the new camera becomes the scene's, with the photo's resolution).
    """

    scene: str = ""
    source: str = ""
    decimate: bool = True
    started: float = field(default_factory=time.monotonic)
    reimport: bool = False
    asset: AssetSettings | None = None
    placement: str = "CURSOR"
    camera: str = ""
    photo_path: str = ""
    photo_image: str = ""
    names: list[str] = field(default_factory=list)
    camera_height: float | None = None
    make_scene_camera: bool = True


@dataclass
class JobRequest:
    """What to generate.

    ``image``: encoded image bytes (PNG written by Blender, or the user's PNG/JPEG file).
    ``mask``: encoded mask (white = object), None = the image's alpha. ``masks``: several
    masks of the same photo (a scene job; ``mask`` must then be None). ``label``: the name
    the imported object (or the scene's collection and camera) gets.
    """

    image: bytes
    mask: bytes | None = None
    masks: list[bytes] | None = None
    options: JobOptions = field(default_factory=JobOptions)
    label: str = "SAM 3D object"
    kind: JobKind = JobKind.OBJECT
    settings: ImportSettings = field(default_factory=ImportSettings)
    #: SHA-256 of the image bytes (computed when not given); kept after the bytes are gone.
    sha256: str = ""
    #: How many masks were sent (kept after the bytes are gone).
    mask_count: int = 0

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.image).hexdigest()
        if not self.mask_count:
            self.mask_count = len(self.masks) if self.masks else int(self.mask is not None)

    @property
    def source_sha256(self) -> str:
        """SHA-256 of the image bytes sent (provenance: which photo made this object)."""
        return self.sha256

    def drop_payload(self) -> None:
        """Forget the image/mask bytes (the backend has them; a re-import needs only the
        result files)."""
        self.image = b""
        self.mask = None
        self.masks = None


@dataclass
class Job:
    """One request's journey; read by the panel, advanced only by the manager."""

    local_id: int
    request: JobRequest
    phase: Phase = Phase.WAITING_BACKEND
    delivery: Delivery = Delivery.TIMER
    backend_id: str | None = None
    state: str = ""  # the backend's JobStatus.state
    stage: str = ""
    progress: float = 0.0
    cached: bool = False
    warnings: list[str] = field(default_factory=list)
    error: ErrorInfo | None = None
    files: ResultFiles | None = None
    result: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    submitted_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    cancel_sent: bool = False
    start_tried: bool = False
    waiting_for_install: bool = False  # the backend is being installed; the job starts after
    _download: ResultDownload | None = field(default=None, repr=False)
    _call: BackgroundCall | None = field(default=None, repr=False)
    _poll_failures: int = 0
    _next_poll: float = 0.0

    @classmethod
    def from_results(cls, request: JobRequest, backend_id: str, files: ResultFiles) -> Job:
        """A finished job read back from its results folder (a re-import without any
        backend). ValueError when its result.json is damaged."""
        result = read_json(files.json) if files.json.is_file() else {}
        return cls(
            0,
            request,
            phase=Phase.DONE,
            delivery=Delivery.CALLER,
            backend_id=backend_id,
            files=files,
            result=result,
        )

    @property
    def finished(self) -> bool:
        return self.phase.finished

    @property
    def kind(self) -> JobKind:
        return self.request.kind

    @property
    def glb_path(self) -> Path | None:
        """The finished job's GLB (None until it is here)."""
        return self.files.glb if self.files is not None else None

    def status_line(self) -> str:
        """'Running: reconstruct (42%)' style text for the panel."""
        if self.phase == Phase.WAITING_BACKEND:
            if self.waiting_for_install:
                return "Waiting for the backend install to finish..."
            return "Starting backend..."
        if self.phase == Phase.SUBMITTING:
            return "Sending image..."
        if self.phase == Phase.RUNNING:
            if self.cancel_requested:
                return "Cancelling..."
            stage = self.stage or self.state or "queued"
            return f"{stage.replace('_', ' ').capitalize()} ({self.progress * 100:.0f}%)"
        if self.phase == Phase.DOWNLOADING:
            dl = self._download
            if dl is not None and dl.bytes_total:
                return f"Downloading result ({dl.fraction * 100:.0f}%)..."
            return "Downloading result..."
        if self.phase == Phase.DONE:
            return "Done (from cache)" if self.cached else "Done"
        if self.phase == Phase.CANCELLED:
            return "Cancelled"
        return self.error.sentence() if self.error else "Failed"
