"""Loopback listeners for the test fronts placed between a client and the local exchange."""

from __future__ import annotations

import ssl
from typing import Any

import trio


async def open_loopback_listeners(ssl_context: ssl.SSLContext | None) -> tuple[list[Any], int]:
    """Listeners on an ephemeral 127.0.0.1 port (TLS with `ssl_context`), and that port."""
    if ssl_context is not None:
        listeners: list[Any] = await trio.open_ssl_over_tcp_listeners(
            0, ssl_context, host="127.0.0.1", https_compatible=True)
        return listeners, listeners[0].transport_listener.socket.getsockname()[1]
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    return listeners, listeners[0].socket.getsockname()[1]
