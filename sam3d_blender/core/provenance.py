"""Provenance: what an imported object records about where it came from (no bpy).

Stored on every imported object as ``sam3d_<key>`` custom properties (dicts and lists as
JSON): the backend job id, engine, seed and options, the SHA-256 of the photo sent and its
name, the backend version, where the object was placed and its pose. The same dict is built
for single objects and for the parts of a scene (:func:`provenance`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .options import JobOptions

__all__ = ["PROP_PREFIX", "placement_note", "provenance"]

#: Custom-property prefix of everything the add-on stores on Blender data.
PROP_PREFIX = "sam3d_"
#: How the ``placement`` value says the object was lifted out of a solid on the cursor.
ON_TOP_OF = "cursor:on top of "


def provenance(
    job_id: str,
    result: Mapping[str, Any],
    options: JobOptions,
    source_sha256: str,
    source: str,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance of a job's objects. ``result``: its result.json (engine, backend
    version); ``options``: what was asked; ``source``: the photo's path or Blender image
    name; ``extra``: more keys (e.g. ``scene``: the scene's name)."""
    engine = (
        result.get("engine") or (result.get("stats") or {}).get("engine") or options.engine or ""
    )
    return {
        "job_id": job_id,
        "engine": engine if isinstance(engine, str) else json.dumps(engine),
        "seed": int(options.seed),
        "options": options.to_json(),
        "source_sha256": source_sha256,
        "source_image": source,
        "backend_version": str(result.get("backend_version") or result.get("version") or ""),
        **extra,
    }


def placement_note(placement: str) -> str:
    """' on top of 'Cube' (the 3D cursor is inside it)' for a ``placement`` provenance
    value that says the import lifted the object out of the object the cursor was in;
    else ''."""
    if not placement.startswith(ON_TOP_OF):
        return ""
    return f" on top of '{placement[len(ON_TOP_OF) :]}' (the 3D cursor is inside it)"
