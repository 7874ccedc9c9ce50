import base64

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from polybot.polymarket.auth import InvalidSecretKey, PolymarketAuth, Signer

SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
SEED_PUB = (
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA=="
)
PUB = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
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


@pytest.mark.parametrize("secret", [SEED, SEED_PUB])
@pytest.mark.parametrize(("method", "path", "expected"), VECTORS)
def test_signature_matches_reference_vector(secret, method, path, expected):
    signer = Signer("key-1", secret, clock_ms=lambda: 1700000000000)
    headers = signer.headers(method, path)
    assert headers == {
        "X-PM-Access-Key": "key-1",
        "X-PM-Timestamp": "1700000000000",
        "X-PM-Signature": expected,
    }


def test_query_string_is_not_signed():
    signer = Signer("k", SEED, clock_ms=lambda: 1700000000000)
    assert (
        signer.headers("GET", "/v1/portfolio/positions?limit=5&cursor=x")["X-PM-Signature"]
        == VECTORS[0][2]
    )


def test_signature_verifies_with_reference_public_key():
    signer = Signer("k", SEED)
    h = signer.headers("GET", "/v1/account/balances")
    pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(PUB))
    pub.verify(
        base64.b64decode(h["X-PM-Signature"]),
        (h["X-PM-Timestamp"] + "GET/v1/account/balances").encode(),
    )


def test_ws_headers_sign_the_url_path_as_get():
    signer = Signer("k", SEED, clock_ms=lambda: 1700000000000)
    headers = dict(signer.ws_headers("wss://api.polymarket.us/v1/ws/markets"))
    assert headers["X-PM-Signature"] == VECTORS[2][2]


def test_ws_headers_are_resigned_with_a_fresh_timestamp_each_time():
    ticks = iter([1700000000000, 1700000005000])
    signer = Signer("k", SEED, clock_ms=lambda: next(ticks))
    a = dict(signer.ws_headers("ws://h/v1/ws/private"))
    b = dict(signer.ws_headers("ws://h/v1/ws/private"))
    assert a["X-PM-Timestamp"] != b["X-PM-Timestamp"]
    assert a["X-PM-Signature"] != b["X-PM-Signature"]


@pytest.mark.parametrize("bad", ["not base64!!", base64.b64encode(b"x" * 16).decode(), ""])
def test_bad_secret_is_refused_without_echoing_it(bad):
    with pytest.raises(InvalidSecretKey) as info:
        Signer("k", bad)
    if bad:
        assert bad not in str(info.value)


def test_repr_does_not_leak_the_secret():
    signer = Signer("key-id", SEED)
    assert SEED not in repr(signer) and "key-id" in repr(signer)


def test_httpx_auth_signs_the_request_path_without_query():
    signer = Signer("k", SEED, clock_ms=lambda: 1700000000000)
    request = httpx.Request("GET", "https://api.polymarket.us/v1/portfolio/positions?limit=1")
    flow = PolymarketAuth(signer).auth_flow(request)
    signed = next(flow)
    assert signed.headers["X-PM-Signature"] == VECTORS[0][2]
