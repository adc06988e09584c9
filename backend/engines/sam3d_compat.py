"""What the sam3d engine adds around upstream's code so it runs on current stacks and budgets.

* ``check_tensor`` and ``provide_kaolin_check_tensor()``: upstream's FlexiCubes imports
  ``kaolin.utils.testing.check_tensor`` and calls it on every mesh extraction; it is the only
  part of kaolin upstream uses. kaolin publishes wheels for a few torch/CUDA pairs only (none
  for CUDA 12.8+), so when kaolin is not installed the engine registers this implementation
  under that module name before upstream is imported. Same contract as kaolin's: the shape
  may hold ``None`` wildcards; ``throw=True`` raises ``ValueError``/``TypeError``, else the
  result is a bool.
* ``checkpoint_reads_once()``: each checkpoint file read once while upstream builds the
  pipeline (see its doc).
* ``pointmap_cv_to_p3d``: MoGe's pointmap into PyTorch3D's camera frame, invalid pixels NaN
  as upstream's own transform leaves them.
* ``MeshGridSlot``: upstream's mesh decoder builds dense index grids for FlexiCubes on CUDA
  when it is constructed (``SparseFeatures2Mesh.reg_c``/``reg_v``: about 1.3 GiB at the
  decoder's resolution 64, 4.3 GiB at 96), whatever device it is asked to build on; they are
  neither parameters nor buffers, so moving the module does not move them. The slot drops
  them when the decode stage leaves the GPU and rebuilds them on the GPU (upstream's own
  ``construct_dense_grid``, milliseconds) when it returns, and reports their size to the
  residency manager, which registers it like a sub-model of the decode stage.

No torch at import time (the availability check imports this module in the server).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def check_tensor(
    tensor: Any,
    shape: Sequence[int | None] | None = None,
    dtype: Any = None,
    device: Any = None,
    throw: bool = True,
) -> bool:
    """True when ``tensor`` has this shape (``None`` matches any size), dtype and device."""
    if shape is not None:
        dims = tuple(tensor.shape)
        if len(dims) != len(shape) or any(
            want is not None and want != got for want, got in zip(shape, dims, strict=False)
        ):
            if throw:
                raise ValueError(f"tensor shape is {dims}, should be {tuple(shape)}")
            return False
    if dtype is not None and tensor.dtype != dtype:
        if throw:
            raise TypeError(f"tensor dtype is {tensor.dtype}, should be {dtype}")
        return False
    if device is not None and str(tensor.device) != str(device):
        if throw:
            raise TypeError(f"tensor device is {tensor.device}, should be {device}")
        return False
    return True


KAOLIN_TESTING = "kaolin.utils.testing"


def provide_kaolin_check_tensor() -> bool:
    """Register ``kaolin.utils.testing.check_tensor`` when kaolin is not installed.

    Returns True when this module's implementation was registered, False when a real kaolin
    is importable (then it is used) or the name is already registered.
    """
    if KAOLIN_TESTING in sys.modules:
        return False
    try:
        if importlib.util.find_spec("kaolin") is not None:
            return False
    except (ImportError, ValueError):
        pass
    names = ("kaolin", "kaolin.utils", KAOLIN_TESTING)
    modules = {name: types.ModuleType(name) for name in names}
    for name, module in modules.items():
        module.__path__ = []  # a package, so submodule imports resolve through sys.modules
        module.__doc__ = f"check_tensor only, provided by {__name__} (kaolin is not installed)"
        sys.modules[name] = module
    modules["kaolin"].utils = modules["kaolin.utils"]  # type: ignore[attr-defined]
    modules["kaolin.utils"].testing = modules[KAOLIN_TESTING]  # type: ignore[attr-defined]
    modules[KAOLIN_TESTING].check_tensor = check_tensor  # type: ignore[attr-defined]
    return True


class MeshGridSlot:
    """The mesh decoder's dense FlexiCubes grids as a residency-manager entry (module doc).

    ``extractor``: upstream's ``SparseFeatures2Mesh`` (``res``, ``reg_c``, ``reg_v``);
    ``build``: upstream's ``construct_dense_grid(res, device) -> (verts, cube)``. Quacks like
    a module for ``ResidencyManager``: ``to(device)``, ``parameters()``, ``buffers()``.
    """

    def __init__(self, extractor: Any, build: Callable[[int, Any], tuple[Any, Any]]) -> None:
        self.extractor = extractor
        self.build = build
        self._nbytes = self._held_bytes()

    def _held_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.buffers())

    @property
    def gpu_nbytes(self) -> int:
        """Bytes the grids take on the GPU (measured from the ones built at construction)."""
        return self._nbytes

    def buffers(self) -> Iterator[Any]:
        for name in ("reg_v", "reg_c"):
            t = getattr(self.extractor, name, None)
            if t is not None:
                yield t

    def parameters(self) -> Iterator[Any]:
        return iter(())

    def to(self, device: Any = None, **_: Any) -> MeshGridSlot:
        kind = getattr(device, "type", str(device))
        if kind.startswith("cuda"):
            held = getattr(self.extractor, "reg_c", None)
            if held is None or held.device.type != "cuda":
                verts, cube = self.build(self.extractor.res, device)
                self.extractor.reg_v, self.extractor.reg_c = verts.to(device), cube.to(device)
        else:  # leaving the GPU: drop, rebuilt on the next decode
            self.extractor.reg_v = None
            self.extractor.reg_c = None
        return self


def mesh_grid_slot(decoder: Any) -> MeshGridSlot | None:
    """The slot for upstream's mesh decoder (None when it has no dense grids to manage)."""
    extractor = getattr(decoder, "mesh_extractor", None)
    if extractor is None or getattr(extractor, "reg_c", None) is None:
        return None
    module = sys.modules.get(type(extractor).__module__)
    build = getattr(module, "construct_dense_grid", None)
    if build is None:
        return None
    slot = MeshGridSlot(extractor, build)
    slot.to("cpu")  # built on CUDA by upstream's constructor: free it until the decode stage
    return slot


