"""Asset catalogs: an asset library's catalog definition file (no bpy).

Blender lists the catalogs of an asset library in ``blender_assets.cats.txt`` at the
library's root: comment lines (``#``), a ``VERSION 1`` line, then one line per catalog,
``UUID:Path/Of/Catalog:Simple-Name``. An asset belongs to a catalog by its UUID
(``asset_data.catalog_id``); the path is what the Asset Browser shows as a tree.

:class:`CatalogFile` reads that file and adds the catalogs an import needs (every level of
the path, as Blender itself does when an artist makes "Props/Chairs" under "Props"),
keeping every existing line as it is. A catalog's UUID is derived from its path
(:func:`catalog_uuid`), so the same path gets the same UUID in every library and on every
run, unless the file already names that path with another UUID (made by an artist in
Blender): then that one is used.

Which file an asset belongs to follows Blender's rule for a .blend's own assets: the root of
the asset library (from Blender's preferences) that holds the .blend, else the .blend's
folder (:func:`library_root_for`).
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CATALOG_FILE",
    "Catalog",
    "CatalogError",
    "CatalogFile",
    "catalog_uuid",
    "clean_catalog_path",
    "library_root_for",
    "simple_name",
]

#: The catalog definition file at the root of every asset library.
CATALOG_FILE = "blender_assets.cats.txt"
#: The format version this module reads and writes (Blender 3.0 to 4.5 write 1).
VERSION = 1
#: The header Blender writes in a new catalog file.
HEADER = (
    "# This is an Asset Catalog Definition file for Blender.\n"
    "#\n"
    "# Empty lines and lines starting with `#` will be ignored.\n"
    "# The first non-ignored line should be the version indicator.\n"
    '# Other lines are of the format "UUID:catalog/path/for/assets:simple catalog name"\n'
)
#: Namespace of the path-derived catalog UUIDs (:func:`catalog_uuid`); never change it, or
#: a re-run would make a second catalog of the same path.
NAMESPACE = uuid.UUID("6f1c3b52-5d3e-4a43-9a53-3ad0c5b7e1d4")
_SEPARATORS = re.compile(r"[\\/]+")


class CatalogError(Exception):
    """A catalog file that cannot be read (another format version, unreadable bytes) or
    written; ``code`` is a key of ``core/messages.py: MESSAGES``."""

    def __init__(self, message: str, code: str = "asset_catalog_failed") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Catalog:
    """One catalog: its UUID (text form), path (``"Props/Chairs"``) and simple name."""

    uuid: str
    path: str
    simple_name: str


def clean_catalog_path(path: str) -> str:
    """A catalog path as Blender keeps it: '/'-separated, no empty or blank levels, no
    leading or trailing separators or spaces, and no ':' (the file's field separator; it
    becomes '-'). ``"  /Props\\\\Chairs/ "`` -> ``"Props/Chairs"``; "" stays "" (no
    catalog)."""
    parts = (p.strip().replace(":", "-") for p in _SEPARATORS.split(path.replace("\n", " ")))
    return "/".join(p for p in parts if p)


def simple_name(path: str) -> str:
    """Blender's simple name of a catalog path: its levels joined with '-'."""
    return clean_catalog_path(path).replace("/", "-")


def catalog_uuid(path: str) -> str:
    """The UUID this add-on gives the catalog ``path`` when the file has none for it."""
    return str(uuid.uuid5(NAMESPACE, clean_catalog_path(path)))


def _levels(path: str) -> list[str]:
    """``"A/B/C"`` -> ``["A", "A/B", "A/B/C"]``."""
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


class CatalogFile:
    """The catalog file of one asset library (see the module docstring). Reading it never
    changes it; :meth:`ensure` adds lines and writes the file atomically."""

    def __init__(self, library: Path) -> None:
        self.library = Path(library)
        self.path = self.library / CATALOG_FILE
        self.text = ""
        #: catalog path -> catalog, as the file lists them (the first line of a path wins)
        self.catalogs: dict[str, Catalog] = {}
        self._read()

    def _read(self) -> None:
        try:
            self.text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogError(f"cannot read {self.path}: {exc}") from None
        version_seen = False
        for raw in self.text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not version_seen:
                if line != f"VERSION {VERSION}":
                    raise CatalogError(
                        f"{self.path} starts with {line[:40]!r}, not 'VERSION {VERSION}': it "
                        "was written by another Blender version; it is left as it is"
                    )
                version_seen = True
                continue
            ident, _, rest = line.partition(":")
            cat_path, _, name = rest.partition(":")
            try:
                ident = str(uuid.UUID(ident))
            except ValueError:
                continue  # Blender skips such lines too
            cat_path = clean_catalog_path(cat_path)
            if cat_path and cat_path not in self.catalogs:
                self.catalogs[cat_path] = Catalog(ident, cat_path, name.strip())

    def get(self, path: str) -> Catalog | None:
        return self.catalogs.get(clean_catalog_path(path))

    def ensure(self, path: str) -> Catalog:
        """The catalog of ``path``, added to the file (with every missing parent level)
        when missing. Raises :class:`CatalogError` when the file cannot be written."""
        clean = clean_catalog_path(path)
        if not clean:
            raise ValueError("an empty catalog path names no catalog")
        missing = [p for p in _levels(clean) if p not in self.catalogs]
        if missing:
            self.add(missing)
        return self.catalogs[clean]

    def add(self, paths: Iterable[str]) -> None:
        """Add catalogs for ``paths`` (cleaned; ones the file lists are skipped) and write
        the file: existing lines are kept as they are, new ones go at the end."""
        new = []
        for p in paths:
            clean = clean_catalog_path(p)
            if clean and clean not in self.catalogs:
                cat = Catalog(catalog_uuid(clean), clean, simple_name(clean))
                self.catalogs[clean] = cat
                new.append(cat)
        if not new:
            return
        text = self.text or f"{HEADER}\nVERSION {VERSION}\n\n"
        if not text.endswith("\n"):
            text += "\n"
        text += "".join(f"{c.uuid}:{c.path}:{c.simple_name}\n" for c in new)
        tmp = self.path.with_name(f".{CATALOG_FILE}.{os.getpid()}.tmp")
        try:
            self.library.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise CatalogError(f"cannot write {self.path}: {exc}") from None
        self.text = text

    def path_of(self, ident: str) -> str | None:
        """The catalog path of UUID ``ident`` (None when the file does not list it)."""
        return next((c.path for c in self.catalogs.values() if c.uuid == ident), None)


def library_root_for(blend_path: str | Path, library_dirs: Iterable[str | Path]) -> Path:
    """The asset library root whose catalog file the assets of ``blend_path`` use: the
    first of ``library_dirs`` (Blender's asset libraries, in preference order) that holds
    the file, else the file's own folder - Blender's own rule."""
    blend = Path(os.path.abspath(blend_path))
    for d in library_dirs:
        if not str(d).strip():
            continue
        root = Path(os.path.abspath(d))
        if root == blend.parent or root in blend.parents:
            return root
    return blend.parent
