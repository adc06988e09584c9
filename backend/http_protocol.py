"""The HTTP connection layer: uvicorn's h11 protocol plus the limits uvicorn lacks.

uvicorn closes idle kept-alive connections (``timeout_keep_alive``) and caps the size of a
request head (h11's ``max_incomplete_event_size``), but it has no timeout while a request
head or body is arriving, and nothing bounds the number of open connections short of the
process running out of file descriptors. ``protocol_class`` adds, per connection:

* a header deadline: a request head must be complete ``header_timeout_s`` after its first
  byte arrived (or the connection opened), else the connection is closed;
* a body timeout: while the app waits for the body, ``body_timeout_s`` without a byte
  closes the connection; a body still arriving after the answer was sent (a 401 or 413
  before the upload was read) gets ``body_timeout_s`` in all, then the connection closes;
* a connection cap: the connection over ``max_connections`` closes the one that has waited
  longest for a request head, so a flood of half-open connections cannot lock out /health
  (or, when every connection is busy with a request, is itself closed at once).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ConnectionLimits:
    """Seconds and counts; see the module doc."""

    header_timeout_s: float = 5.0
    body_timeout_s: float = 30.0
    max_connections: int = 1000


def protocol_class(limits: ConnectionLimits) -> type[H11Protocol]:
    """An ``H11Protocol`` subclass enforcing ``limits`` (uvicorn's ``http=`` setting)."""

    class LimitedH11Protocol(_LimitedH11Protocol):
        pass

    LimitedH11Protocol.limits = limits
    LimitedH11Protocol.idle = {}
    return LimitedH11Protocol


class _LimitedH11Protocol(H11Protocol):
    limits: ConnectionLimits
    #: connections waiting for a request head, oldest first (a dict keeps insertion order)
    idle: dict[_LimitedH11Protocol, None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            oldest = next(iter(self.idle), None)
            if oldest is None:  # every connection is busy with a request: refuse this one
                self.transport.close()
                return
            oldest._close()
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_timer("", None)
        self.idle.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track(data_arrived=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    # -- the limits -------------------------------------------------------------------------
    def _track(self, data_arrived: bool = False) -> None:
        """Arm the timer that fits the connection's state after every change of it."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        answered = self.cycle is not None and self.cycle.response_complete
        if state is h11.IDLE:
            self.idle[self] = None
            if self._timer_kind == "head":
                return  # a deadline, not an idle timeout: more bytes do not extend it
            if data_arrived or self.cycle is None:
                self._set_timer("head", self.limits.header_timeout_s)
            else:  # kept alive after an answer: uvicorn's keep-alive timeout until a byte
                self._set_timer("", None)
        elif state is h11.SEND_BODY and not answered:
            self.idle.pop(self, None)
            if data_arrived or self._timer_kind != "body":
                self._set_timer("body", self.limits.body_timeout_s)
        elif state is h11.SEND_BODY:
            self.idle.pop(self, None)
            if self._timer_kind != "drain":
                self._set_timer("drain", self.limits.body_timeout_s)
        else:
            self.idle.pop(self, None)
            self._set_timer("", None)

    def _set_timer(self, kind: str, seconds: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_kind = kind
        if seconds is not None:
            self._timer = self.loop.call_later(seconds, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self._timer_kind == "body" and self.flow.read_paused:
            # the app is behind reading the body, not the client: wait again
            self._set_timer("body", self.limits.body_timeout_s)
            return
        self._close()

    def _close(self) -> None:
        self._set_timer("", None)
        self.idle.pop(self, None)
        if not self.transport.is_closing():
            self.transport.close()
