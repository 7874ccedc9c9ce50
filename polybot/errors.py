"""Errors that end the process instead of restarting the supervised group.

The supervisor restarts the group after an ordinary crash. Some failures no restart can fix; a
component raises a `FatalError` subclass for those and the supervisor exits at once with the
subclass's `exit_code` (the systemd unit does not restart on these codes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# Every exit code of the process, in one place (they are part of the interface: systemd's
# RestartPreventExitStatus=2 78 and the operator's scripts rely on them).
EXIT_OK = 0
EXIT_UNCONFIRMED = 1  # a clean stop that could not confirm every cancel (an alert names them)
EXIT_CONFIG = 2  # invalid settings: one line per problem, then exit
EXIT_NOT_IMPLEMENTED = 3  # reserved: a command this build does not implement
EXIT_NOT_ACKNOWLEDGED = 4  # an operator request no running bot acknowledged
EXIT_DATA_DIR_IN_USE = 73  # EX_CANTCREAT: another bot holds DATA_DIR/LOCK (one bot per DATA_DIR)
EXIT_RESTART_BUDGET = 70  # EX_SOFTWARE: too many crashes in the window; systemd restarts us
EXIT_CREDENTIALS = 78  # EX_CONFIG: the exchange rejected our credentials (401/403 confirmed)


class FatalError(Exception):
    """A failure a restart cannot fix: the supervisor exits with `exit_code` after an alert."""

    exit_code: int = EXIT_RESTART_BUDGET


class FatalCredentialsError(FatalError):
    """The exchange confirmed our credentials are rejected (HTTP 401/403).

    The message must never contain the key or a signature; say which endpoint refused us.
    """

    exit_code = EXIT_CREDENTIALS


@contextlib.contextmanager
def fatal_unwrapped(*fatal: type[BaseException]) -> Iterator[None]:
    """Let an error of the `fatal` types leave a nursery bare, not inside an exception group, so
    the supervisor maps it to its exit code (the first one, when several tasks failed so)."""
    try:
        yield
    except BaseExceptionGroup as eg:
        found, _ = eg.split(fatal)
        if found is not None:
            first: BaseException = found
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from eg
        raise
