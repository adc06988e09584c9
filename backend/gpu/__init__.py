"""GPU probing and staged GPU residency.

``backend.gpu.probe`` asks ``nvidia-smi`` (a subprocess) what GPUs exist; it never imports
torch, so the HTTP server may call it for ``/info`` and the engine registry for availability.
``backend.gpu.residency`` moves sub-models between CPU and GPU stage by stage; it imports
torch lazily (only worker processes use it).
"""

from backend.gpu.probe import GpuInfo, GpuProbe, probe_gpus, torch_cuda_arch_list

__all__ = ["GpuInfo", "GpuProbe", "probe_gpus", "torch_cuda_arch_list"]
