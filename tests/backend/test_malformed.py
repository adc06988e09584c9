"""Every malformed request in the corpus gets its specific 4xx - a code and a short sentence
- from the real server, never a 5xx, and the server keeps serving."""

from __future__ import annotations

import json

import pytest

from tests.backend.malformed import Malformed, corpus, send

CASES = corpus()


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 100
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_request(backend, case: Malformed):
    status, body = send(backend.url, backend.token, case)
    assert status == case.status, body[:300]
    assert len(body) < 4096, f"the answer grew with the input: {len(body)} bytes"
    if case.code is not None:
        err = json.loads(body)
        assert err["code"] == case.code, err
        assert len(err["message"]) > 20 and "Traceback" not in err["message"]


def test_still_serving_after_the_corpus(backend):
    assert backend.get("/health").json()["status"] == "ok"
    assert backend.proc.poll() is None
