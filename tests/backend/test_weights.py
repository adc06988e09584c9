"""``weights download|verify`` with the real huggingface_hub client against a local fake Hub.

``FakeHub`` is a loopback HTTP server speaking the parts of the Hub protocol the client uses
(``/api/models/<repo>/revision/<rev>``, ``HEAD``/``GET /<repo>/resolve/<rev>/<file>`` with
``Range``), with Hub-style errors (401/403 ``X-Error-Code: GatedRepo``, 404 ``RepoNotFound`` /
``EntryNotFound``), connections cut mid-file, and the two plain-HTTP DINOv2 sources.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import yaml
from test_sam3d_config import SUBMODELS, generator_dict, pipeline_dict

from backend.engines.sam3d_config import (
    DINOV2_COMMIT,
    dinov2_code_dir,
    inspect_checkpoints,
    moge_local_path,
)
from backend.weights import register
from backend.weights.hub import WeightsError, explain

REPO = Path(__file__).resolve().parents[2]
SAM = "facebook/sam-3d-objects"
MOGE = "Ruicheng/moge-vitl"
BIG = "checkpoints/ss_generator.ckpt"
rng = np.random.default_rng(7)
CHUNK = 10 << 20  # BIG is cut after CHUNK + 61 bytes: whole 1 MiB blocks reach the disk


def sam_files() -> dict[str, bytes]:
    files = {
        "README.md": b"# gated\n",
        ".gitattributes": b"*.ckpt filter=lfs\n",
        "checkpoints/pipeline.yaml": yaml.safe_dump(pipeline_dict(), sort_keys=False).encode(),
    }
    for name in SUBMODELS:
        body = (
            generator_dict()
            if name.endswith("generator")
            else {"_target_": f"sam3d_objects.model.{name}.Model"}
        )
        files[f"checkpoints/{name}.yaml"] = yaml.safe_dump(body).encode()
        files[f"checkpoints/{name}.ckpt"] = rng.bytes(4096)
    files[BIG] = rng.bytes(2 * CHUNK + 123)  # a cut at half leaves exactly one chunk written
    return files


def dinov2_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        top = f"dinov2-{DINOV2_COMMIT}"
        zf.writestr(f"{top}/hubconf.py", "dependencies = ['torch']\n")
        zf.writestr(f"{top}/dinov2/__init__.py", "")
        zf.writestr(f"{top}/dinov2/hub/backbones.py", "# code\n")
    return buf.getvalue()


class FakeHub:
    """Loopback Hub: repos, tokens, failure switches, and a log of every request."""

    def __init__(self) -> None:
        self.repos = {
            SAM: {"gated": True, "sha": "1" * 40, "files": sam_files()},
            MOGE: {
                "gated": False,
                "sha": "2" * 40,
                "files": {"model.pt": rng.bytes(70_000), "README.md": b"moge"},
            },
        }
        self.size_override: dict[str, int] = {}
        self.tokens = {"good": {SAM}, "no-access": set()}
        self.cut_once: set[str] = set()  # first full GET of these files is cut in half
        self.cut_then_503: set[str] = set()  # cut in half, then every request for it answers 503
        self.raw = {
            "/dinov2/code.zip": dinov2_zip(),
            "/dinov2/w/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth": rng.bytes(3 * 2**20 + 5),
        }
        self.log: list[tuple[str, str, str | None]] = []
        self.broken: set[str] = set()
        self.hidden: set[str] = set()  # listed by the API, 404 on resolve
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_HEAD(self):
                hub.handle(self, head=True)

            def do_GET(self):
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- protocol -------------------------------------------------------------------------
    @staticmethod
    def _send(
        h, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False
    ) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, str(v))
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def _error(self, h, status: int, code: str | None, message: str, head: bool) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(h, status, json.dumps({"error": message}).encode(), headers, head)

    def _access(self, h, repo: str, head: bool) -> bool:
        info = self.repos.get(repo)
        if info is None:
            self._error(h, 404, "RepoNotFound", "Repository not found", head)
            return False
        if not info["gated"]:
            return True
        auth = h.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if token is None:
            self._error(
                h,
                401,
                "GatedRepo",
                f"Access to model {repo} is restricted. You must be authenticated to access it.",
                head,
            )
            return False
        if token not in self.tokens:
            self._error(h, 401, None, "Invalid credentials in Authorization header", head)
            return False
        if repo not in self.tokens[token]:
            self._error(
                h,
                403,
                "GatedRepo",
                f"Access to model {repo} is restricted and you are not in the authorized list.",
                head,
            )
            return False
        return True

    def handle(self, h, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.log.append((h.command, path, h.headers.get("Range")))
        if path in self.raw:
            return self._serve_bytes(h, path, self.raw[path], head, etag=None)
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            repo = "/".join(parts[2:4])
            if not self._access(h, repo, head):
                return
            info = self.repos[repo]
            siblings = []
            for name, data in info["files"].items():
                s = {
                    "rfilename": name,
                    "size": self.size_override.get(name, len(data)),
                    "blobId": hashlib.sha1(data).hexdigest(),
                }
                if name.endswith((".ckpt", ".pt")):
                    s["lfs"] = {
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "size": s["size"],
                        "pointerSize": 134,
                    }
                siblings.append(s)
            body = {
                "id": repo,
                "sha": info["sha"],
                "private": False,
                "gated": "manual" if info["gated"] else False,
                "siblings": siblings,
                "tags": [],
                "downloads": 0,
                "likes": 0,
            }
            return self._send(
                h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head
            )
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = "/".join(parts[:2])
            if not self._access(h, repo, head):
                return
            fname = "/".join(parts[4:])
            info = self.repos[repo]
            if fname not in info["files"] or fname in self.hidden:
                return self._error(h, 404, "EntryNotFound", f"{fname} does not exist", head)
            data = info["files"][fname]
            etag = hashlib.sha256(data).hexdigest()
            return self._serve_bytes(h, fname, data, head, etag=etag, commit=info["sha"])
        self._error(h, 404, None, "no route", head)

    def _serve_bytes(
        self, h, key: str, data: bytes, head: bool, etag: str | None, commit: str | None = None
    ) -> None:
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if etag:
            headers["ETag"] = f'"{etag}"'
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(data))
        if commit:
            headers["X-Repo-Commit"] = commit
        if head:
            return self._send(h, 200, data, headers, head=True)
        if key in self.broken:
            return self._error(h, 503, None, "Service Unavailable", head)
        rng_header = h.headers.get("Range")
        start = 0
        status = 200
        if rng_header and rng_header.startswith("bytes="):
            start = int(rng_header[6:].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        cut = key in self.cut_once or key in self.cut_then_503
        if cut and start == 0:
            self.cut_once.discard(key)
            if key in self.cut_then_503:
                self.broken.add(key)
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(h, status, body, headers)

    def gets(self, fname: str) -> list[str | None]:
        return [r for (m, p, r) in self.log if m == "GET" and p.endswith("/" + fname)]


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved login
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("SAM3D_DINOV2_CODE_URL", server.url + "/dinov2/code.zip")
    yield server
    server.close()


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["weights", *argv])
    return args.func(args)


def test_full_download_is_offline_ready_and_verifies(hub, tmp_path, capsys):
    dest = tmp_path / "ckpt"
    assert run_cli("download", "--dest", str(dest), "--token", "good") == 0
    out = capsys.readouterr().out
    files = hub.repos[SAM]["files"]
    for name, data in files.items():
        if name.startswith("checkpoints/"):
            assert (dest / name[len("checkpoints/") :]).read_bytes() == data
    assert not (dest / "README.md").exists() and not (dest / ".download").exists()
    assert moge_local_path(dest, MOGE).read_bytes() == hub.repos[MOGE]["files"]["model.pt"]
    assert (dinov2_code_dir(dest) / "hubconf.py").is_file()
    # no DINOv2 weights: the generator checkpoints hold the embedders' weights
    assert not any("/dinov2/w" in path for (_m, path, _r) in hub.log)
    assert not list(dest.rglob("*.pth"))
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["revision"] == "1" * 40
    assert (
        manifest["files"]["ss_generator.ckpt"]["sha256"] == hashlib.sha256(files[BIG]).hexdigest()
    )
    assert inspect_checkpoints(dest).ok  # exactly what the engine's availability check needs
    assert "verify: OK" in out and "[1/" in out
    # a second run fetches nothing
    before = len([x for x in hub.log if x[0] == "GET" and "/resolve/" in x[1]])
    assert run_cli("download", "--dest", str(dest), "--token", "good") == 0
    after = len([x for x in hub.log if x[0] == "GET" and "/resolve/" in x[1]])
    assert after == before
    assert run_cli("verify", "--dest", str(dest), "--hash") == 0


def test_verify_names_broken_files(hub, tmp_path, capsys):
    dest = tmp_path / "ckpt"
    assert run_cli("download", "--dest", str(dest), "--token", "good") == 0
    (dest / "slat_decoder_gs.ckpt").write_bytes(b"short")
    big = dest / "ss_generator.ckpt"
    data = bytearray(big.read_bytes())
    data[100] ^= 0xFF
    big.write_bytes(bytes(data))
    moge_local_path(dest, MOGE).unlink()
    capsys.readouterr()
    assert run_cli("verify", "--dest", str(dest)) == 7
    err = capsys.readouterr().err
    assert "slat_decoder_gs.ckpt: 5 bytes, expected 4096" in err
    assert "model.pt" in err
    assert "ss_generator.ckpt" not in err  # same size: only --hash sees it
    assert run_cli("verify", "--dest", str(dest), "--hash") == 7
    assert "ss_generator.ckpt: SHA-256" in capsys.readouterr().err


def test_no_token_401_says_how_to_log_in(hub, tmp_path, capsys):
    assert run_cli("download", "--dest", str(tmp_path / "c")) == 3
    err = capsys.readouterr().err
    assert "needs a Hugging Face login (401, no token given)" in err
    assert "hf auth login" in err and "HF_TOKEN" in err and "--token" in err
    assert run_cli("download", "--dest", str(tmp_path / "c"), "--token", "bogus") == 3
    assert "rejected the token (401)" in capsys.readouterr().err


def test_token_from_hf_token_env_is_used(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "good")
    assert run_cli("download", "--dest", str(tmp_path / "c"), "--no-extras") == 0


def test_access_not_granted_403_says_where_to_request(hub, tmp_path, capsys):
    assert run_cli("download", "--dest", str(tmp_path / "c"), "--token", "no-access") == 3
    err = capsys.readouterr().err
    assert "not been granted access to facebook/sam-3d-objects yet (403)" in err
    assert "https://huggingface.co/facebook/sam-3d-objects" in err


def test_404_repo_and_file(hub, tmp_path, capsys):
    assert (
        run_cli(
            "download", "--dest", str(tmp_path / "c"), "--token", "good", "--repo", "facebook/nope"
        )
        == 4
    )
    assert "Not found on" in capsys.readouterr().err
    hub.hidden.add("checkpoints/ss_decoder.yaml")  # listed, but resolve answers 404
    assert run_cli("download", "--dest", str(tmp_path / "d"), "--token", "good", "--no-extras") == 4
    assert "checkpoints/ss_decoder.yaml (404)" in capsys.readouterr().err
    assert (tmp_path / "d" / "pipeline.yaml").is_file()  # files before it were kept


def test_cut_connection_is_resumed_with_range(hub, tmp_path):
    hub.cut_once.add(BIG)
    dest = tmp_path / "c"
    assert run_cli("download", "--dest", str(dest), "--token", "good", "--no-extras") == 0
    ranges = hub.gets(BIG)
    assert ranges[0] is None and f"bytes={CHUNK}-" in ranges[1:], ranges
    assert (dest / "ss_generator.ckpt").read_bytes() == hub.repos[SAM]["files"][BIG]


def test_interrupted_run_resumes_on_the_next_run(hub, tmp_path, capsys):
    hub.cut_then_503.add(BIG)
    dest = tmp_path / "c"
    rc = run_cli("download", "--dest", str(dest), "--token", "good", "--no-extras")
    err = capsys.readouterr().err
    assert rc == 5, err
    assert "re-run" in err
    partial = list((dest / ".download").rglob("*.part"))
    assert [p.name for p in partial] == ["ss_generator.ckpt.part"] and partial[
        0
    ].stat().st_size == CHUNK
    hub.broken.clear()
    hub.cut_then_503.clear()
    assert run_cli("download", "--dest", str(dest), "--token", "good", "--no-extras") == 0
    assert f"bytes={CHUNK}-" in hub.gets(BIG)
    assert (dest / "ss_generator.ckpt").read_bytes() == hub.repos[SAM]["files"][BIG]


def test_not_enough_disk_is_refused_before_downloading(hub, tmp_path, capsys):
    hub.size_override[BIG] = 10**15  # the listing claims a 1 PB file
    assert run_cli("download", "--dest", str(tmp_path / "c"), "--token", "good") == 6
    err = capsys.readouterr().err
    assert "Not enough disk space" in err and "1000000.0 GB more" in err
    assert not hub.gets(BIG)


def test_network_down(monkeypatch, tmp_path, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert run_cli("download", "--dest", str(tmp_path / "c"), "--token", "good") == 5
    err = capsys.readouterr().err
    assert f"Cannot reach http://127.0.0.1:{port}" in err and "internet connection" in err


def test_disk_full_while_writing_is_explained(tmp_path):
    exc = OSError(28, "No space left on device")
    err = explain(exc, repo_id=SAM, token="t", dest=tmp_path)
    assert isinstance(err, WeightsError) and err.kind == "disk_full" and err.exit_code == 6
    assert "is full" in err.message


def test_through_the_backend_cli_subprocess(hub, tmp_path):
    dest = tmp_path / "c"
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_TOKEN="good")
    proc = subprocess.run(
        [sys.executable, "-m", "backend", "weights", "download", "--dest", str(dest)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SAM 3D weights ready in" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "backend", "weights", "verify", "--dest", str(dest)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0 and "verify: OK" in proc.stdout
