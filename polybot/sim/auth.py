"""Ed25519 request authentication for the local exchange (the server side of reference §2).

A client signs ``<timestamp ms><METHOD><path>`` (path without host and without query string) with
its Ed25519 key and sends three headers: ``X-PM-Access-Key`` (key id, a UUID), ``X-PM-Timestamp``
(Unix epoch milliseconds) and ``X-PM-Signature`` (standard padded base64 of the 64-byte signature).
The same headers go on the websocket upgrade request, signed over ``GET/v1/ws/markets`` or
``GET/v1/ws/private``.

The server checks, in this order: all three headers present, the key id registered, the timestamp
an integer within ±30 s of the server clock (direction undocumented; we accept both), the signature
valid for the public key registered under that key id. Any failure is one `AuthError` whose message
says what was wrong but never echoes a signature or key material.

Undocumented choices (reference §14): the query string is never part of the signed path (a
signature that includes it is rejected); there is no replay cache, like the real API as far as is
known.

Keys are generated as the real portal hands them out: a UUID key id and a base64 32-byte seed
(`generate_key`). The store keeps only public keys; the secret leaves this module once, in the
returned `ApiKey`, whose repr hides it.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Mapping

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAX_SKEW_MS = 30_000

ACCESS_KEY_HEADER = "x-pm-access-key"
TIMESTAMP_HEADER = "x-pm-timestamp"
SIGNATURE_HEADER = "x-pm-signature"


class AuthError(Exception):
    """A request failed authentication; the message is safe to return to the client."""


@attrs.frozen
class ApiKey:
    """A generated key pair: what a client needs to sign requests."""

    key_id: str
    secret_key: str = attrs.field(repr=False)  # base64 32-byte Ed25519 seed
    public_key: str  # base64 32-byte raw public key
    account_id: str


def _private_from_secret(secret_key: str) -> Ed25519PrivateKey:
    raw = base64.b64decode(secret_key, validate=True)
    if len(raw) == 64:  # seed || public key, as older docs hand it out
        raw = raw[:32]
    if len(raw) != 32:
        raise ValueError("Ed25519 secret must be a 32-byte seed or 64-byte seed||public key")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_of(secret_key: str) -> str:
    """Base64 raw public key for a base64 secret (32-byte seed or 64-byte seed||pub)."""
    pub = _private_from_secret(secret_key).public_key()
    return base64.b64encode(pub.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def sign(secret_key: str, timestamp_ms: int | str, method: str, path: str) -> str:
    """Signature a correct client sends; used by tests and the admin helpers, not the server."""
    message = f"{timestamp_ms}{method.upper()}{path}".encode()
    return base64.b64encode(_private_from_secret(secret_key).sign(message)).decode()


def signed_headers(
    key_id: str, secret_key: str, method: str, path: str, timestamp_ms: int
) -> dict[str, str]:
    """The three X-PM-* headers for one request (test helper mirroring a correct client)."""
    return {
        "X-PM-Access-Key": key_id,
        "X-PM-Timestamp": str(timestamp_ms),
        "X-PM-Signature": sign(secret_key, timestamp_ms, method, path),
    }


def generate_key(account_id: str) -> ApiKey:
    seed = os.urandom(32)
    secret = base64.b64encode(seed).decode()
    return ApiKey(
        key_id=str(uuid.uuid4()),
        secret_key=secret,
        public_key=public_key_of(secret),
        account_id=account_id,
    )


class KeyStore:
    """Registered public keys and the account each one trades for."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[Ed25519PublicKey, str]] = {}

    def register(self, key_id: str, public_key_b64: str, account_id: str) -> None:
        raw = base64.b64decode(public_key_b64, validate=True)
        self._keys[key_id] = (Ed25519PublicKey.from_public_bytes(raw), account_id)

    def add(self, key: ApiKey) -> ApiKey:
        self.register(key.key_id, key.public_key, key.account_id)
        return key

    def create(self, account_id: str) -> ApiKey:
        """Generate and register a new key for `account_id`."""
        return self.add(generate_key(account_id))

    def revoke(self, key_id: str) -> None:
        self._keys.pop(key_id, None)

    def account_of(self, key_id: str) -> str | None:
        entry = self._keys.get(key_id)
        return entry[1] if entry else None

    def verify(self, headers: Mapping[str, str], method: str, path: str, now_ms: int) -> str:
        """Return the account id a signed request acts for, or raise `AuthError`.

        `headers` must be keyed by lower-case names; `path` is the request path without query.
        """
        key_id = headers.get(ACCESS_KEY_HEADER)
        ts_text = headers.get(TIMESTAMP_HEADER)
        sig_text = headers.get(SIGNATURE_HEADER)
        if not key_id or not ts_text or not sig_text:
            raise AuthError("missing authentication headers")
        entry = self._keys.get(key_id)
        if entry is None:
            raise AuthError("unknown access key")
        if not ts_text.isascii() or not ts_text.isdigit():
            raise AuthError("invalid timestamp")
        if abs(now_ms - int(ts_text)) > MAX_SKEW_MS:
            raise AuthError("timestamp outside the allowed window")
        try:
            signature = base64.b64decode(sig_text, validate=True)
        except (binascii.Error, ValueError):
            raise AuthError("invalid signature encoding") from None
        public_key, account_id = entry
        try:
            public_key.verify(signature, f"{ts_text}{method.upper()}{path}".encode())
        except InvalidSignature:
            raise AuthError("invalid signature") from None
        return account_id
