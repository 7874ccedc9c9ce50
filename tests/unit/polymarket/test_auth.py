import base64

import httpx
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from polybot.polymarket.auth import InvalidSecretKey, PolymarketAuth, Presigner, Signer

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


# --- Presigner: the fast create's single-use, pre-signed auth ---------------------------------

T0 = 1700000000000


def _verifies(stamp: str, signature: str, path: str = "/v1/orders") -> bool:
    pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(PUB))
    pub.verify(base64.b64decode(signature), f"{stamp}POST{path}".encode())
    return True


def test_inline_signatures_never_repeat_even_when_the_clock_stands_still():
    presigner = Presigner(Signer("k", SEED, clock_ms=lambda: T0), "POST", "/v1/orders")
    pairs = [presigner.take() for _ in range(3)]
    assert pairs[0] == (str(T0), VECTORS[1][2])  # the reference signature of this exact stamp
    assert [p[0] for p in pairs] == [str(T0), str(T0 + 1), str(T0 + 2)]
    assert len({p[1] for p in pairs}) == 3 and all(_verifies(*p) for p in pairs)
    assert (presigner.presigned, presigner.inline) == (0, 3)


async def test_the_refresher_signs_ahead_and_again_when_its_pair_was_taken_or_aged(mock_clock):
    # Trio's clock moves only when the test jumps it, the signer's when the test moves `now`
    now = [T0]
    presigner = Presigner(Signer("k", SEED, clock_ms=lambda: now[0]), "POST", "/v1/orders")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(presigner.run)
        await trio.testing.wait_all_tasks_blocked()
        now[0] += 400
        assert presigner.take() == (str(T0), VECTORS[1][2])  # signed before it was asked for
        await trio.testing.wait_all_tasks_blocked()  # taken: the next one is signed at once
        assert presigner.take()[0] == str(T0 + 400)
        await trio.testing.wait_all_tasks_blocked()
        now[0] += 1_500  # the pair is 1.5 s old: still usable, but due to be re-signed
        mock_clock.jump(1)
        await trio.testing.wait_all_tasks_blocked()
        taken = presigner.take()
        assert taken[0] == str(T0 + 1_900) and _verifies(*taken)
        assert (presigner.presigned, presigner.inline) == (3, 0)
        nursery.cancel_scope.cancel()


async def test_a_refresher_wakes_rarely_when_its_clock_runs_slower_than_trios(autojump_clock):
    # Trio's mock clock jumps a day while the signer's (the host's) stands still: the refresher
    # stretches its waits instead of waking once a mock second, and its pair stays usable
    reads = []

    def clock_ms() -> int:
        reads.append(trio.current_time())
        return T0

    presigner = Presigner(Signer("k", SEED, clock_ms=clock_ms), "POST", "/v1/orders")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(presigner.run)
        await trio.sleep(24 * 3600)
        assert len(reads) < 60  # about one wake an hour (once a second: 86,400)
        assert presigner.take() == (str(T0), VECTORS[1][2])
        nursery.cancel_scope.cancel()


def test_a_presigners_repr_shows_no_signature():
    presigner = Presigner(Signer("k", SEED, clock_ms=lambda: T0), "POST", "/v1/orders")
    presigner._ready = presigner._sign()
    assert VECTORS[1][2] not in repr(presigner) and "ready=True" in repr(presigner)
