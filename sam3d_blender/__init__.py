"""SAM 3D for Blender - the add-on (loaded through the extension's root ``__init__.py``).

Where things are (a folder per layer, see docs/ADDON.md for the module map):

* ``core/``      - no bpy: HTTP client, backend process, jobs and the job manager, the
  results folder, job options, masks, messages, frame math. Testable without Blender.
* ``importing/`` - bpy: a finished result's GLBs -> placed objects (frames applied here),
  marked as assets with a rendered preview when asked.
* ``operators/`` - ``bpy.ops.sam3d.*``, by what they act on.
* ``masking/``   - click-to-mask in the Image Editor (clicks, overlay, accepting the mask).
* ``ui/``        - panels and preferences.
* ``session.py`` (backend, jobs, installer), ``timer.py`` (the one timer), ``finish.py``
  (the one road from a finished job to the scene), ``props.py``, ``job_inputs.py``,
  ``blender_images.py``, ``measure.py``, ``batch.py`` (the headless batch),
  ``asset_library.py`` (the batch's asset library files), ``exports.py`` (USD / FBX files),
  ``paths.py``.

Only :func:`register` imports the bpy-side modules.
"""

from __future__ import annotations

import atexit

_registered: list[type] = []


def _classes() -> list[type]:
    from . import operators, props, ui
    from .masking import panel

    return [*props.classes, *operators.classes, *ui.classes, *panel.classes]


def register() -> None:
    import bpy

    from . import props, timer
    from .importing import asset

    for cls in _classes():
        bpy.utils.register_class(cls)
        _registered.append(cls)
    props.register_properties()
    timer.register_handlers()
    asset.register_handlers()
    atexit.register(_at_exit)


def unregister() -> None:
    import bpy

    from . import props, session, timer
    from .importing import asset

    atexit.unregister(_at_exit)
    asset.unregister_handlers()
    timer.unregister_handlers()
    timer.stop()
    session.reset()  # stops the managed backend and any installer run
    props.unregister_properties()
    for cls in reversed(_registered):
        bpy.utils.unregister_class(cls)
    _registered.clear()


def _at_exit() -> None:
    """Blender is quitting: stop the backend (it would also exit on its own, see
    ``--parent-pid``, but not before noticing)."""
    from . import session

    session.reset()
