"""The sim's request authentication against the reference's signing vectors (§2.2)."""

from __future__ import annotations

import base64

import pytest

from polybot.sim.auth import (
    MAX_SKEW_MS,
    AuthError,
    KeyStore,
    generate_key,
    public_key_of,
    sign,
)

SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
SEED_AND_PUB = (
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA=="
)
PUBLIC = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
TS = 1700000000000
VECTORS = [
    (
        "GET",
        "/v1/portfolio/positions",
        "wNoDooooXuI+e/ub/zSd+J4+uTOQBFVOUvST1lNBxe7u2gxqYsJX823q6ZHtn4+epfzI/34EyN3PhhLibuGFBw==",
    ),
    (
        "POST",
        "/v1/orders",
        "K749wtHCJnV+o4B3M3AVUxbjiz+2SokESzbebYK1TApP55HwxaOr5JiVYGeE12qFU2baZ0Seb62+NbqFPqNwAg==",
    ),
    (
        "GET",
        "/v1/ws/markets",
        "nXCvrPAPAGEbWgYyJsGGlEc3l29jAfxfFtL0UYgybW1PJ0ceWCmqkSCZGLswa6u+ywOilY9ZnLgPzhZX5HvDBw==",
    ),
]
KEY_ID = "0b6f8c1e-1111-4222-8333-944455556666"


def _store() -> KeyStore:
    store = KeyStore()
    store.register(KEY_ID, PUBLIC, "acct-1")
    return store


def _headers(sig: str, ts: int = TS, key_id: str = KEY_ID) -> dict[str, str]:
    return {"x-pm-access-key": key_id, "x-pm-timestamp": str(ts), "x-pm-signature": sig}


def test_public_key_is_derived_from_32_and_64_byte_secrets():
    assert public_key_of(SEED) == PUBLIC
    assert public_key_of(SEED_AND_PUB) == PUBLIC


@pytest.mark.parametrize(("method", "path", "expected"), VECTORS)
def test_sign_reproduces_reference_vectors(method, path, expected):
    assert sign(SEED, TS, method, path) == expected
    assert sign(SEED_AND_PUB, TS, method, path) == expected


@pytest.mark.parametrize(("method", "path", "expected"), VECTORS)
def test_verify_accepts_reference_vectors(method, path, expected):
    assert _store().verify(_headers(expected), method, path, now_ms=TS) == "acct-1"


def test_verify_accepts_timestamps_at_the_edge_of_the_window_both_ways():
    sig = VECTORS[0][2]
    store = _store()
    assert store.verify(_headers(sig), "GET", VECTORS[0][1], now_ms=TS + MAX_SKEW_MS) == "acct-1"
    assert store.verify(_headers(sig), "GET", VECTORS[0][1], now_ms=TS - MAX_SKEW_MS) == "acct-1"


@pytest.mark.parametrize("offset", [MAX_SKEW_MS + 1, -(MAX_SKEW_MS + 1), 3_600_000])
def test_verify_rejects_stale_or_future_timestamps(offset):
    with pytest.raises(AuthError, match="timestamp"):
        _store().verify(_headers(VECTORS[0][2]), "GET", VECTORS[0][1], now_ms=TS + offset)


def test_verify_rejects_signature_over_other_method_or_path():
    store = _store()
    with pytest.raises(AuthError, match="invalid signature"):
        store.verify(_headers(VECTORS[0][2]), "POST", VECTORS[0][1], now_ms=TS)
    with pytest.raises(AuthError, match="invalid signature"):
        store.verify(_headers(VECTORS[1][2]), "GET", VECTORS[0][1], now_ms=TS)


def test_verify_rejects_a_signature_that_covers_the_query_string():
    path = "/v1/orders/open"
    sig = sign(SEED, TS, "GET", path + "?slugs=a")
    with pytest.raises(AuthError, match="invalid signature"):
        _store().verify(_headers(sig), "GET", path, now_ms=TS)


@pytest.mark.parametrize("drop", ["x-pm-access-key", "x-pm-timestamp", "x-pm-signature"])
def test_verify_rejects_missing_headers(drop):
    headers = _headers(VECTORS[0][2])
    del headers[drop]
    with pytest.raises(AuthError, match="missing"):
        _store().verify(headers, "GET", VECTORS[0][1], now_ms=TS)


def test_verify_rejects_unknown_key_id_and_revoked_key():
    store = _store()
    with pytest.raises(AuthError, match="unknown"):
        store.verify(_headers(VECTORS[0][2], key_id="nope"), "GET", VECTORS[0][1], now_ms=TS)
    store.revoke(KEY_ID)
    with pytest.raises(AuthError, match="unknown"):
        store.verify(_headers(VECTORS[0][2]), "GET", VECTORS[0][1], now_ms=TS)


@pytest.mark.parametrize("bad", ["17e11", "-1700000000000", "", "１７"])
def test_verify_rejects_non_integer_timestamps(bad):
    headers = _headers(VECTORS[0][2])
    headers["x-pm-timestamp"] = bad
    with pytest.raises(AuthError):
        _store().verify(headers, "GET", VECTORS[0][1], now_ms=TS)


def test_verify_rejects_garbage_signature_encoding():
    with pytest.raises(AuthError, match="signature"):
        _store().verify(_headers("not base64!!"), "GET", VECTORS[0][1], now_ms=TS)


def test_generated_key_is_uuid_and_32_byte_seed_that_verifies():
    key = generate_key("acct-9")
    assert len(base64.b64decode(key.secret_key)) == 32
    assert len(key.key_id) == 36 and key.key_id.count("-") == 4
    assert key.secret_key not in repr(key)
    store = KeyStore()
    store.add(key)
    sig = sign(key.secret_key, TS, "GET", "/v1/account/balances")
    assert (
        store.verify(_headers(sig, key_id=key.key_id), "GET", "/v1/account/balances", now_ms=TS)
        == "acct-9"
    )
