"""pipeline.yaml patching and the checkpoint-folder inspection (no torch, no weights).

``make_checkpoints`` writes a checkpoint folder shaped like upstream's Hugging Face
``checkpoints/`` (the keys upstream's ``InferencePipeline.__init__`` takes, a MoGe depth node
and DINOv2 condition embedders in the generator configs) with small placeholder files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from backend.engines.sam3d_config import (
    ConfigError,
    dinov2_code_dir,
    inspect_checkpoints,
    moge_local_path,
    patch_pipeline_config,
    prepare_pipeline_config,
)

SUBMODELS = [
    "ss_generator",
    "slat_generator",
    "ss_decoder",
    "slat_decoder_gs",
    "slat_decoder_gs_4",
    "slat_decoder_mesh",
]


def pipeline_dict() -> dict:
    cfg = {
        "_target_": "sam3d_objects.pipeline.inference_pipeline_pointmap.InferencePipelinePointMap",
        "rendering_engine": "nvdiffrast",
        "compile_model": True,
        "dtype": "float16",
        "decode_formats": ["gaussian", "mesh"],
        "depth_model": {
            "_target_": "sam3d_objects.pipeline.depth_models.moge.MoGe",
            "model": {
                "_target_": "moge.model.v1.MoGeModel.from_pretrained",
                "pretrained_model_name_or_path": "Ruicheng/moge-vitl",
            },
        },
        "ss_preprocessor": {
            "_target_": "sam3d_objects.data.dataset.tdfy.preprocessor.PreProcessor",
            "size": "${oc.env:SIZE,518}",
        },
    }
    for name in SUBMODELS:
        cfg[f"{name}_config_path"] = f"{name}.yaml"
        cfg[f"{name}_ckpt_path"] = f"{name}.ckpt"
    cfg["ss_encoder_config_path"] = None
    return cfg


def generator_dict(dino_model: str = "dinov2_vitl14_reg") -> dict:
    return {
        "module": {
            "generator": {
                "backbone": {
                    "_target_": "sam3d_objects.model.backbone.generator.flow_matching.model.FlowMatching"
                }
            },
            "condition_embedder": {
                "backbone": {
                    "_target_": "sam3d_objects.model.backbone.dit.embedder.embedder_fuser.EmbedderFuser",
                    "embedder_list": [
                        [
                            {
                                "_target_": "sam3d_objects.model.backbone.dit.embedder.dino.Dino",
                                "repo_or_dir": "facebookresearch/dinov2",
                                "dino_model": dino_model,
                                "source": "github",
                            },
                            [["image", "cropped"]],
                        ]
                    ],
                }
            },
        }
    }


def make_checkpoints(root: Path, *, with_assets: bool = True, skip: tuple[str, ...] = ()) -> Path:
    """A checkpoint folder as ``weights download`` leaves it (placeholder payloads)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pipeline.yaml").write_text(yaml.safe_dump(pipeline_dict(), sort_keys=False))
    for name in SUBMODELS:
        body = (
            generator_dict()
            if name.endswith("generator")
            else {"_target_": f"sam3d_objects.model.{name}.Model"}
        )
        if f"{name}.yaml" not in skip:
            (root / f"{name}.yaml").write_text(yaml.safe_dump(body))
        if f"{name}.ckpt" not in skip:
            (root / f"{name}.ckpt").write_bytes(b"\0" * 64)
    if with_assets:
        moge = moge_local_path(root, "Ruicheng/moge-vitl")
        moge.parent.mkdir(parents=True, exist_ok=True)
        moge.write_bytes(b"\0" * 32)
        code = dinov2_code_dir(root)
        code.mkdir(parents=True, exist_ok=True)
        (code / "hubconf.py").write_text("dependencies = ['torch']\n")
    return root


def test_complete_folder_inspects_ok(tmp_path):
    ckpt = make_checkpoints(tmp_path / "ckpt")
    st = inspect_checkpoints(ckpt)
    assert st.ok, (st.missing, st.problems)
    assert st.moge_repo == "Ruicheng/moge-vitl"
    assert st.dino_models == ["dinov2_vitl14_reg"]
    names = {p.name for p in st.referenced}
    assert {
        "ss_generator.ckpt",
        "slat_decoder_mesh.yaml",
        "model.pt",
        "hubconf.py",
    } <= names
    # the unused 4-Gaussian decoder and DINOv2 weight files are not required
    assert not any("gs_4" in n or n.endswith(".pth") for n in names)


