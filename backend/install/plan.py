"""The installer's ordered, pinned plan (pure data: commands as argv lists, no side effects).

Profiles
--------
``cuda121`` (linux-64; windows-64 best effort) - upstream's own stack (torch 2.5.1 on CUDA
12.1), for GPUs of compute capability 7.0 to 9.0 (RTX 20xx-40xx, V100, A100, H100/H200), in
this order:

1. ``venv``          the backend venv, Python 3.11 (``uv venv`` when uv is present, else
                     ``python3.11 -m venv``);
2. ``build-tools``   setuptools, wheel, ninja, packaging, psutil in the venv (source builds use
                     ``--no-build-isolation`` and need them there);
3. ``torch``         torch 2.5.1 / torchvision 0.20.1 / torchaudio 2.5.1 from the cu121
                     PyTorch index - first, so nothing later pulls a CPU torch;
4. ``cuda-wheels``   prebuilt CUDA extensions matching that torch: xformers 0.0.28.post3
                     (cu121 index, ``--no-deps``), spconv-cu121 2.3.8, kaolin 0.17.0 (NVIDIA's
                     find-links page for torch-2.5.1_cu121);
5. ``cuda-builds``   source builds against that torch with ``TORCH_CUDA_ARCH_LIST`` set from
                     the detected GPUs: pytorch3d and gsplat at the commits upstream pins, and
                     flash_attn 2.8.3 on compute capability >= 8.0 (its setup fetches a
                     prebuilt wheel when one matches);
6. ``runtime-deps``  the pure-Python / binary packages upstream imports at inference time,
                     with upstream's pins where it has them;
7. ``sam3d-objects`` upstream at commit cf06676 with ``--no-deps`` (its requirements.txt
                     would pull ~100 training/dev packages and a second torch);
8. ``moge-utils3d``  utils3d and MoGe at the commits upstream pins (``--no-deps``: a newer
                     utils3d renamed ``depth_edge`` and breaks MoGe's import);
9. ``hydra-patch``   upstream's required Hydra fix (hydra PR 2863): ``hydra/core/utils.py``
                     replaced by the file at the pinned commit, only on hydra-core 1.3.2;
10. ``sam2``        click-to-mask: SAM 2.1 (the ``sam2`` package, 1.1.0, built against the
                     venv's torch without its optional CUDA extension) and iopath;
11. ``backend``      this project (``pip install <source>``): server, preview engine,
                     finishing, GrabCut click-to-mask (OpenCV).

``cuda128`` - the same steps on a current stack, for GPUs that torch 2.5.1/CUDA 12.1 cannot
drive (compute capability 10.0 and newer: RTX 50xx is 12.0, B200 10.0): torch 2.7.1 from the
cu128 index; spconv-cu126 (its CUDA 12.6 build runs on 12.8 drivers); no xformers, no
flash_attn (attention through PyTorch's sdpa); no kaolin (the engine provides the one function
upstream uses, ``backend.engines.sam3d_compat``); pytorch3d fetched at the pinned commit,
stripped of Pulsar (``backend.install.pytorch3d_source``: it fails to link with CUDA 12.8+) and
built from that folder; gsplat installed without its CUDA extension (``BUILD_NO_CUDA=1``: it is
imported by upstream but never called by a job, and its kernels JIT-compile on first use).

``cuda`` picks one of the two from the detected GPUs (``choose_profile``); ``cpu`` - what the
preview engine and finishing need: ``venv`` then ``backend``.

After the steps, every module the profile needs is imported in the new venv and each
failure is reported by name (``IMPORT_CHECK``).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

PYTHON_VERSION = "3.11"
#: The cpu profile (preview engine, finishing, server) runs on any Python from this one up.
CPU_MIN_PYTHON = (3, 10)

TORCH_VERSION = "2.5.1"
TORCHVISION_VERSION = "0.20.1"
TORCHAUDIO_VERSION = "2.5.1"
CUDA_TAG = "cu121"
TORCH_INDEX = f"https://download.pytorch.org/whl/{CUDA_TAG}"
XFORMERS = "xformers==0.0.28.post3"
SPCONV = "spconv-cu121==2.3.8"
KAOLIN = "kaolin==0.17.0"
KAOLIN_FIND_LINKS = "https://nvidia-kaolin.s3.us-east-2.amazonaws.com/torch-2.5.1_cu121.html"
FLASH_ATTN = "flash_attn==2.8.3"


@dataclass(frozen=True)
class CudaStack:
    """One CUDA profile's torch build and prebuilt extensions (versions and indexes)."""

    profile: str
    torch: str
    torchvision: str
    torchaudio: str
    cuda_tag: str
    #: nvcc major.minor range the source builds accept, and the driver the wheels need.
    nvcc_min: tuple[int, int]
    nvcc_max_major: int
    spconv: str
    xformers: str | None
    kaolin: str | None
    kaolin_find_links: str | None
    #: pytorch3d with Pulsar stripped (from a fetched checkout) instead of pip's git install.
    pytorch3d_without_pulsar: bool
    #: gsplat without its CUDA extension (it JIT-compiles on first use; jobs never call it).
    gsplat_no_cuda: bool
    flash_attn: bool

    @property
    def index(self) -> str:
        return f"https://download.pytorch.org/whl/{self.cuda_tag}"


