"""Running one job from its folder: inputs -> engine -> finishing -> result files.

This runs inside a worker process (``backend.worker``) or inside the CLI's ``generate``;
never in the HTTP server process. Results are written to temporary names and renamed
(``backend.storage.atomic_path``), so a crash mid-write never leaves a half GLB that looks
finished. Engines return a ``Reconstruction`` in the glTF object frame with a pose into the
camera frame (``backend.reconstruction``); finishing writes it as GLB in that frame.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
from PIL import Image

from backend import __version__
from backend.engines.registry import create_engine
from backend.errors import BackendError
from backend.gpu.assignment import current_worker_gpu
from backend.job_context import JobContext
from backend.jobs.job_dir import JobDir
from backend.jobs.request import JobRequest
from backend.options import JobOptions
from backend.reconstruction import Reconstruction
from backend.storage import atomic_path, refused_by_disk, storage_error

#: ``on_part(index, state, error)``: a scene's object ``index`` ended ``done`` or
#: ``failed`` (``error``: ``{"code", "message"}``, None when done).
OnPart = Callable[[int, str, dict[str, Any] | None], None]

FINISH_STAGES = {"simplify": 0.08, "uv": 0.07, "bake": 0.12, "export": 0.03}
DEFAULT_ENGINE_STAGES = {"load": 0.02, "reconstruct": 0.68}

_engines: dict[str, Any] = {}


def get_engine(name: str):
    """Engines are kept per process so a worker loads model weights once."""
    if name not in _engines:
        _engines[name] = create_engine(name)
    return _engines[name]


def unload_engines() -> None:
    for eng in _engines.values():
        unload = getattr(eng, "unload", None)
        if unload:
            unload()


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB (None where the OS can't say)."""
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20
    except ImportError:
        try:
            import psutil

            return psutil.Process().memory_info().peak_wset / 2**20  # type: ignore[attr-defined]
        except Exception:
            return None


