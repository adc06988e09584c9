"""The finishing stage: ``Reconstruction`` -> simplified, UV-unwrapped, baked GLB.

Stages, each reported through ``JobContext.stage(name)`` / ``.progress(f)``:

* ``simplify`` - sanitize (NaN vertices, zero-area faces; ``degenerate_mesh`` when nothing
  is usable), optionally drop floaters and fill small holes, quadric decimation to the
  target face count (absolute triangles KEPT; ``target_ratio`` is the fraction KEPT).
* ``uv`` - chart segmentation + xatlas packing with padding (``backend.finishing.uv``).
* ``bake`` - base-colour transfer from the dense mesh into a ``texture_size``² texture
  (CPU numpy/scipy; the torch path when CUDA is available and torch is already loaded,
  see ``choose_bake_device``), gutter dilation.
* ``export`` - GLB writing (``backend.finishing.glb`` documents the layout).

Everything stays in the OBJECT frame (glTF +Y up, metres); the pose goes into the node's
extras. Failures raise ``BackendError``: ``degenerate_mesh`` for unusable input,
``stage_failed`` (``details["stage"]``) otherwise, ``out_of_memory`` on MemoryError. When
``uv`` or ``bake`` fails and ``FinishOptions.untextured_fallback`` is set, the mesh is
delivered with vertex colours instead and the stats say so (``textured: false``,
``bake_error``, a warning).
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.errors import BackendError
from backend.finishing.bake import DenseColorSource, bake_base_color, vertex_normals
from backend.finishing.glb import write_object_glb
from backend.finishing.mesh_prep import (
    edge_topology,
    fill_small_holes,
    is_watertight,
    remove_floaters,
    sanitize,
)
from backend.finishing.simplify import SimplifyJob, resolve_target
from backend.finishing.uv import unwrap
from backend.job_context import Cancelled, JobContext
from backend.memory import trim_heap
from backend.reconstruction import Reconstruction
from backend.storage import refused_by_disk

if TYPE_CHECKING:
    from backend.options import FinishOptions

STAGES = ("simplify", "uv", "bake", "export")
# Gap between UV charts, in texels of the requested texture size.
UV_PADDING_TEXELS = 4
# PNG zlib level: 1 encodes a filled 1024² texture ~5x faster than 6 for ~10 % more bytes.
PNG_COMPRESS_LEVEL = 1
# One bake at a time in this process: a bake already keeps every core busy and holds the
# largest working set of finishing (~130 MB for a 1024² texture), so parts finished side
# by side (``backend.finishing.parts``) overlap their other stages with it instead.
_BAKE_SLOT = threading.Lock()


def choose_bake_device() -> str:
    """``"cuda"`` when the torch bake can run, else ``"cpu"``.

    ``SAM3D_BAKE_DEVICE`` = ``cpu`` | ``cuda`` | ``auto`` (default). In ``auto`` the torch
    path is used only when torch is ALREADY imported in this process (the SAM 3D worker) and
    CUDA is available: importing torch just for the bake would cost more than it saves.
    """
    want = os.environ.get("SAM3D_BAKE_DEVICE", "auto").lower()
    if want == "cpu":
        return "cpu"
    if want == "auto" and "torch" not in sys.modules:
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:
        return "cpu"


@contextmanager
def _stage(name: str, ctx: JobContext | None, times: dict[str, float]) -> Iterator[None]:
    if ctx is not None:
        ctx.stage(name)
    t0 = time.perf_counter()
    try:
        yield
        if ctx is not None:
            ctx.progress(1.0)
    except (Cancelled, KeyboardInterrupt):
        raise
    except BackendError as e:
        e.details.setdefault("stage", name)
        raise
    except MemoryError as e:
        raise BackendError(
            "out_of_memory",
            f"Ran out of memory while finishing the mesh ({name} stage); try fewer target "
            "faces or a smaller texture.",
            stage=name,
        ) from e
    except OSError as e:
        if refused_by_disk(e):
            raise  # a full or read-only disk: the caller names the folder (disk_full, ...)
        raise _stage_failed(name, e) from e
    except Exception as e:
        raise _stage_failed(name, e) from e
    finally:
        times[name] = round(time.perf_counter() - t0, 4)


def _stage_failed(name: str, e: Exception) -> BackendError:
    return BackendError(
        "stage_failed",
        f"Mesh finishing failed in the {name} stage: {type(e).__name__}: {e}",
        stage=name,
        error=type(e).__name__,
    )


def _encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def finish_to_glb(
    recon: Reconstruction, options: FinishOptions, out_path: Path, ctx: JobContext | None = None
) -> dict:
    """Simplify -> UV -> bake -> export GLB at out_path. Returns stats JSON-serialisable dict:
    {"faces": int, "vertices": int, "source_faces": int, "textured": bool, "texture_size": int|None,
     "watertight": bool, "stage_seconds": {"simplify":..,"uv":..,"bake":..,"export":..}, "warnings": [str]}.
    Calls ctx.stage("simplify"|"uv"|"bake"|"export") and ctx.progress(f). Raises BackendError
    ("degenerate_mesh" for unusable input, "stage_failed" with details={"stage": name} otherwise).

    Extra stats keys: ``target_faces``, ``source_watertight``, ``uv_charts``,
    ``uv_utilization``, ``texture_coverage``, ``bake_device``, ``bake_error`` (only after an
    untextured fallback), ``total_seconds``. ``faces``/``vertices`` count the GLB's mesh
    (vertices split along UV seams when textured).
    """
    t_start = time.perf_counter()
    times: dict[str, float] = {s: 0.0 for s in STAGES}
    out_path = Path(out_path)
    warnings: list[str] = []
    stats: dict[str, Any] = {}

    with _stage("simplify", ctx, times):
        mesh = sanitize(recon.vertices, recon.faces, recon.vertex_colors)
        if options.remove_floaters:
            mesh = remove_floaters(mesh)
        # The decimation starts in a forked child now (see SimplifyJob), while this process
        # checks the topology and indexes the dense source for the colour transfer. Filling
        # holes changes the mesh, so then the child is replaced by one that decimates the
        # filled mesh; closed meshes (the usual case) have none to fill.
        target = resolve_target(mesh.n_faces, options.target_faces, options.target_ratio)
        job = SimplifyJob(mesh.vertices, mesh.faces, target)
        try:
            topo = edge_topology(mesh.faces, len(mesh.vertices))
            source_watertight = is_watertight(mesh.faces, len(mesh.vertices), topo)
            neighbours: np.ndarray | None = topo.neighbours
            if options.fill_holes and not source_watertight:
                filled = fill_small_holes(mesh, topo=topo)
                if filled is not mesh:
                    job.cancel()
                    mesh, neighbours = filled, None
                    target = resolve_target(
                        mesh.n_faces, options.target_faces, options.target_ratio
                    )
                    job = SimplifyJob(mesh.vertices, mesh.faces, target)
            warnings += mesh.warnings
            if ctx is not None:
                ctx.progress(0.1)
            want = options.target_faces if options.target_faces is not None else target
            if want > mesh.n_faces:
                warnings.append(
                    f"Target of {want} faces exceeds the source's {mesh.n_faces}; kept all faces."
                )
            source = DenseColorSource(mesh.vertices, mesh.faces, mesh.colors, neighbours)
        except BaseException:
            job.cancel()
            raise
        verts, faces = job.result()
        if len(faces) == 0:
            raise BackendError(
                "degenerate_mesh", "Simplification left no triangles; the mesh is too degenerate."
            )
        watertight = is_watertight(faces, len(verts))
        normals = vertex_normals(verts, faces)

    textured = False
    uv_mesh = None
    texture = None
    bake_device = None
    if options.bake:
        try:
            with _stage("uv", ctx, times):
                uv_mesh = unwrap(verts, faces, options.texture_size, UV_PADDING_TEXELS)
                stats["uv_charts"] = uv_mesh.charts
                stats["uv_utilization"] = round(uv_mesh.utilization, 4)
            with _BAKE_SLOT, _stage("bake", ctx, times):
                bake_device = choose_bake_device()
                progress = ctx.progress if ctx is not None else None
                bv = verts[uv_mesh.vmap]
                bn = normals[uv_mesh.vmap]
                result = None
                if bake_device == "cuda":
                    try:
                        from backend.finishing.bake_torch import bake_base_color_torch

                        result = bake_base_color_torch(
                            bv,
                            bn,
                            uv_mesh.faces,
                            uv_mesh.uv,
                            mesh.vertices,
                            mesh.faces,
                            mesh.colors,
                            options.texture_size,
                        )
                    except Exception as e:  # e.g. CUDA out of memory: the CPU bake still works
                        warnings.append(
                            f"The CUDA bake failed ({type(e).__name__}: {e}); baked on the CPU."
                        )
                        bake_device = "cpu"
                if result is None:
                    result = bake_base_color(
                        bv,
                        bn,
                        uv_mesh.faces,
                        uv_mesh.uv,
                        source,
                        options.texture_size,
                        progress=progress,
                    )
                texture = result.image
                stats["texture_coverage"] = round(result.coverage, 4)
            textured = True
        except BackendError as e:
            if not options.untextured_fallback or e.code in ("degenerate_mesh",):
                raise
            stage = e.details.get("stage", "bake")
            warnings.append(
                f"Texture baking failed in the {stage} stage ({e.message}); delivered the mesh "
                "with vertex colours instead."
            )
            stats["bake_error"] = e.to_dict()
            textured = False

    with _stage("export", ctx, times):
        stats.update(
            {
                "source_faces": int(len(recon.faces)),
                "target_faces": int(want),
                "textured": textured,
                "texture_size": int(options.texture_size) if textured else None,
                "watertight": bool(watertight),
                "source_watertight": bool(source_watertight),
                "bake_device": bake_device if textured else None,
            }
        )
        extras_stats = dict(stats)
        if textured:
            assert uv_mesh is not None and texture is not None
            positions = verts[uv_mesh.vmap]
            out_normals = normals[uv_mesh.vmap]
            out_faces = uv_mesh.faces
            png = _encode_png(texture)
            kwargs: dict[str, Any] = {"uv": uv_mesh.uv, "texture_png": png}
        else:
            colors = source.sample(verts, normals)
            positions, out_normals, out_faces = verts, normals, faces
            kwargs = {"colors_srgb": colors}
        extras_stats.update(
            {
                "faces": int(len(out_faces)),
                "vertices": int(len(positions)),
                "stage_seconds": {**times, "export": None},
                "warnings": list(warnings),
            }
        )
        extras = {
            "sam3d": {
                "pose": recon.pose.to_dict(),
                "intrinsics": recon.intrinsics.to_dict() if recon.intrinsics is not None else None,
                "stats": extras_stats,
                "engine": recon.meta.get("engine"),
            }
        }
        name = str(recon.meta.get("name") or "SAM3D_Object")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_object_glb(
            out_path,
            positions,
            out_normals,
            out_faces,
            extras=extras,
            name=name,
            double_sided=not watertight,
            **kwargs,
        )

    trim_heap()
    stats.update(
        {
            "faces": int(len(out_faces)),
            "vertices": int(len(positions)),
            "stage_seconds": dict(times),
            "warnings": warnings,
            "total_seconds": round(time.perf_counter() - t_start, 4),
        }
    )
    return stats
