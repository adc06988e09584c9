"""A corpus of malformed requests and the 4xx answer each must get (never a 5xx).

Used by ``test_malformed.py`` (each case a test) and by ``bench/bench_hostile.py`` (the
count). Cases are built from a valid photo + mask so that exactly one thing is wrong.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests
from PIL import Image

from tests.backend.conftest import disk_scene, png_bytes


@dataclass(frozen=True)
class Malformed:
    """One bad request. ``files``/``data``/``body`` go through ``requests``; ``raw`` is
    written to a socket as is. ``code`` None: the answer is not JSON (h11's own 400)."""

    name: str
    status: int
    code: str | None
    method: str = "POST"
    path: str = "/jobs"
    files: list[tuple[str, tuple[str, bytes]]] | None = None
    data: dict[str, str] | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: bool = True
    raw: bytes | None = None


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds one tiny zlib stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def corpus() -> list[Malformed]:
    img, mask_bool = disk_scene(seed=900)
    good = png_bytes(img)
    good_mask = png_bytes(mask_bool.astype(np.uint8) * 255)
    photo = Image.fromarray(img)
    rng = np.random.default_rng(9)
    big = _encode(Image.new("RGB", (10000, 10000), (10, 20, 30)), "PNG")
    bomb = _encode(Image.new("1", (20000, 20000)), "PNG")
    other_aspect = png_bytes(np.zeros((100, 100), np.uint8))
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 64] = b"\xff" * 64
    cases: list[Malformed] = []

    def image(name: str, data: bytes, status: int = 400, code: str = "bad_image") -> None:
        files = [("image", ("i.png", data)), ("mask", ("m.png", good_mask))]
        cases.append(Malformed(f"image: {name}", status, code, files=files))

    def mask(name: str, data: bytes, status: int = 400, code: str = "bad_mask") -> None:
        files = [("image", ("i.png", good)), ("mask", ("m.png", data))]
        cases.append(Malformed(f"mask: {name}", status, code, files=files))

    def options(name: str, text: str, status: int = 422, code: str = "bad_options") -> None:
        files = [("image", ("i.png", good)), ("mask", ("m.png", good_mask))]
        cases.append(
            Malformed(f"options: {name}", status, code, files=files, data={"options": text})
        )

    # -- the photo ------------------------------------------------------------------------
    image("plain text", b"hello, I am text, not a picture" * 10)
    image("half a PNG", good[: len(good) // 2])
    image("PNG signature and header only", good[:33])
    image("PNG with corrupt pixel data", bytes(corrupt))
    image("half a JPEG", _encode(photo, "JPEG")[:400])
    image("JPEG marker then garbage", b"\xff\xd8\xff\xe0" + rng.bytes(2000))
    image("PostScript (EPS)", _encode(photo, "EPS"))
    image("PDF", _encode(photo, "PDF"))
    image("SVG", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>')
    for fmt in ("GIF", "ICO", "PPM", "TGA", "PCX", "DDS", "QOI", "SGI"):
        image(f"{fmt} (not a photo format)", _encode(photo, fmt))
    image("PSD header", b"8BPS\x00\x01" + b"\x00" * 40)
    image("HTML", b"<!doctype html><html><body>hi</body></html>")
    image("ZIP", b"PK\x03\x04" + rng.bytes(500))
    image("random 1 KB", rng.bytes(1024))
    image("random 100 KB", rng.bytes(100_000))
    image("one byte", b"\x89")
    image("empty file", b"", 400, "empty_file")
    image("PNG declaring 20000x20000 (bomb)", bomb, 413, "image_too_large")
    image(
        "PNG header declaring 100000x100000", _png_header(100_000, 100_000), 413, "image_too_large"
    )
    image("PNG header declaring 0x0", _png_header(0, 0))
    image(
        "PNG header declaring 10000x10000, no pixels",
        _png_header(10_000, 10_000),
        400,
        "mask_size_mismatch",
    )
    image("100 MP PNG with a mask of another shape", big, 400, "mask_size_mismatch")
    image(
        "BMP header declaring 60000x60000",
        b"BM"
        + struct.pack("<IHHIIiiHHIIiiII", 0, 0, 0, 54, 40, 60000, 60000, 1, 24, 0, 0, 0, 0, 0, 0),
        413,
        "image_too_large",
    )
    image("TIFF with a broken directory", b"II*\x00\x08\x00\x00\x00\xff\xff" + rng.bytes(64))
    image("WebP container, garbage inside", b"RIFF\x40\x00\x00\x00WEBPVP8 " + rng.bytes(60))
    image("JSON text", json.dumps({"image": "yes"}).encode())

    # -- the mask -------------------------------------------------------------------------
    mask("plain text", b"\x89PNG but not really")
    mask("empty file", b"", 400, "empty_file")
    mask("another shape", other_aspect, 400, "mask_size_mismatch")
    mask("nothing selected", png_bytes(np.zeros((180, 240), np.uint8)), 400, "empty_mask")
    mask("everything selected", png_bytes(np.full((180, 240), 255, np.uint8)), 400, "full_mask")
    mask("PostScript (EPS)", _encode(Image.fromarray(mask_bool.astype(np.uint8) * 255), "EPS"))
    mask("GIF", _encode(Image.fromarray(mask_bool.astype(np.uint8) * 255), "GIF"))
    mask("half a PNG", good_mask[: len(good_mask) // 2])
    mask("PNG declaring 20000x20000 (bomb)", bomb, 413, "image_too_large")
    cases.append(
        Malformed(
            "mask: none, and the photo has no alpha",
            400,
            "bad_mask",
            files=[("image", ("i.png", good))],
        )
    )
    both = [
        ("image", ("i.png", good)),
        ("mask", ("m.png", good_mask)),
        ("masks", ("0.png", good_mask)),
    ]
    cases.append(Malformed("masks: one mask and several at once", 400, "bad_mask", files=both))
    many = [("image", ("i.png", good))] + [("masks", (f"{i}.png", good_mask)) for i in range(33)]
    cases.append(Malformed("masks: 33 (the limit is 32)", 400, "bad_mask", files=many))
    one_bad = [
        ("image", ("i.png", good)),
        ("masks", ("0.png", good_mask)),
        ("masks", ("1.png", b"nope")),
    ]
    cases.append(Malformed("masks: one not an image", 400, "bad_mask", files=one_bad))
    odd = [
        ("image", ("i.png", good)),
        ("masks", ("0.png", good_mask)),
        ("masks", ("1.png", other_aspect)),
    ]
    cases.append(Malformed("masks: one of another shape", 400, "mask_size_mismatch", files=odd))

    # -- the options ----------------------------------------------------------------------
    options("not JSON", "{not json")
    options("a JSON list", "[1, 2]")
    options("a JSON string", '"fast"')
    options("a JSON number", "3")
    options("JSON null", "null")
    options("lists nested 100,000 deep", "[" * 100_000 + "]" * 100_000)
    options("objects nested 100,000 deep", '{"a":' * 100_000 + "1" + "}" * 100_000)
    options("seed true", '{"seed": true}')
    options("seed 1.5", '{"seed": 1.5}')
    options('seed "3"', '{"seed": "3"}')
    options("seed -1", '{"seed": -1}')
    options("seed 2**64", '{"seed": 18446744073709551616}')
    options('bake "yes"', '{"bake": "yes"}')
    options("bake 1", '{"bake": 1}')
    options("texture_size 1000", '{"texture_size": 1000}')
    options("texture_size 100000", '{"texture_size": 100000}')
    options('texture_size "1024"', '{"texture_size": "1024"}')
    options("target_faces 5", '{"target_faces": 5}')
    options("target_faces 1e9", '{"target_faces": 1000000000}')
    options("target_ratio 0", '{"target_ratio": 0}')
    options("target_ratio 2", '{"target_ratio": 2}')
    options("target_ratio NaN", '{"target_ratio": NaN}')
    options('quality "ultra"', '{"quality": "ultra"}')
    options("quality 1", '{"quality": 1}')
    options("an unknown option", '{"no_such_option": 1}')
    options("a 900 KB engine name", json.dumps({"engine": "x" * 900_000}))
    options("a 900 KB option name", json.dumps({"y" * 900_000: 1}))
    options("engine null", '{"engine": null}')
    options("an unknown engine", '{"engine": "dreamfusion"}', 422, "unknown_engine")
    options("an engine this backend lacks", '{"engine": "sam3d"}', 409, "engine_unavailable")
    options("2 MB of options", json.dumps({"engine": "y" * 2_000_000}), 400, "bad_options")
    as_file = [
        ("image", ("i.png", good)),
        ("mask", ("m.png", good_mask)),
        ("options", ("o.json", b"{}")),
    ]
    cases.append(Malformed("options: sent as a file", 422, "bad_options", files=as_file))

    # -- the form and the route -----------------------------------------------------------
    cases.append(
        Malformed(
            "form: no image field", 422, "bad_options", files=[("mask", ("m.png", good_mask))]
        )
    )
    cases.append(
        Malformed("form: image as a text field", 422, "bad_options", data={"image": "abc"})
    )
    json_body = json.dumps({"image": "abc"}).encode()
    cases.append(
        Malformed(
            "form: a JSON body",
            422,
            "bad_options",
            body=json_body,
            headers={"Content-Type": "application/json"},
        )
    )
    cases.append(Malformed("form: no body at all", 422, "bad_options"))
    cases.append(
        Malformed(
            "form: urlencoded",
            422,
            "bad_options",
            body=b"image=abc",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )
    cases.append(
        Malformed(
            "form: multipart without a boundary",
            400,
            "bad_options",
            body=b"--x\r\n",
            headers={"Content-Type": "multipart/form-data"},
        )
    )
    cases.append(
        Malformed(
            "form: multipart cut short",
            422,
            "bad_options",
            body=b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="i.png"\r\n\r\nabc',
            headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
        )
    )
    cases.append(
        Malformed(
            "form: 1001 files",
            400,
            "bad_options",
            files=[("masks", (f"{i}.png", b"x")) for i in range(1001)],
        )
    )
    cases.append(Malformed("route: PUT /jobs", 405, "bad_options", method="PUT"))
    cases.append(Malformed("route: DELETE /jobs", 405, "bad_options", method="DELETE"))
    cases.append(Malformed("route: unknown", 404, "not_found", method="GET", path="/nope"))
    cases.append(
        Malformed(
            "route: a very long unknown path", 404, "not_found", method="GET", path="/" + "n" * 8000
        )
    )
    for name, job_id, status, code in (
        ("dot dot", "..%2E", 400, "bad_job_id"),
        ("traversal", "..%2F..%2Fetc%2Fpasswd", 404, "not_found"),
        ("short", "abc", 400, "bad_job_id"),
        ("upper-case hex", "A" * 32, 400, "bad_job_id"),
        ("10 KB long", "a" * 10_000, 400, "bad_job_id"),
        ("NUL byte", "%00" + "a" * 31, 400, "bad_job_id"),
        ("unicode", "%C3%A9" + "a" * 31, 400, "bad_job_id"),
        ("unknown", "0" * 32, 404, "not_found"),
    ):
        cases.append(
            Malformed(f"job id: {name}", status, code, method="GET", path=f"/jobs/{job_id}")
        )
        cases.append(
            Malformed(
                f"cancel, job id: {name}", status, code, method="DELETE", path=f"/jobs/{job_id}"
            )
        )
    cases.append(
        Malformed(
            "part index: not a number",
            422,
            "bad_options",
            method="GET",
            path=f"/jobs/{'0' * 32}/parts/abc/result",
        )
    )
    cases.append(
        Malformed(
            "part index: 10**20",
            404,
            "not_found",
            method="GET",
            path=f"/jobs/{'0' * 32}/parts/{10**20}/result",
        )
    )
    cases.append(
        Malformed(
            "part index: of an unknown job",
            404,
            "not_found",
            method="GET",
            path=f"/jobs/{'0' * 32}/parts/-1/result",
        )
    )

    # -- the token (the same 401 everywhere) ----------------------------------------------
    for name, value in (
        ("none", None),
        ("empty bearer", "Bearer "),
        ("wrong", "Bearer wrong"),
        ("basic scheme", "Basic dXNlcjpwYXNz"),
        ("no scheme", "TOKEN"),
        ("lower-case bearer, wrong", "bearer nope"),
        ("two tokens", "Bearer a b"),
        ("8 KB long", "Bearer " + "t" * 8000),
        ("non-ASCII", "Bearer t\u00e9st"),
        ("only spaces", "Bearer    "),
        ("the query parameter on an API route", None),
    ):
        headers = {} if value is None else {"Authorization": value}
        path = "/jobs?token=wrong" if "query" in name else "/jobs"
        for method in ("GET", "POST"):
            cases.append(
                Malformed(
                    f"token: {name} ({method})",
                    401,
                    "unauthorized",
                    method=method,
                    path=path,
                    headers=headers,
                    auth=False,
                )
            )

    # -- HTTP itself ----------------------------------------------------------------------
    cases.append(
        Malformed("http: a request line of garbage", 400, None, raw=b"HELLO THERE\r\n\r\n")
    )
    cases.append(
        Malformed(
            "http: a non-numeric Content-Length",
            400,
            None,
            raw=b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        )
    )
    cases.append(
        Malformed(
            "http: a header line without a colon",
            400,
            None,
            raw=b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
        )
    )
    cases.append(
        # h11 reads "PRI *" as a request (no token: 401), then refuses the rest with a 400
        Malformed(
            "http: an HTTP/2 preface", 401, "unauthorized", raw=b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        )
    )
    cases.append(Malformed("http: no Host header", 400, None, raw=b"GET /health HTTP/1.1\r\n\r\n"))
    cases.append(
        Malformed(
            "http: declared size over the limit",
            413,
            "upload_too_large",
            raw=b"POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            b"Content-Length: 1000000000000\r\n\r\n",
        )
    )
    return cases


def send(url: str, token: str, case: Malformed, timeout: float = 60) -> tuple[int, bytes]:
    """Send one case to the server at ``url``; (status, body)."""
    if case.raw is not None:
        host, port = url.rsplit("//", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.sendall(case.raw.replace(b"{token}", token.encode()))
            answer = b""
            while b"\r\n\r\n" not in answer:
                more = s.recv(65536)
                if not more:
                    break
                answer += more
            head, _, body = answer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                more = s.recv(65536)
                if not more:
                    break
                body += more
            return int(head.split(b" ")[1]), body[:length]  # a second answer may follow
    headers = dict(case.headers)
    if case.auth:
        headers["Authorization"] = f"Bearer {token}"
    kw: dict[str, Any] = {"headers": headers, "timeout": timeout}
    if case.files is not None:
        kw["files"] = case.files
    if case.data is not None:
        kw["data"] = case.data
    if case.body is not None:
        kw["data"] = case.body
    r = requests.request(case.method, url + case.path, **kw)
    return r.status_code, r.content
