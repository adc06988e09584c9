"""The add-on's bpy-free half: no ``bpy`` module use anywhere in this folder.

Everything the add-on does that Blender need not see lives here, importable and tested
under a plain Python (``tests/test_architecture.py`` fails if anything here imports bpy):

* talking to the backend - ``client`` (HTTP), ``backend_process`` (start, watch, stop),
  ``subprocesses`` (process groups, line readers), ``threads`` (work off the main thread),
  ``installer`` (the Install button's subprocess), ``settings`` (which backend);
* jobs - ``options`` (the typed job options), ``jobs`` (request, kind, phases, delivery),
  ``job_manager`` (the state machine), ``results`` (the results folder),
  ``scene_result`` (reading a scene's result), ``masks`` (what a mask folder holds);
* for the artist and the file - ``messages`` (error codes -> sentences), ``provenance``;
* frames, units and measuring - ``placement`` (glTF/Blender/camera frames, intrinsics ->
  Blender camera), ``raster`` (silhouettes and IoU);
* the batch - ``batch_items`` (arguments, manifests, fingerprints), ``batch_report``.
"""