CUDA121 = CudaStack(
    profile="cuda121",
    torch=TORCH_VERSION,
    torchvision=TORCHVISION_VERSION,
    torchaudio=TORCHAUDIO_VERSION,
    cuda_tag=CUDA_TAG,
    nvcc_min=(12, 0),
    nvcc_max_major=12,
    spconv=SPCONV,
    xformers=XFORMERS,
    kaolin=KAOLIN,
    kaolin_find_links=KAOLIN_FIND_LINKS,
    pytorch3d_without_pulsar=False,
    gsplat_no_cuda=False,
    flash_attn=True,
)
CUDA128 = CudaStack(
    profile="cuda128",
    torch="2.7.1",
    torchvision="0.22.1",
    torchaudio="2.7.1",
    cuda_tag="cu128",
    nvcc_min=(12, 8),
    nvcc_max_major=12,
    spconv="spconv-cu126==2.3.8",
    xformers=None,
    kaolin=None,
    kaolin_find_links=None,
    pytorch3d_without_pulsar=True,
    gsplat_no_cuda=True,
    flash_attn=False,
)
CUDA_STACKS: dict[str, CudaStack] = {s.profile: s for s in (CUDA121, CUDA128)}
PROFILES = ("cuda121", "cuda128", "cpu")

PYTORCH3D_COMMIT = "75ebeeaea0908c5527e7b1e305fbc7681382db47"
GSPLAT_COMMIT = "2323de5905d5e90e035f792fe65bad0fedd413e7"
SAM3D_COMMIT = "cf066761706cd02b07e2fc6274570ec8cdafb683"
MOGE_COMMIT = "a8c37341bc0325ca99b9d57981cc3bb2bd3e255b"
UTILS3D_COMMIT = "3913c65d81e05e47b9f367250cf8c0f7462a0900"
HYDRA_PATCH_URL = "https://raw.githubusercontent.com/gleize/hydra/78f00766b5f37672aa7232ebbf01bdd74246bd60/hydra/core/utils.py"

