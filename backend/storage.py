"""The disk: free space, ``OSError``s a person can act on, and files written atomically.

A full disk (ENOSPC, EDQUOT) becomes ``disk_full`` with the folder and the space left; a
folder the backend may not write (EACCES, EPERM - also ``chattr +i`` - and EROFS) becomes
``data_dir_not_writable``. Every other ``OSError`` stays what it is.

Every file a reader may look at while it is written (a job's status, its results, the
CLI's output) goes through :func:`atomic_path`: readers see the old file or the new one,
never half of one, and a write the disk refuses leaves nothing behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.errors import BackendError

#: Codes of errors that come from the disk, not from the job or its input.
STORAGE_CODES = ("disk_full", "data_dir_not_writable")
_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest existing parent folder (where a folder about to be made
    will live), absolute."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_bytes(folder: Path) -> int | None:
    """Bytes free for this user on the disk that holds (or will hold) ``folder``; None when
    it can't be told."""
    try:
        return shutil.disk_usage(nearest_existing(folder)).free
    except OSError:
        return None


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def disk_full(folder: Path, needed: int | None = None) -> BackendError:
    free = free_bytes(folder)
    left = f"{_mb(free)} free" if free is not None else "no space left"
    want = f"; this needs about {_mb(needed)}" if needed else ""
    return BackendError(
        "disk_full",
        f"The disk holding {folder} is full ({left}{want}). Free some space there, or start "
        "the backend with another --data-dir, then try again.",
        path=str(folder),
        free_bytes=free,
        needed_bytes=needed,
    )


def not_writable(folder: Path, exc: OSError | None = None) -> BackendError:
    why = f" ({exc.strerror})" if exc is not None and exc.strerror else ""
    return BackendError(
        "data_dir_not_writable",
        f"The backend cannot write to {folder}{why}. Make that folder writable, or start the "
        "backend with another --data-dir, then try again.",
        path=str(folder),
        reason=exc.strerror if exc is not None else None,
    )


def refused_by_disk(exc: BaseException) -> bool:
    """True for an ``OSError`` of a full or unwritable disk."""
    return isinstance(exc, OSError) and exc.errno in _FULL | _NOT_WRITABLE


def storage_error(exc: BaseException, folder: Path) -> BackendError | None:
    """The coded error for a disk failure under ``folder``; None for any other exception."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno in _FULL:
        return disk_full(folder)
    if exc.errno in _NOT_WRITABLE:
        return not_writable(folder, exc)
    return None


def require_free_space(folder: Path, needed: int) -> None:
    """Raise ``disk_full`` unless ``needed`` bytes are free on ``folder``'s disk."""
    free = free_bytes(folder)
    if free is not None and free < needed:
        raise disk_full(folder, needed)


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A temporary path beside ``dest`` to write to; renamed onto ``dest`` when the block
    ends normally, removed when it raises (a half file on a full disk would keep the space
    taken, and must never look finished)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _replace(tmp, dest)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def _replace(src: Path, dest: Path) -> None:
    for attempt in range(20):
        try:
            os.replace(src, dest)
            return
        except PermissionError:  # Windows: a reader has the old file open; it closes soon
            if attempt == 19:
                raise
            time.sleep(0.025)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON through :func:`atomic_path`, flushed to the disk first."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
