"""Downloading the gated SAM 3D checkpoints from the Hugging Face Hub, with clear failures.

Sizes are bytes; the Hub endpoint is ``HF_ENDPOINT`` (read at call time) or huggingface.co.
huggingface_hub is imported inside the functions (the HTTP server never needs it).

huggingface_hub lists the repo (``HfApi.model_info``), builds the download URLs
(``hf_hub_url``) and the request headers (token, user agent: ``build_hf_headers``). The
bytes are fetched here with ``requests`` into ``DEST/.download/<file>.part`` and resumed with
HTTP ``Range`` requests - within a run after a dropped connection, and across runs from the
``.part`` file an interrupted run left (huggingface_hub >= 1.x deletes its partial files on
failure, so it cannot resume a 6 GB checkpoint after Ctrl-C or a network outage). Redirects
to the Hub's storage are followed; ``requests`` drops the token when the host changes.

Layout: files under the repo's ``checkpoints/`` folder land directly in DEST (so
``DEST/pipeline.yaml`` exists); a finished file is moved from ``.download`` into place.
``DEST/manifest.json`` records the repo, the commit and every file's size and SHA-256 (when
the Hub gives it).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.storage import free_bytes, write_json_atomic

REPO_ID = "facebook/sam-3d-objects"
SUBFOLDER = "checkpoints"
ACCESS_URL = "https://huggingface.co/facebook/sam-3d-objects"
MANIFEST = "manifest.json"
STAGING = ".download"
#: Kept free beyond what the download needs (MiB).
DISK_MARGIN_MB = 512


class WeightsError(Exception):
    """A download/verify failure with a ``kind`` and a sentence that says what to do."""

    EXIT = {
        "no_token": 3,
        "no_access": 3,
        "not_found": 4,
        "network": 5,
        "disk_full": 6,
        "incomplete": 7,
        "verify": 7,
    }

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def exit_code(self) -> int:
        return self.EXIT.get(self.kind, 1)


@dataclass
class RemoteFile:
    """One file of the Hub repo: ``path`` in the repo, ``local`` relative to DEST."""

    path: str
    local: str
    size: int | None
    sha256: str | None


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def resolve_token(explicit: str | None) -> str | None:
    """``--token``, else ``HF_TOKEN``, else the token ``hf auth login`` saved (or None)."""
    if explicit:
        return explicit
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - no saved token is a normal state
        return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _status(exc: BaseException) -> int | None:
    for e in _chain(exc):
        resp = getattr(e, "response", None)
        code = getattr(resp, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def explain(
    exc: BaseException, *, repo_id: str, token: str | None, dest: Path, what: str = ""
) -> WeightsError:
    """Map any exception from huggingface_hub / the network / the disk to a ``WeightsError``."""
    if isinstance(exc, WeightsError):
        return exc
    chain = _chain(exc)
    names = " ".join(type(e).__name__ for e in chain)
    host = endpoint()
    for e in chain:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            free = (free_bytes(dest) or 0) / 1e9
            return WeightsError(
                "disk_full",
                f"The disk holding {dest} is full ({free:.1f} GB free): free some space and re-run; finished files are kept.",
            )
    status = _status(exc)
    if repo_id.startswith(("http://", "https://")) and status is not None:
        kind = "not_found" if status == 404 else ("network" if status >= 500 else "error")
        return WeightsError(
            kind,
            f"{repo_id} answered HTTP {status}; check the URL (or its SAM3D_DINOV2_* override) and re-run.",
        )
    if status == 401:
        if token:
            msg = (
                f"Hugging Face rejected the token (401) for {repo_id}: it is invalid or expired. "
                "Create a read token at https://huggingface.co/settings/tokens, then run `hf auth login` "
                "(or set HF_TOKEN, or pass --token)."
            )
        else:
            msg = (
                f"{repo_id} needs a Hugging Face login (401, no token given). Run `hf auth login` "
                "(or `huggingface-cli login`), set HF_TOKEN, or pass --token; your account must also "
                f"have been granted access at {ACCESS_URL}."
            )
        return WeightsError("no_token", msg)
    if status == 403:
        return WeightsError(
            "no_access",
            f"Your Hugging Face account has not been granted access to {repo_id} yet (403). Request access at "
            f"{ACCESS_URL} (accept the licence; approval can take a while and is refused in sanctioned "
            "jurisdictions), then re-run this command.",
        )
    if status == 404 or "NotFound" in names:
        return WeightsError(
            "not_found",
            f"Not found on {host}: {repo_id} {what} (404). Check the repo name and --revision.".replace(
                "  ", " "
            ),
        )
    if status is not None and status >= 500:
        return WeightsError(
            "network",
            f"{host} answered {status} (server trouble) while fetching {what or repo_id}. Try again later: "
            "re-run the same command and it resumes from where it stopped.",
        )
    if "GatedRepo" in names:
        return WeightsError(
            "no_access",
            f"{repo_id} is gated: request access at {ACCESS_URL} and log in (`hf auth login`).",
        )
    network_markers = (
        "ConnectError",
        "ConnectTimeout",
        "Timeout",
        "LocalEntryNotFound",
        "OfflineModeIsEnabled",
        "NetworkError",
        "ConnectionError",
    )
    if any(m in names for m in network_markers) or any(
        isinstance(e, ConnectionError) for e in chain
    ):
        return WeightsError(
            "network",
            f"Cannot reach {host} ({type(chain[-1]).__name__}: {chain[-1]}). Check the internet connection "
            "(and a proxy: HTTPS_PROXY) and re-run; finished files are kept and a partial file resumes.",
        )
    if any(m in names for m in ("RemoteProtocolError", "ChunkedEncodingError", "IncompleteRead")):
        return WeightsError(
            "incomplete",
            f"The download of {what or repo_id} was cut off ({type(exc).__name__}). Re-run the same command: "
            "it resumes from where it stopped.",
        )
    return WeightsError(
        "error", f"Download of {what or repo_id} failed: {type(exc).__name__}: {exc}"
    )


def list_remote(
    repo_id: str, revision: str | None, token: str | None, subfolder: str
) -> tuple[str, list[RemoteFile]]:
    """(commit, files) of ``repo_id`` under ``subfolder`` (the whole repo when it has none)."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint(), token=token).model_info(
        repo_id, revision=revision, files_metadata=True, token=token
    )
    files: list[RemoteFile] = []
    siblings = list(info.siblings or [])
    prefix = subfolder.strip("/") + "/" if subfolder else ""
    has_sub = bool(prefix) and any(s.rfilename.startswith(prefix) for s in siblings)
    for s in siblings:
        name = s.rfilename
        if has_sub:
            if not name.startswith(prefix):
                continue
            local = name[len(prefix) :]
        else:
            local = name
        if name.startswith(".") or name.endswith(".gitattributes"):
            continue
        lfs = getattr(s, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        if sha is None and isinstance(lfs, dict):
            sha = lfs.get("sha256")
        files.append(RemoteFile(path=name, local=local, size=s.size, sha256=sha))
    if not files:
        raise WeightsError(
            "not_found", f"{repo_id} at {info.sha} lists no files under {subfolder or '/'}."
        )
    return str(info.sha), files


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_complete(path: Path, rf: RemoteFile) -> bool:
    return path.is_file() and (rf.size is None or path.stat().st_size == rf.size)


class _HTTPStatus(Exception):
    """An HTTP error status from a plain download, shaped so ``explain`` can map it."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"HTTP {response.status_code} for {response.url}")
        self.response = response


def _progress(
    name: str, done: int, total: int | None, t0: float, log: Callable[[str], None]
) -> None:
    rate = done / max(time.monotonic() - t0, 1e-6) / 1e6
    if total:
        log(
            f"  {name}: {done / 1e9:.2f} / {total / 1e9:.2f} GB ({100 * done / total:.0f}%), {rate:.0f} MB/s"
        )
    else:
        log(f"  {name}: {done / 1e9:.2f} GB, {rate:.0f} MB/s")


def resumable_get(
    url: str,
    dest: Path,
    *,
    headers: dict[str, str] | None = None,
    expected_size: int | None = None,
    log: Callable[[str], None] = print,
    retries: int = 5,
    report_every: int = 256 << 20,
) -> Path:
    """GET ``url`` into ``dest`` atomically, resuming ``dest.part`` with ``Range`` requests.

    Retries a dropped connection ``retries`` times in a row without progress; an HTTP error
    status raises ``_HTTPStatus`` (callers map it); the ``.part`` file is always kept, so the
    next run continues where this one stopped.
    """
    import requests

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    name = dest.name
    failures = 0
    t0 = time.monotonic()
    while True:
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have == expected_size:
            break
        if expected_size is not None and have > expected_size:
            part.unlink()
            have = 0
        req_headers = dict(headers or {})
        req_headers["Accept-Encoding"] = "identity"
        if have:
            req_headers["Range"] = f"bytes={have}-"
            log(f"  {name}: resuming at {have / 1e6:.1f} MB")
        try:
            with requests.get(url, headers=req_headers, stream=True, timeout=(15, 120)) as resp:
                if resp.status_code == 416 and have and expected_size is None:
                    break  # the server says there is nothing past what we have
                if resp.status_code >= 400:
                    raise _HTTPStatus(resp)
                if resp.status_code == 206:
                    total = (
                        have + int(resp.headers.get("Content-Length", 0))
                        if expected_size is None
                        else expected_size
                    )
                    mode = "ab"
                else:  # 200: the server ignored Range - start over
                    have, mode = 0, "wb"
                    total = expected_size or (
                        int(resp.headers["Content-Length"])
                        if "Content-Length" in resp.headers
                        else None
                    )
                room = free_bytes(part.parent)
                if (
                    total is not None
                    and room is not None
                    and total - have + DISK_MARGIN_MB * 2**20 > room
                ):
                    raise OSError(errno.ENOSPC, f"{(total - have) / 1e9:.2f} GB needed for {name}")
                done, next_report = have, have + report_every
                with open(part, mode) as fh:
                    for block in resp.iter_content(1 << 20):
                        fh.write(block)
                        done += len(block)
                        failures = 0
                        if done >= next_report:
                            _progress(name, done, total, t0, log)
                            next_report = done + report_every
            size = part.stat().st_size
            if total is None or size >= total:
                break
            raise requests.ConnectionError(f"connection closed at {size} of {total} bytes")
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            failures += 1
            got = part.stat().st_size if part.exists() else 0
            if got > have:
                failures = 0  # progress was made: keep going
            if failures > retries:
                raise
            log(f"  {name}: {type(exc).__name__} at {got / 1e6:.1f} MB, retrying")
            time.sleep(min(2.0 * failures, 10.0))
    if expected_size is not None and part.stat().st_size != expected_size:
        raise WeightsError(
            "incomplete",
            f"{name} has {part.stat().st_size} bytes instead of {expected_size}; re-run to repair.",
        )
    os.replace(part, dest)
    return dest


def fetch_hub_file(
    repo_id: str,
    rf: RemoteFile,
    revision: str,
    final: Path,
    staging: Path,
    token: str | None,
    log: Callable[[str], None] = print,
) -> Path:
    """One repo file into ``final`` (resumable through ``staging``); errors as WeightsError."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo_id, rf.path, revision=revision, endpoint=endpoint())
    headers = build_hf_headers(token=token, library_name="sam3d-blender")
    if not token:
        headers.pop("authorization", None)
        headers.pop("Authorization", None)
    try:
        got = resumable_get(url, staging / rf.path, headers=headers, expected_size=rf.size, log=log)
    except Exception as exc:  # noqa: BLE001 - mapped to a sentence
        raise explain(exc, repo_id=repo_id, token=token, dest=final.parent, what=rf.path) from exc
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, final)
    return final


