"""One job's folder: the only place that names the files in it.

Layout of ``<data_dir>/<job id>/`` (the CLI uses the same layout in a temporary folder)::

    request.json           JobRequest: kind, engine, seed, options, what intake learnt
    image.png              the decoded, validated photo (RGB, upright, at the working size)
    mask.png               object jobs: the mask (white = object)
    masks/<i>.png          scene jobs: mask i, in object order
    status.json            JobStatus, replaced atomically on every change (server only)
    job.log                the run's log, for people
    cancel                 present once a cancel was asked (the worker polls it)
    result.glb             the finished GLB: the object, or the whole scene
    result.json            pose, intrinsics, stats, timings, peak memory, warnings
    parts/<i>/result.glb   scene jobs: object i's own GLB

Inputs and the request are written once, at intake; results are written by the run through
temporary names (``backend.storage.atomic_path``), so a file that exists is complete.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.jobs.request import JobRequest
from backend.storage import write_json_atomic


@dataclass
class JobInputs:
    """What intake puts into a job folder: the request and the inputs as PNG bytes
    (``mask_pngs``: one for an object job, one per object for a scene job), and the notes
    intake made for the person who sent them (a downscaled photo, a resized mask)."""

    request: JobRequest
    image_png: bytes
    mask_pngs: list[bytes]
    warnings: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return len(self.image_png) + sum(len(m) for m in self.mask_pngs)


class JobDir:
    """The files of the job folder at ``path`` (see the module doc for the layout)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"JobDir({str(self.path)!r})"

    # -- names ------------------------------------------------------------------------------
    @property
    def request_file(self) -> Path:
        return self.path / "request.json"

    @property
    def image_file(self) -> Path:
        return self.path / "image.png"

    def mask_file(self, index: int | None = None) -> Path:
        """An object job's mask (``index`` None), or mask ``index`` of a scene job."""
        return self.path / "mask.png" if index is None else self.path / "masks" / f"{index}.png"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def log_file(self) -> Path:
        return self.path / "job.log"

    @property
    def cancel_file(self) -> Path:
        return self.path / "cancel"

    @property
    def result_glb(self) -> Path:
        return self.path / "result.glb"

    @property
    def result_json(self) -> Path:
        return self.path / "result.json"

    @staticmethod
    def part_glb_name(index: int) -> str:
        """Part ``index``'s GLB relative to the folder, as ``result.json`` names it."""
        return f"parts/{index}/result.glb"

    def part_glb(self, index: int) -> Path:
        return self.path / self.part_glb_name(index)

    # -- inputs -----------------------------------------------------------------------------
    def write_inputs(self, inputs: JobInputs) -> None:
        """Write the photo, the mask(s) and ``request.json`` (once, at intake)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.image_file.write_bytes(inputs.image_png)
        scene = inputs.request.kind == "scene"
        for i, png in enumerate(inputs.mask_pngs):
            path = self.mask_file(i if scene else None)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
        write_json_atomic(self.request_file, inputs.request.model_dump(mode="json"))

    def read_request(self) -> JobRequest:
        return JobRequest.model_validate_json(self.request_file.read_text(encoding="utf-8"))

    # -- results ----------------------------------------------------------------------------
    def has_result(self) -> bool:
        return self.result_glb.is_file()

    def write_result(self, result: dict[str, Any]) -> None:
        write_json_atomic(self.result_json, result)

    def read_result(self) -> dict[str, Any]:
        """``result.json``; raises ``OSError`` / ``ValueError`` when missing or damaged."""
        data = json.loads(self.result_json.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{self.result_json} holds no JSON object")
        return data

    # -- log and cancel ---------------------------------------------------------------------
    def log(self, line: str) -> None:
        """Append a time-stamped line to ``job.log``; a disk that refuses costs the line,
        never the job."""
        try:
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line.rstrip("\n") + "\n")
        except OSError:
            pass

    def read_log(self) -> str:
        return self.log_file.read_text(encoding="utf-8") if self.log_file.is_file() else ""

    def request_cancel(self) -> bool:
        """Leave the ``cancel`` mark a worker (of any server sharing the data folder) polls;
        False when the disk refuses it (the pool then tells the worker itself)."""
        try:
            self.cancel_file.touch()
            return True
        except OSError:
            return False

    def cancel_requested(self) -> bool:
        try:
            return self.cancel_file.exists()
        except OSError:
            return False
