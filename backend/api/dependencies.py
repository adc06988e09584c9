"""What routes depend on: who is calling (the token check) and the server's state.

Two ways to let callers in (``ServerSettings.token``): one shared token (the add-on's own
backend, ``SAM3D_BACKEND_TOKEN``): every caller sees every job; or a tokens file of artists
(``backend.api.artists.TokenBook``, ``serve --tokens-file``): each token names an artist,
who sees only their own jobs.

Both are ``async``: a check this cheap needs no thread hop, and a route on the event loop
(``GET /jobs/{id}``) keeps answering whatever the thread pool is doing.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from backend.api.artists import TokenBook
from backend.api.state import ServerState
from backend.errors import BackendError


def unauthorized() -> BackendError:
    return BackendError(
        "unauthorized",
        "Missing or wrong access token. The add-on sets it when it starts the backend; "
        "for a remote backend, copy the token the server was started with (or that your "
        "studio's administrator gave you).",
    )


@dataclass(frozen=True)
class Caller:
    """Who sent a request: ``artist`` None when the server has no artists (one shared
    token, or none): such a caller sees every job."""

    artist: str | None = None


def _given_token(request: Request, allow_query: bool) -> str | None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return given.strip()
    if allow_query:
        return request.query_params.get("token", "")
    return None


def identify(
    token: str | TokenBook | None, request: Request, allow_query: bool = False
) -> Caller | None:
    """The caller of ``request`` (``Authorization: Bearer``; with ``allow_query``, also
    ``?token=`` - for pages a browser opens), or None when it may not come in.
    ``token`` None: no token needed."""
    if token is None:
        return Caller()
    given = _given_token(request, allow_query)
    if given is None:
        return None
    if isinstance(token, TokenBook):
        artist = token.artist_for(given)
        return Caller(artist) if artist is not None else None
    return Caller() if hmac.compare_digest(given.encode(), token.encode()) else None


def token_ok(token: str | TokenBook | None, request: Request, allow_query: bool = False) -> bool:
    """Whether ``request`` may come in (see ``identify``)."""
    return identify(token, request, allow_query) is not None


async def get_state(request: Request) -> ServerState:
    return request.app.state.server


StateDep = Annotated[ServerState, Depends(get_state)]


async def verify_token(request: Request, state: StateDep) -> Caller:
    """The routers' dependency (the token is also checked before the body is read, by
    ``backend.api.middleware.RequestGuard``)."""
    caller = identify(state.settings.token, request)
    if caller is None:
        raise unauthorized()
    return caller


CallerDep = Annotated[Caller, Depends(verify_token)]