PYTORCH3D_REPO = "https://github.com/facebookresearch/pytorch3d.git"
PYTORCH3D = f"pytorch3d @ git+{PYTORCH3D_REPO}@{PYTORCH3D_COMMIT}"
GSPLAT = f"gsplat @ git+https://github.com/nerfstudio-project/gsplat.git@{GSPLAT_COMMIT}"
SAM3D_OBJECTS = (
    f"sam3d_objects @ git+https://github.com/facebookresearch/sam-3d-objects.git@{SAM3D_COMMIT}"
)
#: Click-to-mask on the GPU (backend/masking/sam2_engine.py); SAM 2 itself, Apache-2.0.
SAM2 = "sam2==1.1.0"
IOPATH = "iopath==0.1.10"
MOGE = f"moge @ git+https://github.com/microsoft/MoGe.git@{MOGE_COMMIT}"
UTILS3D = f"utils3d @ git+https://github.com/EasternJournalist/utils3d.git@{UTILS3D_COMMIT}"

#: Imported by upstream on the inference path; pins are upstream's where it has one.
RUNTIME_DEPS: tuple[str, ...] = (
    "numpy<2",
    "hydra-core==1.3.2",
    "omegaconf==2.3.0",
    "loguru==0.7.2",
    "easydict==1.13",
    "optree==0.14.1",
    "astor==0.8.1",
    "lightning==2.3.3",
    "timm==0.9.16",
    "open3d==0.18.0",
    "xatlas==0.0.9",
    "pymeshfix==0.17.0",
    "igraph==0.11.8",
    "pyvista==0.44.2",
    # upstream pins opencv-python; the headless build of the same version has the same cv2
    # and satisfies the backend's own opencv-python-headless (two cv2 packages would clash)
    "opencv-python-headless==4.9.0.80",
    "scikit-image==0.23.1",
    "seaborn==0.13.2",
    "plyfile==1.1",
    "plotly==5.24.1",
    "imageio==2.36.1",
    "matplotlib==3.9.4",
    "safetensors==0.4.5",
    "einops==0.8.0",
    "trimesh==4.5.3",
    "pyyaml==6.0.2",
    "huggingface_hub<1.0",
)

#: Modules imported after installing, per profile.
IMPORT_CHECK_CPU: tuple[str, ...] = (
    "backend",
    "backend.server",
    "backend.engines.preview",
    "backend.masking.grabcut",
    "cv2",
    "numpy",
    "scipy",
    "PIL",
    "trimesh",
    "fast_simplification",
    "xatlas",
    "fastapi",
    "uvicorn",
    "pydantic",
    "huggingface_hub",
    "yaml",
    "requests",
)
#: Top-level modules the sam3d engine needs at run time: every third-party module that
#: upstream's pipeline imports when ``sam3d_objects.pipeline.inference_pipeline_pointmap`` is
#: imported (read from its import graph), whether or not a job then calls it. The engine's
#: availability check (``backend.engines.sam3d``) reads this same list, so "installed" and
#: "available" agree. kaolin is not listed: upstream calls only its ``check_tensor``, which
#: the engine provides when kaolin is absent (``backend.engines.sam3d_compat``).
ENGINE_MODULES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "sam3d_objects",
    "pytorch3d",
    "spconv",
    "hydra",
    "omegaconf",
    "loguru",
    "easydict",
    "optree",
    "astor",
    "safetensors",
    "lightning",
    "timm",
    "trimesh",
    "open3d",
    "xatlas",
    "pyvista",
    "pymeshfix",
    "igraph",
    "gsplat",
    "utils3d",
    "moge",
    "cv2",
    "matplotlib",
    "plyfile",
    "scipy",
)
#: What the sam3d engine needs of the GPU (the engine's availability check and the installer's
#: platform check both read these).
#: fp16 tensor cores (Volta and newer). Nothing on the engine's path needs bf16: the shipped
#: autocast dtype and the fp16 blocks are float16, attention falls back to PyTorch's sdpa
#: where flash-attention (Ampere+) is absent, and spconv ships fp16 kernels for sm_70+.
MIN_COMPUTE_CAPABILITY = (7, 0)
#: The largest stage measured on the real modules (bench/bench_sam3d_gpu.py, shipped
#: configs): decode = 1.7 GiB of weights (mesh + Gaussian decoders, the mesh decoder's dense
#: grids) + its working memory, which grows with the object's voxels
#: (``backend.engines.sam3d.decode_headroom_mb``: 5.6 GiB at a typical 16k, 8.9 at the 42k
#: cap), plus the CUDA context (0.6 GiB measured). 9600 MiB runs objects up to ~27k voxels
#: (larger ones are refused before decode with what they need); every other stage needs
#: under 3.4 GiB.
MIN_VRAM_MB = 9600
IMPORT_CHECK_CUDA: tuple[str, ...] = tuple(
    dict.fromkeys(
        (
            # submodules that fail on a broken CUDA build even when the package is there
            "torch",
            "torchvision",
            "spconv.pytorch",
            "pytorch3d.renderer",
            "gsplat",
            "cv2",
            "plyfile",
            "matplotlib",
            "utils3d",
            "moge.model.v1",
            "yaml",
            "sam2.build_sam",
        )
        + ENGINE_MODULES
        + IMPORT_CHECK_CPU
    )
)

