"""PyTorch3D's source tree prepared for a build without Pulsar.

Pulsar (PyTorch3D's sphere renderer, ``csrc/pulsar``) fails to link with CUDA 12.8+/13
toolchains, and SAM 3D never calls it. PyTorch3D's Python still reads six constants from the
extension at import time (``_C.EPS``, ``_C.MAX_UINT``, ... as default arguments in
``renderer/points/pulsar``), and those are defined inside the Pulsar block of ``ext.cpp``.

``strip_pulsar(src)`` therefore

1. reads the constants' values from Pulsar's own headers (``constants.h``, ``global.h``),
2. rewrites ``csrc/ext.cpp`` without the Pulsar includes and bindings, defining the
   constants with those values,
3. removes ``csrc/pulsar`` so ``setup.py``'s source glob does not compile it.

It edits a checkout in place (idempotent: a tree already stripped is left as it is) and
needs no torch. The build itself is ``pip install --no-build-isolation <src>`` with
``FORCE_CUDA=1`` and ``TORCH_CUDA_ARCH_LIST`` (``backend.install.plan``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

#: Constants the Python package reads from ``_C`` -> (header, C macro holding the value).
CONSTANTS: dict[str, tuple[str, str]] = {
    "EPS": ("constants.h", "EPS"),
    "MAX_FLOAT": ("constants.h", "MAX_FLOAT"),
    "MAX_INT": ("constants.h", "MAX_INT"),
    "MAX_UINT": ("constants.h", "MAX_UINT"),
    "MAX_USHORT": ("constants.h", "MAX_USHORT"),
    "PULSAR_MAX_GRAD_SPHERES": ("global.h", "MAX_GRAD_SPHERES"),
}
FLOAT_CONSTANTS = {"EPS", "MAX_FLOAT"}
MARKER = "// Pulsar left out of this build (sam3d-blender installer)."


class SourceLayoutError(RuntimeError):
    """The tree is not the PyTorch3D layout this step knows (another commit?)."""


def _macro(header: Path, name: str) -> str:
    text = header.read_text(encoding="utf-8")
    m = re.search(rf"^\s*#define\s+{re.escape(name)}\s+(\S+)", text, re.MULTILINE)
    if not m:
        raise SourceLayoutError(f"{header} defines no {name}")
    return m.group(1)


def pulsar_constants(src: Path) -> dict[str, str]:
    """The constants' C literals, read from ``csrc/pulsar``'s headers."""
    pulsar = Path(src) / "pytorch3d" / "csrc" / "pulsar"
    return {key: _macro(pulsar / header, macro) for key, (header, macro) in CONSTANTS.items()}


def rewrite_ext_cpp(text: str, constants: dict[str, str]) -> str:
    """``ext.cpp`` without Pulsar: includes and bindings gone, the constants kept."""
    lines = [ln for ln in text.splitlines() if '#include "./pulsar/' not in ln]
    text = "\n".join(lines) + "\n"
    start = text.find("  // Pulsar.")
    end = text.rfind("}")
    if start < 0 or end < start:
        raise SourceLayoutError("ext.cpp has no '// Pulsar.' block before its last brace")
    body = [f"  {MARKER}"]
    for key, value in constants.items():
        kind = "float_" if key in FLOAT_CONSTANTS else "int_"
        body.append(f'  m.attr("{key}") = py::{kind}({value});')
    return text[:start] + "\n".join(body) + "\n}\n"


def strip_pulsar(src: Path) -> bool:
    """Prepare the checkout ``src`` for a Pulsar-free build; False when already done."""
    src = Path(src)
    ext = src / "pytorch3d" / "csrc" / "ext.cpp"
    if not ext.is_file():
        raise SourceLayoutError(f"{ext} does not exist: not a PyTorch3D source tree")
    text = ext.read_text(encoding="utf-8")
    if MARKER in text:
        return False
    constants = pulsar_constants(src)
    ext.write_text(rewrite_ext_cpp(text, constants), encoding="utf-8")
    shutil.rmtree(src / "pytorch3d" / "csrc" / "pulsar")
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m backend.install.pytorch3d_source SRC``: strip Pulsar from SRC."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m backend.install.pytorch3d_source PYTORCH3D_SRC", file=sys.stderr)
        return 2
    changed = strip_pulsar(Path(args[0]))
    print("pulsar stripped" if changed else "already stripped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
