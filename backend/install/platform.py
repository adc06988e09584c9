"""Can this machine take the profile? Checked before anything is installed.

Each ``Check`` is fatal or a warning, with a sentence that says what to do. The GPU facts
come from ``nvidia-smi`` (``backend.gpu.probe``); nothing here imports torch.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from backend.gpu.probe import GpuInfo, GpuProbe, probe_gpus, torch_cuda_arch_list
from backend.install.plan import (
    CPU_MIN_PYTHON,
    CUDA_STACKS,
    MIN_COMPUTE_CAPABILITY,
    MIN_VRAM_MB,
    PYTHON_VERSION,
    VENV_GB,
    WEIGHTS_GB,
)
from backend.storage import nearest_existing

#: Oldest driver each CUDA stack's wheels run on (CUDA 12.1 / 12.8 release notes).
MIN_DRIVER = {
    "cuda121": {"linux": (530, 30), "win32": (531, 14)},
    "cuda128": {"linux": (570, 26), "win32": (570, 65)},
}
#: torch 2.5.1/CUDA 12.1 ships kernels up to compute capability 9.0 and its toolkit cannot
#: compile for newer GPUs (Blackwell: 10.0, 12.0); those need the cuda128 stack.
CUDA121_MAX_CC = (9, 0)
#: Newest GCC major each nvcc release accepts as host compiler (CUDA installation guides).
NVCC_MAX_GCC = {
    (12, 0): 12,
    (12, 1): 12,
    (12, 2): 12,
    (12, 3): 12,
    (12, 4): 13,
    (12, 5): 13,
    (12, 6): 13,
    (12, 8): 14,
    (12, 9): 14,
    (13, 0): 15,
}


@dataclass
class ProfileChoice:
    """The install profile for this machine and the one-line reason."""

    profile: str
    reason: str


def choose_profile(probe: GpuProbe, requested: str = "auto") -> ProfileChoice:
    """``auto``: a CUDA profile when an NVIDIA GPU can run SAM 3D, else ``cpu``; ``cuda``: the
    CUDA stack that fits the GPUs (``cuda128`` for compute capability >= 10.0, else
    ``cuda121``); a named profile is returned as it is."""
    if requested not in ("auto", "cuda"):
        if requested in CUDA_STACKS:
            stack = CUDA_STACKS[requested]
            what = f"SAM 3D on the GPU (torch {stack.torch}, {stack.cuda_tag})"
            return ProfileChoice(requested, f"chosen by hand: {what}")
        return ProfileChoice(requested, "chosen by hand; the preview engine will be installed")
    if not probe.ok:
        why = probe.error or "no NVIDIA GPU found"
        if requested == "cuda":
            return ProfileChoice("cuda121", f"{why}; upstream's stack assumed")
        return ProfileChoice("cpu", f"{why}; the preview engine will be installed")
    best = max(probe.gpus, key=lambda g: (g.compute_capability or (0, 0), g.memory_total_mb))
    cc = best.compute_capability
    if requested == "auto":
        if cc is not None and cc < MIN_COMPUTE_CAPABILITY:
            need = f"{MIN_COMPUTE_CAPABILITY[0]}.{MIN_COMPUTE_CAPABILITY[1]}"
            return ProfileChoice(
                "cpu",
                f"{best.name} has compute capability {cc[0]}.{cc[1]}; SAM 3D needs {need}+, so "
                "the preview engine will be installed",
            )
        if best.memory_total_mb < MIN_VRAM_MB:
            return ProfileChoice(
                "cpu",
                f"{best.name} has {best.memory_total_mb} MiB; SAM 3D needs {MIN_VRAM_MB} MiB, so "
                "the preview engine will be installed",
            )
    newest = max((g.compute_capability for g in probe.gpus if g.compute_capability), default=None)
    if newest is not None and newest > CUDA121_MAX_CC:
        return ProfileChoice(
            "cuda128",
            f"{best.name} has compute capability {newest[0]}.{newest[1]}: it needs CUDA 12.8+ "
            "builds (torch 2.7, cu128)",
        )
    shown = f"compute capability {cc[0]}.{cc[1]}" if cc else "compute capability unknown"
    return ProfileChoice(
        "cuda121", f"{best.name} ({shown}) runs upstream's own stack (torch 2.5.1, cu121)"
    )


def assumed_probe(text: str) -> GpuProbe:
    """A probe for ``--assume-gpu "NAME,CC,MEMORY_MIB[,DRIVER]"`` (e.g. "NVIDIA GeForce RTX
    5090,12.0,32607"): plan for a card that is not in this machine. Without a driver version
    the driver check is reported as assumed, not failed."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (3, 4):
        raise ValueError(
            f"--assume-gpu wants NAME,COMPUTE_CAPABILITY,MEMORY_MIB[,DRIVER], got {text!r}"
        )
    name, cc_text, mem = parts[:3]
    try:
        major, minor = (int(x) for x in cc_text.split("."))
        memory = int(mem)
    except ValueError as exc:
        raise ValueError(f"--assume-gpu: bad compute capability or memory in {text!r}") from exc
    driver = parts[3] if len(parts) == 4 else "assumed"
    gpu = GpuInfo(0, name, memory, memory, (major, minor), driver)
    return GpuProbe(gpus=[gpu], nvidia_smi="(assumed)")


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    fatal: bool = True

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.fatal else "warn")
        return f"[{mark}] {self.name}: {self.message}"