#: Rough sizes for the disk check (GB, 10**9 bytes).
VENV_GB = {"cuda121": 14.0, "cuda128": 13.0, "cpu": 1.5}
WEIGHTS_GB = 13.5


@dataclass
class Requirement:
    """What a satisfied step leaves installed: a distribution at a version, a VCS commit or a
    local source folder; or a marker file (relative to the venv) written when the step ran."""

    dist: str = ""
    version: str | None = None
    commit: str | None = None
    source: str | None = None
    marker: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "dist": self.dist,
            "version": self.version,
            "commit": self.commit,
            "source": self.source,
            "marker": self.marker,
        }


@dataclass
class Step:
    """One named step: commands run in order with ``env`` added; skipped when every
    requirement is already satisfied (an empty ``satisfied_by`` never skips)."""

    name: str
    commands: list[list[str]]
    env: dict[str, str] = field(default_factory=dict)
    satisfied_by: list[Requirement] = field(default_factory=list)
    note: str = ""


@dataclass
class Plan:
    profile: str
    tool: str
    venv: Path
    python: Path
    steps: list[Step]
    import_check: tuple[str, ...]
    cuda_arch_list: str = ""

    def render(self) -> str:
        """Every command of the plan, in order, as a shell would show it."""
        lines = []
        for i, step in enumerate(self.steps, 1):
            lines.append(
                f"STEP {i}/{len(self.steps)} {step.name}"
                + (f"  # {step.note}" if step.note else "")
            )
            for cmd in step.commands:
                env = " ".join(f"{k}={shlex.quote(v)}" for k, v in step.env.items())
                lines.append("  $ " + (env + " " if env else "") + shlex.join(cmd))
        return "\n".join(lines)


def venv_python(venv: Path) -> Path:
    """The venv's interpreter (Scripts\\python.exe on Windows, bin/python elsewhere)."""
    return Path(venv) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _pin(spec: str) -> Requirement:
    name, _, version = spec.partition("==")
    return Requirement(dist=name, version=version or None)


def _vcs(spec: str, commit: str) -> Requirement:
    return Requirement(dist=spec.split(" @ ", 1)[0], commit=commit)


def source_dir() -> Path:
    """The project folder holding pyproject.toml that this backend was run from."""
    return Path(__file__).resolve().parents[2]


