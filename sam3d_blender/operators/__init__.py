"""The operators, ``bpy.ops.sam3d.*`` (the names pipelines depend on), by what they act on:

* ``jobs``    - generate (one object, or a photo's objects), cancel, dismiss the notice;
* ``results`` - import a finished result or scene (again), open its folder;
* ``backend`` - start, stop, install the backend;
* ``inputs``  - the panel's image, mask and mask list;
* ``masking`` - click-to-mask in the Image Editor;
* ``mixins``  - waiting here or letting the timer finish (decided once), job options.
"""

from __future__ import annotations

from . import backend, inputs, jobs, masking, results

classes = (
    *jobs.classes,
    *results.classes,
    *backend.classes,
    *inputs.classes,
    *masking.classes,
)
