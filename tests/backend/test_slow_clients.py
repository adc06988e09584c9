"""Slow, stalled, oversized and too many connections, on real loopback sockets.

The server runs with short timeouts (``--header-timeout 2 --body-timeout 3``) so the tests
stay quick; the defaults are longer and the same code enforces them.
"""

from __future__ import annotations

import http.client
import json
import resource
import selectors
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.backend.conftest import disk_scene, png_bytes, start_backend

HEADER_S, BODY_S = 2.0, 3.0
PARTIAL_HEAD = b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    b = start_backend(
        tmp_path_factory.mktemp("slow"),
        extra_args=["--header-timeout", str(HEADER_S), "--body-timeout", str(BODY_S)],
    )
    yield b
    b.stop()


def _connect(b, first: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", b.port), timeout=10)
    if first:
        s.sendall(first)
    return s


def _wait_closed(
    socks: list[socket.socket], timeout: float, tick=None, since: float | None = None
) -> tuple[float, list, set]:
    """Wait until the server closed every socket (EOF or reset): (seconds from ``since``,
    default now, to the last close; what each closed one received; those still open).
    ``tick()`` runs every 0.2 s meanwhile."""
    sel = selectors.DefaultSelector()
    received = {s: b"" for s in socks}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    t0 = time.monotonic()
    since = t0 if since is None else since
    open_ = set(socks)
    while open_ and time.monotonic() - t0 < timeout:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if data:
                received[s] += data
                continue
            sel.unregister(s)
            open_.discard(s)
        if tick is not None:
            tick()
    sel.close()
    return time.monotonic() - since, [received[s] for s in socks if s not in open_], open_


def _read_answer(s: socket.socket, start: bytes = b"") -> bytes:
    """One whole HTTP answer (head and a Content-Length body) from a socket."""
    s.setblocking(True)
    s.settimeout(10)
    answer = start
    while True:
        head, sep, body = answer.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(body) >= length:
                return answer
        more = s.recv(65536)
        if not more:
            return answer
        answer += more


def _health_ms(b) -> float:
    t0 = time.perf_counter()
    r = requests.get(b.url + "/health", timeout=10)
    assert r.status_code == 200
    return (time.perf_counter() - t0) * 1000


def _raise_own_file_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip(f"this test opens {n} sockets; the hard open-file limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def test_unfinished_request_heads_are_closed_at_the_deadline(slow):
    t_open = time.monotonic()
    socks = [_connect(slow, PARTIAL_HEAD) for _ in range(20)]
    trickler = _connect(slow, PARTIAL_HEAD)  # a byte every 0.3 s: a deadline, not idleness
    last = [time.monotonic()]

    def trickle():
        if time.monotonic() - last[0] > 0.3:
            last[0] = time.monotonic()
            try:
                trickler.send(b"x")
            except OSError:
                pass

    assert _health_ms(slow) < 2000  # served while they hang
    took, _, still_open = _wait_closed(
        [*socks, trickler], timeout=HEADER_S + 5, tick=trickle, since=t_open
    )
    assert not still_open, f"{len(still_open)} of 21 connections still open after {took:.1f} s"
    assert HEADER_S - 0.1 < took < HEADER_S + 4


def test_stalled_uploads_are_closed_after_the_body_timeout(slow):
    head = (
        "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {slow.token}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    t_open = time.monotonic()
    stalled = [_connect(slow, head + b"--XyZ\r\nContent-Disposition: form-da") for _ in range(50)]
    # an upload that is slow but alive (a byte a second) is not cut by the idle timeout
    alive = _connect(slow, head + b"--XyZ\r\n")
    sent = [time.monotonic()]

    def drip():
        if time.monotonic() - sent[0] > 1.0:
            sent[0] = time.monotonic()
            alive.send(b"C")

    assert _health_ms(slow) < 2000
    took, _, still_open = _wait_closed(stalled, timeout=BODY_S + 5, tick=drip, since=t_open)
    assert not still_open, f"{len(still_open)} stalled uploads still open after {took:.1f} s"
    assert BODY_S - 0.1 < took < BODY_S + 4
    drip()
    took, _, still_open = _wait_closed([alive], timeout=0.5)
    assert still_open, "a slow upload that still sends was closed"
    took, _, still_open = _wait_closed([alive], timeout=BODY_S + 4)  # now it stops sending
    assert not still_open


def test_an_unauthenticated_upload_is_answered_then_closed(slow):
    s = _connect(
        slow,
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n" + b"x" * 1000,
    )
    took, received, still_open = _wait_closed([s], timeout=BODY_S + 4)
    assert not still_open
    assert received[0].startswith(b"HTTP/1.1 401") and b'"unauthorized"' in received[0]


def test_eleven_hundred_half_open_connections_under_ulimit_1024(tmp_path):
    """The flood that exhausted file descriptors: /health keeps answering, the server never
    runs out of descriptors (it caps connections below its limit, closing the longest
    waiting first), and every half-open connection is closed within the header timeout."""
    _raise_own_file_limit(1400)
    b = start_backend(
        tmp_path,
        extra_args=["--header-timeout", str(HEADER_S), "--body-timeout", str(BODY_S)],
        open_files=1024,
    )
    try:
        cap = b.get("/info").json()["limits"]["max_connections"]
        assert cap < 1024
        socks = []
        for _ in range(1100):
            try:
                socks.append(_connect(b, b"GET /jobs HTTP/1.1\r\nHost: x\r\n"))
            except OSError:
                socks.append(None)  # refused at once by a full backlog: fine, not held
        socks = [s for s in socks if s is not None]
        fds = len(list(Path(f"/proc/{b.proc.pid}/fd").iterdir()))
        assert fds < 1024
        assert _health_ms(b) < 2000
        assert b.get("/jobs").status_code == 200
        took, _, still_open = _wait_closed(socks, timeout=HEADER_S + 6)
        assert not still_open, f"{len(still_open)} connections still open after {took:.1f} s"
        assert _health_ms(b) < 2000
        assert "Too many open files" not in b.stderr_text()
    finally:
        b.stop()


def test_a_chunked_upload_is_stopped_at_the_limit_while_streaming(tmp_path):
    b = start_backend(tmp_path, extra_args=["--max-upload-mb", "1"])  # whole request: 5 MB
    try:
        s = _connect(
            b,
            (
                "POST /jobs HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {b.token}\r\n"
                "Content-Type: multipart/form-data; boundary=XyZ\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode(),
        )
        part = b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="i.png"\r\n\r\n'
        s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        chunk = b"\x00" * 65536
        frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        sent, answer = 0, b""
        sel = selectors.DefaultSelector()
        sel.register(s, selectors.EVENT_READ)
        while sent < 300 * 2**20:  # what used to be spooled in full before the 413
            if sel.select(timeout=0):
                answer = s.recv(65536)
                break
            try:
                s.sendall(frame)
            except OSError:
                break
            sent += len(chunk)
        answer = _read_answer(s, answer)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["code"] == "upload_too_large" and "MB" in body["message"]
        assert sent < 40 * 2**20, f"{sent / 2**20:.0f} MB went in before the answer"
        assert b.get("/health").status_code == 200
    finally:
        b.stop()


def test_a_500_leaves_the_connection_usable(slow):
    img, mask = disk_scene(seed=7)
    r = slow.submit(
        png_bytes(img),
        png_bytes(mask.astype(np.uint8) * 255),
        engine="preview",
        seed=7,
        target_faces=500,
        texture_size=256,
    )
    job = r.json()["id"]
    slow.wait(job)
    (slow.data_dir / job / "result.json").write_text("{ half a file")  # damaged by hand
    conn = http.client.HTTPConnection("127.0.0.1", slow.port, timeout=10)
    conn.request("GET", f"/jobs/{job}/result.json", headers=slow.headers)
    first = conn.getresponse()
    body = json.loads(first.read())
    assert first.status == 500 and body["code"] == "internal_error"
    assert "JSONDecodeError" in body["message"]
    sock = conn.sock
    conn.request("GET", f"/jobs/{job}", headers=slow.headers)  # same connection, kept alive
    second = conn.getresponse()
    assert second.status == 200 and json.loads(second.read())["id"] == job
    assert conn.sock is sock
    conn.close()
