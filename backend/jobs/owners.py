"""Who owns a job: the backend server that runs it, and the artists who asked for it.

Artists (``serve --tokens-file``): a job's ``artists.json`` in its folder lists the artists
whose requests it answers. The job id is a content hash, so two artists sending the same
request share one job (it runs once): each of them is one of its owners. An artist sees,
reads and cancels only jobs they own; with the single-token setup there are no artists and
every caller sees every job.

Servers:
Several backends may share one data directory (two Blender sessions, say). Each server
holds an exclusive lock on ``<data_dir>/_servers/<owner id>.lock`` (``JobStore.servers_dir``)
for its lifetime; a job records its owner id. A server restarting only recovers jobs whose
owner no longer holds its lock - never another live server's work. Locks vanish with their
process, so a crashed server's jobs are recovered even when the operating system reuses its
pid.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path

from backend.storage import write_json_atomic

#: The file in a job's folder that lists its artists (``JobArtists``).
ARTISTS_FILE = "artists.json"

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


class JobArtists:
    """The artists owning each job, in ``<job folder>/artists.json`` (a JSON list of names).

    Additions and removals are serialised here, so two artists submitting the same request
    at once are both recorded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @staticmethod
    def path(job_dir: Path) -> Path:
        return Path(job_dir) / ARTISTS_FILE

    def of(self, job_dir: Path) -> list[str]:
        """The job's artists ([] for a job no artist sent: a single-token server's)."""
        try:
            data = json.loads(self.path(job_dir).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [str(a) for a in data] if isinstance(data, list) else []

    def add(self, job_dir: Path, artist: str) -> None:
        with self._lock:
            names = self.of(job_dir)
            if artist not in names:
                write_json_atomic(self.path(job_dir), names + [artist])

    def remove(self, job_dir: Path, artist: str) -> list[str]:
        """Drop ``artist``; returns the artists left."""
        with self._lock:
            names = [a for a in self.of(job_dir) if a != artist]
            write_json_atomic(self.path(job_dir), names)
            return names
