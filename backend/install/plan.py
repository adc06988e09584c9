"""The installer's ordered, pinned plan (pure data: commands as argv lists, no side effects).

Profiles
--------
``cuda`` (linux-64; windows-64 best effort) - the SAM 3D engine's stack, in this order:

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
10. ``backend``      this project (``pip install <source>``): server, preview engine,
                     finishing.

``cpu`` - what the preview engine and finishing need: ``venv`` then ``backend``.

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

PYTORCH3D_COMMIT = "75ebeeaea0908c5527e7b1e305fbc7681382db47"
GSPLAT_COMMIT = "2323de5905d5e90e035f792fe65bad0fedd413e7"
SAM3D_COMMIT = "cf066761706cd02b07e2fc6274570ec8cdafb683"
MOGE_COMMIT = "a8c37341bc0325ca99b9d57981cc3bb2bd3e255b"
UTILS3D_COMMIT = "3913c65d81e05e47b9f367250cf8c0f7462a0900"
HYDRA_PATCH_URL = "https://raw.githubusercontent.com/gleize/hydra/78f00766b5f37672aa7232ebbf01bdd74246bd60/hydra/core/utils.py"

PYTORCH3D = f"pytorch3d @ git+https://github.com/facebookresearch/pytorch3d.git@{PYTORCH3D_COMMIT}"
GSPLAT = f"gsplat @ git+https://github.com/nerfstudio-project/gsplat.git@{GSPLAT_COMMIT}"
SAM3D_OBJECTS = (
    f"sam3d_objects @ git+https://github.com/facebookresearch/sam-3d-objects.git@{SAM3D_COMMIT}"
)
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
    "opencv-python==4.9.0.80",
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
#: Top-level modules the sam3d engine needs at run time. The engine's availability check
#: (``backend.engines.sam3d``) reads this same list, so "installed" and "available" agree.
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
)
IMPORT_CHECK_CUDA: tuple[str, ...] = tuple(
    dict.fromkeys(
        (
            # submodules that fail on a broken CUDA build even when the package is there
            "torch",
            "torchvision",
            "xformers",
            "spconv.pytorch",
            "kaolin",
            "pytorch3d.renderer",
            "gsplat",
            "cv2",
            "plyfile",
            "matplotlib",
            "utils3d",
            "moge.model.v1",
            "yaml",
        )
        + ENGINE_MODULES
        + IMPORT_CHECK_CPU
    )
)

#: Rough sizes for the disk check (GB, 10**9 bytes).
VENV_GB = {"cuda": 14.0, "cpu": 1.5}
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
) -> Plan:
    """The ordered plan for ``profile`` (``cuda`` | ``cpu``) into ``venv`` using ``tool``.

    ``base_python``: the interpreter that creates the venv with the pip tool (Python 3.11);
    ``cuda_arch_list``: ``TORCH_CUDA_ARCH_LIST`` for source builds ("8.6;8.9");
    ``compute_capability``: the oldest GPU's, decides flash_attn (>= 8.0).
    """
    if profile not in ("cuda", "cpu"):
        raise ValueError(f"unknown profile {profile!r}")
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
        create = ["uv", "venv", "--python", PYTHON_VERSION, "--seed", str(venv)]
    else:
        create = [base_python or sys.executable, "-m", "venv", str(venv)]
    steps = [
        Step(
            "venv",
            [create],
            satisfied_by=[Requirement(marker="pyvenv.cfg")],
            note=f"Python {PYTHON_VERSION}",
        ),
    ]
    if profile == "cpu":
        steps.append(
            Step(
                "backend",
                [install(str(src))],
                satisfied_by=[Requirement(dist="sam3d-blender", source=str(src))],
            )
        )
        return Plan(profile, tool, venv, py, steps, IMPORT_CHECK_CPU)

    build_env = {
        "TORCH_CUDA_ARCH_LIST": cuda_arch_list,
        "FORCE_CUDA": "1",
        "MAX_JOBS": str(max_jobs or max(1, (os.cpu_count() or 2) // 2)),
    }
    if not cuda_arch_list:
        build_env.pop("TORCH_CUDA_ARCH_LIST")
    torch_specs = [
        f"torch=={TORCH_VERSION}",
        f"torchvision=={TORCHVISION_VERSION}",
        f"torchaudio=={TORCHAUDIO_VERSION}",
    ]
    flash = compute_capability is not None and compute_capability >= (8, 0)
    builds = [install("--no-build-isolation", PYTORCH3D), install("--no-build-isolation", GSPLAT)]
    build_reqs = [_vcs(PYTORCH3D, PYTORCH3D_COMMIT), _vcs(GSPLAT, GSPLAT_COMMIT)]
    if flash:
        builds.append(install("--no-build-isolation", FLASH_ATTN))
        build_reqs.append(_pin(FLASH_ATTN))
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
            [install(*torch_specs, "--index-url", TORCH_INDEX)],
            satisfied_by=[
                Requirement(dist="torch", version=f"{TORCH_VERSION}+{CUDA_TAG}"),
                Requirement(dist="torchvision", version=f"{TORCHVISION_VERSION}+{CUDA_TAG}"),
                Requirement(dist="torchaudio", version=f"{TORCHAUDIO_VERSION}+{CUDA_TAG}"),
            ],
            note=f"CUDA wheels from {TORCH_INDEX}",
        ),
        Step(
            "cuda-wheels",
            [
                install("--no-deps", XFORMERS, "--index-url", TORCH_INDEX),
                install(SPCONV),
                install(KAOLIN, "--find-links", KAOLIN_FIND_LINKS),
            ],
            satisfied_by=[_pin(XFORMERS), _pin(SPCONV), _pin(KAOLIN)],
        ),
        Step(
            "cuda-builds",
            builds,
            env=build_env,
            satisfied_by=build_reqs,
            note="source builds: needs nvcc (CUDA 12.x) and a C++ compiler",
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
            "backend",
            [install(str(src))],
            satisfied_by=[Requirement(dist="sam3d-blender", source=str(src))],
        ),
    ]
    checks = tuple(dict.fromkeys(IMPORT_CHECK_CUDA + (("flash_attn",) if flash else ())))
    return Plan(profile, tool, venv, py, steps, checks, cuda_arch_list)
