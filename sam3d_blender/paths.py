"""Where the add-on lives and where it may write.

The add-on writes only below ``bpy.utils.extension_path_user(<package>)`` (the backend
venv, the cache, logs) or into the cache folder the user chose - never into its own
folder, which Blender may replace on update.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: ``bl_ext.<repo>.<id>`` when Blender loaded us as an extension (this package's parent is
#: the extension's root package); "" when imported as plain ``sam3d_blender``.
ADDON_PACKAGE: str = __package__.rpartition(".")[0] if __package__ else ""


def extension_root() -> Path:
    """The extension folder: holds ``blender_manifest.toml``, ``sam3d_blender/`` and the
    bundled ``backend/`` package."""
    return Path(__file__).resolve().parent.parent


def user_dir(*parts: str, create: bool = True) -> Path:
    """A folder in the add-on's per-user data (``extension_path_user``)."""
    import bpy

    rel = os.path.join(*parts) if parts else ""
    if ADDON_PACKAGE:
        try:
            return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path=rel, create=create))
        except ValueError:  # not loaded as an extension (plain add-on / tests)
            pass
    base = Path(tempfile.gettempdir()) / "sam3d_blender_user"
    path = base / rel if rel else base
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
