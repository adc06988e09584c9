"""Quadric-error decimation to an absolute triangle count (fast-simplification, MIT).

Counts are ABSOLUTE numbers of triangles to KEEP (upstream's ``simplify=0.95`` means
"remove 95 %", i.e. keep 5 %: ``target_faces = 0.05 * source_faces``). Vertices stay in the
object frame (metres); the decimator only moves vertices to quadric-optimal positions.
"""

from __future__ import annotations

import numpy as np

from backend.finishing.mesh_prep import compact, face_areas

# The result must land within this relative distance of the target count.
FACE_COUNT_TOLERANCE = 0.02
# Aggressiveness of fast-simplification's schedule. Measured on the 400k -> 20k benchmark
# torus: agg 3 gives 0.057 mm mean / 0.34 mm max surface distance (VTK decimate: 0.05 /
# 1.4 mm), agg 5 0.12 / 2.8 mm, agg 7 0.15 / 2.1 mm, for about the same time.
DEFAULT_AGG = 3.0


def resolve_target(source_faces: int, target_faces: int | None, target_ratio: float | None) -> int:
    """Triangles to keep: ``target_faces`` if set, else ``ratio * source`` (ratio = fraction KEPT).

    Never more than the source has; ``None`` for both keeps everything.
    """
    if target_faces is not None:
        return int(min(max(int(target_faces), 1), source_faces))
    if target_ratio is not None:
        return int(min(max(round(source_faces * float(target_ratio)), 1), source_faces))
    return int(source_faces)


def _clean(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = faces
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    f = f[keep]
    if len(f):
        areas = face_areas(vertices, f)
        f = f[areas > 0]
    m = compact(vertices, f, np.zeros((len(vertices), 3), np.float32))
    return m.vertices, m.faces


def simplify_mesh(
    vertices: np.ndarray, faces: np.ndarray, target_faces: int, agg: float = DEFAULT_AGG
) -> tuple[np.ndarray, np.ndarray]:
    """Decimate to about ``target_faces`` triangles (within ``FACE_COUNT_TOLERANCE`` when the
    mesh allows it). Returns (vertices (n, 3) float64 metres, faces (m, 3) int64).

    A target at or above the source count returns the mesh unchanged.
    """
    import fast_simplification

    v = np.ascontiguousarray(vertices, np.float32)
    f = np.ascontiguousarray(faces, np.int64)
    if target_faces >= len(f):
        return np.asarray(vertices, np.float64), f
    ask = int(target_faces)
    best: tuple[np.ndarray, np.ndarray] | None = None
    # The decimator runs a fixed schedule: at low aggressiveness and a large reduction it can
    # stop short of any target. When it overshoots, the next try is more aggressive.
    schedule = [agg, max(agg, 5.0), max(agg, 7.0), max(agg, 7.0)]
    for agg_try in schedule:
        ask = int(min(max(ask, 1), len(f) - 1))
        pts, tris = fast_simplification.simplify(v, f, target_count=ask, agg=agg_try)
        pts, tris = _clean(np.asarray(pts, np.float64), np.asarray(tris, np.int64))
        if best is None or abs(len(tris) - target_faces) < abs(len(best[1]) - target_faces):
            best = (pts, tris)
        if abs(len(tris) - target_faces) <= FACE_COUNT_TOLERANCE * target_faces:
            break
        if len(tris) > target_faces * (1 + FACE_COUNT_TOLERANCE):
            ask = int(target_faces)  # stalled above the target: same ask, more aggressive
        else:
            # clean-up removed faces below the target: ask again, corrected
            ask = int(round(ask * target_faces / max(len(tris), 1)))
    assert best is not None
    return best


class SimplifyJob:
    """``simplify_mesh`` running in a forked child process, so that the parent can do
    GIL-bound work meanwhile (fast-simplification holds the GIL for its whole run).

    Used only where forking is safe: Linux, torch not loaded (its thread pools and CUDA
    context do not survive a fork), and ``SAM3D_FINISH_FORK`` not ``0``. Other Python
    threads (a worker's stdin reader, a bake's thread pool) do not matter: the child runs
    only the decimator and numpy on arrays already in memory, writes to its pipe and leaves
    with ``os._exit``, so it never waits for a lock another thread held at the fork (glibc's
    malloc and CPython's own locks are reset by their fork handlers). The one hazard is in
    the parent: OpenBLAS stops its worker threads before every fork, so a BLAS call (a
    float matrix product) running in another thread at that moment waits for them forever;
    no finishing step calls BLAS, and parts finished side by side run only finishing.
    Otherwise - or if the fork fails - the work runs in ``result()`` in this process.
    A crash of the child (e.g. a segfault in the native decimator) raises RuntimeError
    naming the signal, instead of killing this process.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> None:
        self._args = (vertices, faces, int(target_faces))
        self._pid: int | None = None
        self._fd: int | None = None
        if target_faces < len(faces) and _fork_allowed():
            self._start()

    def _start(self) -> None:
        import os

        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return
        if pid == 0:  # child: compute, write, never return into the caller
            code = 1
            try:
                os.close(r)
                v, f = simplify_mesh(*self._args)
                payload = (
                    np.array([len(v), len(f)], np.int64).tobytes()
                    + np.ascontiguousarray(v, np.float64).tobytes()
                    + np.ascontiguousarray(f, np.int64).tobytes()
                )
                view = memoryview(payload)
                while len(view):
                    view = view[os.write(w, view) :]
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        self._pid, self._fd = pid, r

    def cancel(self) -> None:
        """Stop the child (if any) without waiting for its result."""
        if self._pid is None:
            return
        import os
        import signal

        assert self._fd is not None
        os.close(self._fd)
        try:
            os.kill(self._pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self._pid, 0)
        self._pid = self._fd = None

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(vertices (n, 3) float64 metres, faces (m, 3) int64), as ``simplify_mesh``."""
        if self._pid is None:
            return simplify_mesh(*self._args)
        import os
        import signal

        chunks = []
        assert self._fd is not None
        while True:
            b = os.read(self._fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        os.close(self._fd)
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            raise RuntimeError(f"the decimator crashed ({signal.Signals(sig).name})")
        data = b"".join(chunks)
        if os.WEXITSTATUS(status) != 0 or len(data) < 16:
            raise RuntimeError("the decimator process failed")
        nv, nf = np.frombuffer(data[:16], np.int64)
        v = np.frombuffer(data[16 : 16 + 24 * nv], np.float64).reshape(nv, 3).copy()
        f = (
            np.frombuffer(data[16 + 24 * nv : 16 + 24 * nv + 24 * nf], np.int64)
            .reshape(nf, 3)
            .copy()
        )
        return v, f


def _fork_allowed() -> bool:
    import os
    import sys

    if os.environ.get("SAM3D_FINISH_FORK", "1") == "0":
        return False
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    return "torch" not in sys.modules
