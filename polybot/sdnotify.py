"""systemd notify protocol (sd_notify) over a plain datagram socket, no dependency.

systemd passes the socket path in ``$NOTIFY_SOCKET``; a leading ``@`` means the Linux abstract
namespace (the name starts with a NUL byte). Without the variable every call is a no-op, so the
same code runs under Docker, a terminal or tests. A failed send is logged and swallowed: telling
systemd we are alive must never be the thing that kills us.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Send ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1`` and ``STATUS=...`` to systemd."""

    def __init__(self, socket_path: str | None) -> None:
        self._address: str | bytes | None = None
        if socket_path:
            # Abstract namespace: '@name' on the command line is '\0name' on the wire.
            self._address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, message: str) -> bool:
        """Send one datagram; True if it was handed to the kernel (False when disabled or failed)."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # never stall the event loop on a full socket
            self._sock.sendto(message.encode("utf-8"), self._address)
            return True
        except OSError as exc:
            log.warning("sd_notify %s failed: %s", message.split("=", 1)[0], exc)
            return False

    def ready(self) -> bool:
        return self.notify("READY=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        # STATUS is a single line; a newline would start a new (bogus) assignment.
        return self.notify("STATUS=" + " ".join(text.split()))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str] | None = None, default: float = 5.0) -> float:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC`` (systemd's advice).

    Falls back to `default` when the variable is unset or invalid.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return default
    if usec <= 0:
        return default
    return min(default, usec / 1_000_000 / 2)
