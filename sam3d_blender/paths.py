"""Where the add-on lives, where it may write, and where its preferences are.

The add-on writes only below ``bpy.utils.extension_path_user(<package>)`` (the backend
venv, the cache, logs) or into the cache folder the user chose - never into its own
folder, which Blender may replace on update.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

#: ``bl_ext.<repo>.<id>`` when Blender loaded us as an extension (this package's parent is
#: the extension's root package); "" when imported as plain ``sam3d_blender``.
ADDON_PACKAGE: str = __package__.rpartition(".")[0] if __package__ else ""
#: The add-on's name in ``context.preferences.addons`` (its preferences' ``bl_idname``).
ADDON_ID: str = ADDON_PACKAGE or "sam3d_blender"


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


def addon_preferences(context: Any = None) -> Any:
    """This add-on's ``AddonPreferences`` (see ``ui/prefs.py``), or None when they are not
    registered (a plain import)."""
    import bpy

    ctx = context or bpy.context
    addon = ctx.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None
