"""Child processes of the add-on (the backend, the installer), bpy-free.

Both run in a process group of their own, so stopping one reaches everything it started
(the backend's workers, pip and its builds). Their output is read by a daemon thread that
never touches bpy (:class:`LineReader`); Blender's main thread takes the lines when it
polls.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

__all__ = [
    "LineReader",
    "cmdline",
    "new_group_kwargs",
    "pid_alive",
    "signal_group",
    "tail_lines",
    "terminate_tree",
]


def new_group_kwargs() -> dict[str, Any]:
    """``subprocess.Popen`` keywords that start the child in a process group of its own
    (POSIX: a new session; Windows: no console window, a new process group)."""
    if sys.platform == "win32":
        return {"creationflags": 0x08000000 | 0x00000200}  # NO_WINDOW | NEW_PROCESS_GROUP
    return {"start_new_session": True}


class LineReader:
    """Drains ``stream`` in a daemon thread: every line goes to ``queue`` and, when given,
    to ``log`` (a text file opened for appending). The thread never touches bpy."""

    def __init__(self, stream: IO[bytes], log: IO[str] | None = None, keep: int = 200) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.recent: deque[str] = deque(maxlen=keep)
        self._log = log
        self._thread = threading.Thread(
            target=self._run, args=(stream,), daemon=True, name="sam3d-line-reader"
        )
        self._thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.recent.append(line)
                self.queue.put(line)
                if self._log is not None:
                    try:
                        self._log.write(line + "\n")
                        self._log.flush()
                    except (OSError, ValueError):
                        pass
        except (OSError, ValueError):
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass

    def lines(self) -> list[str]:
        """Lines that arrived since the last call (non-blocking)."""
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def tail_lines(path: Path | None, n: int = 20) -> list[str]:
    """The last ``n`` lines of a text file (empty when it does not exist)."""
    if path is None or not path.exists():
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in data.splitlines() if ln.strip()][-n:]


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (and is not a zombie on Linux)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # QUERY_LIMITED_INFO
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def cmdline(pid: int) -> list[str] | None:
    """The command line of ``pid`` where the OS tells it cheaply (Linux), else None."""
    path = Path(f"/proc/{pid}/cmdline")
    try:
        return [a for a in path.read_bytes().decode("utf-8", "replace").split("\0") if a]
    except OSError:
        return None


def signal_group(pid: int, sig: int | None, group: bool = True) -> None:
    """Send ``sig`` to the process group led by ``pid`` (or to ``pid`` alone without
    ``group``); on Windows (where ``sig`` is ignored) end its process tree with taskkill.
    A process that is already gone is no error."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/PID", str(pid), "/T", "/F"], capture_output=True, check=False)
        return
    try:
        if group:
            os.killpg(pid, sig if sig is not None else signal.SIGKILL)
        else:
            os.kill(pid, sig if sig is not None else signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_tree(
    pid: int, group: bool, timeout: float, proc: subprocess.Popen | None = None
) -> None:
    """SIGTERM ``pid`` (and its process group with ``group``), then SIGKILL whatever is
    left after ``timeout`` seconds. With ``proc`` (our own child) its exit is awaited with
    ``proc.wait``: an exited but not yet reaped child still looks alive to
    :func:`pid_alive` where there is no /proc (macOS)."""
    if sys.platform == "win32":
        signal_group(pid, None)
        return
    signal_group(pid, signal.SIGTERM, group)
    if proc is not None:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    else:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.05)
    signal_group(pid, signal.SIGKILL, group)
