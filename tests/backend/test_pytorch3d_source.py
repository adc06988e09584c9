"""Preparing PyTorch3D's source for a build without Pulsar (a small tree of the same shape)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.install.pytorch3d_source import SourceLayoutError, strip_pulsar

EXT_CPP = """// extension entry
#include "./pulsar/global.h" // Include before <torch/extension.h>.
#include <torch/extension.h>
#include "./pulsar/pytorch/renderer.h"
#include "./pulsar/pytorch/tensor_util.h"
#include "ball_query/ball_query.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ball_query", &BallQuery);

  // Pulsar.
#if !defined(USE_ROCM)
  py::class_<pulsar::pytorch::Renderer>(m, "PulsarRenderer");
  m.attr("EPS") = py::float_(EPS);
  m.attr("MAX_UINT") = py::int_(MAX_UINT);
#endif
}
"""


def make_tree(root: Path) -> Path:
    csrc = root / "pytorch3d" / "csrc"
    (csrc / "pulsar" / "pytorch").mkdir(parents=True)
    (csrc / "ext.cpp").write_text(EXT_CPP)
    (csrc / "pulsar" / "constants.h").write_text(
        "#define EPS 1E-6\n#define MAX_FLOAT 3.4E38f\n#define MAX_INT 2147483647\n"
        "#define MAX_UINT 4294967295u\n#define MAX_USHORT 65535u\n"
    )
    (csrc / "pulsar" / "global.h").write_text("#define MAX_GRAD_SPHERES 128\n")
    (csrc / "pulsar" / "renderer.cu").write_text("// sources setup.py's glob would compile\n")
    return root


def test_pulsar_is_removed_and_its_constants_kept(tmp_path):
    src = make_tree(tmp_path / "p3d")
    assert strip_pulsar(src) is True
    text = (src / "pytorch3d" / "csrc" / "ext.cpp").read_text()
    assert "#include \"./pulsar" not in text and "PulsarRenderer" not in text
    assert not (src / "pytorch3d" / "csrc" / "pulsar").exists()
    for line in (
        'm.attr("EPS") = py::float_(1E-6);',
        'm.attr("MAX_FLOAT") = py::float_(3.4E38f);',
        'm.attr("MAX_INT") = py::int_(2147483647);',
        'm.attr("MAX_UINT") = py::int_(4294967295u);',
        'm.attr("MAX_USHORT") = py::int_(65535u);',
        'm.attr("PULSAR_MAX_GRAD_SPHERES") = py::int_(128);',
    ):
        assert line in text
    assert '#include "ball_query/ball_query.h"' in text and 'm.def("ball_query"' in text
    assert text.rstrip().endswith("}") and text.count("{") == text.count("}")
    assert strip_pulsar(src) is False  # idempotent
    assert (src / "pytorch3d" / "csrc" / "ext.cpp").read_text() == text


def test_an_unknown_layout_is_refused(tmp_path):
    with pytest.raises(SourceLayoutError, match="not a PyTorch3D source tree"):
        strip_pulsar(tmp_path)
    src = make_tree(tmp_path / "p3d")
    (src / "pytorch3d" / "csrc" / "pulsar" / "global.h").write_text("// moved\n")
    with pytest.raises(SourceLayoutError, match="MAX_GRAD_SPHERES"):
        strip_pulsar(src)
    assert (src / "pytorch3d" / "csrc" / "pulsar").is_dir()  # nothing half-done
