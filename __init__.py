"""SAM 3D for Blender: photo + mask -> a textured 3D object (Blender extension entry point).

The repository root is the extension folder; the add-on lives in ``sam3d_blender/`` and
the bundled backend service in ``backend/``.
"""

from .sam3d_blender import register, unregister

__all__ = ["register", "unregister"]
