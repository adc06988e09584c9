"""The results folder: where a finished job's files are kept on this computer (no bpy).

One folder per backend job id, ``<results_dir>/<job id>/``, laid out like the backend's own
job folder::

    result.glb                 the object (a scene job: every object + the camera)
    result.json                pose, intrinsics, stats, timings; a scene's parts
    parts/<index>/result.glb   a scene job's part ``index``, in its own object frame

:class:`ResultFiles` is the only place that knows these names. JSON files are written
atomically (:func:`write_json`) and read with a sentence when damaged (:func:`read_json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .scene_result import done_part_indices

__all__ = ["ResultFiles", "read_json", "write_json"]


@dataclass(frozen=True)
class ResultFiles:
    """The files of one finished job in ``folder`` (see the module docstring)."""

    folder: Path

    @classmethod
    def of(cls, results_dir: Path, job_id: str) -> ResultFiles:
        return cls(Path(results_dir) / job_id)

    @property
    def glb(self) -> Path:
        return self.folder / "result.glb"

    @property
    def json(self) -> Path:
        return self.folder / "result.json"

    def part_glb(self, index: int) -> Path:
        return self.folder / "parts" / str(int(index)) / "result.glb"

    def complete(self) -> bool:
        """True when the GLB and result.json are both here."""
        return self.glb.is_file() and self.json.is_file()

    def missing_parts(self, result: dict[str, Any]) -> list[int]:
        """Indices of the done parts of ``result`` whose GLB is not here (yet)."""
        return [i for i in done_part_indices(result) if not _nonempty(self.part_glb(i))]

    def part_glbs(self, result: dict[str, Any]) -> dict[int, Path]:
        """Part index -> GLB for the done parts of ``result`` whose GLB is here."""
        return {
            i: self.part_glb(i) for i in done_part_indices(result) if _nonempty(self.part_glb(i))
        }


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (a temporary file, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object written by :func:`write_json`; ValueError with a sentence when the
    file is not a JSON object (truncated, edited by hand)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is damaged ({exc}); generate the object again") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is damaged (not a JSON object); generate the object again")
    return data