def test_missing_pieces_are_each_named(tmp_path):
    ckpt = make_checkpoints(
        tmp_path / "ckpt",
        with_assets=False,
        skip=("slat_generator.ckpt", "slat_decoder_gs_4.ckpt", "slat_decoder_gs_4.yaml"),
    )
    st = inspect_checkpoints(ckpt)
    missing = {p.name for p in st.missing}
    assert missing == {"slat_generator.ckpt", "model.pt", "hubconf.py"}
    empty = inspect_checkpoints(tmp_path / "nothing")
    assert [p.name for p in empty.missing] == ["pipeline.yaml"]


def test_patches_and_local_paths(tmp_path):
    ckpt = make_checkpoints(tmp_path / "ckpt")
    out = tmp_path / "patched"
    path = prepare_pipeline_config(ckpt, out)
    cfg = yaml.safe_load(path.read_text())
    assert cfg["compile_model"] is False
    assert cfg["rendering_engine"] == "pytorch3d"
    # the shipped autocast dtype is kept: fp16 blocks + spconv (no bf16 kernels)
    assert cfg["dtype"] == "float16"
    # the 4-Gaussian decoder is never built
    assert cfg["slat_decoder_gs_4_config_path"] is None
    assert cfg["slat_decoder_gs_4_ckpt_path"] is None
    assert cfg["device"] == "cpu" and cfg["depth_model"]["device"] == "cpu"
    assert cfg["workspace_dir"] == str(ckpt.resolve())
    assert cfg["depth_model"]["model"]["pretrained_model_name_or_path"] == str(
        moge_local_path(ckpt.resolve(), "Ruicheng/moge-vitl")
    )
    # interpolations survive for OmegaConf to resolve
    assert cfg["ss_preprocessor"]["size"] == "${oc.env:SIZE,518}"
    # generator configs with DINOv2 are patched copies, referenced by absolute path
    for gen in ("ss_generator", "slat_generator"):
        p = Path(cfg[f"{gen}_config_path"])
        assert p.is_absolute() and p.parent == out.resolve()
        dino = yaml.safe_load(p.read_text())["module"]["condition_embedder"]["backbone"][
            "embedder_list"
        ][0][0]
        assert (
            dino["repo_or_dir"] == str(dinov2_code_dir(ckpt.resolve()))
            and dino["source"] == "local"
        )
        # architecture only: the checkpoint's condition_embedder.* are the weights
        assert dino["backbone_kwargs"] == {"pretrained": False}
        assert cfg[f"{gen}_ckpt_path"] == f"{gen}.ckpt"  # resolved against workspace_dir
    assert cfg["ss_decoder_config_path"] == "ss_decoder.yaml"  # untouched: no DINOv2 inside
    # the originals are untouched
    assert yaml.safe_load((ckpt / "pipeline.yaml").read_text())["compile_model"] is True


def test_unsafe_targets_are_refused(tmp_path):
    cfg = pipeline_dict()
    cfg["evil"] = {"_target_": "os.system", "command": "echo hi"}
    with pytest.raises(ConfigError, match="os.system"):
        patch_pipeline_config(cfg, make_checkpoints(tmp_path / "c"), tmp_path / "o")
    ckpt = make_checkpoints(tmp_path / "c2")
    sub = generator_dict()
    sub["module"]["generator"]["backbone"]["_target_"] = "subprocess.Popen"
    (ckpt / "ss_generator.yaml").write_text(yaml.safe_dump(sub))
    with pytest.raises(ConfigError, match="subprocess.Popen"):
        prepare_pipeline_config(ckpt, tmp_path / "o2")


def test_missing_local_assets_stop_patching_with_the_fix(tmp_path):
    ckpt = make_checkpoints(tmp_path / "c", with_assets=False)
    with pytest.raises(ConfigError, match="weights download --dest"):
        prepare_pipeline_config(ckpt, tmp_path / "o")
