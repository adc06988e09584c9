"""pytest: collect the repository root as a plain folder, not as a Python package.

The root ``__init__.py`` is the Blender extension's entry point (a relative import of
``sam3d_blender``). pytest collects a folder holding an ``__init__.py`` as a package and
imports that file, which fails whenever the checkout's folder name is not a Python
identifier (a clone into ``sam3d-blender``, a worktree ``wt-blender``): "attempted
relative import with no known parent package" for every test. Nothing here is shipped
(see the manifest's ``[build]``).
"""

from __future__ import annotations

from pathlib import Path

import pytest


class _RootAsFolder:
    """A global plugin: the hook must apply to the root folder itself, which a conftest's
    hooks (scoped to the folder below it) do not."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(
        self, path: Path, parent: pytest.Collector
    ) -> pytest.Collector | None:
        if path == parent.config.rootpath:
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_RootAsFolder(), "sam3d-root-as-folder")
