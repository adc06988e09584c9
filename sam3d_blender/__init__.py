"""SAM 3D for Blender - the add-on (loaded through the extension's root ``__init__.py``).

Modules split like glTF-Blender-IO: bpy-free ones (``client``, ``backend_process``,
``job_manager``, ``installer``, ``settings``, ``placement``, ``messages``) can be imported
and tested without Blender; bpy-touching ones (``prefs``, ``props``, ``operators``,
``panels``, ``importer``, ``image_io``, ``runtime``) are imported only by :func:`register`.
"""

from __future__ import annotations

import atexit

_registered: list[type] = []


def _classes() -> list[type]:
    from . import operators, panels, prefs, props, scene_ops

    return [
        *prefs.classes,
        *props.classes,
        *operators.classes,
        *panels.classes,
        *scene_ops.classes,
    ]


def register() -> None:
    import bpy

    from . import props, runtime

    for cls in _classes():
        bpy.utils.register_class(cls)
        _registered.append(cls)
    props.register_properties()
    runtime.register_handlers()
    atexit.register(_at_exit)


def unregister() -> None:
    import bpy

    from . import props, runtime

    atexit.unregister(_at_exit)
    runtime.unregister_handlers()
    runtime.stop_timer()
    runtime.reset()  # stops the managed backend and any installer run
    props.unregister_properties()
    for cls in reversed(_registered):
        bpy.utils.unregister_class(cls)
    _registered.clear()


def _at_exit() -> None:
    """Blender is quitting: stop the backend (it would also exit on its own, see
    ``--parent-pid``, but not before noticing)."""
    from . import runtime

    runtime.reset()
