"""The extension zip: built and validated with Blender's own extension CLI, installed into
a fresh Blender (a subprocess) the way users install it, enabled, and its bundled backend
started."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import bpy  # noqa: E402  (locates Blender's bundled extension CLI)
import pytest

from tests.addon.helpers import REPO

CLI = (
    Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
)


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, str(CLI), "build", "--source-dir", str(REPO), "--output-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1, proc.stdout
    return zips[0]


def test_zip_validates(built_zip):
    proc = subprocess.run(
        [sys.executable, str(CLI), "validate", str(built_zip)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"{built_zip.name}: {built_zip.stat().st_size / 1024:.0f} KiB")


def test_zip_contents(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    tops = {n.split("/")[0] for n in names}
    # pyproject.toml + README.md: what the Install button needs to pip-install the backend
    shipped = {
        "__init__.py",
        "blender_manifest.toml",
        "sam3d_blender",
        "backend",
        "pyproject.toml",
        "README.md",
    }
    assert tops == shipped | ({"LICENSE"} & tops), sorted(tops)
    for required in (
        "sam3d_blender/__init__.py",
        "sam3d_blender/operators/jobs.py",
        "sam3d_blender/core/client.py",
        "backend/__init__.py",
        "backend/__main__.py",
        "backend/server.py",
        "backend/cli.py",
    ):
        assert required in names, required
    bad = [
        n
        for n in names
        if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in f"/{n}" or "/." in f"/{n}"
    ]
    assert bad == []


INSTALL_SCRIPT = textwrap.dedent(
    """
    import os, sys, tempfile
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp()
    import bpy, addon_utils
    bpy.ops.extensions.package_install_files(filepath={zip!r}, repo="user_default")
    name = "bl_ext.user_default.sam3d"
    if name not in bpy.context.preferences.addons:
        addon_utils.enable(name, default_set=True)
    assert hasattr(bpy.ops.sam3d, "generate") and hasattr(bpy.types.Scene, "sam3d")
    paths = sys.modules[name + ".sam3d_blender.paths"]
    root = paths.extension_root()
    assert (root / "backend" / "server.py").is_file(), root
    assert str(root) != {repo!r}
    bpy.context.preferences.addons[name].preferences.cache_dir = {cache!r}
    assert bpy.ops.sam3d.backend_start(blocking=True) == {{"FINISHED"}}
    rt = sys.modules[name + ".sam3d_blender.session"].get()
    print("READY", rt.backend.describe(), flush=True)
    # The Install button, dry run: the real installer runs from a staged copy in the user
    # folder and would pip-install that copy, not the extension folder.
    venv = os.path.join({cache!r}, "venv")
    assert bpy.ops.sam3d.backend_install(profile="cpu", venv=venv, dry_run=True,
                                         blocking=True) == {{"FINISHED"}}
    staged = str(paths.user_dir("installer_source"))
    lines = rt.installer.progress.lines
    assert any("pip install" in ln and staged in ln for ln in lines), lines
    assert not any("pip install" in ln and str(root) + " " in ln + " " for ln in lines), lines
    print("INSTALL-DRY-RUN-OK", flush=True)
    addon_utils.disable(name, default_set=True)
    os._exit(0)
    """
)


def test_installed_zip_enables_and_starts_its_backend(built_zip, tmp_path):
    script = INSTALL_SCRIPT.format(zip=str(built_zip), repo=str(REPO), cache=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**__import__("os").environ, "SAM3D_BACKEND_PYTHON": sys.executable},
    )
    assert "READY" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "INSTALL-DRY-RUN-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
