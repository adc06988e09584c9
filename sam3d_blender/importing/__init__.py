"""Bringing finished results into Blender (bpy): GLB -> named, collected, placed objects.

The frame math is the bpy-free ``core/placement.py``; these modules only apply it to
Blender data (as glTF-Blender-IO's ``blender/imp`` applies what its ``io/imp`` prepared):

* ``gltf``    - Blender's glTF importer, the "SAM 3D" collection, provenance properties,
  the Decimate modifier;
* ``cameras`` - cameras that see like the photo (intrinsics -> lens, sensor, shift);
* ``placing`` - poses (glTF object frame -> camera frame -> Blender world) and standing
  objects on the 3D cursor;
* ``view``    - selecting what was imported and framing it in the 3D Viewports;
* ``object``  - one generated object (:func:`.object.import_object`);
* ``scene``   - the objects of one photo under one camera (:func:`.scene.import_scene`).
"""
