"""Frames between the HTTP server and the mask worker: an 8-byte big-endian length, then
a pickle. Both ends are our own processes (the server starts the worker), so pickle is
safe here; it carries image bytes, masks and ``BackendError`` without base64."""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

_HEADER = struct.Struct(">Q")


def write_frame(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: IO[bytes]) -> Any:
    """The next object, or None at the end of the stream."""
    head = _read_exact(stream, _HEADER.size)
    if head is None:
        return None
    data = _read_exact(stream, _HEADER.unpack(head)[0])
    return None if data is None else pickle.loads(data)