def _read_png(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert(mode))


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A job's mask file -> bool (H, W) = ``shape`` of the job's image, True = object.

    Intake stores a mask either at the image's size or, when the upload already was an
    8-bit grey / 1-bit PNG, as it was sent (``backend.jobs.images``); such a mask is resized
    here nearest-neighbour, exactly as intake would have done before storing it."""
    with Image.open(path) as im:
        grey = im.convert("L")
        if grey.size != (shape[1], shape[0]):
            grey = grey.resize((shape[1], shape[0]), Image.NEAREST)
        return np.asarray(grey) > 127


class SceneMasks(Sequence[np.ndarray]):
    """The masks of a scene job, each read from its file when the engine asks for it, so
    only the objects in flight hold theirs in memory."""

    def __init__(self, job: JobDir, count: int, shape: tuple[int, int]) -> None:
        self.job, self.count, self.shape = job, count, shape

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, i: slice) -> list[np.ndarray]: ...
    def __getitem__(self, i: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.count))]
        if not -self.count <= i < self.count:
            raise IndexError(i)
        return read_mask(self.job.mask_file(i % self.count), self.shape)


def _stage_weights(engine: Any) -> dict[str, float]:
    stages = dict(getattr(engine, "stages", None) or DEFAULT_ENGINE_STAGES)
    stages.setdefault("load", 0.02)
    stages.update(FINISH_STAGES)
    return stages


def _finish(
    recon: Reconstruction, options: JobOptions, out: Path, ctx: JobContext
) -> dict[str, Any]:
    from backend.finishing import finish_to_glb

    with atomic_path(out) as tmp:
        return finish_to_glb(recon, options, tmp, ctx)


def _object_result(recon: Reconstruction, stats: dict[str, Any]) -> dict[str, Any]:
    warnings = list(recon.meta.get("warnings", [])) + list(stats.get("warnings", []))
    return {
        "engine": recon.meta.get("engine"),
        "pose": recon.pose.to_dict(),
        "intrinsics": recon.intrinsics.to_dict() if recon.intrinsics else None,
        "stats": stats,
        "engine_meta": {k: v for k, v in recon.meta.items() if k not in ("warnings", "timings")},
        "engine_timings": recon.meta.get("timings", {}),
        "warnings": warnings,
    }


def run_job(job: JobDir, ctx: JobContext, on_part: OnPart | None = None) -> dict[str, Any]:
    """Run the job stored in ``job``; write its result files; return ``result.json``.

    ``on_part`` hears of each object of a scene job as it ends. Raises BackendError (with a
    code) or Cancelled.
    """
    t0 = time.perf_counter()
    req = job.read_request()
    options = req.options
    ctx.log(f"backend {__version__}, engine {req.engine}, options {options.model_dump_json()}")
    engine = get_engine(req.engine)
    ctx.stages = _stage_weights(engine)
    if req.kind == "scene":  # finishing runs once per part, inside "finish"
        for name in FINISH_STAGES:
            ctx.stages.pop(name)
        ctx.stages["finish"] = sum(FINISH_STAGES.values())
    ctx.stage("load")
    result: dict[str, Any] = {
        "id": req.id,
        "kind": req.kind,
        "backend_version": __version__,
        "seed": req.seed,
        "options": options.model_dump(mode="json"),
        "input": req.input.model_dump(mode="json"),
    }
    # engine_s: seconds from the run's start to the engine's end (its finishing follows)
    timings: dict[str, float] = {}
    if req.kind == "object":
        image = _read_png(job.image_file, "RGB")
        mask = read_mask(job.mask_file(), image.shape[:2])
        recon = engine.reconstruct(image, mask, req.seed, options, ctx)
        del image, mask  # finishing needs neither (the photo's colours are in ``recon``)
        timings["engine_s"] = time.perf_counter() - t0
        stats = _finish(recon, options, job.result_glb, ctx)
        result["state"] = "done"
        result.update(_object_result(recon, stats))
    else:
        result.update(_run_scene(job, req, engine, ctx, on_part, timings, t0))
    result["timings"] = {"total_s": time.perf_counter() - t0, **timings}
    result["worker"] = {"pid": os.getpid(), "gpu": current_worker_gpu()}
    result["peak_memory"] = {"rss_mb": peak_rss_mb()}
    job.write_result(result)
    return result


def _run_scene(
    job: JobDir,
    req: JobRequest,
    engine: Any,
    ctx: JobContext,
    on_part: OnPart | None,
    timings: dict[str, float],
    t0: float,
) -> dict[str, Any]:
    """The objects of one photo: the engine over every mask (each mask read when its
    object starts), then the parts finished a few at a time (``finish_parts``), then the
    scene GLB. One part's failure is its own (the scene is ``partial``); a full or
    read-only disk is every part's, and ends the job. ``timings["engine_s"]``: seconds
    from ``t0`` (``time.perf_counter``, the run's start) to the engine's end.

    Memory: the photo is let go once the engine is done (finishing needs only the
    reconstructions, which hold its colours), and each part's reconstruction once its
    part has ended, so the worker (and every decimator it forks, whose resident size
    counts the pages it shares with the worker) holds less while the parts finish."""
    from backend.finishing import export_scene_glb
    from backend.finishing.parts import finish_parts

    image = _read_png(job.image_file, "RGB")
    masks = SceneMasks(job, req.parts, image.shape[:2])
    recons: list[Reconstruction | Exception | None] = list(
        engine.reconstruct_many(image, masks, req.seed, req.options, ctx)
    )
    del image, masks
    timings["engine_s"] = time.perf_counter() - t0
    ctx.stage("finish")
    camera = next((r.intrinsics for r in recons if isinstance(r, Reconstruction)), None)
    parts: list[dict[str, Any]] = []
    finished: list[tuple[str, Path]] = []

    def part_ended(i: int, outcome: dict[str, Any] | Exception) -> None:
        if isinstance(outcome, Exception):
            if refused_by_disk(outcome):
                raise outcome  # a full or read-only disk costs every part alike
            err = _error_dict(outcome)
            parts.append({"index": i, "state": "failed", "error": err})
            if on_part:
                on_part(i, "failed", err)
            return
        rec = recons[i]
        assert isinstance(rec, Reconstruction)
        recons[i] = None  # its part has ended: its arrays may go
        name = f"object_{i}"
        part = {"index": i, "state": "done", "name": name, "result": job.part_glb_name(i)}
        part.update(_object_result(rec, outcome))
        parts.append(part)
        finished.append((name, job.part_glb(i)))
        if on_part:
            on_part(i, "done", None)

    outs = [job.part_glb(i) for i in range(len(recons))]
    # finish_parts reads recons[i] when part i starts, before part_ended(i) releases it
    finish_parts(recons, req.options, outs, ctx, on_part=part_ended)  # type: ignore[arg-type]
    if not finished:
        first = next(p["error"] for p in parts if p.get("error"))
        raise BackendError(
            first["code"], "Every mask of the scene failed; the first: " + first["message"]
        )
    with atomic_path(job.result_glb) as tmp:
        export_scene_glb(finished, camera, "Camera", tmp)
    failed = [p["index"] for p in parts if p["state"] == "failed"]
    return {
        "state": "partial" if failed else "done",
        "failed_parts": failed,
        "engine": engine.name,
        "camera": camera.to_dict() if camera else None,
        "parts": parts,
        "warnings": [w for p in parts for w in p.get("warnings", [])],
    }


def _error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, BackendError):
        return exc.to_dict()
    return {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}


def classify_exception(exc: BaseException, stage: str, folder: Path | None = None) -> BackendError:
    """Any exception from a job -> a BackendError with a code and a sentence. A disk that
    refuses a write under ``folder`` (the data folder) is ``disk_full`` /
    ``data_dir_not_writable``, naming the folder (else the folder of the file)."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, OSError):
        where = folder or (Path(exc.filename).parent if exc.filename else Path.cwd())
        err = storage_error(exc, where)
        if err is not None:
            return err
    if isinstance(exc, MemoryError):
        return BackendError(
            "out_of_memory",
            f"The computer ran out of memory during {stage}; close other programs or lower "
            "the texture size / target faces.",
            stage=stage,
        )
    name = type(exc).__name__
    if "OutOfMemory" in name:
        return BackendError(
            "out_of_memory",
            f"The GPU ran out of memory during {stage}: {exc}. Choose the 'fast' quality preset "
            "or a lower VRAM budget.",
            stage=stage,
        )
    return BackendError(
        "stage_failed",
        f"The {stage or 'job'} stage failed: {name}: {exc}",
        stage=stage,
        traceback=traceback.format_exc(limit=8),
    )
