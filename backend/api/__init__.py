"""The HTTP API, FastAPI's "bigger applications" layout (the app is built in
``backend.server``; the contract is docs/API.md):

* ``state``        - ``ServerSettings``, and ``ServerState``: what every route shares (the
  job store, the worker pool, the probe, the intake limits), kept on ``app.state``;
* ``dependencies`` - the token check (``verify_token``, router-wide) and ``get_state``;
* ``middleware``   - before any route: token and declared size before a body is read; an
  unexpected error answered as JSON on a connection that stays usable;
* ``error_handlers`` - ``BackendError``, validation and HTTP errors -> JSON answers;
* ``public``       - ``/health`` (no token), ``/docs`` and ``/openapi.json``;
* ``info``         - ``GET /info``;
* ``jobs``         - the ``/jobs`` routes; ``submission`` - the steps of ``POST /jobs``.
"""