def build_plan(
    venv: Path,
    profile: str,
    *,
    tool: str = "pip",
    base_python: str | None = None,
    cuda_arch_list: str = "",
    compute_capability: tuple[int, int] | None = None,
    source: Path | None = None,
    max_jobs: int | None = None,
    installer_python: str | None = None,
) -> Plan:
    """The ordered plan for ``profile`` (``cuda121`` | ``cuda128`` | ``cpu``) into ``venv``.

    ``base_python``: the interpreter that creates the venv with the pip tool (Python 3.11);
    ``cuda_arch_list``: ``TORCH_CUDA_ARCH_LIST`` for source builds ("8.6;8.9");
    ``compute_capability``: the oldest GPU's, decides flash_attn (>= 8.0, cuda121 only);
    ``installer_python``: the interpreter running this installer (it prepares the pytorch3d
    source for cuda128; default: this one).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    if tool not in ("uv", "pip"):
        raise ValueError(f"unknown tool {tool!r}")
    venv = Path(venv).expanduser().absolute()
    py = venv_python(venv)
    src = Path(source or source_dir()).absolute()

    def install(*args: str) -> list[str]:
        if tool == "uv":
            return ["uv", "pip", "install", "--python", str(py), *args]
        return [str(py), "-m", "pip", "install", "--disable-pip-version-check", *args]

    if tool == "uv":
        want = PYTHON_VERSION if profile != "cpu" or not base_python else base_python
        create = ["uv", "venv", "--python", want, "--seed", str(venv)]
    else:
        create = [base_python or sys.executable, "-m", "venv", str(venv)]
    steps = [
        Step(
            "venv",
            [create],
            satisfied_by=[Requirement(marker="pyvenv.cfg")],
            note=f"Python {PYTHON_VERSION}"
            if profile != "cpu"
            else f"Python {PYTHON_VERSION} or {CPU_MIN_PYTHON[0]}.{CPU_MIN_PYTHON[1]}+",
        ),
    ]
    backend_step = Step(
        "backend",
        [install(str(src))],
        satisfied_by=[Requirement(dist="sam3d-blender", source=str(src))],
    )
    if profile == "cpu":
        steps.append(backend_step)
        return Plan(profile, tool, venv, py, steps, IMPORT_CHECK_CPU)

    stack = CUDA_STACKS[profile]
    build_env = {
        "TORCH_CUDA_ARCH_LIST": cuda_arch_list,
        "FORCE_CUDA": "1",
        "MAX_JOBS": str(max_jobs or max(1, (os.cpu_count() or 2) // 2)),
    }
    if not cuda_arch_list:
        build_env.pop("TORCH_CUDA_ARCH_LIST")
    tag = stack.cuda_tag
    torch_specs = [
        f"torch=={stack.torch}",
        f"torchvision=={stack.torchvision}",
        f"torchaudio=={stack.torchaudio}",
    ]
    flash = stack.flash_attn and compute_capability is not None and compute_capability >= (8, 0)
    builds: list[list[str]] = []
    build_reqs: list[Requirement] = []
    if stack.pytorch3d_without_pulsar:
        p3d_src = venv / "src" / "pytorch3d"
        builds += [
            [
                "git",
                "clone",
                "--filter=blob:none",
                "--no-checkout",
                PYTORCH3D_REPO,
                str(p3d_src),
            ],
            ["git", "-C", str(p3d_src), "checkout", "--force", PYTORCH3D_COMMIT],
            [
                installer_python or sys.executable,
                "-m",
                "backend.install.pytorch3d_source",
                str(p3d_src),
            ],
            install("--no-build-isolation", str(p3d_src)),
        ]
        build_reqs.append(Requirement(dist="pytorch3d", source=str(p3d_src)))
    else:
        builds.append(install("--no-build-isolation", PYTORCH3D))
        build_reqs.append(_vcs(PYTORCH3D, PYTORCH3D_COMMIT))
    builds.append(install("--no-build-isolation", GSPLAT))
    build_reqs.append(_vcs(GSPLAT, GSPLAT_COMMIT))
    if stack.gsplat_no_cuda:
        build_env["BUILD_NO_CUDA"] = "1"
    if flash:
        builds.append(install("--no-build-isolation", FLASH_ATTN))
        build_reqs.append(_pin(FLASH_ATTN))
    wheels = []
    wheel_reqs = [_pin(stack.spconv)]
    if stack.xformers:
        wheels.append(install("--no-deps", stack.xformers, "--index-url", stack.index))
        wheel_reqs.append(_pin(stack.xformers))
    wheels.append(install(stack.spconv))
    if stack.kaolin:
        kaolin = [stack.kaolin]
        if stack.kaolin_find_links:
            kaolin += ["--find-links", stack.kaolin_find_links]
        wheels.append(install(*kaolin))
        wheel_reqs.append(_pin(stack.kaolin))
    hydra_patch = (
        "import hashlib, os, sys, urllib.request, hydra; "
        'assert hydra.__version__ == "1.3.2", "hydra-core 1.3.2 expected, found " + hydra.__version__; '
        'p = os.path.join(os.path.dirname(hydra.__file__), "core", "utils.py"); '
        f'd = urllib.request.urlopen("{HYDRA_PATCH_URL}", timeout=60).read(); '
        'open(p, "wb").write(d); '
        'm = os.path.join(sys.prefix, ".sam3d-install", "hydra-patch"); '
        "os.makedirs(os.path.dirname(m), exist_ok=True); "
        'open(m, "w").write(hashlib.sha256(d).hexdigest())'
    )
    steps += [
        Step(
            "build-tools",
            [install("setuptools>=69,<76", "wheel", "ninja", "packaging", "psutil")],
            satisfied_by=[
                Requirement(dist=d) for d in ("setuptools", "wheel", "ninja", "packaging", "psutil")
            ],
        ),
        Step(
            "torch",
            [install(*torch_specs, "--index-url", stack.index)],
            satisfied_by=[
                Requirement(dist="torch", version=f"{stack.torch}+{tag}"),
                Requirement(dist="torchvision", version=f"{stack.torchvision}+{tag}"),
                Requirement(dist="torchaudio", version=f"{stack.torchaudio}+{tag}"),
            ],
            note=f"CUDA wheels from {stack.index}",
        ),
        Step("cuda-wheels", wheels, satisfied_by=wheel_reqs),
        Step(
            "cuda-builds",
            builds,
            env=build_env,
            satisfied_by=build_reqs,
            note=f"source builds: needs nvcc (CUDA {stack.nvcc_min[0]}.{stack.nvcc_min[1]}+, "
            f"{stack.nvcc_max_major}.x) and a C++ compiler nvcc supports"
            + ("; pytorch3d without Pulsar" if stack.pytorch3d_without_pulsar else ""),
        ),
        Step(
            "runtime-deps",
            [install(*RUNTIME_DEPS)],
            satisfied_by=[_pin(s) for s in RUNTIME_DEPS if "==" in s],
        ),
        Step(
            "sam3d-objects",
            [install("--no-deps", SAM3D_OBJECTS)],
            satisfied_by=[_vcs(SAM3D_OBJECTS, SAM3D_COMMIT)],
            note="upstream, pinned, no dependencies",
        ),
        Step(
            "moge-utils3d",
            [install("--no-deps", UTILS3D), install("--no-deps", MOGE)],
            satisfied_by=[_vcs(UTILS3D, UTILS3D_COMMIT), _vcs(MOGE, MOGE_COMMIT)],
        ),
        Step(
            "hydra-patch",
            [[str(py), "-c", hydra_patch]],
            satisfied_by=[Requirement(marker=".sam3d-install/hydra-patch")],
            note="hydra PR 2863, as upstream requires",
        ),
        Step(
            "sam2",
            [install(IOPATH), install("--no-deps", "--no-build-isolation", SAM2)],
            env={"SAM2_BUILD_CUDA": "0"},
            satisfied_by=[_pin(IOPATH), _pin(SAM2)],
            note="click-to-mask; SAM 2's optional CUDA extension is skipped",
        ),
        backend_step,
    ]
    extra = (("xformers",) if stack.xformers else ()) + (("kaolin",) if stack.kaolin else ())
    extra += ("flash_attn",) if flash else ()
    checks = tuple(dict.fromkeys(IMPORT_CHECK_CUDA + extra))
    return Plan(profile, tool, venv, py, steps, checks, cuda_arch_list)