def pointmap_cv_to_p3d(points: Any) -> Any:
    """MoGe's pointmap (H, W, 3) in the OpenCV camera (X right, Y down, Z forward) -> the
    PyTorch3D camera (X left, Y up, Z forward), with every invalid pixel NaN. A torch tensor
    (any device) or a numpy array in, the same kind out.

    MoGe marks pixels it cannot place (sky, beyond its depth range) with +-inf. Upstream's own
    conversion is a PyTorch3D ``Transform3d`` (a matrix product), in which an infinite
    coordinate turns the point into NaN; the scene scale and shift are then ``nanmedian``s over
    the object's pixels. A plain element-wise flip would keep +-inf, skew those medians and
    fail a photo whose mask is half sky. Same result as upstream's for every valid pixel.
    """
    if hasattr(points, "detach"):  # torch
        import torch

        flip = torch.tensor([-1.0, -1.0, 1.0], dtype=points.dtype, device=points.device)
        valid = torch.isfinite(points).all(dim=-1, keepdim=True)
        return torch.where(valid, points * flip, torch.full_like(points, float("nan")))
    import numpy as np

    pts = np.asarray(points)
    valid = np.isfinite(pts).all(axis=-1, keepdims=True)
    return np.where(valid, pts * np.array([-1.0, -1.0, 1.0], dtype=pts.dtype), np.nan)


@contextmanager
def checkpoint_reads_once() -> Iterator[None]:
    """While upstream builds its pipeline, each checkpoint file is loaded once.

    Upstream calls ``torch.load`` on each generator checkpoint twice (for the generator, then
    for its condition embedder, each keeping a filtered part). Inside this context a file is
    loaded memory-mapped (its bytes stay in the page cache instead of a second private copy)
    and a repeated load of the same path returns the same object; the cache is dropped on
    exit, so the state dicts are freed once the modules have copied them.
    """
    import torch

    original = torch.load
    cache: dict[str, Any] = {}

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(f, (str, os.PathLike)) or not os.path.isfile(f):
            return original(f, *args, **kwargs)
        key = os.path.realpath(f)
        if key not in cache:
            try:
                cache[key] = original(f, *args, mmap=True, **kwargs)
            except (RuntimeError, ValueError, TypeError):  # a legacy (non-zip) file: no mmap
                cache[key] = original(f, *args, **kwargs)
        return cache[key]

    torch.load = load
    try:
        yield
    finally:
        torch.load = original
        cache.clear()
