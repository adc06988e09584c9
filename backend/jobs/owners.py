"""Which backend server owns a job, and whether that server is still alive.

Several backends may share one data directory (two Blender sessions, say). Each server
holds an exclusive lock on ``<data_dir>/_servers/<owner id>.lock`` (``JobStore.servers_dir``)
for its lifetime; a job records its owner id. A server restarting only recovers jobs whose
owner no longer holds its lock - never another live server's work. Locks vanish with their
process, so a crashed server's jobs are recovered even when the operating system reuses its
pid.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

if os.name == "nt":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False


class ServerInstance:
    """This server's identity in a data directory; holds its lock in ``servers_dir`` until
    ``close``."""

    def __init__(self, servers_dir: Path) -> None:
        self.dir = Path(servers_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._path = self.dir / f"{self.id}.lock"
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(self._fd):  # pragma: no cover - a fresh uuid is never locked
            raise RuntimeError(f"cannot lock {self._path}")

    def owner_alive(self, owner: str | None) -> bool:
        """True when ``owner`` is another server that is still running."""
        if not owner or owner == self.id:
            return False
        path = self.dir / f"{Path(owner).name}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return False  # no lock file: that server is long gone
        try:
            if _try_lock(fd):
                os.close(fd)
                fd = -1
                path.unlink(missing_ok=True)  # stale: tidy up
                return False
            return True
        finally:
            if fd >= 0:
                os.close(fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._path.unlink(missing_ok=True)
