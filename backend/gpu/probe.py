"""What NVIDIA GPUs this machine has, from ``nvidia-smi`` - without importing torch.

Used by the HTTP server (``/info``), the engine registry (``sam3d`` availability) and the
installer's platform checks. Memory figures are MiB as ``nvidia-smi`` reports them.

``SAM3D_NVIDIA_SMI`` overrides the ``nvidia-smi`` executable (a path), for machines where it
is not on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field

_FIELDS = ("index", "name", "memory.total", "memory.free", "compute_cap", "driver_version")
_FIELDS_NO_CC = ("index", "name", "memory.total", "memory.free", "driver_version")

#: Seconds a probe result is reused (the server may be asked for /info often).
CACHE_S = 10.0


@dataclass
class GpuInfo:
    """One GPU: memory in MiB; ``compute_capability`` (major, minor) or None when unknown."""

    index: int
    name: str
    memory_total_mb: int
    memory_free_mb: int
    compute_capability: tuple[int, int] | None
    driver_version: str

    @property
    def compute_capability_str(self) -> str:
        cc = self.compute_capability
        return f"{cc[0]}.{cc[1]}" if cc else "unknown"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["compute_capability"] = self.compute_capability_str if self.compute_capability else None
        return d


@dataclass
class GpuProbe:
    """The result of asking ``nvidia-smi``: the GPUs found, or ``error`` saying why none."""

    gpus: list[GpuInfo] = field(default_factory=list)
    error: str = ""
    nvidia_smi: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.gpus)

    def to_dict(self) -> dict:
        return {
            "gpus": [g.to_dict() for g in self.gpus],
            "error": self.error,
            "nvidia_smi": self.nvidia_smi,
        }


def _parse_cc(text: str) -> tuple[int, int] | None:
    text = text.strip()
    if not text or "N/A" in text or "." not in text:
        return None
    major, minor = text.split(".", 1)
    try:
        return int(major), int(minor)
    except ValueError:
        return None


def _parse_int(text: str) -> int:
    text = text.strip().split(" ")[0]
    try:
        return int(float(text))
    except ValueError:
        return 0


def parse_nvidia_smi_csv(text: str, with_cc: bool = True) -> list[GpuInfo]:
    """Parse ``--format=csv,noheader,nounits`` output of the query this module makes."""
    gpus: list[GpuInfo] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        want = len(_FIELDS if with_cc else _FIELDS_NO_CC)
        if len(parts) < want:
            continue
        if len(parts) > want:  # a GPU name containing commas
            extra = len(parts) - want
            parts = [parts[0], ",".join(parts[1 : 2 + extra])] + parts[2 + extra :]
        if with_cc:
            idx, name, total, free, cc, driver = parts
        else:
            idx, name, total, free, driver = parts
            cc = ""
        gpus.append(
            GpuInfo(
                index=_parse_int(idx),
                name=name,
                memory_total_mb=_parse_int(total),
                memory_free_mb=_parse_int(free),
                compute_capability=_parse_cc(cc),
                driver_version=driver,
            )
        )
    return gpus


def find_nvidia_smi() -> str | None:
    """Path of ``nvidia-smi`` (``SAM3D_NVIDIA_SMI``, PATH, or the Windows default), or None."""
    override = os.environ.get("SAM3D_NVIDIA_SMI")
    if override:
        return override if os.path.isfile(override) else None
    found = shutil.which("nvidia-smi")
    if found:
        return found
    if os.name == "nt":
        for base in (os.environ.get("ProgramW6432"), os.environ.get("ProgramFiles")):
            if base:
                cand = os.path.join(base, "NVIDIA Corporation", "NVSMI", "nvidia-smi.exe")
                if os.path.isfile(cand):
                    return cand
        cand = os.path.join(
            os.environ.get("SystemRoot", r"C:\Windows"), "System32", "nvidia-smi.exe"
        )
        if os.path.isfile(cand):
            return cand
    return None


def _run(exe: str, fields: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


_cache_lock = threading.Lock()
_cache: tuple[float, str | None, GpuProbe] | None = None


def probe_gpus(timeout: float = 10.0, use_cache: bool = True) -> GpuProbe:
    """Ask ``nvidia-smi`` for the GPUs; never raises (a failure is described in ``error``)."""
    global _cache
    override = os.environ.get("SAM3D_NVIDIA_SMI")
    with _cache_lock:
        if use_cache and _cache is not None:
            t, key, result = _cache
            if time.monotonic() - t < CACHE_S and key == override:
                return result
    result = _probe_uncached(timeout)
    with _cache_lock:
        _cache = (time.monotonic(), override, result)
    return result


def _probe_uncached(timeout: float) -> GpuProbe:
    exe = find_nvidia_smi()
    if exe is None:
        return GpuProbe(
            error="no NVIDIA GPU found (nvidia-smi not on PATH: no NVIDIA driver installed)"
        )
    try:
        proc = _run(exe, _FIELDS, timeout)
        with_cc = True
        if proc.returncode != 0 and "compute_cap" in (proc.stdout + proc.stderr):
            proc = _run(exe, _FIELDS_NO_CC, timeout)  # drivers older than ~510 lack compute_cap
            with_cc = False
    except subprocess.TimeoutExpired:
        return GpuProbe(error=f"nvidia-smi did not answer within {timeout:.0f} s", nvidia_smi=exe)
    except OSError as exc:
        return GpuProbe(error=f"nvidia-smi could not run: {exc}", nvidia_smi=exe)
    if proc.returncode != 0:
        msg = proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}"
        msg = msg.splitlines()[-1] if msg else msg
        return GpuProbe(
            error=f"nvidia-smi failed ({msg}): the NVIDIA driver is not working", nvidia_smi=exe
        )
    gpus = parse_nvidia_smi_csv(proc.stdout, with_cc=with_cc)
    if not gpus:
        return GpuProbe(error="nvidia-smi lists no GPU", nvidia_smi=exe)
    return GpuProbe(gpus=gpus, nvidia_smi=exe)


def torch_cuda_arch_list(gpus: list[GpuInfo]) -> str:
    """``TORCH_CUDA_ARCH_LIST`` for source builds targeting exactly these GPUs ("8.6;8.9")."""
    caps = sorted({g.compute_capability for g in gpus if g.compute_capability})
    return ";".join(f"{a}.{b}" for a, b in caps)
