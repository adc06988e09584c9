"""Many artists on one real backend (local executor): a tokens file of hashed tokens made by
the real ``tokens`` command; each artist sees only their jobs; the cache is shared; the file
is reloaded without a restart; TLS is required off loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from backend.api.artists import TokenBook, TokensFileError, hash_token, parse_tokens
from sam3d_blender.core.backend_process import BackendState, RemoteBackend
from sam3d_blender.core.client import BackendClient, BackendClientError
from tests.backend.conftest import REPO
from tests.cluster.conftest import FAST, add_token, as_artist, make_artists, photo, start_studio


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    tokens = make_artists(root / "tokens.txt", ["alice", "bob", "carol"])
    b = start_studio(root / "jobs", root / "tokens.txt", extra_args=["--workers", "2"])
    yield b, tokens, root / "tokens.txt"
    b.stop()


def test_tokens_file_holds_hashes_never_tokens(studio):
    _, tokens, path = studio
    text = path.read_text()
    assert all(t not in text for t in tokens.values())
    assert sorted(h.artist for h in parse_tokens(text)) == ["alice", "bob", "carol"]
    assert (path.stat().st_mode & 0o777) == 0o600


def test_each_artist_sees_reads_and_cancels_only_their_jobs(studio):
    b, tokens, _ = studio
    alice, bob = as_artist(b, tokens["alice"]), as_artist(b, tokens["bob"])
    job = alice.submit(*photo(11), **FAST).json()["id"]
    assert alice.wait(job)["state"] == "done"
    assert job in [j["id"] for j in alice.get("/jobs").json()["jobs"]]
    assert job not in [j["id"] for j in bob.get("/jobs").json()["jobs"]]
    for path in ("", "/result", "/result.json", "/log"):
        r = bob.get(f"/jobs/{job}{path}")
        assert r.status_code == 404 and r.json()["code"] == "not_found", path
    r = bob.delete(f"/jobs/{job}")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert alice.get(f"/jobs/{job}/result").status_code == 200
    stranger = as_artist(b, "not-a-token")
    assert stranger.get("/jobs").status_code == 401


def test_identical_requests_of_two_artists_run_once_and_both_read_it(studio):
    b, tokens, _ = studio
    alice, bob = as_artist(b, tokens["alice"]), as_artist(b, tokens["bob"])
    first = alice.submit(*photo(12), **FAST).json()
    second = bob.submit(*photo(12), **FAST).json()  # while it queues or runs: the same job
    assert first["id"] == second["id"]
    st = bob.wait(second["id"])
    assert st["state"] == "done" and st["attempts"] == 1
    assert (
        alice.get(f"/jobs/{first['id']}/result").content
        == bob.get(f"/jobs/{first['id']}/result").content
    )
    assert bob.get(f"/jobs/{first['id']}/log").text.count(" done\n") == 1
    carol = as_artist(b, tokens["carol"])
    third = carol.submit(*photo(12), **FAST).json()  # later: a cache hit, now hers too
    assert third["id"] == first["id"] and third["cached"] is True
    assert carol.get(f"/jobs/{first['id']}/result").status_code == 200


def test_cancel_by_one_owner_leaves_the_job_to_the_other(studio):
    b, tokens, _ = studio
    alice, bob = as_artist(b, tokens["alice"]), as_artist(b, tokens["bob"])
    slow = {"engine": "crashtest", "seed": 3}  # 6 s, cooperative
    job = alice.submit(*photo(13), **slow).json()["id"]
    assert bob.submit(*photo(13), **slow).json()["id"] == job
    r = alice.delete(f"/jobs/{job}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert alice.get(f"/jobs/{job}").status_code == 404  # no longer hers
    assert bob.wait(job)["state"] == "done"  # it ran on for bob
    job2 = bob.submit(*photo(14), **slow).json()["id"]
    bob.wait(job2, states=("running",))
    assert bob.delete(f"/jobs/{job2}").status_code == 200
    assert bob.wait(job2, timeout=10)["state"] == "cancelled"  # the last owner stops it


def test_tokens_file_is_reloaded_without_a_restart(studio):
    b, _, path = studio
    dave = as_artist(b, add_token(path, "dave"))
    deadline = time.monotonic() + 10
    while dave.get("/jobs").status_code != 200:
        assert time.monotonic() < deadline, "a new token did not work within 10 s"
        time.sleep(0.2)
    assert dave.get("/jobs").json()["jobs"] == []
    subprocess.run(
        [sys.executable, "-m", "backend", "tokens", "remove", "dave", "--file", str(path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 10
    while dave.get("/jobs").status_code != 401:
        assert time.monotonic() < deadline, "a removed token still worked after 10 s"
        time.sleep(0.2)


def test_a_broken_tokens_file_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text(f"erin:{hash_token('t-erin')}\nfrank:{hash_token('t-frank', 'scrypt')}\n")
    book = TokenBook(path)
    assert book.artist_for("t-erin") == "erin" and book.artist_for("t-frank") == "frank"
    assert book.artist_for("t-nobody") is None
    time.sleep(0.01)
    path.write_text("erin sha256 oops\n")
    book._checked = 0.0  # look at the file now
    assert book.artist_for("t-erin") == "erin" and "line 1" in (book.error or "")
    with pytest.raises(TokensFileError, match="line 1"):
        TokenBook(path)
    path.write_text(json.dumps({"gina": hash_token("t-gina")}))
    book._checked = 0.0
    assert book.artist_for("t-gina") == "gina" and book.artist_for("t-erin") is None


def _serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--port", "0", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SAM3D_BACKEND_TOKEN": "x", **(env or {})},
    )


def test_serve_refuses_what_would_leak_tokens(tmp_path):
    r = _serve(["--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert r.returncode == 2 and "--ssl-certfile" in r.stderr and "--insecure-no-tls" in r.stderr
    r = _serve(["--ssl-certfile", str(tmp_path / "missing.pem"), "--ssl-keyfile", "k"])
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = _serve(["--tokens-file", str(tmp_path / "tokens.txt")])
    assert r.returncode == 2 and "not both" in r.stderr
    r = _serve(["--executor", "ray", "--ray-address", "127.0.0.1:1", "--data-dir", str(tmp_path)])
    assert r.returncode == 3 and "cannot reach the Ray cluster at 127.0.0.1:1" in r.stderr
    (tmp_path / "bad.txt").write_text("who\n")
    r = _serve(["--tokens-file", str(tmp_path / "bad.txt")], env={"SAM3D_BACKEND_TOKEN": ""})
    assert r.returncode == 2 and "bad_tokens_file" in r.stderr and "line 1" in r.stderr


def test_https_with_a_studio_ca_and_the_addon_client(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tokens = make_artists(tmp_path / "tokens.txt", ["alice"])
    b = start_studio(
        tmp_path / "jobs",
        tmp_path / "tokens.txt",
        extra_args=[
            "--ssl-certfile",
            str(tmp_path / "server.pem"),
            "--ssl-keyfile",
            str(tmp_path / "server.pem"),
        ],
    )
    try:
        url = b.url.replace("http://", "https://")
        client = BackendClient(url, tokens["alice"], ca_file=str(tmp_path / "ca.pem"))
        assert client.check_compatible()["api_version"] == 1
        assert client.jobs() == []
        with pytest.raises(BackendClientError) as err:
            BackendClient(url, tokens["alice"]).info()  # the studio's CA is not trusted
        assert err.value.code == "tls_error" and "CA file" in err.value.message
        # the add-on's remote backend, as the preferences build it (URL, token, CA file)
        remote = RemoteBackend(url, tokens["alice"], ca_file=str(tmp_path / "ca.pem"))
        remote.ensure_started()
        deadline = time.monotonic() + 30
        while remote.poll() == BackendState.STARTING and time.monotonic() < deadline:
            time.sleep(0.1)
        assert remote.state == BackendState.READY, remote.error
        untrusted = RemoteBackend(url, tokens["alice"])
        untrusted.ensure_started()
        while untrusted.poll() == BackendState.STARTING and time.monotonic() < deadline:
            time.sleep(0.1)
        assert untrusted.state == BackendState.ERROR and untrusted.error.code == "tls_error"
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(b.url + "/health", timeout=5)  # no plain HTTP beside it
    finally:
        b.stop()
