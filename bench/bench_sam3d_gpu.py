"""The real SAM 3D Objects pipeline (random weights) through our ``sam3d`` engine, on a GPU.

What it proves: the engine, unchanged, runs upstream's own classes end to end - Hydra
instantiation of the real configs, checkpoint loading in upstream's format, MoGe, the DINOv2
embedders, both generators, spconv, both decoders - then our conversion and finishing to a
GLB, exactly as a worker runs a job (``python -m backend generate``, in-process). It then
checks our placed vertices and Gaussians against upstream's own composition of the same
outputs (``compose_transform`` + ``quaternion_to_matrix``, and the notebook's
``make_scene`` rotation rule) and prints, per run, seconds per stage, peak VRAM (PyTorch's
allocator and nvidia-smi), host RAM and load time.

Random weights make two things arbitrary, so the harness fixes them (and says so):

* the sparse structure's occupancy: the ss decoder's logits are replaced by a spherical
  shell of ``--voxels`` voxels (a realistic object, and the pipeline's cap of 42,000);
* MoGe's geometry: its points are replaced by a pinhole scene (f = 0.8 W, depth 2.5-4 m, the
  top quarter of the photo invalid like sky) after the real network ran.

Packages imported by upstream but never called on this path (``open3d``, ``pyvista``,
``pymeshfix``, ``igraph``, ``gsplat``) are replaced, when not installed, by recording
stand-ins; the report lists every call they saw (it must be empty).

Run it where CUDA is (sources in ``.upstream/``, see docs/SAM3D_ENGINE.md, "The GPU run")::

    python bench/bench_sam3d_gpu.py --upstream .upstream --work /tmp/sam3d-gpu [--quick]

Units: seconds, MiB (2**20 bytes), GiB budgets; errors relative to the object's size (the
diagonal of its placed bounding box).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STANDINS = ("open3d", "pyvista", "pymeshfix", "igraph", "gsplat")
REALISTIC_VOXELS = 16000
CAP_VOXELS = 42000
IMAGE_W, IMAGE_H = 1024, 768


# -- set-up -----------------------------------------------------------------------------------
def upstream_paths(upstream: Path, work: Path) -> list[Path]:
    return [
        upstream / "sam-3d-objects",
        upstream / "MoGe",
        upstream / "utils3d",
        work / "pytorch3d",
        work / "standins",
    ]


def build_pytorch3d(upstream: Path, work: Path) -> float:
    """PyTorch3D at the pinned commit, Pulsar left out, built in place; seconds (0: cached)."""
    from backend.install.pytorch3d_source import strip_pulsar

    dst = work / "pytorch3d"
    if list((dst / "pytorch3d").glob("_C*.so")):
        return 0.0
    shutil.copytree(upstream / "pytorch3d", dst, dirs_exist_ok=True)
    strip_pulsar(dst)
    env = dict(os.environ, FORCE_CUDA="1", MAX_JOBS=str(os.cpu_count() or 8))
    env.setdefault("TORCH_CUDA_ARCH_LIST", _arch())
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=dst,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def _arch() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return f"{major}.{minor}"


STANDIN_SOURCE = '''"""Recording stand-in for {name}: imported by upstream, never called on this path."""
import json, os

_LOG = os.environ.get("SAM3D_STANDIN_LOG")


def _record(what):
    if _LOG:
        with open(_LOG, "a") as fh:
            fh.write(json.dumps({{"module": "{name}", "use": what}}) + "\\n")


class _Recorder:
    def __init__(self, path):
        self._path = path

    def __getattr__(self, attr):
        return _Recorder(self._path + "." + attr)

    def __call__(self, *args, **kwargs):
        _record(self._path + "()")
        raise RuntimeError("{name} stand-in called: " + self._path)


def __getattr__(attr):
    if attr.startswith("__"):
        raise AttributeError(attr)
    return _Recorder("{name}." + attr)
'''


def write_standins(work: Path) -> list[str]:
    """Stand-ins for the packages in STANDINS that are not installed; returns their names."""
    import importlib.util

    made = []
    for name in STANDINS:
        if importlib.util.find_spec(name) is not None:
            continue
        pkg = work / "standins" / name
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(STANDIN_SOURCE.format(name=name))
        made.append(name)
    return made


def make_inputs(work: Path) -> dict[str, Path]:
    """A 1024x768 photo with four objects and their masks (the third one crosses the
    'sky' band that the MoGe hook marks invalid)."""
    from PIL import Image, ImageDraw

    d = work / "inputs"
    (d / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    img = (rng.integers(60, 200, (IMAGE_H, IMAGE_W, 3))).astype(np.uint8)
    photo = Image.fromarray(img)
    draw = ImageDraw.Draw(photo)
    shapes = [
        ("ellipse", (120, 380, 360, 640)),
        ("rectangle", (430, 420, 600, 700)),
        ("ellipse", (650, 80, 820, 420)),  # crosses the top quarter (invalid depth)
        ("rectangle", (860, 300, 990, 560)),
    ]
    colours = [(200, 40, 40), (40, 160, 60), (40, 60, 200), (220, 200, 40)]
    for i, ((kind, box), col) in enumerate(zip(shapes, colours, strict=True)):
        getattr(draw, kind)(box, fill=col)
        m = Image.new("L", (IMAGE_W, IMAGE_H), 0)
        getattr(ImageDraw.Draw(m), kind)(box, fill=255)
        m.save(d / "masks" / f"{i}.png")
    photo.save(d / "photo.png")
    shutil.copy2(d / "masks" / "0.png", d / "mask.png")
    return {"image": d / "photo.png", "mask": d / "mask.png", "masks": d / "masks"}


# -- hooks inside a job process ----------------------------------------------------------------
CAPTURED: list[dict[str, Any]] = []
RECONS: list[Any] = []


def shell_logits(shape: tuple[int, ...], voxels: int, device: Any, dtype: Any) -> Any:
    """Logits (+1 inside, -1 outside) of about ``voxels`` occupied voxels: concentric one-voxel
    shells two voxels apart, outermost first (every voxel keeps an empty neighbour, so
    upstream's pruning leaves the count as asked, up to the pipeline's cap)."""
    import torch

    res = shape[-1]
    ax = torch.arange(res, device=device, dtype=torch.float32) - (res - 1) / 2
    d = torch.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
    layer = torch.floor(d)
    candidate = (layer % 2 == 0) & (d < res * 0.46)
    dist = torch.where(candidate, d, torch.full_like(d, -1.0)).flatten()
    k = min(voxels, int(candidate.sum()))
    keep = torch.zeros_like(dist, dtype=torch.bool)
    keep[torch.topk(dist, k).indices] = True
    out = torch.where(keep.view(d.shape), 1.0, -1.0).to(dtype)
    return out.expand(*shape).contiguous()


def synthetic_points(h: int, w: int, device: Any) -> tuple[Any, Any]:
    """OpenCV-camera points (h, w, 3) of a pinhole scene and its validity mask (see module doc)."""
    import torch

    f = 0.8 * w
    v, u = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32) + 0.5,
        torch.arange(w, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    z = 2.5 + 1.5 * (1.0 - v / h)
    pts = torch.stack([(u - w / 2) / f * z, (v - h / 2) / f * z, z], dim=-1)
    valid = v >= h / 4
    pts = torch.where(valid[..., None], pts, torch.full_like(pts, float("inf")))
    return pts, valid


def install_hooks(voxels: int, ckpt: Path) -> None:
    """Occupancy and depth control, and spies on upstream's outputs and our engine's (after
    the engine's own environment and import order, so upstream is imported as in a job)."""
    import torch

    from backend.engines.sam3d import import_upstream

    import_upstream(ckpt, torch.cuda.get_device_capability(0))
    from moge.model.v1 import MoGeModel
    from sam3d_objects.model.backbone.tdfy_dit.models import sparse_structure_vae as ssv
    from sam3d_objects.pipeline.inference_pipeline_pointmap import InferencePipelinePointMap

    from backend.engines.sam3d import Sam3DEngine

    dec_cls = ssv.SparseStructureDecoderTdfyWrapper
    dec_forward = dec_cls.forward

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = dec_forward(self, *args, **kwargs)
        return shell_logits(tuple(out.shape), voxels, out.device, out.dtype)

    dec_cls.forward = forward

    infer = MoGeModel.infer

    def infer_hooked(self: Any, image: Any, *args: Any, **kwargs: Any) -> Any:
        out = infer(self, image, *args, **kwargs)
        h, w = image.shape[-2:]
        pts, valid = synthetic_points(h, w, image.device)
        out["points"] = pts.to(out["points"].dtype) if out["points"].dim() == 3 else pts[None]
        out["mask"] = valid if out["mask"].dim() == 2 else valid[None]
        out["depth"] = torch.where(valid, pts[..., 2], torch.full_like(pts[..., 2], float("inf")))
        return out

    MoGeModel.infer = infer_hooked

    run = InferencePipelinePointMap.run

    def run_spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = run(self, *args, **kwargs)
        gs = out["gaussian"][0]
        CAPTURED.append(
            {
                "rotation": out["rotation"].detach().double().cpu(),
                "translation": out["translation"].detach().double().cpu(),
                "scale": out["scale"].detach().double().cpu(),
                "vertices": out["mesh"][0].vertices.detach().double().cpu(),
                "gs_xyz": gs.get_xyz.detach().double().cpu(),
                "gs_rot": gs.get_rotation.detach().double().cpu(),
                "gs_scaling": gs.get_scaling.detach().double().cpu(),
                "voxels": int(out["coords"].shape[0]),
            }
        )
        return out

    InferencePipelinePointMap.run = run_spy

    for name in ("reconstruct", "reconstruct_many"):
        original = getattr(Sam3DEngine, name)

        def spy(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            result = _original(self, *args, **kwargs)
            RECONS.extend(result if isinstance(result, list) else [result])
            return result

        setattr(Sam3DEngine, name, spy)


def compare_with_upstream(captured: dict[str, Any], rec: Any) -> dict[str, float]:
    """Max errors of our placed geometry against upstream's composition (module doc)."""
    from pytorch3d.transforms import quaternion_invert, quaternion_multiply, quaternion_to_matrix
    from sam3d_objects.data.dataset.tdfy.transforms_3d import compose_transform

    from backend.engines.sam3d_convert import P3D_TO_GL
    from backend.reconstruction import quat_wxyz_to_matrix

    q, t, s = captured["rotation"], captured["translation"], captured["scale"]
    tfm = compose_transform(scale=s, rotation=quaternion_to_matrix(q), translation=t)
    theirs = tfm.transform_points(captured["vertices"][None])[0].numpy()
    r_o = quat_wxyz_to_matrix(np.asarray(rec.pose.rotation, float))
    ours_c = np.asarray(rec.vertices, float) @ r_o.T + np.asarray(rec.pose.translation, float)
    ours = ours_c @ np.linalg.inv(P3D_TO_GL).T
    size = float(np.linalg.norm(theirs.max(0) - theirs.min(0)))
    out = {"object_size": size, "vertex_err_rel": float(np.abs(ours - theirs).max() / size)}
    if rec.gaussians is not None:
        g = rec.gaussians
        theirs_g = tfm.transform_points(captured["gs_xyz"][None])[0].numpy()
        ours_g = (np.asarray(g.positions, float) @ r_o.T + np.asarray(rec.pose.translation)) @ (
            np.linalg.inv(P3D_TO_GL).T
        )
        ok = np.isfinite(ours_g).all(1) & np.isfinite(theirs_g).all(1)
        out["gaussians"] = float(len(ok))
        out["gaussians_nonfinite"] = float((~ok).sum())
        same_nonfinite = np.array_equal(~np.isfinite(ours_g), ~np.isfinite(theirs_g))
        out["nonfinite_agree"] = float(same_nonfinite)
        out["gaussian_pos_err_rel"] = float(np.abs(ours_g[ok] - theirs_g[ok]).max() / size)
        rot_theirs = quaternion_to_matrix(
            quaternion_multiply(quaternion_invert(q), captured["gs_rot"])
        ).numpy()
        rot_ours = np.einsum(
            "ij,njk->nik",
            np.linalg.inv(P3D_TO_GL) @ r_o,
            np.stack([quat_wxyz_to_matrix(r) for r in np.asarray(g.rotations, float)]),
        )
        out["gaussian_rot_err"] = float(np.nanmax(np.abs(rot_ours - rot_theirs)))
        scale_theirs = (captured["gs_scaling"] * s.reshape(1, -1)[:, :1]).numpy()
        out["gaussian_scale_err_rel"] = float(
            np.nanmax(np.abs(np.asarray(g.scales, float) - scale_theirs)) / size
        )
    return out


class HostMemory:
    """Peak private (anonymous) and file-backed resident memory of this process, MiB.

    ``ru_maxrss`` counts memory-mapped checkpoint pages too (page cache the kernel can drop),
    so the anonymous peak is the figure that says what a job really holds."""

    def __init__(self) -> None:
        self.anon = 0.0
        self.file = 0.0

    def sample(self) -> None:
        try:
            fields = dict(
                line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
            )
            self.anon = max(self.anon, int(fields["RssAnon"].split()[0]) / 1024)
            self.file = max(self.file, int(fields["RssFile"].split()[0]) / 1024)
        except (OSError, KeyError, ValueError):
            pass


HOST_PEAK = HostMemory()


class SmiSampler:
    """Peak of nvidia-smi's memory.used (MiB) on this process's GPU (the first of
    ``CUDA_VISIBLE_DEVICES``, in PCI bus order; else GPU 0) over the sampler's life, less its
    start."""

    def __init__(self, period_s: float = 0.1) -> None:
        self.period = period_s
        self.base = self._read()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def _read() -> float:
        try:
            out = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=memory.used",
                    "--format=csv,noheader,nounits",
                    "-i",
                    os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0",
                ],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            return float(out.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return float("nan")

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            v = self._read()
            if v == v:
                self.peak = max(self.peak, v)
            HOST_PEAK.sample()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak - self.base


def run_job(args: argparse.Namespace) -> int:
    """One process: load the engine, run ``args.repeat`` jobs, write the figures as JSON."""
    os.environ["SAM3D_CHECKPOINTS"] = str(args.ckpt)
    os.environ["SAM3D_DATA_DIR"] = str(args.work / "data")
    if args.budget:
        os.environ["SAM3D_VRAM_BUDGET_GB"] = str(args.budget)
    else:
        os.environ.pop("SAM3D_VRAM_BUDGET_GB", None)
    install_hooks(args.voxels, args.ckpt)
    from backend.cli import main as cli_main

    inputs = make_inputs(args.work)
    runs = []
    for i in range(args.repeat):
        CAPTURED.clear()
        RECONS.clear()
        out_glb = args.work / f"out_{args.tag}_{i}.glb"
        report = args.work / f"report_{args.tag}_{i}.json"
        cmd = ["generate", "--engine", "sam3d", "--image", str(inputs["image"])]
        cmd += ["--masks", str(inputs["masks"])] if args.scene else ["--mask", str(inputs["mask"])]
        cmd += ["--out", str(out_glb), "--report", str(report), "--seed", "1"]
        smi = SmiSampler()
        t0 = time.perf_counter()
        rc = cli_main(cmd)
        wall = time.perf_counter() - t0
        smi_peak = smi.stop()
        result = json.loads(report.read_text()) if report.is_file() else {}
        errs = [compare_with_upstream(c, r) for c, r in zip(CAPTURED, RECONS, strict=False)]
        runs.append(
            {
                "rc": rc,
                "wall_s": round(wall, 2),
                "smi_peak_mb": round(smi_peak, 1),
                "voxels": [c["voxels"] for c in CAPTURED],
                "errors": errs,
                "result": result,
                "glb_bytes": out_glb.stat().st_size if out_glb.is_file() else 0,
            }
        )
    payload = {
        "tag": args.tag,
        "budget_gb": args.budget,
        "voxels_requested": args.voxels,
        "scene": args.scene,
        "host_rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "host_anon_peak_mb": round(HOST_PEAK.anon, 1),
        "host_file_peak_mb": round(HOST_PEAK.file, 1),
        "runs": runs,
    }
    Path(args.json).write_text(json.dumps(payload, indent=1, default=str))
    return 0


# -- orchestration ------------------------------------------------------------------------------
PLANS = {
    # tag: (budget GiB or 0 = unbounded, voxels, scene, repeat)
    "unbounded": (0, REALISTIC_VOXELS, False, 2),
    "once": (0, REALISTIC_VOXELS, False, 1),
    "cap": (0, CAP_VOXELS, False, 1),
    "scene4": (0, REALISTIC_VOXELS, True, 1),
    "b16": (16, REALISTIC_VOXELS, False, 1),
    "b12": (12, REALISTIC_VOXELS, False, 1),
    "b8": (8, REALISTIC_VOXELS, False, 1),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", type=Path, default=ROOT / ".upstream")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sam3d-gpu"))
    ap.add_argument("--plans", default=",".join(PLANS), help="comma-separated: " + ",".join(PLANS))
    ap.add_argument(
        "--configs",
        default="configs",
        help="folder under --upstream holding pipeline.yaml and the sub-configs",
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON figures here")
    ap.add_argument(
        "--parallel",
        action="store_true",
        help="run plans side by side, one per GPU (each plan's figures are its own GPU's)",
    )
    ap.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tag", default="", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--voxels", type=int, default=REALISTIC_VOXELS, help=argparse.SUPPRESS)
    ap.add_argument("--scene", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.work = args.work.resolve()
    if args.job:
        return run_job(args)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark runs the real pipeline on a GPU")
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    paths = upstream_paths(args.upstream.resolve(), args.work)
    for p in reversed(paths):
        sys.path.insert(0, str(p))
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(p) for p in paths] + [str(ROOT)] + inherited)
    )
    env["SAM3D_STANDIN_LOG"] = str(args.work / "standin_calls.jsonl")
    env.setdefault("PYTHONUNBUFFERED", "1")
    setup: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    setup["standins"] = write_standins(args.work)
    t0 = time.perf_counter()
    setup["pytorch3d_build_s"] = round(build_pytorch3d(args.upstream.resolve(), args.work), 1)
    ckpt = args.work / f"ckpt-{args.configs}"
    t0 = time.perf_counter()
    done_marker = ckpt / ".random-weights-complete"  # a folder from an earlier call is reused
    if not done_marker.is_file():
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "sam3d_random_weights.py"),
                "--configs",
                str(args.upstream / args.configs),
                "--dinov2",
                str(args.upstream / "dinov2"),
                "--moge-config",
                str(args.upstream / "MoGe" / "configs" / "train" / "v1.json"),
                "--dest",
                str(ckpt),
            ],
            env=env,
            check=True,
        )
        done_marker.touch()
    setup["random_weights_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(setup), flush=True)
    results: dict[str, Any] = {"setup": setup, "configs": args.configs}
    print(f"configs: {args.upstream / args.configs}")
    tags = [t for t in args.plans.split(",") if t]
    gpus = torch.cuda.device_count() if args.parallel else 1
    for first in range(0, len(tags), gpus):  # one plan per GPU at a time
        batch = tags[first : first + gpus]
        running = []
        for gpu, tag in enumerate(batch):
            budget, voxels, scene, repeat = PLANS[tag]
            out_json = args.work / f"job_{args.configs}_{tag}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--job", "--tag", tag]
            cmd += ["--work", str(args.work), "--ckpt", str(ckpt), "--json", str(out_json)]
            cmd += ["--budget", str(budget), "--voxels", str(voxels), "--repeat", str(repeat)]
            cmd += ["--scene"] if scene else []
            plan_env = env
            if gpus > 1:
                plan_env = dict(env, CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=str(gpu))
            proc = subprocess.Popen(
                cmd, env=plan_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            running.append((tag, out_json, proc, time.perf_counter()))
        for tag, out_json, proc, t0 in running:
            output, _ = proc.communicate()
            took = time.perf_counter() - t0
            log = output[-6000:]
            (args.work / f"job_{args.configs}_{tag}.log").write_text(output)
            if proc.returncode != 0 or not out_json.is_file():
                print(
                    f"== {tag}: FAILED rc={proc.returncode} after {took:.0f} s\n{log}", flush=True
                )
                results[tag] = {"failed": True, "rc": proc.returncode, "log_tail": log[-3000:]}
                continue
            results[tag] = json.loads(out_json.read_text())
            print_plan(tag, results[tag], took)
    calls = args.work / "standin_calls.jsonl"
    results["standin_calls"] = calls.read_text().splitlines() if calls.is_file() else []
    print(f"stand-ins: {setup['standins']}; calls they saw: {results['standin_calls'] or 'none'}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


def print_plan(tag: str, data: dict[str, Any], took: float) -> None:
    budget = f"{data['budget_gb']:g} GiB" if data["budget_gb"] else "unbounded"
    print(
        f"\n== {tag}: budget {budget}, process {took:.0f} s, host RSS peak "
        f"{data['host_rss_peak_mb']:.0f} MiB (private {data.get('host_anon_peak_mb', 0):.0f}, "
        f"mapped files {data.get('host_file_peak_mb', 0):.0f})"
    )
    for i, run in enumerate(data["runs"]):
        res = run["result"]
        objs = res.get("parts") or [res]
        print(
            f"  run {i}: rc {run['rc']}, wall {run['wall_s']} s, nvidia-smi peak +{run['smi_peak_mb']:.0f} MiB, "
            f"voxels {run['voxels']}, GLB {run['glb_bytes'] / 1e6:.2f} MB"
        )
        for j, obj in enumerate(objs):
            meta = obj.get("engine_meta", {})
            timings = dict(obj.get("engine_timings") or {})
            vram = (meta.get("vram") or {}).get("stages", {})
            for stage, sec in ((obj.get("stats") or {}).get("stage_seconds") or {}).items():
                timings[f"finish:{stage}"] = sec
            print(
                f"    object {j}: load {meta.get('load_models_s', '-')} s, peak VRAM {meta.get('peak_vram_mb', '-')} MiB"
            )
            print(
                f"      {'stage':<18}{'s':>8}{'alloc MiB':>11}{'reserved MiB':>14}{'weights MiB':>13}"
            )
            for stage, sec in timings.items():
                st = vram.get(stage, {})
                print(
                    f"      {stage:<18}{sec:>8.2f}{st.get('peak_allocated_mb', 0):>11.0f}"
                    f"{st.get('peak_reserved_mb', 0):>14.0f}{st.get('weights_mb', 0):>13.0f}"
                )
        for j, err in enumerate(run["errors"]):
            print(f"    vs upstream, object {j}: " + str({k: f"{v:.2e}" for k, v in err.items()}))


if __name__ == "__main__":
    raise SystemExit(main())
