"""Mesh finishing: a ``Reconstruction`` -> a simplified, UV-unwrapped, textured GLB.

Engine-neutral and CPU-first (numpy/scipy, fast-simplification, xatlas; an optional torch
bake on CUDA). Entry points:

* ``finish_to_glb(recon, options, out_path, ctx)`` - one object; returns JSON-able stats.
* ``finish_parts(recons, options, out_paths, ctx, on_part)`` - a scene's objects, two at a
  time (``backend.finishing.parts``).
* ``export_scene_glb(parts, camera, camera_name, out_path)`` - several finished objects
  placed by their poses in the camera frame, plus the camera.

GLB layout and frames: see ``backend.finishing.glb``.
"""

from backend.finishing.glb import export_scene_glb
from backend.finishing.parts import finish_parts
from backend.finishing.pipeline import finish_to_glb

__all__ = ["finish_to_glb", "finish_parts", "export_scene_glb"]
