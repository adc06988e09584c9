"""What routes depend on: the token check and the server's state.

Both are ``async``: a check this cheap needs no thread hop, and a route on the event loop
(``GET /jobs/{id}``) keeps answering whatever the thread pool is doing.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from backend.api.state import ServerState
from backend.errors import BackendError


def unauthorized() -> BackendError:
    return BackendError(
        "unauthorized",
        "Missing or wrong access token. The add-on sets it when it starts the backend; "
        "for a remote backend, copy the token the server was started with.",
    )


def token_ok(token: str | None, request: Request, allow_query: bool = False) -> bool:
    """Whether ``request`` carries ``token`` (``Authorization: Bearer``; with
    ``allow_query``, also ``?token=`` - for pages a browser opens). None: no token needed."""
    if token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" and allow_query:
        given = request.query_params.get("token", "")
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


async def get_state(request: Request) -> ServerState:
    return request.app.state.server


StateDep = Annotated[ServerState, Depends(get_state)]


async def verify_token(request: Request, state: StateDep) -> None:
    """The routers' dependency (the token is also checked before the body is read, by
    ``backend.api.middleware.RequestGuard``)."""
    if not token_ok(state.settings.token, request):
        raise unauthorized()
