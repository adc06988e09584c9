"""HTTP client for the backend API (``docs/API.md``), bpy-free.

Every call uses short timeouts so the Blender UI (which polls from a timer on the main
thread) never waits long. Failures raise :class:`BackendClientError` with a stable code:
the backend's own code when it answered with ``{"code", "message"}``, or one of the
add-on's codes (``backend_unreachable``, ``timeout``, ``unauthorized``, ``api_mismatch``,
``bad_response``, ``tls_error``) when it did not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

#: API versions this add-on understands (``GET /health`` -> ``api_version``).
SUPPORTED_API_VERSIONS = frozenset({1})

#: (connect, read) seconds for small requests polled from the UI.
SHORT_TIMEOUT = (2.0, 5.0)
#: (connect, read) seconds for uploads and downloads.
TRANSFER_TIMEOUT = (2.0, 60.0)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class BackendClientError(Exception):
    """A failed request: ``code`` (stable), ``message`` (the backend's sentence or ours),
    ``status`` (HTTP status, None when no answer came)."""

    def __init__(
        self,
        code: str,
        message: str = "",
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}


@dataclass
class MaskAnswer:
    """A ``POST /masks`` answer: the mask PNG (255 = object), its size (w, h), the photo's
    upright size (w, h), the method's score, the method, and the photo's id for the next
    click."""

    png: bytes
    size: tuple[int, int]
    image_size: tuple[int, int]
    score: float
    engine: str
    image_id: str
    cached: bool

    @classmethod
    def from_response(cls, resp: requests.Response) -> MaskAnswer:
        h = resp.headers
        try:

            def wh(v: str) -> tuple[int, int]:
                w, _, hh = v.partition("x")
                return int(w), int(hh)

            return cls(
                png=resp.content,
                size=wh(h["X-Mask-Size"]),
                image_size=wh(h["X-Image-Size"]),
                score=float(h["X-Mask-Score"]),
                engine=h["X-Mask-Engine"],
                image_id=h["X-Image-Id"],
                cached=h.get("X-Mask-Cached") == "1",
            )
        except (KeyError, ValueError) as exc:
            raise BackendClientError(
                "bad_response", f"POST /masks answered without its headers ({exc})"
            ) from exc


class BackendClient:
    """Talks to one backend at ``base_url`` (e.g. ``http://127.0.0.1:8765``, or a studio's
    ``https://sam3d.studio.lan:8765``) with ``token``. ``ca_file``: a PEM file of the
    certificate authority that signed an https backend's certificate (a studio's own CA);
    "" trusts the system's authorities."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        timeout: tuple[float, float] = SHORT_TIMEOUT,
        ca_file: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ca_file = ca_file.strip()
        self._session = requests.Session()
        if self.ca_file:
            self._session.verify = str(Path(self.ca_file).expanduser())
        # A proxy from the environment must never see a loopback request (a common cause
        # of mysterious "connection refused" on corporate machines).
        host = urlsplit(self.base_url).hostname or ""
        self.loopback = host in _LOOPBACK
        if self.loopback:
            self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    # -- plumbing -------------------------------------------------------------------------

    def _headers(self, auth: bool = True) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if (auth and self.token) else {}
        if self.loopback:
            # A fresh loopback connection costs ~1 ms, and with one connection per request
            # the background calls (several may run at once) share no keep-alive state.
            # (Older backends without TCP_NODELAY also made kept-alive requests wait ~40 ms.)
            headers["Connection"] = "close"
        return headers

    def _request(
        self,
        method: str,
        path: str,
        *,
        timeout: tuple[float, float] | None = None,
        stream: bool = False,
        auth: bool = True,
        **kw: Any,
    ) -> requests.Response:
        url = f"{self.base_url}{path}"
        try:
            resp = self._session.request(
                method,
                url,
                headers=self._headers(auth),
                timeout=timeout or self.timeout,
                stream=stream,
                **kw,
            )
        except requests.exceptions.SSLError as exc:
            if self.ca_file and not Path(self.ca_file).expanduser().is_file():
                msg = f"the CA file {self.ca_file} does not exist"
            else:
                msg = (
                    f"the TLS certificate of {self.base_url} could not be verified; set the "
                    "CA file your studio's administrator gave you in the add-on's preferences"
                )
            raise BackendClientError("tls_error", msg) from exc
        except requests.exceptions.Timeout as exc:
            raise BackendClientError("timeout", f"no answer from {self.base_url} in time") from exc
        except requests.exceptions.ConnectionError as exc:
            raise BackendClientError(
                "backend_unreachable", f"cannot connect to {self.base_url}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise BackendClientError("backend_unreachable", str(exc)) from exc
        if resp.status_code >= 400:
            raise _error_from_response(resp)
        return resp

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._request(method, path, **kw)
        try:
            return resp.json()
        except ValueError as exc:
            raise BackendClientError(
                "bad_response", f"{method} {path} did not return JSON", resp.status_code
            ) from exc

    # -- API ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /health`` (no token needed): ``{"status","version","api_version"}``."""
        return self._json("GET", "/health", auth=False)

    def check_compatible(self) -> dict[str, Any]:
        """Health plus an API-version check and a token check (``GET /info``).

        Returns the ``/info`` document. Raises ``api_mismatch`` or ``unauthorized``.
        """
        health = self.health()
        api = health.get("api_version")
        if api not in SUPPORTED_API_VERSIONS:
            raise BackendClientError(
                "api_mismatch",
                f"backend API version {api!r}, add-on supports {sorted(SUPPORTED_API_VERSIONS)}",
            )
        info = self.info()
        info.setdefault("version", health.get("version"))
        return info

    def info(self) -> dict[str, Any]:
        """``GET /info``: engines, GPUs, limits."""
        return self._json("GET", "/info")

    def submit_job(
        self,
        image: bytes,
        *,
        mask: bytes | None = None,
        masks: list[bytes] | None = None,
        options: dict[str, Any] | None = None,
        image_name: str = "image.png",
    ) -> dict[str, Any]:
        """``POST /jobs``. ``image``/``mask`` are encoded image files (PNG from Blender);
        ``masks`` makes a scene job (several objects of one photo). Returns
        ``{"id","state","cached","warnings"}``."""
        files: list[tuple[str, tuple[str, bytes, str]]] = [
            ("image", (image_name, image, "image/png"))
        ]
        if mask is not None:
            files.append(("mask", ("mask.png", mask, "image/png")))
        for i, m in enumerate(masks or []):
            files.append(("masks", (f"mask_{i}.png", m, "image/png")))
        data = {"options": json.dumps(options or {}, sort_keys=True)}
        return self._json("POST", "/jobs", files=files, data=data, timeout=TRANSFER_TIMEOUT)

    def create_mask(
        self,
        prompts: dict[str, Any],
        *,
        image: bytes | None = None,
        image_id: str | None = None,
        engine: str = "auto",
    ) -> MaskAnswer:
        """``POST /masks``: a mask of the photo (``image`` bytes, or the ``image_id`` an
        earlier answer gave: no upload) for ``prompts`` (``{"points": [{"x","y","positive"}],
        "box": [x0,y0,x1,y1]}``, pixels of the upright photo, origin top-left, y down).
        With both, the id is tried first and the bytes are sent only when the backend no
        longer holds the photo (``not_found``)."""
        data = {"prompts": json.dumps(prompts), "engine": engine}
        if image_id is not None:
            try:
                resp = self._request(
                    "POST", "/masks", data={**data, "image_id": image_id}, timeout=TRANSFER_TIMEOUT
                )
                return MaskAnswer.from_response(resp)
            except BackendClientError as exc:
                if exc.code != "not_found" or image is None:
                    raise
        if image is None:
            raise BackendClientError("no_image", "no image given for the mask")
        files = {"image": ("photo.png", image, "application/octet-stream")}
        resp = self._request("POST", "/masks", data=data, files=files, timeout=TRANSFER_TIMEOUT)
        return MaskAnswer.from_response(resp)

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}``: the ``JobStatus``."""
        return self._json("GET", f"/jobs/{job_id}")

    def jobs(self) -> list[dict[str, Any]]:
        """``GET /jobs``: all jobs, newest first."""
        return list(self._json("GET", "/jobs").get("jobs", []))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``DELETE /jobs/{id}``: ask the backend to cancel; returns the ``JobStatus``."""
        return self._json("DELETE", f"/jobs/{job_id}")

    def result_json(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}/result.json``: pose, intrinsics, stats, timings."""
        return self._json("GET", f"/jobs/{job_id}/result.json")

    def log(self, job_id: str) -> str:
        """``GET /jobs/{id}/log``: the job's log text."""
        return self._request("GET", f"/jobs/{job_id}/log").text

    def open_result(self, job_id: str, part: int | None = None) -> requests.Response:
        """A streaming response for the GLB (``/result`` or ``/parts/{i}/result``)."""
        path = f"/jobs/{job_id}/result" if part is None else f"/jobs/{job_id}/parts/{part}/result"
        return self._request("GET", path, stream=True, timeout=TRANSFER_TIMEOUT)

    def download_result(self, job_id: str, dest: Path, part: int | None = None) -> Path:
        """Blocking download of the GLB to ``dest`` (written atomically)."""
        download = ResultDownload(self, job_id, Path(dest), part=part)
        while not download.step(budget_s=10.0):
            pass
        return download.dest


class ResultDownload:
    """A GLB download that advances in small steps so a UI timer can drive it.

    ``step(budget_s)`` reads for at most about ``budget_s`` seconds and returns True once
    the file is complete at ``dest`` (written to ``dest.part`` first, then renamed).
    """

    CHUNK = 1 << 20

    def __init__(
        self, client: BackendClient, job_id: str, dest: Path, part: int | None = None
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.dest = dest
        self.part = part
        self.bytes_done = 0
        self.bytes_total: int | None = None
        self._resp: requests.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._fh: Any = None
        self._tmp = dest.with_name(dest.name + ".part")

    def step(self, budget_s: float = 0.05) -> bool:
        import time

        if self._resp is None:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            self._resp = self.client.open_result(self.job_id, self.part)
            length = self._resp.headers.get("Content-Length")
            self.bytes_total = int(length) if length and length.isdigit() else None
            self._chunks = self._resp.iter_content(self.CHUNK)
            self._fh = open(self._tmp, "wb")  # noqa: SIM115 (closed in _finish/abort)
        assert self._chunks is not None
        deadline = time.monotonic() + budget_s
        try:
            while time.monotonic() < deadline:
                chunk = next(self._chunks, None)
                if chunk is None:
                    self._finish()
                    return True
                self._fh.write(chunk)
                self.bytes_done += len(chunk)
        except requests.exceptions.RequestException as exc:
            self.abort()
            raise BackendClientError("backend_unreachable", f"download interrupted: {exc}") from exc
        return False

    @property
    def fraction(self) -> float:
        if not self.bytes_total:
            return 0.0
        return min(1.0, self.bytes_done / self.bytes_total)

    def _finish(self) -> None:
        self._fh.close()
        self._fh = None
        if self._resp is not None:
            self._resp.close()
        if self.bytes_total is not None and self.bytes_done != self.bytes_total:
            self._tmp.unlink(missing_ok=True)
            raise BackendClientError(
                "bad_response", f"download incomplete ({self.bytes_done}/{self.bytes_total} bytes)"
            )
        self._tmp.replace(self.dest)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._resp is not None:
            self._resp.close()
        self._tmp.unlink(missing_ok=True)


def _error_from_response(resp: requests.Response) -> BackendClientError:
    code = "bad_response"
    message = f"HTTP {resp.status_code}"
    details: dict[str, Any] = {}
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        # FastAPI wraps HTTPException payloads in {"detail": ...}; accept both shapes.
        payload = body.get("detail") if isinstance(body.get("detail"), dict) else body
        if isinstance(payload, dict) and "code" in payload:
            code = str(payload["code"])
            message = str(payload.get("message", ""))
            details = dict(payload.get("details") or {})
        elif isinstance(body.get("detail"), str):
            message = body["detail"]
    if resp.status_code == 401 and code == "bad_response":
        code = "unauthorized"
    return BackendClientError(code, message, resp.status_code, details)
