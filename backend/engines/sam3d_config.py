"""Upstream's ``pipeline.yaml``, patched so a run needs no network, no conda, no nvdiffrast.

Pure Python (PyYAML): the engine's availability check, ``weights verify`` and the tests use
it without torch. The worker turns the patched dict into an OmegaConf config and lets Hydra
instantiate it, as upstream's notebook does.

Checkpoint folder layout (``SAM3D_CHECKPOINTS``, what ``python -m backend weights download``
writes)::

    <ckpt>/pipeline.yaml, ss_generator.yaml, ss_generator.ckpt, ...   upstream's checkpoints/
    <ckpt>/moge/<owner>--<name>/model.pt          MoGe depth model (repo named in pipeline.yaml)
    <ckpt>/dinov2/code/hubconf.py ...             DINOv2 torch.hub code, pinned commit (the
                                                  ViT architecture; its weights are in the
                                                  generator checkpoints)

Patches applied (``patch_pipeline_config``):

* ``compile_model: false`` - no torch.compile (minutes of warm-up, fragile across versions);
* ``rendering_engine: pytorch3d`` - upstream's own switch away from nvdiffrast;
* ``dtype`` is left as shipped (``float16``): it is the autocast dtype of both generators,
  whose blocks are already fp16 (``use_fp16: true``), and the latent generator's spconv
  convolutions have fp16 and fp32 kernels only - bf16 activations meeting fp16 blocks promote
  to fp32 and find no spconv kernel;
* ``slat_decoder_gs_4_*: null`` - the 4-Gaussians-per-voxel decoder is never used by a job,
  so it is neither built nor kept in memory;
* ``device: cpu`` for the pipeline and its depth model - every sub-model is BUILT on the CPU;
  the engine then points the pipeline at CUDA and the residency manager moves each stage's
  sub-models onto the GPU only while that stage runs;
* MoGe's ``pretrained_model_name_or_path`` -> the local ``model.pt``;
* DINOv2 nodes in the generator configs (``repo_or_dir: facebookresearch/dinov2``) -> the
  local code folder with ``source: local`` and ``backbone_kwargs: {pretrained: false}``: the
  architecture comes from the hub code, the weights from the generator checkpoint's
  ``condition_embedder.*`` entries (which overwrite whatever torch.hub would load), so no
  DINOv2 weight file is needed (patched copies of those YAML files are written to
  ``out_dir`` and pipeline.yaml points at them by absolute path);
* ``workspace_dir`` -> the checkpoint folder, so every relative checkpoint path resolves.

Every Hydra ``_target_`` must live in ``sam3d_objects``, ``torch``, ``torchvision`` or
``moge`` (the same rule as upstream's notebook); anything else is refused before Hydra
imports it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ALLOWED_TARGET_ROOTS = ("sam3d_objects", "torch", "torchvision", "moge")
DINOV2_HUB_REPO = "facebookresearch/dinov2"
#: DINOv2 code commit fetched by ``weights download`` (torch.hub code, Apache-2.0).
DINOV2_COMMIT = "b8931f7bf91576930313be2c6d6af376033b35f0"
DINOV2_CODE_URL = f"https://github.com/facebookresearch/dinov2/archive/{DINOV2_COMMIT}.zip"
DEFAULT_DINO_MODEL = "dinov2_vitl14_reg"
DEFAULT_MOGE_REPO = "Ruicheng/moge-vitl"
#: pipeline.yaml entries of sub-models no job uses (set to null: not built, not required).
UNUSED_SUBMODELS = ("slat_decoder_gs_4_config_path", "slat_decoder_gs_4_ckpt_path")


class ConfigError(ValueError):
    """pipeline.yaml (or a file it names) is missing, unreadable or unsafe."""


@dataclass
class AssetStatus:
    """What the checkpoint folder holds and lacks (paths absolute)."""

    checkpoints: Path
    pipeline_yaml: Path
    referenced: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    moge_repo: str = DEFAULT_MOGE_REPO
    dino_models: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.problems


# -- layout ---------------------------------------------------------------------------------
def moge_local_path(checkpoints: Path, repo_id: str) -> Path:
    return Path(checkpoints) / "moge" / repo_id.replace("/", "--") / "model.pt"


def dinov2_code_dir(checkpoints: Path) -> Path:
    return Path(checkpoints) / "dinov2" / "code"


def torch_home(checkpoints: Path) -> Path:
    return Path(checkpoints) / "torch"


# -- reading --------------------------------------------------------------------------------
def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a YAML mapping")
    return data


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def check_targets(cfg: dict[str, Any], source: str = "pipeline.yaml") -> None:
    """Refuse any Hydra ``_target_`` outside ``ALLOWED_TARGET_ROOTS``."""
    for node in _walk(cfg):
        target = node.get("_target_")
        if target is None:
            continue
        if not isinstance(target, str) or target.split(".", 1)[0] not in ALLOWED_TARGET_ROOTS:
            raise ConfigError(
                f"{source}: refusing to instantiate {target!r} (only {', '.join(ALLOWED_TARGET_ROOTS)})"
            )


def referenced_paths(cfg: dict[str, Any], include_unused: bool = False) -> dict[str, str]:
    """pipeline.yaml's ``*_config_path`` / ``*_ckpt_path`` entries that are set (without the
    ``UNUSED_SUBMODELS`` unless ``include_unused``)."""
    return {
        k: v
        for k, v in cfg.items()
        if (k.endswith("_config_path") or k.endswith("_ckpt_path"))
        and isinstance(v, str)
        and v
        and (include_unused or k not in UNUSED_SUBMODELS)
    }


def _is_dino_node(node: dict[str, Any]) -> bool:
    target = str(node.get("_target_", ""))
    return node.get("repo_or_dir") == DINOV2_HUB_REPO or target.endswith(".dino.Dino")


def dino_models(sub_cfgs: list[dict[str, Any]]) -> list[str]:
    """DINOv2 model names the generator configs load through torch.hub."""
    names: list[str] = []
    for cfg in sub_cfgs:
        for node in _walk(cfg):
            if _is_dino_node(node):
                name = str(node.get("dino_model", "dinov2_vitb14"))  # upstream's Dino default
                if name not in names:
                    names.append(name)
    return names


def moge_repo(cfg: dict[str, Any]) -> str:
    for node in _walk(cfg):
        v = node.get("pretrained_model_name_or_path")
        if isinstance(v, str) and v:
            return v
    return DEFAULT_MOGE_REPO


def _resolve(checkpoints: Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else Path(checkpoints) / p


def inspect_checkpoints(checkpoints: Path) -> AssetStatus:
    """Which files pipeline.yaml and the local-asset layout need, and which are missing.

    Cheap (reads a few small YAML files, stats the rest); never raises for a missing or
    broken folder - it reports it.
    """
    checkpoints = Path(checkpoints).expanduser().resolve()
    status = AssetStatus(checkpoints=checkpoints, pipeline_yaml=checkpoints / "pipeline.yaml")
    if not status.pipeline_yaml.is_file():
        status.missing.append(status.pipeline_yaml)
        return status
    try:
        cfg = read_yaml(status.pipeline_yaml)
    except ConfigError as exc:
        status.problems.append(str(exc))
        return status
    sub_cfgs: list[dict[str, Any]] = []
    for key, rel in referenced_paths(cfg).items():
        path = _resolve(checkpoints, rel)
        status.referenced.append(path)
        if not path.is_file():
            status.missing.append(path)
        elif key.endswith("_config_path"):
            try:
                sub_cfgs.append(read_yaml(path))
            except ConfigError as exc:
                status.problems.append(str(exc))
    status.moge_repo = moge_repo(cfg)
    status.dino_models = dino_models(sub_cfgs) or [DEFAULT_DINO_MODEL]
    locals_needed = [
        moge_local_path(checkpoints, status.moge_repo),
        dinov2_code_dir(checkpoints) / "hubconf.py",
    ]
    for path in locals_needed:
        status.referenced.append(path)
        if not path.is_file():
            status.missing.append(path)
    return status


# -- patching -------------------------------------------------------------------------------
def patch_pipeline_config(
    cfg: dict[str, Any],
    checkpoints: Path,
    out_dir: Path,
    build_device: str = "cpu",
) -> dict[str, Any]:
    """Return a patched copy of pipeline.yaml's dict (see the module doc for the patches).

    Writes patched copies of the generator configs that load DINOv2 into ``out_dir``.
    Raises ``ConfigError`` for unsafe targets or missing local assets.
    """
    checkpoints = Path(checkpoints).expanduser().resolve()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_targets(cfg)
    cfg = copy.deepcopy(cfg)
    cfg["compile_model"] = False
    cfg["rendering_engine"] = "pytorch3d"
    for key in UNUSED_SUBMODELS:
        cfg[key] = None
    cfg["device"] = build_device
    cfg["workspace_dir"] = str(checkpoints)

    repo = moge_repo(cfg)
    local_moge = moge_local_path(checkpoints, repo)
    for node in _walk(cfg):
        target = str(node.get("_target_", ""))
        if target.endswith("depth_models.moge.MoGe") or "depth_models" in target:
            node["device"] = build_device
        if (
            isinstance(node.get("pretrained_model_name_or_path"), str)
            and not Path(node["pretrained_model_name_or_path"]).is_absolute()
        ):
            if not local_moge.is_file():
                raise ConfigError(
                    f"the MoGe depth model is missing at {local_moge} "
                    f"(run: python -m backend weights download --dest {checkpoints})"
                )
            node["pretrained_model_name_or_path"] = str(local_moge)

    code_dir = dinov2_code_dir(checkpoints)
    for key, rel in referenced_paths(cfg).items():
        if not key.endswith("_config_path"):
            continue
        src = _resolve(checkpoints, rel)
        sub = read_yaml(src)
        check_targets(sub, source=src.name)
        dino_nodes = [n for n in _walk(sub) if _is_dino_node(n)]
        if not dino_nodes:
            continue
        if not (code_dir / "hubconf.py").is_file():
            raise ConfigError(
                f"the DINOv2 code is missing at {code_dir} "
                f"(run: python -m backend weights download --dest {checkpoints})"
            )
        for node in dino_nodes:
            node["repo_or_dir"] = str(code_dir)
            node["source"] = "local"
            kwargs = dict(node.get("backbone_kwargs") or {})
            kwargs["pretrained"] = False
            node["backbone_kwargs"] = kwargs
        dst = out_dir / src.name
        with open(dst, "w", encoding="utf-8") as fh:
            yaml.safe_dump(sub, fh, sort_keys=False)
        cfg[key] = str(dst.resolve())
    return cfg


def prepare_pipeline_config(checkpoints: Path, out_dir: Path, build_device: str = "cpu") -> Path:
    """Patch ``<checkpoints>/pipeline.yaml`` into ``<out_dir>/pipeline.yaml``; return its path."""
    checkpoints = Path(checkpoints).expanduser().resolve()
    cfg = read_yaml(checkpoints / "pipeline.yaml")
    patched = patch_pipeline_config(cfg, checkpoints, out_dir, build_device=build_device)
    dst = Path(out_dir) / "pipeline.yaml"
    with open(dst, "w", encoding="utf-8") as fh:
        yaml.safe_dump(patched, fh, sort_keys=False)
    return dst
