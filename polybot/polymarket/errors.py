"""One exception hierarchy for the exchange adapter, so callers catch meaning, not mechanism.

Every error carries the `poly-correlation-id` the client sent (and the server's request id when
it returned one). `OutcomeUnknown` is first-class: a create or modify whose fate we cannot know
(timeout, transport failure after the request may have left, 5xx). It carries what was sent so
the caller can reconcile from the order stream or the open-orders query; it must never be retried.
"""

from __future__ import annotations

from typing import Any

from polybot.errors import FatalCredentialsError


class PolymarketError(Exception):
    """Base of every error the Polymarket US adapter raises."""

    def __init__(
        self,
        message: str,
        *,
        correlation_id: str = "",
        status: int | None = None,
        method: str = "",
        path: str = "",
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.correlation_id = correlation_id
        self.status = status
        self.method = method
        self.path = path
        self.body = body  # parsed error body from the server (never our request: no secrets)

    def __str__(self) -> str:
        where = f"{self.method} {self.path}".strip()
        status = f" HTTP {self.status}" if self.status is not None else ""
        cid = f" [correlation-id {self.correlation_id}]" if self.correlation_id else ""
        return f"{self.message} ({where}{status}){cid}" if where else f"{self.message}{status}{cid}"


class ApiStatusError(PolymarketError):
    """The server answered with a non-2xx status."""


class BadRequest(ApiStatusError):
    """400: the request was malformed; nothing reached the exchange."""


class AuthError(ApiStatusError):
    """401/403: signature, key or clock refused (check clock skew first)."""


class NotFound(ApiStatusError):
    """404: unknown order, market, event, or not settled yet."""


class RateLimited(ApiStatusError):
    """429 at the edge."""


class ServerError(ApiStatusError):
    """5xx (503 during maintenance)."""


class TransportError(PolymarketError):
    """The connection failed before an answer came back."""


class Timeout(PolymarketError):
    """The per-request deadline passed without an answer."""


class OutcomeUnknown(PolymarketError):
    """A create/modify may or may not have reached the exchange. Reconcile; never resend blindly.

    `sent` is the JSON body that was (maybe) sent; `cause` the underlying error.
    """

    def __init__(self, message: str, *, sent: Any, cause: PolymarketError, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.sent = sent
        self.cause = cause


class CredentialsRejected(PolymarketError, FatalCredentialsError):
    """The exchange refused our key both at a websocket upgrade and on a signed REST call.

    Fatal: no restart can fix it (a `FatalCredentialsError`: the supervisor exits with 78).
    """