def download_repo(
    dest: Path,
    *,
    repo_id: str = REPO_ID,
    revision: str | None = None,
    token: str | None = None,
    subfolder: str = SUBFOLDER,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Download (or finish downloading) the repo into ``dest``; return the manifest dict."""
    dest = Path(dest).expanduser().resolve()
    try:
        commit, files = list_remote(repo_id, revision, token, subfolder)
    except Exception as exc:  # noqa: BLE001 - mapped to a sentence
        raise explain(exc, repo_id=repo_id, token=token, dest=dest) from exc
    todo = [rf for rf in files if not is_complete(dest / rf.local, rf)]
    total = sum(rf.size or 0 for rf in files)
    need = sum(rf.size or 0 for rf in todo)
    staging = dest / STAGING
    partial = sum(p.stat().st_size for p in staging.rglob("*.part")) if staging.exists() else 0
    free = free_bytes(dest)
    room = f"{free / 1e9:.1f} GB free" if free is not None else "free space unknown"
    log(
        f"{repo_id} @ {commit[:12]}: {len(files)} files, {total / 1e9:.2f} GB; "
        f"{len(todo)} to fetch ({(need - partial) / 1e9:.2f} GB), {room} at {dest}"
    )
    if free is not None and need - partial + DISK_MARGIN_MB * 2**20 > free:
        raise WeightsError(
            "disk_full",
            f"Not enough disk space at {dest}: the weights need {(need - partial) / 1e9:.1f} GB more "
            f"(+{DISK_MARGIN_MB} MB margin) but only {free / 1e9:.1f} GB is free. Free space or choose "
            "another --dest.",
        )
    dest.mkdir(parents=True, exist_ok=True)
    for i, rf in enumerate(todo, 1):
        size = f"{rf.size / 1e6:.1f} MB" if rf.size is not None else "size unknown"
        log(f"[{i}/{len(todo)}] {rf.path} ({size})")
        fetch_hub_file(repo_id, rf, commit, dest / rf.local, staging, token, log)
    manifest = {
        "repo_id": repo_id,
        "revision": commit,
        "subfolder": subfolder,
        "files": {rf.local: {"size": rf.size, "sha256": rf.sha256} for rf in files},
    }
    write_json_atomic(dest / MANIFEST, manifest)
    if staging.exists() and not any(staging.rglob("*.part")):
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def verify_manifest(
    dest: Path, *, check_hash: bool = False, log: Callable[[str], None] = print
) -> list[str]:
    """Problems with the files ``manifest.json`` lists (missing, wrong size, wrong hash)."""
    dest = Path(dest).expanduser().resolve()
    path = dest / MANIFEST
    if not path.is_file():
        return [
            f"{path} is missing (the folder was not made by `weights download`; only pipeline.yaml's files are checked)"
        ]
    manifest = json.loads(path.read_text())
    problems = []
    for rel, meta in manifest.get("files", {}).items():
        p = dest / rel
        if not p.is_file():
            problems.append(f"missing {p}")
            continue
        size = p.stat().st_size
        if meta.get("size") is not None and size != meta["size"]:
            problems.append(
                f"{p}: {size} bytes, expected {meta['size']} (re-run download to repair)"
            )
            continue
        if check_hash and meta.get("sha256"):
            log(f"hashing {rel} ...")
            digest = sha256_file(p)
            if digest != meta["sha256"]:
                problems.append(
                    f"{p}: SHA-256 {digest[:12]}... differs from the Hub's {meta['sha256'][:12]}..."
                )
    return problems
