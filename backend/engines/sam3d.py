"""The ``sam3d`` engine: Meta's SAM 3D Objects on CUDA, with staged GPU residency.

Import-light: importing this module imports neither torch nor upstream. ``availability()``
checks packages with ``importlib.util.find_spec`` (no import), the GPU with ``nvidia-smi``
(``backend.gpu.probe``) and the weights by reading ``pipeline.yaml`` and stat-ing the files
it names; it lists every reason the engine cannot run, each with the command that fixes it.

At the first job (worker process only) the engine

1. sets ``LIDRA_SKIP_INIT`` (upstream's package init fails without it), ``HF_HUB_OFFLINE``
   (a run never touches the network), ``TORCH_HOME`` (inside the checkpoint folder), and the
   attention backends (``ATTN_BACKEND``/``SPARSE_ATTN_BACKEND``: flash_attn on compute
   capability >= 8.0 when installed, else xformers, else PyTorch's sdpa; variables already
   set by the user win). Upstream's attention modules read them when first imported, so the
   engine imports them before ``inference_pipeline`` (whose import would otherwise force
   flash_attn on A100/H100/H200 by GPU name). Nothing needs conda or ``CUDA_HOME``. When
   kaolin is not installed, its ``check_tensor`` (the only part upstream uses) is provided
   by ``backend.engines.sam3d_compat``;
2. patches ``pipeline.yaml`` (``backend.engines.sam3d_config``) and instantiates it with
   Hydra like upstream's notebook: every sub-model is built on the CPU, in the checkpoint's
   own dtypes (fp16 blocks stay fp16: spconv has no bf16 kernels), and each checkpoint file
   is read once (upstream reads each generator checkpoint twice, for the generator and for
   its condition embedder; here both reads share one memory-mapped load);
3. registers the sub-models with a ``ResidencyManager`` (``backend.gpu.residency``) whose
   forward hooks put only the running stage's weights on the GPU:
   depth (MoGe) -> condition_ss (DINOv2 embedder) -> sparse_structure (ss generator +
   decoder) -> condition_slat -> latent (slat generator) -> decode (mesh + Gaussian
   decoders, and the mesh decoder's dense FlexiCubes grids, which upstream allocates on
   CUDA outside any module: ``sam3d_compat.MeshGridSlot``) -> postprocess (no weights).
   Each stage's working memory beyond its weights is ``STAGE_HEADROOM_MB`` (measured on the
   real modules: ``bench/bench_sam3d_gpu.py``).

Layout post-optimisation is upstream's ``layout_post_optimization_method``; the shipped
``pipeline.yaml`` sets none, so it does not run (the pose is the generator's).

Each job's per-stage seconds, peak VRAM and the budget go into ``Reconstruction.meta``
(``timings``, ``peak_vram_mb``, ``vram``). CUDA out-of-memory -> ``out_of_memory`` with the
figures; missing weights -> ``weights_missing`` naming the paths; no CUDA -> ``no_gpu``.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from backend.config import checkpoints_dir, idle_unload_s, user_data_root, vram_budget_gb
from backend.engines.base import Availability, missing_modules
from backend.engines.sam3d_compat import (
    checkpoint_reads_once,
    mesh_grid_slot,
    pointmap_cv_to_p3d,
    provide_kaolin_check_tensor,
)
from backend.engines.sam3d_config import (
    ConfigError,
    inspect_checkpoints,
    prepare_pipeline_config,
    torch_home,
)
from backend.engines.sam3d_convert import convert_output, intrinsics_from_pointmap
from backend.errors import BackendError
from backend.gpu.probe import probe_gpus
from backend.install.plan import ENGINE_MODULES, MIN_COMPUTE_CAPABILITY, MIN_VRAM_MB
from backend.job_context import Cancelled, JobContext
from backend.options import PRESET_STEPS, JobOptions
from backend.reconstruction import Intrinsics, Reconstruction

#: Top-level modules the engine imports in the worker (checked with find_spec, not imported);
#: the installer's import check covers the same list.
REQUIRED_MODULES = ENGINE_MODULES

#: Stage -> registered sub-models (see the module doc); depth is switched by a wrapper.
STAGES: dict[str, list[str]] = {
    "condition_ss": ["ss_condition_embedder"],
    "sparse_structure": ["ss_generator", "ss_decoder"],
    "condition_slat": ["slat_condition_embedder"],
    "latent": ["slat_generator"],
    "decode": ["slat_decoder_mesh", "mesh_grid", "slat_decoder_gs"],
}
INSTALL_HINT = "run: python -m backend install --profile cuda"
#: Working memory (MiB) beyond a stage's weights, measured on the real modules with
#: bench/bench_sam3d_gpu.py (H200, shipped configs): every stage but decode stayed under
#: 0.9 GiB (MoGe 0.45, DINOv2 embedders 0.15-0.9, generators 0.25-0.5). Decode (FlexiCubes
#: extraction on the 256^3 grid, Gaussian decoding) grows with the sparse structure: 5.1 GiB
#: at 16k voxels, 5.5 GiB at 22k, 8.4 GiB at the pipeline's cap of 42k
#: (``decode_headroom_mb``).
DEFAULT_STAGE_HEADROOM_MB = 1024.0
#: The most voxels upstream's pipeline passes on (``max_coords`` in its inference utilities).
MAX_VOXELS = 42000
#: Decode's working memory = ``DECODE_BASE_MB + DECODE_PER_VOXEL_MB * voxels``: the line
#: through the 16k and 42k measurements (it over-estimates 22k by 0.4 GiB), plus 0.5 GiB.
DECODE_BASE_MB = 3167.0 + 512.0
DECODE_PER_VOXEL_MB = 0.1293


def decode_headroom_mb(voxels: int) -> float:
    """Working memory (MiB) the decode stage needs beyond its weights for ``voxels``."""
    return DECODE_BASE_MB + DECODE_PER_VOXEL_MB * max(0, int(voxels))


#: Per-stage working memory; decode's is re-sized from each job's voxel count as the stage
#: starts (``_decode_headroom``); this value, the cap's, applies when the count is unknown.
STAGE_HEADROOM_MB: dict[str, float] = {"decode": decode_headroom_mb(MAX_VOXELS)}


def _decode_headroom(args: tuple[Any, ...]) -> float | None:
    """Decode's working memory from the decoder's input: upstream's sparse tensor, whose
    ``coords`` hold one row per voxel (None when the input is something else)."""
    coords = getattr(args[0], "coords", None) if args else None
    shape = getattr(coords, "shape", None)
    return decode_headroom_mb(int(shape[0])) if shape else None


def _missing_modules(names: tuple[str, ...] = REQUIRED_MODULES) -> list[str]:
    return missing_modules(names)


def choose_attention_backend(
    compute_capability: tuple[int, int] | None, have_flash: bool, have_xformers: bool
) -> str:
    """Attention kernel for upstream's ``ATTN_BACKEND``/``SPARSE_ATTN_BACKEND``."""
    if have_flash and compute_capability is not None and compute_capability >= (8, 0):
        return "flash_attn"
    if have_xformers:
        return "xformers"
    return "sdpa"