@dataclass
class PlatformReport:
    checks: list[Check] = field(default_factory=list)
    gpus: list[GpuInfo] = field(default_factory=list)
    cuda_arch_list: str = ""
    compute_capability: tuple[int, int] | None = None
    tool: str = "pip"
    base_python: str | None = None

    @property
    def refused(self) -> list[Check]:
        return [c for c in self.checks if c.fatal and not c.ok]


def _device(path: Path) -> int:
    return os.stat(nearest_existing(path)).st_dev


def find_python(profile: str) -> str | None:
    """The interpreter that creates the venv: Python 3.11 for the CUDA profiles (upstream's
    pinned version); for ``cpu`` 3.11 when there is one, else this interpreter or a
    ``python3`` on PATH when it is 3.10 or newer (Blender 5.1+ and distributions' Blender
    builds run 3.13, and the preview engine and finishing run on any of them)."""
    found = find_python311()
    if found or profile != "cpu":
        return found
    if sys.version_info[:2] >= CPU_MIN_PYTHON:
        return sys.executable
    for name in ("python3", "python"):
        cand = shutil.which(name)
        version = python_version(cand) if cand else None
        if version and version >= CPU_MIN_PYTHON:
            return cand
    return None


def can_make_venv(python: str) -> bool:
    """True when ``python -m venv`` can create a venv with pip in it: the interpreter has
    ``venv`` and ``ensurepip`` (distributions such as Debian and Ubuntu ship ``ensurepip``
    in a separate package, python3-venv)."""
    probe = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('venv') and u.find_spec('ensurepip') else 1)"
    if python == sys.executable:
        import importlib.util

        return bool(importlib.util.find_spec("venv") and importlib.util.find_spec("ensurepip"))
    try:
        return (
            subprocess.run([python, "-c", probe], capture_output=True, timeout=20).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _venv_check(python: str, shown: str) -> Check:
    ok = can_make_venv(python)
    return Check(
        "venv",
        ok,
        f"Python {shown} can create the virtual environment"
        if ok
        else f"Python {shown} at {python} cannot create a virtual environment with pip (its "
        "ensurepip module is missing): install your distribution's venv package (Debian, "
        f"Ubuntu: python{shown}-venv or python3-venv), or install uv (https://docs.astral.sh/uv/)",
    )


def python_version(python: str) -> tuple[int, int] | None:
    """(major, minor) of an interpreter, asked by running it."""
    if python == sys.executable:
        return sys.version_info[:2]
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _version_tuple(out)


def find_python311() -> str | None:
    """An interpreter for the venv: this one when it is 3.11, else ``python3.11`` on PATH."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    for name in ("python3.11", "python3.11.exe"):
        found = shutil.which(name)
        if found:
            return found
    if os.name == "nt" and shutil.which("py"):
        try:
            out = subprocess.run(
                ["py", "-3.11", "-c", "import sys; print(sys.executable)"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def _nvcc() -> tuple[str | None, str | None]:
    """(path, version) of nvcc from CUDA_HOME / CUDA_PATH / PATH."""
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(
                Path(os.environ[var]) / "bin" / ("nvcc.exe" if os.name == "nt" else "nvcc")
            )
    which = shutil.which("nvcc")
    if which:
        candidates.append(Path(which))
    candidates.append(Path("/usr/local/cuda/bin/nvcc"))
    for c in candidates:
        if c.is_file():
            try:
                out = subprocess.run(
                    [str(c), "--version"], capture_output=True, text=True, timeout=30
                ).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
            m = re.search(r"release (\d+\.\d+)", out)
            return str(c), (m.group(1) if m else None)
    return None, None


def _version_tuple(text: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", (text or "").strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def _compiler_version(cxx: str) -> tuple[str, int | None]:
    """("gcc" | "clang" | "?", major) of a C++ compiler from its ``--version``."""
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?", None
    kind = "clang" if "clang" in out.lower() else ("gcc" if out else "?")
    m = re.search(r"(\d+)\.\d+(?:\.\d+)?", out.splitlines()[0] if out else "")
    return kind, (int(m.group(1)) if m else None)


def _compiler_check(plat: str, nvcc: tuple[int, int] | None) -> Check:
    """A C++ compiler exists and, for GCC, is one that this nvcc accepts as host compiler."""
    if plat == "win32":
        cl = shutil.which("cl")
        return Check(
            "c++ compiler",
            cl is not None,
            cl
            or "cl.exe not found: run from an 'x64 Native Tools' prompt (Visual Studio Build Tools)",
        )
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        return Check("c++ compiler", False, "no C++ compiler: install build-essential / gcc-c++")
    kind, major = _compiler_version(cxx)
    if kind != "gcc" or major is None or nvcc is None:
        return Check("c++ compiler", True, f"{cxx} ({kind} {major or '?'})")
    limit = NVCC_MAX_GCC.get(nvcc) or max(
        (v for k, v in NVCC_MAX_GCC.items() if k <= nvcc), default=None
    )
    ok = limit is None or major <= limit
    return Check(
        "c++ compiler",
        ok,
        f"{cxx} (gcc {major})"
        + (
            ""
            if ok
            else f": nvcc {nvcc[0]}.{nvcc[1]} accepts gcc up to {limit}; install gcc-{limit} "
            f"and set CC/CXX (or NVCC_CCBIN) to it"
        ),
    )


def check_platform(
    profile: str,
    venv: Path,
    *,
    weights_dest: Path | None = None,
    tool: str = "auto",
    probe: GpuProbe | None = None,
    cuda_arch: str | None = None,
) -> PlatformReport:
    """Every check for ``profile``; ``cuda_arch`` overrides the detected TORCH_CUDA_ARCH_LIST."""
    rep = PlatformReport()
    checks = rep.checks
    plat, machine = sys.platform, platform.machine().lower()

    # tool and interpreter
    uv = shutil.which("uv")
    rep.tool = ("uv" if uv else "pip") if tool == "auto" else tool
    if rep.tool == "uv":
        ok = bool(uv)
        checks.append(
            Check(
                "installer",
                ok,
                "uv found: it creates the venv (fetching Python "
                f"{PYTHON_VERSION} if needed) and installs"
                if ok
                else "--tool uv given but uv is not on PATH",
            )
        )
    else:
        rep.base_python = find_python(profile)
        version = python_version(rep.base_python) if rep.base_python else None
        shown = f"{version[0]}.{version[1]}" if version else PYTHON_VERSION
        note = (
            f" (the cpu profile runs on {CPU_MIN_PYTHON[0]}.{CPU_MIN_PYTHON[1]}+; only the CUDA "
            f"profiles need {PYTHON_VERSION})"
            if version and shown != PYTHON_VERSION
            else ""
        )
        need = (
            f"{PYTHON_VERSION} (or {CPU_MIN_PYTHON[0]}.{CPU_MIN_PYTHON[1]}+)"
            if profile == "cpu"
            else PYTHON_VERSION
        )
        checks.append(
            Check(
                "python",
                rep.base_python is not None,
                f"Python {shown} at {rep.base_python}{note}"
                if rep.base_python
                else f"Python {need} not found: install it (python.org, your package manager, pyenv) or install uv "
                "(https://docs.astral.sh/uv/), which fetches it",
            )
        )
        if rep.base_python is not None:
            checks.append(_venv_check(rep.base_python, shown))

    # disk
    need = VENV_GB[profile]
    where = f"venv {need:.1f} GB"
    if profile != "cpu" and weights_dest is not None:
        if _device(weights_dest) == _device(venv):
            need += WEIGHTS_GB
            where += f" + weights {WEIGHTS_GB:.1f} GB (same disk)"
        else:
            wfree = shutil.disk_usage(nearest_existing(weights_dest)).free / 1e9
            checks.append(
                Check(
                    "disk (weights)",
                    wfree >= WEIGHTS_GB,
                    f"{wfree:.1f} GB free at {nearest_existing(weights_dest)}, the weights need ~{WEIGHTS_GB:.1f} GB",
                )
            )
    free = shutil.disk_usage(nearest_existing(venv)).free / 1e9
    checks.append(
        Check(
            "disk",
            free >= need,
            f"{free:.1f} GB free at {nearest_existing(venv)}; needs ~{need:.1f} GB ({where})"
            + ("" if free >= need else ": free space or choose another --venv / weights folder"),
        )
    )

    if profile == "cpu":
        return rep
    stack = CUDA_STACKS[profile]

    # platform
    os_ok = plat in ("linux", "win32") and machine in ("x86_64", "amd64")
    checks.append(
        Check(
            "platform",
            os_ok,
            f"{plat}/{machine}"
            + (
                ""
                if os_ok
                else ": SAM 3D's CUDA stack exists only for linux-64 and windows-64; use --profile cpu (preview engine)"
            ),
        )
    )
    if plat == "win32":
        checks.append(
            Check(
                "platform (windows)",
                True,
                "windows-64 is best effort: upstream supports linux-64 only",
                fatal=False,
            )
        )

    # GPU and driver
    probe = probe or probe_gpus(use_cache=False)
    rep.gpus = probe.gpus
    if not probe.ok:
        checks.append(
            Check(
                "nvidia driver",
                False,
                probe.error + ": install the NVIDIA driver (>= 530) or use --profile cpu",
            )
        )
    else:
        names = ", ".join(
            f"{g.name} ({g.memory_total_mb} MiB, cc {g.compute_capability_str})" for g in probe.gpus
        )
        checks.append(Check("gpu", True, names))
        cuda = f"CUDA {stack.cuda_tag[2:4]}.{stack.cuda_tag[4:]}"
        drv_text = probe.gpus[0].driver_version
        drv = _version_tuple(drv_text)
        need_drv = MIN_DRIVER[profile].get(plat, MIN_DRIVER[profile]["linux"])
        if drv_text == "assumed":
            checks.append(
                Check("driver", True, f"assumed; {cuda} needs >= {need_drv[0]}.{need_drv[1]}")
            )
        else:
            checks.append(
                Check(
                    "driver",
                    drv is not None and drv >= need_drv,
                    f"driver {drv_text}; {cuda} needs >= {need_drv[0]}.{need_drv[1]}"
                    + ("" if drv is not None and drv >= need_drv else ": update the NVIDIA driver"),
                )
            )
        ccs = [g.compute_capability for g in probe.gpus if g.compute_capability]
        best = max(probe.gpus, key=lambda g: (g.compute_capability or (0, 0), g.memory_total_mb))
        if ccs:
            rep.compute_capability = min(ccs)
            ok = max(ccs) >= MIN_COMPUTE_CAPABILITY
            checks.append(
                Check(
                    "compute capability",
                    ok,
                    f"{best.compute_capability_str} ({best.name})"
                    + (
                        ""
                        if ok
                        else f": too old, SAM 3D needs {MIN_COMPUTE_CAPABILITY[0]}.{MIN_COMPUTE_CAPABILITY[1]}+ "
                        "(fp16 tensor cores: Volta or newer); use --profile cpu"
                    ),
                )
            )
            if profile == "cuda121" and max(ccs) > CUDA121_MAX_CC:
                top = max(ccs)
                checks.append(
                    Check(
                        "cuda stack",
                        False,
                        f"compute capability {top[0]}.{top[1]} needs CUDA 12.8+ builds; torch "
                        f"{stack.torch} ({stack.cuda_tag}) has no kernels for it: use --profile cuda128",
                    )
                )
        else:
            checks.append(
                Check(
                    "compute capability",
                    True,
                    "unknown (old nvidia-smi): pass --cuda-arch, e.g. 8.6",
                    fatal=False,
                )
            )
        checks.append(
            Check(
                "gpu memory",
                best.memory_total_mb >= MIN_VRAM_MB,
                f"{best.memory_total_mb} MiB on {best.name}; staged loading needs >= {MIN_VRAM_MB} MiB",
            )
        )
    rep.cuda_arch_list = cuda_arch or torch_cuda_arch_list(probe.gpus)
    if cuda_arch and not rep.compute_capability:
        first = cuda_arch.split(";")[0].replace("+PTX", "")
        try:
            major, minor = first.split(".")
            rep.compute_capability = (int(major), int(minor))
        except ValueError:
            pass
    checks.append(
        Check(
            "TORCH_CUDA_ARCH_LIST",
            bool(rep.cuda_arch_list),
            rep.cuda_arch_list or "unknown: no GPU detected; pass --cuda-arch (e.g. 8.6)",
        )
    )

    # build tools for pytorch3d / gsplat / flash_attn
    nvcc, version = _nvcc()
    nv = _version_tuple(version)
    ok = nv is not None and stack.nvcc_min <= nv and nv[0] <= stack.nvcc_max_major
    want = f"CUDA {stack.nvcc_min[0]}.{stack.nvcc_min[1]} to {stack.nvcc_max_major}.x"
    checks.append(
        Check(
            "nvcc",
            ok,
            f"{nvcc} (CUDA {version})"
            if ok
            else (
                f"{nvcc} is CUDA {version}; the {profile} source builds need the {want} toolkit"
                " (nvcc must match torch's CUDA major version)"
                if nvcc
                else f"nvcc not found (CUDA_HOME, CUDA_PATH, PATH): install the {want} toolkit "
                "(https://developer.nvidia.com/cuda-toolkit-archive) for the pytorch3d/gsplat builds"
            ),
        )
    )
    checks.append(_compiler_check(plat, nv if ok else None))
    git = shutil.which("git")
    checks.append(
        Check(
            "git",
            git is not None,
            git
            or "git not found: pip fetches pytorch3d, gsplat, MoGe and upstream at pinned "
            "commits with git; install git",
        )
    )
    return rep
