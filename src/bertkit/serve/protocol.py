"""uvicorn's h11 protocol with a timeout on the request line and headers.

uvicorn times an idle keep-alive connection (`timeout_keep_alive`) but not one that is sending its headers:
a client that opens a connection and sends a few bytes of header at a time holds it for as long as it likes,
and enough such clients hold every connection the server has. This protocol closes a connection whose
request line and headers are not complete `header_timeout` seconds after it opened or after the first byte
of its next request, with a 408. The body has its own timeout in the app (`--body-timeout`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HeaderTimeoutProtocol", "uvicorn_settings", "ENV_HEADER_TIMEOUT"]

ENV_HEADER_TIMEOUT = "BERTKIT_HEADER_TIMEOUT"  # read by each worker process's protocol
_LATE_BODY = b"the request headers did not arrive in time\n"
_LATE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: "
         + str(len(_LATE_BODY)).encode() + b"\r\n\r\n" + _LATE_BODY)


class HeaderTimeoutProtocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = float(os.environ.get(ENV_HEADER_TIMEOUT, "10"))
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # the request line and headers are not all in yet
            if self._header_timer is None and not self.transport.is_closing():
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self.conn.our_state is h11.IDLE:
                self.transport.write(_LATE)
            self.transport.close()


def uvicorn_settings(header_timeout: float) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run` / `uvicorn.Config` that bertkit's servers use: the protocol
    above, and keep-alive connections closed after 5 s idle (uvicorn's default, stated)."""
    os.environ[ENV_HEADER_TIMEOUT] = repr(float(header_timeout))
    return {"http": HeaderTimeoutProtocol, "timeout_keep_alive": 5}
