"""The sam3d engine's GPU glue, on a GPU, around a stand-in for upstream's pipeline object.

The weights are gated, so upstream's ``InferencePipelinePointMap`` cannot be built here. The
stand-in has its interface (``depth_model.model``, ``condition_embedders``, ``models``,
``compute_pointmap``, ``run``, ``postprocess_slat_output``, ``run_post_optimization``) and
calls its sub-models in upstream's order; the sub-models are synthetic modules sized like
the real ones (``tests/synthetic_models.py``), which fail if their weights are not on the GPU
when called. Its depth model returns a plane 3 m away seen through known intrinsics, in
OpenCV coordinates as MoGe does, and its pose puts a sphere where the mask is, in upstream's
PyTorch3D convention - so the engine's frame conversions are checked end to end too.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backend.engines.sam3d import Sam3DEngine  # noqa: E402
from backend.errors import BackendError  # noqa: E402
from backend.job_context import JobContext  # noqa: E402
from backend.options import JobOptions  # noqa: E402
from tests.synthetic_models import SAM3D_SIZES_GB, make_synthetic  # noqa: E402

pytestmark = pytest.mark.gpu

GB = 10**9
W, H, F, DEPTH = 640, 480, 800.0, 3.0
TOKENS = 2048


class FakeDepth:
    """MoGe-shaped: ``model`` on ``device``; returns OpenCV-frame points (H, W, 3)."""

    def __init__(self) -> None:
        self.model = make_synthetic(int(SAM3D_SIZES_GB["depth_model"] * GB))
        self.device = torch.device("cpu")
        self.calls = 0

    def __call__(self, rgb):
        self.calls += 1
        self.model(torch.randn(TOKENS, 4096, device=self.device, dtype=torch.bfloat16))
        h, w = rgb.shape[1:]
        v, u = torch.meshgrid(
            torch.arange(h, device=self.device) + 0.5,
            torch.arange(w, device=self.device) + 0.5,
            indexing="ij",
        )
        z = torch.full((h, w), DEPTH, device=self.device)
        pts = torch.stack([(u - w / 2) / F * z, (v - h / 2) / F * z, z], dim=-1)
        return {"pointmaps": pts, "intrinsics": None}


class FakeUpstream:
    """Upstream's pipeline interface, calling the sub-models in upstream's order."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.dtype = torch.bfloat16
        self.depth_model = FakeDepth()
        self.condition_embedders = {
            k: make_synthetic(int(SAM3D_SIZES_GB[k] * GB))
            for k in ("ss_condition_embedder", "slat_condition_embedder")
        }
        self.models = torch.nn.ModuleDict(
            {
                k: make_synthetic(int(SAM3D_SIZES_GB[k] * GB))
                for k in (
                    "ss_generator",
                    "ss_decoder",
                    "slat_generator",
                    "slat_decoder_mesh",
                    "slat_decoder_gs",
                    "slat_decoder_gs_4",
                )
            }
        )
        self.oom_in_latent = False

    def compute_pointmap(self, image, pointmap=None):
        if pointmap is None:
            rgb = torch.from_numpy(image[..., :3].copy()).float().div(255).permute(2, 0, 1)
            pts = self.depth_model(rgb)["pointmaps"]
            pts = pts * torch.tensor(
                [-1.0, -1.0, 1.0], device=pts.device
            )  # OpenCV -> PyTorch3D, as upstream
        else:
            pts = pointmap.to(self.device)
        return {"pointmap": pts.permute(2, 0, 1), "pts_color": None}

    def postprocess_slat_output(self, outputs, *a):
        outputs["glb"] = None
        return outputs

    def run_post_optimization(self, *a):
        return {}

    def run(self, image, mask, seed, *, pointmap=None, decode_formats=None, **kw):
        pm = self.compute_pointmap(image, pointmap)["pointmap"]  # (3, H, W), PyTorch3D frame
        x = torch.randn(TOKENS, 4096, device=self.device, dtype=torch.bfloat16)
        alpha = torch.from_numpy(image[..., 3] > 0)
        self.condition_embedders["ss_condition_embedder"](x)
        self.models["ss_generator"](x)
        self.models["ss_decoder"](x)
        ys, xs = torch.nonzero(alpha, as_tuple=True)
        cy, cx = int(ys.float().mean()), int(xs.float().mean())
        t = pm[:, cy, cx].float().cpu()
        self.condition_embedders["slat_condition_embedder"](x)
        self.models["slat_generator"](x)
        if self.oom_in_latent:
            torch.empty(40 * GB, dtype=torch.uint8, device=self.device)
        decoded = {
            "mesh": self.models["slat_decoder_mesh"](x),
            "gaussian": self.models["slat_decoder_gs"](x),
        }
        decoded = self.postprocess_slat_output(decoded)
        self.run_post_optimization()
        # a sphere in upstream's Z-up local frame, stood up by the pose: R^T = Rx(-90 deg)
        n = 400
        d = torch.randn(n, 3)
        verts = 0.3 * d / d.norm(dim=1, keepdim=True)
        faces = torch.randint(0, n, (2 * n, 3))
        return {
            "rotation": torch.tensor([[np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0]]),
            "translation": t.reshape(1, 3),
            "scale": torch.full((1, 3), 0.5),
            "mesh": [
                {
                    "vertices": verts.cuda(),
                    "faces": faces.cuda(),
                    "vertex_attrs": torch.rand(n, 6).cuda(),
                }
            ],
            "gaussian": [
                {
                    "get_xyz": verts,
                    "get_scaling": torch.full((n, 3), 0.01),
                    "get_rotation": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                    "get_opacity": torch.full((n, 1), 0.9),
                    "_features_dc": torch.zeros(n, 1, 3),
                }
            ],
            "pointmap": pm.permute(1, 2, 0)[::2, ::2].cpu(),
        }


