"""SAM 3D for Blender - the backend service.

Runs in its own virtual environment, started by the Blender add-on (or by hand). It never
imports ``bpy``; the HTTP server process never imports ``torch`` - engines run in worker
processes (see ``backend.worker``).
"""

__version__ = "0.1.0"
API_VERSION = 1