def import_upstream(ckpt: Path, compute_capability: tuple[int, int] | None) -> None:
    """Environment and import order for upstream's package (step 1 of the module doc).

    Idempotent. The attention modules are imported first, so they read our
    ``ATTN_BACKEND`` before ``inference_pipeline``'s import-time ``set_attention_backend()``
    overrides it by GPU name.
    """
    os.environ["LIDRA_SKIP_INIT"] = "true"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TORCH_HOME"] = str(torch_home(ckpt))
    have_flash = importlib.util.find_spec("flash_attn") is not None
    have_xf = importlib.util.find_spec("xformers") is not None
    backend = choose_attention_backend(compute_capability, have_flash, have_xf)
    os.environ.setdefault("ATTN_BACKEND", backend)
    os.environ.setdefault(
        "SPARSE_ATTN_BACKEND",
        os.environ["ATTN_BACKEND"]
        if os.environ["ATTN_BACKEND"] in ("xformers", "flash_attn", "sdpa")
        else "sdpa",
    )
    os.environ.setdefault("SPARSE_BACKEND", "spconv")
    provide_kaolin_check_tensor()
    importlib.import_module("sam3d_objects")
    importlib.import_module("sam3d_objects.model.backbone.tdfy_dit.modules.attention")
    importlib.import_module("sam3d_objects.model.backbone.tdfy_dit.modules.sparse")
    importlib.import_module("sam3d_objects.pipeline.inference_pipeline_pointmap")


