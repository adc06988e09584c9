"""The disk under the data folder: free space, and ``OSError``s a person can act on.

A full disk (ENOSPC, EDQUOT) becomes ``disk_full`` with the folder and the space left; a
folder the backend may not write (EACCES, EPERM - also ``chattr +i`` - and EROFS) becomes
``data_dir_not_writable``. Every other ``OSError`` stays what it is.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from backend.errors import BackendError

#: Codes of errors that come from the disk, not from the job or its input.
STORAGE_CODES = ("disk_full", "data_dir_not_writable")
_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def free_bytes(folder: Path) -> int | None:
    """Bytes free for this user on the disk holding ``folder`` (None when it can't be told)."""
    try:
        return shutil.disk_usage(folder).free
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
