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


class PolymarketAuth(httpx.Auth):
    """httpx auth flow: signs each request (and each retry of it) at the moment it is sent."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self.signer.headers(request.method, request.url.path))
        yield request
