"""The job options the add-on sends: one typed object, written once (no bpy).

:class:`JobOptions` is the add-on's side of the backend's ``JobOptions`` model
(``backend/options.py``): the fields an artist or a pipeline sets, with the backend's own
defaults. A test checks names, defaults and allowed values against the backend's model
(Blender never imports the backend). The panel's settings, the operators' overrides, the
batch's arguments and its manifest rows all become one of these, and it travels to the
backend as JSON (:meth:`JobOptions.to_json`).

``target_faces`` is an absolute number of triangles in the finished mesh; None keeps all.
``texture_size`` is the texture's edge in texels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["DEFAULT_TARGET_FACES", "ENGINES", "QUALITIES", "TEXTURE_SIZES", "JobOptions"]

#: Engines an artist may ask for ("auto": SAM 3D when the backend can run it, else preview).
ENGINES: tuple[str, ...] = ("auto", "sam3d", "preview")
#: Quality presets (diffusion step counts, see ``backend/options.py: PRESET_STEPS``).
QUALITIES: tuple[str, ...] = ("fast", "balanced", "high")
#: Texture edges the backend accepts (powers of two from 256 to 4096 texels).
TEXTURE_SIZES: tuple[int, ...] = (256, 512, 1024, 2048, 4096)

#: Triangles in a finished mesh unless asked otherwise (the backend's default too).
DEFAULT_TARGET_FACES = 20000

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class JobOptions:
    """What a job asks the backend for besides the image and masks (see module doc)."""

    engine: str = "auto"
    seed: int = 0
    quality: str = "balanced"
    target_faces: int | None = DEFAULT_TARGET_FACES
    bake: bool = True
    texture_size: int = 1024

    def to_json(self) -> dict[str, Any]:
        """The ``options`` JSON of ``POST /jobs`` (and of provenance and reports)."""
        return asdict(self)

    def updated(self, values: Mapping[str, Any]) -> JobOptions:
        """A copy with the options ``values`` sets. Only this class's field names count
        (a manifest row's ``id`` or ``image`` are ignored); None and "" leave an option as
        it is; strings are read as a CSV cell would be (``"1500"``, ``"yes"``); a
        ``target_faces`` of 0 means "keep every face"; engine and quality are
        lower-cased."""
        changes: dict[str, Any] = {}
        for f in fields(self):
            value = values.get(f.name)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            changes[f.name] = _parse(f.name, value)
        return replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> JobOptions:
        """The defaults updated with ``values`` (see :meth:`updated`)."""
        return cls().updated(values)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobOptions:
        """Options read back from :meth:`to_json` output (History, result.json): the
        options present as they are (a null ``target_faces`` keeps every face), the
        others default; other keys (the backend's own options) are ignored."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: None if v is None else _parse(k, v) for k, v in data.items() if k in known
        }
        return cls(**values)


def _parse(name: str, value: Any) -> Any:
    if name in ("engine", "quality"):
        return str(value).strip().lower()
    if name == "bake":
        return value if isinstance(value, bool) else str(value).strip().lower() in _TRUE
    number = int(value)
    if name == "target_faces":
        return number if number > 0 else None  # 0: keep every face
    return number