class Sam3DEngine:
    """SAM 3D Objects through upstream's ``InferencePipelinePointMap`` (see the module doc)."""

    name = "sam3d"
    #: Progress weights of this engine's stages (the worker adds finishing's).
    stages: dict[str, float] = {
        "load": 0.01,
        "load_models": 0.08,
        "depth": 0.04,
        "condition_ss": 0.01,
        "sparse_structure": 0.2,
        "condition_slat": 0.01,
        "latent": 0.25,
        "decode": 0.04,
        "postprocess": 0.02,
        "layout": 0.04,
        "convert": 0.01,
    }

    def __init__(
        self,
        checkpoints: Path | None = None,
        budget_gb: float | None = None,
        idle_s: float | None = None,
    ) -> None:
        self.checkpoints = Path(checkpoints) if checkpoints else None
        self.budget_gb = budget_gb
        self.idle_s = idle_s
        self._pipeline: Any = None
        self._mgr: Any = None
        self._ctx: JobContext | None = None
        self._lock = threading.RLock()
        self.load_seconds: float | None = None

    # -- availability ---------------------------------------------------------------------
    def _checkpoints(self) -> Path:
        return (self.checkpoints or checkpoints_dir()).expanduser()

    def availability(self) -> Availability:
        """Every reason this engine cannot run here (cheap; imports nothing heavy)."""
        reasons: list[str] = []
        details: dict[str, Any] = {"python": sys.executable}
        missing = _missing_modules()
        details["missing_packages"] = missing
        if missing:
            if "sam3d_objects" in missing:
                head = f"package sam3d_objects is not installed in {sys.executable}"
                others = [m for m in missing if m != "sam3d_objects"]
                if others:
                    head += f" (nor {', '.join(others[:6])}{'...' if len(others) > 6 else ''})"
            else:
                head = f"packages {', '.join(missing)} are not installed in {sys.executable}"
            reasons.append(f"{head} ({INSTALL_HINT})")
        probe = probe_gpus()
        details["gpus"] = [g.to_dict() for g in probe.gpus]
        if not probe.ok:
            reasons.append(probe.error)
        else:
            best = max(
                probe.gpus, key=lambda g: (g.compute_capability or (0, 0), g.memory_total_mb)
            )
            cc = best.compute_capability
            if cc is not None and cc < MIN_COMPUTE_CAPABILITY:
                reasons.append(
                    f"GPU {best.name} has compute capability {best.compute_capability_str}; SAM 3D needs "
                    f"{MIN_COMPUTE_CAPABILITY[0]}.{MIN_COMPUTE_CAPABILITY[1]} or newer (Volta or newer: RTX 20xx and later, V100, A-series)"
                )
            if best.memory_total_mb < MIN_VRAM_MB:
                reasons.append(
                    f"GPU {best.name} has {best.memory_total_mb} MiB of memory; SAM 3D needs at least "
                    f"{MIN_VRAM_MB} MiB even with staged loading"
                )
        ckpt = self._checkpoints()
        status = inspect_checkpoints(ckpt)
        details["checkpoints"] = str(status.checkpoints)
        details["missing_files"] = [str(p) for p in status.missing]
        fix = f"run: python -m backend weights download --dest {status.checkpoints}"
        if status.pipeline_yaml in status.missing:
            reasons.append(f"weights missing at {status.pipeline_yaml} ({fix})")
        elif status.missing:
            shown = ", ".join(str(p) for p in status.missing[:3])
            more = f" and {len(status.missing) - 3} more" if len(status.missing) > 3 else ""
            reasons.append(
                f"weights incomplete in {status.checkpoints}: missing {shown}{more} ({fix})"
            )
        for problem in status.problems:
            reasons.append(f"weights unreadable: {problem} ({fix})")
        if reasons:
            return Availability(False, "; ".join(reasons), details)
        gpu = max(probe.gpus, key=lambda g: g.memory_total_mb)
        return Availability(
            True,
            f"SAM 3D Objects on {gpu.name} ({gpu.memory_total_mb} MiB), weights in {status.checkpoints}",
            details,
        )

    # -- loading --------------------------------------------------------------------------
    def _enter_stage(self, name: str) -> None:
        if self._ctx is not None:
            self._ctx.stage(name)

    def _load(self, ctx: JobContext) -> None:
        if self._pipeline is not None:
            return
        ctx.stage("load_models")
        t0 = time.perf_counter()
        ckpt = self._checkpoints().resolve()
        status = inspect_checkpoints(ckpt)
        if not status.ok:
            paths = [str(p) for p in status.missing]
            what = f"missing {', '.join(paths[:4])}" if paths else "; ".join(status.problems)
            raise BackendError(
                "weights_missing",
                f"The SAM 3D weights in {ckpt} are incomplete: {what}. "
                f"Run: python -m backend weights download --dest {ckpt}",
                checkpoints=str(ckpt),
                missing=paths,
            )
        missing = _missing_modules()
        if missing:
            raise BackendError(
                "engine_unavailable",
                f"SAM 3D packages are not installed in {sys.executable}: {', '.join(missing)} ({INSTALL_HINT}).",
                missing_packages=missing,
            )
        import torch

        if not torch.cuda.is_available():
            raise BackendError(
                "no_gpu", "SAM 3D needs an NVIDIA GPU with CUDA; this worker sees none."
            )
        cc = torch.cuda.get_device_capability(0)
        import_upstream(ckpt, cc)
        try:
            cfg_path = prepare_pipeline_config(
                ckpt, user_data_root() / "sam3d_config", build_device="cpu"
            )
        except ConfigError as exc:
            raise BackendError("weights_missing", str(exc), checkpoints=str(ckpt)) from exc

        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        ctx.log(
            f"sam3d: building the pipeline from {cfg_path} (attention {os.environ.get('ATTN_BACKEND')})"
        )
        with checkpoint_reads_once():
            pipeline = instantiate(OmegaConf.load(cfg_path))
        cuda = torch.device("cuda")
        pipeline.device = cuda
        pipeline.depth_model.device = cuda

        self._attach(pipeline, ctx)
        self.load_seconds = time.perf_counter() - t0
        ctx.log(
            f"sam3d: pipeline ready in {self.load_seconds:.1f} s; sub-models on CPU: {self._mgr.names}"
        )

    def _attach(self, pipeline: Any, ctx: JobContext) -> None:
        """Register an instantiated upstream pipeline's sub-models for staged residency.

        Expects upstream's attributes: ``depth_model.model``, ``condition_embedders``
        (dict), ``models`` (ModuleDict) and the methods ``compute_pointmap``,
        ``run_post_optimization``, ``postprocess_slat_output`` (see the module doc).
        """
        from backend.gpu.residency import ResidencyManager, attach_stage_hooks

        budget = self.budget_gb if self.budget_gb is not None else vram_budget_gb()
        idle = self.idle_s if self.idle_s is not None else idle_unload_s()
        mgr = ResidencyManager(
            budget_gb=budget,
            idle_unload_s=idle,
            log=ctx.log,
            headroom_mb=DEFAULT_STAGE_HEADROOM_MB,
            stage_headroom_mb=STAGE_HEADROOM_MB,
        )
        mgr.register("depth_model", pipeline.depth_model.model)
        embedders = pipeline.condition_embedders
        for key in ("ss_condition_embedder", "slat_condition_embedder"):
            if embedders.get(key) is not None:
                mgr.register(key, embedders[key])
        for key in (
            "ss_generator",
            "ss_decoder",
            "slat_generator",
            "slat_decoder_mesh",
            "slat_decoder_gs",
        ):
            module = pipeline.models[key]
            if module is not None:
                mgr.register(key, module)
        grid = mesh_grid_slot(pipeline.models["slat_decoder_mesh"])
        if grid is not None:
            mgr.register("mesh_grid", grid)
        stages = {k: [n for n in v if n in mgr.names] for k, v in STAGES.items()}
        self._hooks = attach_stage_hooks(
            mgr,
            {k: v for k, v in stages.items() if v},
            headroom_from_args={"decode": _decode_headroom},
        )
        mgr.on_enter = self._enter_stage
        self._wrap_pipeline(pipeline, mgr)
        self._pipeline, self._mgr = pipeline, mgr

    def _wrap_pipeline(self, pipeline: Any, mgr: Any) -> None:
        """Stage switches for upstream methods that use no hooked module call."""
        compute_pointmap = pipeline.compute_pointmap
        run_post = pipeline.run_post_optimization
        postprocess = pipeline.postprocess_slat_output

        def compute_pointmap_staged(image: Any, pointmap: Any = None) -> Any:
            if pointmap is None:
                mgr.enter("depth", ["depth_model"])
            else:
                mgr.enter("pointmap_reuse", [])
            return compute_pointmap(image, pointmap)

        def run_post_staged(*args: Any, **kwargs: Any) -> Any:
            mgr.enter("layout", [])
            return run_post(*args, **kwargs)

        def postprocess_staged(*args: Any, **kwargs: Any) -> Any:
            mgr.enter("postprocess", [])
            return postprocess(*args, **kwargs)

        pipeline.compute_pointmap = compute_pointmap_staged
        pipeline.run_post_optimization = run_post_staged
        pipeline.postprocess_slat_output = postprocess_staged

    def unload(self) -> None:
        """Drop the pipeline (GPU and CPU memory); the next job loads it again."""
        with self._lock:
            if self._mgr is not None:
                self._mgr.release()
            self._pipeline = None
            self._mgr = None
            gc.collect()
            if "torch" in sys.modules:
                torch = sys.modules["torch"]
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    # -- running --------------------------------------------------------------------------
    @staticmethod
    def _rgba(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] < 3:
            raise BackendError(
                "bad_image", f"expected an RGB image (H, W, 3), got shape {image.shape}"
            )
        if mask.shape != image.shape[:2]:
            raise BackendError(
                "mask_size_mismatch",
                f"mask is {mask.shape[1]}x{mask.shape[0]}, image {image.shape[1]}x{image.shape[0]}",
            )
        if not mask.any():
            raise BackendError("empty_mask", "the mask selects no pixel")
        alpha = (mask.astype(np.uint8) * 255)[..., None]
        return np.ascontiguousarray(
            np.concatenate([image[..., :3].astype(np.uint8), alpha], axis=-1)
        )

    def _run_one(
        self, rgba: np.ndarray, seed: int, options: JobOptions, pointmap: Any = None
    ) -> dict[str, Any]:
        s1, s2 = PRESET_STEPS[options.quality]
        return self._pipeline.run(
            rgba,
            None,
            seed,
            stage1_only=False,
            with_mesh_postprocess=False,
            with_texture_baking=False,
            with_layout_postprocess=True,
            use_vertex_color=True,
            stage1_inference_steps=s1,
            stage2_inference_steps=s2,
            pointmap=pointmap,
            decode_formats=["mesh", "gaussian"],
        )

    def _finish_meta(
        self, rec: Reconstruction, options: JobOptions, extra: dict[str, Any] | None = None
    ) -> None:
        report = self._mgr.report()
        rec.meta["timings"] = report["timings"]
        rec.meta["peak_vram_mb"] = report["peak_vram_mb"]
        rec.meta["vram"] = report["vram"]
        rec.meta["quality"] = options.quality
        rec.meta["steps"] = list(PRESET_STEPS[options.quality])
        if self.load_seconds is not None:
            rec.meta["load_models_s"] = round(self.load_seconds, 2)
        if extra:
            rec.meta.update(extra)

    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        seed: int,
        options: JobOptions,
        ctx: JobContext,
        intrinsics: Intrinsics | None = None,
    ) -> Reconstruction:
        """One object. image (H, W, 3) uint8 sRGB, mask (H, W) bool; see the module doc."""
        rgba = self._rgba(image, mask)
        with self._lock:
            self._load(ctx)
            self._ctx = ctx
            self._mgr.reset_stats()
            try:
                with self._mgr.guard():
                    out = self._run_one(rgba, seed, options)
            finally:
                self._ctx = None
            ctx.stage("convert")
            rec = convert_output(out, image.shape[1], image.shape[0], intrinsics)
            self._finish_meta(rec, options)
            self.load_seconds = None  # reported once, with the job that paid for it
            return rec

    def _shared_pointmap(self, image: np.ndarray) -> Any:
        """MoGe once for the whole photo: (H, W, 3) tensor in PyTorch3D camera coordinates."""
        import torch

        pipeline = self._pipeline
        self._mgr.enter("depth", ["depth_model"])
        rgb = (
            torch.from_numpy(np.ascontiguousarray(image[..., :3]))
            .float()
            .div(255.0)
            .permute(2, 0, 1)
        )
        with torch.no_grad(), torch.autocast(device_type="cuda", dtype=pipeline.dtype):
            out = pipeline.depth_model(rgb)
        points = out["pointmaps"]  # (H, W, 3) OpenCV camera: X right, Y down, Z forward
        return pointmap_cv_to_p3d(points)

    def reconstruct_many(
        self,
        image: np.ndarray,
        masks: list[np.ndarray],
        seed: int,
        options: JobOptions,
        ctx: JobContext,
    ) -> list[Reconstruction | Exception]:
        """Several objects of one photo: MoGe runs once, every object shares its pointmap and
        the intrinsics fitted to it (one camera, one scale); a failing mask fails its slot."""
        results: list[Reconstruction | Exception] = []
        with self._lock:
            self._load(ctx)
            self._ctx = ctx
            try:
                self._mgr.reset_stats()
                with self._mgr.guard():
                    pointmap = self._shared_pointmap(image)
                depth = self._mgr.report()
                shared = intrinsics_from_pointmap(
                    pointmap.float().cpu().numpy(), image.shape[1], image.shape[0]
                )
                for i, mask in enumerate(masks):
                    try:
                        rgba = self._rgba(image, mask)
                        self._mgr.reset_stats()
                        with self._mgr.guard():
                            out = self._run_one(rgba, seed, options, pointmap=pointmap)
                        rec = convert_output(out, image.shape[1], image.shape[0], shared)
                        self._finish_meta(rec, options, {"shared_pointmap": True, "part": i})
                        rec.meta["timings"] = {**depth["timings"], **rec.meta["timings"]}
                        rec.meta["peak_vram_mb"] = max(
                            rec.meta["peak_vram_mb"], depth["peak_vram_mb"]
                        )
                        results.append(rec)
                    except Cancelled:
                        raise
                    except BackendError as exc:
                        results.append(exc)
                    except Exception as exc:  # one object's failure never costs the others
                        results.append(
                            BackendError("stage_failed", f"object {i}: {type(exc).__name__}: {exc}")
                        )
            finally:
                self._ctx = None
        return results
