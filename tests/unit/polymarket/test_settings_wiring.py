from polybot.config import load_settings
from polybot.errors import EXIT_CREDENTIALS, FatalCredentialsError
from polybot.polymarket import (
    CredentialsRejected,
    client_from_settings,
    signer_from_settings,
    stream_config_from_settings,
)

SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def settings():
    return load_settings(
        {
            "PM_API_KEY_ID": "123e4567-e89b-12d3-a456-426614174000",
            "PM_PRIVATE_KEY": SEED,
            "MARKET_SLUGS": "a,b",
            "PM_BASE_URL": "http://127.0.0.1:1",
            "PM_GATEWAY_URL": "http://127.0.0.1:2",
            "PM_WS_URL": "ws://127.0.0.1:3",
            "PM_RATE_LIMIT_PER_SECOND": "7",
            "HTTP_TIMEOUT_SECONDS": "3",
            "STALE_FEED_SECONDS": "9",
        }
    )


async def test_urls_limits_and_key_come_from_settings():
    s = settings()
    client = client_from_settings(s)
    try:
        assert client.config.api_url == "http://127.0.0.1:1"
        assert client.config.gateway_url == "http://127.0.0.1:2"
        assert (client.config.timeout, client.config.rate_limit_per_second) == (3.0, 7.0)
    finally:
        await client.aclose()
    assert signer_from_settings(s).key_id == "123e4567-e89b-12d3-a456-426614174000"
    cfg = stream_config_from_settings(s)
    assert (cfg.ws_url, cfg.stale_after) == ("ws://127.0.0.1:3", 9.0)


def test_credentials_rejected_is_the_fatal_exit_78_error():
    exc = CredentialsRejected("refused", status=401)
    assert isinstance(exc, FatalCredentialsError) and exc.exit_code == EXIT_CREDENTIALS == 78
