"""A SAM 3D checkpoint folder with random weights, built by upstream's own constructors.

For the GPU run of the real pipeline without the gated weights (``bench_sam3d_gpu.py``).
Every sub-model is instantiated from the checkpoint configs with Hydra, exactly as upstream's
``InferencePipeline`` instantiates it, and saved in the format upstream's loader reads:

* ``ss_generator.ckpt`` / ``slat_generator.ckpt``: ``{"state_dict": {...}}`` holding the
  generator under ``_base_models.generator.`` and its condition embedder under
  ``_base_models.condition_embedder.`` (upstream filters and strips those prefixes and
  loads strictly: ``model/io.py``, ``init_ss_generator``, ``init_ss_condition_embedder``);
* decoders: a plain ``state_dict()`` (``state_dict_key=None``);
* MoGe: ``{"model_config": ..., "model": state_dict}`` (``MoGeModel.from_pretrained``), the
  config being MoGe's own v1 training config, at ``moge/<owner>--<name>/model.pt``;
* DINOv2: the torch.hub code copied to ``dinov2/code`` (our layout); no DINOv2 weights are
  written - the condition embedders' weights come from the generator checkpoints.

The dtypes are the constructors' own (``use_fp16: true`` blocks stay fp16), so file sizes
and load paths match the real checkpoints. Usage (needs torch, hydra, upstream on the path)::

    python bench/sam3d_random_weights.py --configs DIR --dinov2 DIR --moge-config JSON --dest DIR
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.engines.sam3d_config import (  # noqa: E402
    dinov2_code_dir,
    moge_local_path,
    moge_repo,
    referenced_paths,
)

GENERATORS = ("ss_generator", "slat_generator")
DECODERS = ("ss_decoder", "slat_decoder_gs", "slat_decoder_gs_4", "slat_decoder_mesh")


def _local_dino(node: Any, code_dir: Path) -> Any:
    """Copy of a config subtree whose DINOv2 nodes load the local hub code, unpretrained."""
    node = copy.deepcopy(node)
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            if str(cur.get("_target_", "")).endswith(".dino.Dino"):
                cur["repo_or_dir"] = str(code_dir)
                cur["source"] = "local"
                cur["backbone_kwargs"] = {"pretrained": False}
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return node


def _instantiate(cfg: Any) -> Any:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    return instantiate(OmegaConf.create(cfg))


def _save(obj: Any, path: Path) -> float:
    import torch

    tmp = path.with_suffix(path.suffix + ".part")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path.stat().st_size / 2**30


def write_generator(cfg_path: Path, ckpt: Path, code_dir: Path) -> dict[str, Any]:
    """Generator + condition embedder -> one Lightning-style checkpoint."""
    cfg = yaml.safe_load(cfg_path.read_text())["module"]
    gen = _instantiate(_local_dino(cfg["generator"]["backbone"], code_dir))
    emb = _instantiate(_local_dino(cfg["condition_embedder"]["backbone"], code_dir))
    state = {f"_base_models.generator.{k}": v for k, v in gen.state_dict().items()}
    state.update({f"_base_models.condition_embedder.{k}": v for k, v in emb.state_dict().items()})
    n_gen = sum(p.numel() for p in gen.parameters())
    n_emb = sum(p.numel() for p in emb.parameters())
    size = _save({"state_dict": state}, ckpt)
    return {"generator_params": n_gen, "embedder_params": n_emb, "gib": round(size, 2)}


def write_decoder(cfg_path: Path, ckpt: Path) -> dict[str, Any]:
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg.pop("pretrained_ckpt_path", None)
    model = _instantiate(cfg)
    n = sum(p.numel() for p in model.parameters())
    size = _save(model.state_dict(), ckpt)
    return {"params": n, "gib": round(size, 2)}


def write_moge(moge_config: Path, dest: Path) -> dict[str, Any]:
    from moge.model.v1 import MoGeModel

    model_config = json.loads(moge_config.read_text())["model"]
    model = MoGeModel(**model_config)
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = _save({"model_config": model_config, "model": model.state_dict()}, dest)
    return {"params": sum(p.numel() for p in model.parameters()), "gib": round(size, 2)}


def build(configs: Path, dinov2: Path, moge_config: Path, dest: Path) -> dict[str, Any]:
    """Write the whole folder (skips files already there); returns sizes and seconds."""
    import torch

    from backend.engines.sam3d import import_upstream

    dest.mkdir(parents=True, exist_ok=True)
    for yml in configs.glob("*.yaml"):
        shutil.copy2(yml, dest / yml.name)
    code_dir = dinov2_code_dir(dest)
    if not (code_dir / "hubconf.py").is_file():
        shutil.copytree(dinov2, code_dir, dirs_exist_ok=True)
    pipeline = yaml.safe_load((dest / "pipeline.yaml").read_text())
    paths = referenced_paths(pipeline, include_unused=True)
    report: dict[str, Any] = {}
    cc = torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
    import_upstream(dest, cc)  # the engine's environment and import order
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with device:  # random init on the GPU is seconds, not minutes
        for name in GENERATORS + DECODERS:
            ckpt = dest / paths[f"{name}_ckpt_path"]
            if ckpt.is_file():
                continue
            t0 = time.perf_counter()
            cfg_path = dest / paths[f"{name}_config_path"]
            if name in GENERATORS:
                report[name] = write_generator(cfg_path, ckpt, code_dir)
            else:
                report[name] = write_decoder(cfg_path, ckpt)
            report[name]["s"] = round(time.perf_counter() - t0, 1)
            torch.cuda.empty_cache() if device.type == "cuda" else None
        moge = moge_local_path(dest, moge_repo(pipeline))
        if not moge.is_file():
            t0 = time.perf_counter()
            report["moge"] = write_moge(moge_config, moge)
            report["moge"]["s"] = round(time.perf_counter() - t0, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", type=Path, required=True, help="pipeline.yaml + sub-configs")
    ap.add_argument("--dinov2", type=Path, required=True, help="DINOv2 torch.hub code folder")
    ap.add_argument("--moge-config", type=Path, required=True, help="MoGe configs/train/v1.json")
    ap.add_argument("--dest", type=Path, required=True)
    args = ap.parse_args(argv)
    report = build(args.configs, args.dinov2, args.moge_config, args.dest)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
