"""The HTTP server's side of the mask worker (``backend.masking.worker``): started on the
first mask request, kept for the next ones, started again after a crash.

Requests are handed over one at a time (a lock); each waits at most ``timeout_s`` for
its answer, after which the worker is killed (``worker_crashed``) and the next request
starts a fresh one. The worker exits by itself when the server's end of its stdin closes.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from backend.errors import BackendError
from backend.masking.protocol import read_frame, write_frame

_BACKEND_ROOT = str(Path(__file__).resolve().parents[2])
#: Seconds for the worker to start (imports) and for one answer (SAM 2 on a CPU: slow).
START_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 300.0


class MaskWorker:
    def __init__(self, max_pixels: int, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        self.max_pixels = max_pixels
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._answers: queue.Queue = queue.Queue()
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_BACKEND_ROOT, env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "backend.masking.worker", "--max-pixels", str(self.max_pixels)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.starts += 1
        self._answers = queue.Queue()
        threading.Thread(
            target=self._read,
            args=(self._proc, self._answers),
            daemon=True,
            name="mask-worker-reader",
        ).start()
        ready = self._wait(START_TIMEOUT_S)
        if not isinstance(ready, dict) or ready.get("event") != "ready":
            self._kill()
            raise BackendError(
                "worker_crashed", "The mask worker did not start; see the server log."
            )

    @staticmethod
    def _read(proc: subprocess.Popen, answers: queue.Queue) -> None:
        assert proc.stdout is not None
        while True:
            try:
                frame = read_frame(proc.stdout)
            except Exception:  # noqa: BLE001 - a broken frame ends this worker
                frame = None
            answers.put(frame)
            if frame is None:
                return

    def _wait(self, timeout: float) -> Any:
        try:
            return self._answers.get(timeout=timeout)
        except queue.Empty:
            return TimeoutError()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.kill()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return the worker's successful answer; its error is raised."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._kill()
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                write_frame(self._proc.stdin, msg)
            except (BrokenPipeError, OSError):
                self._kill()
                raise BackendError(
                    "worker_crashed", "The mask worker stopped; send the request again."
                ) from None
            ans = self._wait(self.timeout_s)
            if isinstance(ans, TimeoutError):
                self._kill()
                raise BackendError(
                    "worker_crashed",
                    f"The mask worker gave no answer in {self.timeout_s:.0f} s and was stopped.",
                )
            if ans is None:
                rc = self._proc.wait(timeout=5) if self._proc else None
                self._kill()
                raise BackendError(
                    "worker_crashed",
                    f"The mask worker stopped (exit {rc}); send the request again.",
                )
        if not ans.get("ok"):
            raise ans["error"]
        return ans

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=3)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
