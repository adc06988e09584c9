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
from backend.install.plan import PYTHON_VERSION, VENV_GB, WEIGHTS_GB

MIN_COMPUTE_CAPABILITY = (8, 0)
MIN_VRAM_MB = 8000
#: CUDA 12.1 needs at least these driver versions.
MIN_DRIVER = {"linux": (530, 30), "win32": (531, 14)}


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


def _existing(path: Path) -> Path:
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _device(path: Path) -> int:
    return os.stat(_existing(path)).st_dev


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


def _driver_tuple(text: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


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
        rep.base_python = find_python311()
        checks.append(
            Check(
                "python",
                rep.base_python is not None,
                f"Python {PYTHON_VERSION} at {rep.base_python}"
                if rep.base_python
                else f"Python {PYTHON_VERSION} not found: install it (python.org, your package manager, pyenv) or install uv "
                "(https://docs.astral.sh/uv/), which fetches it",
            )
        )

    # disk
    need = VENV_GB[profile]
    where = f"venv {need:.1f} GB"
    if profile == "cuda" and weights_dest is not None:
        if _device(weights_dest) == _device(venv):
            need += WEIGHTS_GB
            where += f" + weights {WEIGHTS_GB:.1f} GB (same disk)"
        else:
            wfree = shutil.disk_usage(_existing(weights_dest)).free / 1e9
            checks.append(
                Check(
                    "disk (weights)",
                    wfree >= WEIGHTS_GB,
                    f"{wfree:.1f} GB free at {_existing(weights_dest)}, the weights need ~{WEIGHTS_GB:.1f} GB",
                )
            )
    free = shutil.disk_usage(_existing(venv)).free / 1e9
    checks.append(
        Check(
            "disk",
            free >= need,
            f"{free:.1f} GB free at {_existing(venv)}; needs ~{need:.1f} GB ({where})"
            + ("" if free >= need else ": free space or choose another --venv / weights folder"),
        )
    )

    if profile == "cpu":
        return rep

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
        drv = _driver_tuple(probe.gpus[0].driver_version)
        need_drv = MIN_DRIVER.get(plat, MIN_DRIVER["linux"])
        checks.append(
            Check(
                "driver",
                drv is not None and drv >= need_drv,
                f"driver {probe.gpus[0].driver_version}; CUDA 12.1 needs >= {need_drv[0]}.{need_drv[1]}"
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
                        "(Ampere or newer: bf16 and flash-attention); use --profile cpu"
                    ),
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
    ok = nvcc is not None and version is not None and version.startswith("12.")
    checks.append(
        Check(
            "nvcc",
            ok,
            f"{nvcc} (CUDA {version})"
            if ok
            else (
                f"{nvcc} is CUDA {version}; the source builds need the CUDA 12.x toolkit"
                if nvcc
                else "nvcc not found (CUDA_HOME, CUDA_PATH, PATH): install the CUDA 12.1 toolkit "
                "(https://developer.nvidia.com/cuda-12-1-0-download-archive) for the pytorch3d/gsplat builds"
            ),
        )
    )
    cxx = shutil.which("cl") if plat == "win32" else (shutil.which("c++") or shutil.which("g++"))
    checks.append(
        Check(
            "c++ compiler",
            cxx is not None,
            cxx
            or (
                "cl.exe not found: run from an 'x64 Native Tools' prompt (Visual Studio Build Tools)"
                if plat == "win32"
                else "no C++ compiler: install build-essential / gcc-c++"
            ),
        )
    )
    return rep