@pytest.fixture(scope="module")
def engine():
    eng = Sam3DEngine(budget_gb=8.0, idle_s=0)
    pipe = FakeUpstream()
    pipe.device = torch.device("cuda")  # what _load does after building on the CPU
    pipe.depth_model.device = torch.device("cuda")
    eng._attach(pipe, JobContext())
    yield eng
    eng.unload()
    torch.cuda.set_per_process_memory_fraction(1.0)


def _inputs(centres):
    image = np.full((H, W, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    masks = [((xx - cx) ** 2 + (yy - cy) ** 2) < 40**2 for cx, cy in centres]
    return image, masks


def test_one_object_staged_under_budget_and_placed_on_its_mask(engine):
    image, (mask,) = _inputs([(420, 300)])
    stages = []
    ctx = JobContext(on_update=lambda s, f: stages.append(s))
    rec = engine.reconstruct(image, mask, 0, JobOptions(quality="fast"), ctx)
    meta = rec.meta
    assert list(meta["timings"]) == [
        "depth",
        "condition_ss",
        "sparse_structure",
        "condition_slat",
        "latent",
        "decode",
        "postprocess",
        "layout",
    ]
    assert [s for s in dict.fromkeys(stages)] == [
        "depth",
        "condition_ss",
        "sparse_structure",
        "condition_slat",
        "latent",
        "decode",
        "postprocess",
        "layout",
        "convert",
    ]
    assert 6.45 * GB / 2**20 <= meta["peak_vram_mb"] <= 8 * 1024
    assert engine._mgr.where("slat_generator") in ("cuda", "cpu")
    assert "slat_decoder_gs_4" not in engine._mgr.names  # never requested, never moved
    # frames: the sphere's centre projects onto the mask's centre, 3 m in front of the camera
    centre = rec.pose.apply(rec.vertices.astype(np.float64).mean(axis=0, keepdims=True))
    assert centre[0, 2] == pytest.approx(-DEPTH, abs=0.05)
    uv = rec.intrinsics.project(centre)[0]
    assert abs(uv[0] - 420) < 3 and abs(uv[1] - 300) < 3, uv
    assert rec.intrinsics.fx == pytest.approx(F, rel=1e-3)
    # the object stands up: local Z (upstream's up) is camera up
    up = rec.pose.apply(np.array([[0.0, 1.0, 0.0]])) - rec.pose.apply(np.zeros((1, 3)))
    np.testing.assert_allclose(up[0] / np.linalg.norm(up[0]), [0, 1, 0], atol=1e-6)
    print(
        "\nengine job:",
        {k: round(v, 2) for k, v in meta["timings"].items()},
        "peak",
        meta["peak_vram_mb"],
        "MiB",
    )


def test_several_masks_share_one_depth_pass(engine):
    image, masks = _inputs([(150, 200), (480, 330)])
    calls = engine._pipeline.depth_model.calls
    parts = engine.reconstruct_many(image, masks, 0, JobOptions(quality="fast"), JobContext())
    assert engine._pipeline.depth_model.calls == calls + 1
    assert all(not isinstance(p, Exception) for p in parts), parts
    assert parts[0].intrinsics == parts[1].intrinsics
    for p, (cx, cy) in zip(parts, [(150, 200), (480, 330)], strict=True):
        c = p.pose.apply(p.vertices.astype(np.float64).mean(axis=0, keepdims=True))
        uv = p.intrinsics.project(c)[0]
        assert abs(uv[0] - cx) < 3 and abs(uv[1] - cy) < 3
        assert "pointmap_reuse" in p.meta["timings"] and "depth" in p.meta["timings"]


def test_out_of_memory_in_a_stage_is_a_job_error(engine):
    image, (mask,) = _inputs([(320, 240)])
    engine._pipeline.oom_in_latent = True
    try:
        with pytest.raises(BackendError) as info:
            engine.reconstruct(image, mask, 0, JobOptions(), JobContext())
    finally:
        engine._pipeline.oom_in_latent = False
    err = info.value
    assert err.code == "out_of_memory" and err.details["stage"] == "latent"
    assert err.details["budget_mb"] == pytest.approx(8192, abs=1)
    assert torch.cuda.memory_allocated() < 512 * 2**20
    print("\nengine OOM:", err.message)
    # and the next job works
    rec = engine.reconstruct(image, mask, 0, JobOptions(quality="fast"), JobContext())
    assert len(rec.vertices) == 400
