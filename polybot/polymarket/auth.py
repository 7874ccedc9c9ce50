"""Ed25519 request signing for Polymarket US (reference §2).

The signed message is ``<timestamp ms><METHOD><path>``: no host, no query string, no body, no
separators. The same three ``X-PM-*`` headers authenticate REST calls and websocket upgrades; a
websocket must be re-signed on every connect because the server checks the timestamp (±30 s).
The private key is parsed once; the secret text is never kept, printed or put in an error.

Signing goes through libsodium (PyNaCl): Ed25519 is deterministic, so its signatures are the
same bytes `cryptography`'s are (the reference vectors pin them), at ~18 µs a sign against
~32 µs through OpenSSL on this machine; every order create pays one on its way to the wire.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Generator
from urllib.parse import urlsplit

import httpx
import trio
from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

from polybot.clock import epoch_ms

ACCESS_KEY_HEADER = "X-PM-Access-Key"
TIMESTAMP_HEADER = "X-PM-Timestamp"
SIGNATURE_HEADER = "X-PM-Signature"


class InvalidSecretKey(ValueError):
    """The secret key is not base64 of a 32-byte seed or a 64-byte seed+public key."""


class Signer:
    """Holds one API key and signs messages with it.

    `clock_ms` returns the Unix epoch in milliseconds; tests pin it to reproduce the reference
    vectors, and the REST client may add a measured server offset.
    """

    __slots__ = ("_clock_ms", "_secret", "key_id")

    def __init__(
        self, key_id: str, secret_key: str, *, clock_ms: Callable[[], int] = epoch_ms
    ) -> None:
        try:
            raw = base64.b64decode(secret_key, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidSecretKey("secret key is not valid base64") from None
        if len(raw) == 64:
            raw = raw[:32]  # seed ‖ public key: the seed is the first half
        if len(raw) != 32:
            raise InvalidSecretKey(f"secret key decodes to {len(raw)} bytes, expected 32 or 64")
        self._secret = crypto_sign_seed_keypair(raw)[1]  # libsodium's seed ‖ public key
        self.key_id = key_id
        self._clock_ms = clock_ms

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    def now_ms(self) -> int:
        """The time this signer stamps requests with (its `clock_ms`), in epoch milliseconds."""
        return self._clock_ms()

    def sign(self, message: str) -> str:
        # crypto_sign returns the signature followed by the message
        return base64.b64encode(crypto_sign(message.encode(), self._secret)[:64]).decode("ascii")

    def headers(self, method: str, path: str, *, timestamp_ms: int | None = None) -> dict[str, str]:
        """The three auth headers for `method` on `path` (a bare path; any query is dropped)."""
        path = path.split("?", 1)[0]
        ts = str(self._clock_ms() if timestamp_ms is None else timestamp_ms)
        return {
            ACCESS_KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: self.sign(ts + method.upper() + path),
        }

    def ws_headers(self, url: str) -> list[tuple[str, str]]:
        """Upgrade headers for a websocket URL (signed as GET on its path)."""
        return list(self.headers("GET", urlsplit(url).path or "/").items())


_MAX_WAIT_S = 3600.0  # the longest a refresher waits without a request taking its pair
_MAX_STRETCH = 1e6


class Presigner:
    """Single-use, pre-signed auth for one `METHOD path` (the fast create's `POST /v1/orders`).

    The signed message has no body, so the signature can be made before the request exists.
    `run` (a background task) keeps ONE `(timestamp, signature)` pair ready, re-signing it when it
    is `refresh_ms` old by the signer's clock and right after a request took it; `take` hands the
    pair to exactly one request, or signs inline when there is none or it is older than
    `max_age_ms`, so the exchange (±30 s, reference §2) always sees a timestamp at most ~2 s old.
    Never the same signature twice: Ed25519 is deterministic, so every stamp this object signs
    is one above the last even when the clock has not moved (a clock stepped back keeps counting
    up from the last stamp until it catches up). The pair is a credential for any create for
    30 s: it is never put in a repr or a log.
    """

    __slots__ = ("_last", "_ready", "_tail", "_wake", "inline", "max_age_ms", "presigned",
                 "refresh_ms", "signer")

    def __init__(self, signer: Signer, method: str, path: str, *, refresh_ms: int = 1_000,
                 max_age_ms: int = 2_000) -> None:
        self.signer = signer
        self.refresh_ms = refresh_ms
        self.max_age_ms = max_age_ms
        self._tail = method.upper() + path.split("?", 1)[0]
        self._ready: tuple[int, str, str] | None = None  # (stamp, its text, the signature)
        self._last = 0  # the highest stamp signed so far
        self._wake = trio.Event()
        self.presigned = 0  # requests that took a pre-signed pair
        self.inline = 0  # requests signed inline (no pair, or a stale one)

    def __repr__(self) -> str:
        return (f"Presigner({self._tail!r}, ready={self._ready is not None}, "
                f"presigned={self.presigned}, inline={self.inline})")

    def _sign(self) -> tuple[int, str, str]:
        ts = self.signer.now_ms()
        if ts <= self._last:
            ts = self._last + 1
        self._last = ts
        text = str(ts)
        return ts, text, self.signer.sign(text + self._tail)

    def take(self) -> tuple[str, str]:
        """`(timestamp, signature)` for one request: the pre-signed pair if fresh, else inline."""
        ready, self._ready = self._ready, None
        if ready is not None:
            self._wake.set()  # consumed (or stale): the refresher signs the next one
            if abs(self.signer.now_ms() - ready[0]) <= self.max_age_ms:
                self.presigned += 1
                return ready[1], ready[2]
        self.inline += 1
        _, text, signature = self._sign()
        return text, signature

    async def run(self) -> None:
        """Keep a fresh pair ready until cancelled (never awaited by a request).

        The stamp ages on the signer's clock, the wait runs on Trio's. On a real host they move
        together; when a wait shows the signer's clock moving far slower (Trio's mock clock in
        tests jumps hours while the host's moves milliseconds), the next wait is stretched by the
        rate seen, so the refresher wakes about when the pair is due, not once a mock second.
        Freshness never depends on this timing: `take` checks the age itself.
        """
        stretch = 1.0
        try:
            while True:
                now = self.signer.now_ms()
                ready = self._ready
                if ready is None or abs(now - ready[0]) >= self.refresh_ms:
                    self._ready = ready = self._sign()
                due_ms = max(self.refresh_ms - max(0, now - ready[0]), 1)
                started = trio.current_time()
                with trio.move_on_after(min(due_ms / 1000 * stretch, _MAX_WAIT_S)) as waited:
                    await self._wake.wait()
                self._wake = trio.Event()
                if waited.cancelled_caught:
                    trio_ms = (trio.current_time() - started) * 1000
                    signer_ms = self.signer.now_ms() - now
                    stretch = (1.0 if 2 * signer_ms >= trio_ms
                               else min(trio_ms / max(signer_ms, 1), _MAX_STRETCH))
        finally:
            self._ready = None


class PolymarketAuth(httpx.Auth):
    """httpx auth flow: signs each request (and each retry of it) at the moment it is sent."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self.signer.headers(request.method, request.url.path))
        yield request
