"""The mask worker: one long-lived process that runs click-to-mask requests for the HTTP
server, so the server never imports torch or touches the GPU, and SAM 2's model and image
embeddings stay loaded between clicks (``backend.masking.service.Masker``).

Started by ``backend.masking.worker_client.MaskWorker`` as
``python -m backend.masking.worker --max-pixels N``. Frames (``backend.masking.protocol``)
on stdin: ``{"cmd": "segment", "prompt": MaskPrompt, "engine": str, "image": bytes|None,
"image_id": str|None}``; on stdout: first ``{"event": "ready", "pid"}``, then one answer per
request: ``{"ok": True, "png", "score", "engine", "image_id", "size", "full_size", "frame",
"cached", "timings_ms"}``
or ``{"ok": False, "error": BackendError}``. End of input (the server is gone): exit.
Libraries that print would corrupt the channel, so file descriptor 1 is pointed at stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import IO

from backend.errors import BackendError, shorten
from backend.masking.protocol import read_frame, write_frame


def _protocol_stream() -> IO[bytes]:
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "wb", buffering=0)


def answer(masker, msg: dict) -> dict:
    """One request's answer (never raises)."""
    try:
        if msg.get("cmd") != "segment":
            raise BackendError("internal_error", f"unknown mask worker command {msg.get('cmd')!r}")
        r = masker.segment(msg["prompt"], msg["engine"], msg.get("image"), msg.get("image_id"))
        return {
            "ok": True,
            "png": r.png(),
            "score": r.score,
            "engine": r.engine,
            "image_id": r.image_id,
            "size": [r.mask.shape[1], r.mask.shape[0]],
            "full_size": list(r.full_size),
            "frame": r.frame,
            "cached": r.prepared_cached,
            "timings_ms": r.timings_ms,
        }
    except BackendError as exc:
        return {"ok": False, "error": exc}
    except MemoryError:
        return {
            "ok": False,
            "error": BackendError("out_of_memory", "The mask worker ran out of memory."),
        }
    except Exception as exc:  # noqa: BLE001 - every failure answers with a code
        text = f"{type(exc).__name__}: {exc}"
        code = "out_of_memory" if "out of memory" in text.lower() else "internal_error"
        return {
            "ok": False,
            "error": BackendError(code, f"The mask worker failed: {shorten(text, 300)}"),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend.masking.worker")
    p.add_argument("--max-pixels", type=int, required=True)
    args = p.parse_args(argv)
    out = _protocol_stream()
    from backend.masking.service import Masker

    masker = Masker(max_pixels=args.max_pixels)
    write_frame(out, {"event": "ready", "pid": os.getpid()})
    inp = sys.stdin.buffer
    while True:
        msg = read_frame(inp)
        if msg is None:
            return 0
        write_frame(out, answer(masker, msg))


if __name__ == "__main__":
    sys.exit(main())
