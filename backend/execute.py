"""Running one job from its directory: load inputs -> engine -> finishing -> result files.

This runs inside a worker process (``backend.worker``) or inside the CLI's ``generate``;
never in the HTTP server process. Results are written to temporary names and renamed, so a
crash mid-write never leaves a half GLB that looks finished.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from backend import __version__
from backend.engines.registry import create_engine
from backend.errors import BackendError
from backend.jobs import write_json_atomic
from backend.options import JobOptions
from backend.progress import Cancelled, JobContext
from backend.reconstruction import Reconstruction
from backend.storage import refused_by_disk, storage_error

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


def _stage_weights(engine: Any) -> dict[str, float]:
    stages = dict(getattr(engine, "stages", None) or DEFAULT_ENGINE_STAGES)
    stages.setdefault("load", 0.02)
    stages.update(FINISH_STAGES)
    return stages


def _finish(
    recon: Reconstruction, options: JobOptions, out: Path, ctx: JobContext
) -> dict[str, Any]:
    from backend.finishing import finish_to_glb

    tmp = out.with_name(out.name + ".part")
    try:
        stats = finish_to_glb(recon, options, tmp, ctx)
        os.replace(tmp, out)
    except BaseException:
        _discard(tmp)  # on a full disk a half-written file would keep the space taken
        raise
    return stats


def _discard(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


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


def run_job_dir(job_dir: Path, ctx: JobContext, on_part: Any = None) -> dict[str, Any]:
    """Run the job stored in ``job_dir``; write result.glb/result.json; return result.json.

    ``on_part(index, state, error_dict_or_None)`` is called for each part of a scene job.
    Raises BackendError (with a code) or Cancelled.
    """
    t0 = time.perf_counter()
    req = json.loads((job_dir / "request.json").read_text(encoding="utf-8"))
    options = JobOptions.model_validate(req["options"])
    engine_name = req["engine"]
    ctx.log(f"backend {__version__}, engine {engine_name}, options {options.model_dump_json()}")
    engine = get_engine(engine_name)
    ctx.stages = _stage_weights(engine)
    if req.get("kind", "object") == "scene":  # finishing runs once per part, inside "finish"
        for name in FINISH_STAGES:
            ctx.stages.pop(name)
        ctx.stages["finish"] = sum(FINISH_STAGES.values())
    ctx.stage("load")
    image = _read_png(job_dir / "image.png", "RGB")
    seed = int(req.get("seed", options.seed))
    result: dict[str, Any] = {
        "id": req.get("id"),
        "kind": req.get("kind", "object"),
        "backend_version": __version__,
        "seed": seed,
        "options": options.model_dump(mode="json"),
        "input": req.get("input", {}),
    }
    if req.get("kind", "object") == "object":
        mask = _read_png(job_dir / "mask.png", "L") > 127
        recon = engine.reconstruct(image, mask, seed, options, ctx)
        stats = _finish(recon, options, job_dir / "result.glb", ctx)
        result["state"] = "done"
        result.update(_object_result(recon, stats))
    else:
        result.update(_run_scene(job_dir, req, engine, image, seed, options, ctx, on_part))
    result["timings"] = {"total_s": time.perf_counter() - t0}
    result["peak_memory"] = {"rss_mb": peak_rss_mb()}
    write_json_atomic(job_dir / "result.json", result)
    return result


def _run_scene(job_dir, req, engine, image, seed, options, ctx, on_part) -> dict[str, Any]:
    from backend.finishing import export_scene_glb

    n = int(req["parts"])
    masks = [_read_png(job_dir / "masks" / f"{i}.png", "L") > 127 for i in range(n)]
    recons = engine.reconstruct_many(image, masks, seed, options, ctx)
    ctx.stage("finish")
    parts: list[dict[str, Any]] = []
    finished: list[tuple[str, Path]] = []
    camera = None
    for i, rec in enumerate(recons):
        name = f"object_{i}"
        if isinstance(rec, Exception):
            err = _error_dict(rec)
            parts.append({"index": i, "state": "failed", "error": err})
            if on_part:
                on_part(i, "failed", err)
            continue
        camera = camera or rec.intrinsics
        out = job_dir / "parts" / str(i) / "result.glb"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            stats = _finish(rec, options, out, ctx.part(i, len(recons), dict(FINISH_STAGES)))
        except Cancelled:
            raise
        except Exception as exc:  # one part's failure never costs the scene...
            if refused_by_disk(exc):
                raise  # ...but a full or read-only disk costs every part alike
            err = _error_dict(exc)
            parts.append({"index": i, "state": "failed", "error": err})
            if on_part:
                on_part(i, "failed", err)
            continue
        part = {"index": i, "state": "done", "name": name, "result": f"parts/{i}/result.glb"}
        part.update(_object_result(rec, stats))
        parts.append(part)
        finished.append((name, out))
        if on_part:
            on_part(i, "done", None)
    if not finished:
        first = next(p["error"] for p in parts if p.get("error"))
        raise BackendError(
            first["code"], "Every mask of the scene failed; the first: " + first["message"]
        )
    tmp = job_dir / "result.glb.part"
    try:
        export_scene_glb(finished, camera, "Camera", tmp)
        os.replace(tmp, job_dir / "result.glb")
    except BaseException:
        _discard(tmp)
        raise
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
