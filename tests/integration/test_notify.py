"""Alerts against a local HTTP receiver (hypercorn on loopback) standing in for Discord/Telegram."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import orjson
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from polybot.notify import DISCORD_COLOURS, Alert, DiscordWebhook, Level, Notifier, TelegramBot

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@attrs.define
class Receiver:
    """Records every POST; answers with scripted statuses (then 200), or never answers."""

    requests: list[tuple[str, Any]] = attrs.Factory(list)
    statuses: list[int] = attrs.Factory(list)
    hang: bool = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append((scope["path"], orjson.loads(body)))
        if self.hang:
            await trio.sleep_forever()
        status = self.statuses.pop(0) if self.statuses else 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": true}'})

    def payloads(self) -> list[Any]:
        return [payload for _, payload in self.requests]


@pytest.fixture
async def receiver(nursery) -> tuple[Receiver, str]:
    r = Receiver()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("test.receiver")
    binds = await nursery.start(partial(serve, r, config, mode="asgi"))
    return r, binds[0]


def refused_url() -> str:
    """A loopback URL nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def test_discord_payload_is_one_embed_coloured_by_level(nursery, receiver):
    r, base = receiver
    notifier = Notifier([DiscordWebhook(f"{base}/api/webhooks/42/webhook-token")])
    await nursery.start(notifier.run)
    notifier.alert(Level.ERROR, "polybot restarting", "markets: ConnectError\nRestart 1 in 1.0s")
    notifier.alert(Level.INFO, "polybot started", "paper mode")
    await wait_until(lambda: len(r.requests) == 2)
    (path, first), (_, second) = r.requests
    assert path == "/api/webhooks/42/webhook-token"
    assert first["allowed_mentions"] == {"parse": []}
    (embed,) = first["embeds"]
    assert embed["title"] == "polybot restarting"
    assert embed["description"] == "markets: ConnectError\nRestart 1 in 1.0s"
    assert embed["color"] == DISCORD_COLOURS[Level.ERROR] == 0xE74C3C
    assert second["embeds"][0]["color"] == DISCORD_COLOURS[Level.INFO] != embed["color"]


async def test_telegram_send_message_carries_chat_id_and_text(nursery, receiver):
    r, base = receiver
    notifier = Notifier([TelegramBot(TOKEN, -100123, api_base=base)])
    await nursery.start(notifier.run)
    assert notifier.alert(Level.CRITICAL, "polybot exiting (code 78)", "credentials rejected")
    await wait_until(lambda: len(r.requests) == 1)
    path, payload = r.requests[0]
    assert path == f"/bot{TOKEN}/sendMessage"
    assert payload["chat_id"] == -100123
    assert payload["text"] == "🚨 polybot exiting (code 78)\ncredentials rejected"
    assert "parse_mode" not in payload  # plain text: nothing in an alert can break the markup


async def test_burst_beyond_the_rate_limit_is_coalesced_into_one_summary(nursery, receiver):
    r, base = receiver
    notifier = Notifier([DiscordWebhook(f"{base}/hook")], max_per_window=3, window=1.0)
    await nursery.start(notifier.run)
    for i in range(10):
        notifier.alert(Level.WARNING if i else Level.INFO, f"alert {i}", f"detail {i}")
    await wait_until(lambda: len(r.requests) == 3)
    await trio.sleep(0.3)
    assert len(r.requests) == 3  # the window is full: nothing more for now
    titles = [p["embeds"][0]["title"] for p in r.payloads()]
    assert titles == ["alert 0", "alert 1", "8 alerts (rate limited)"]
    summary = r.payloads()[2]["embeds"][0]
    assert summary["description"].splitlines() == [
        f"• [warning] alert {i}: detail {i}" for i in range(2, 10)
    ]
    assert summary["color"] == DISCORD_COLOURS[Level.WARNING]

    # While the window is full, repeats of one condition collapse into one message with a count.
    for n in range(4):
        notifier.alert(Level.ERROR, "markets stream down", f"down {30 + n}s", key="stream.markets")
    await wait_until(lambda: len(r.requests) == 4)
    await trio.sleep(0.1)
    assert len(r.requests) == 4
    last = r.payloads()[3]["embeds"][0]
    assert (last["title"], last["description"]) == ("markets stream down (×4)", "down 33s")


async def test_server_errors_are_retried_with_backoff_then_delivered(nursery, receiver):
    r, base = receiver
    r.statuses = [500, 503]
    notifier = Notifier([DiscordWebhook(f"{base}/hook")], retry_initial=0.05)
    await nursery.start(notifier.run)
    notifier.alert(Level.WARNING, "halt entered", "daily loss limit")
    await wait_until(lambda: notifier.delivered == 1)
    assert len(r.requests) == 3
    assert notifier.failed == 0


async def test_client_errors_are_not_retried_and_never_raise(nursery, receiver):
    r, base = receiver
    r.statuses = [400]
    notifier = Notifier([TelegramBot(TOKEN, 1, api_base=base)], retry_initial=0.05)
    await nursery.start(notifier.run)
    notifier.alert(Level.INFO, "x")
    await wait_until(lambda: notifier.failed == 1)
    await trio.sleep(0.2)
    assert len(r.requests) == 1


async def test_dead_receivers_never_stall_the_caller(nursery, receiver):
    hanging, base = receiver
    hanging.hang = True
    notifier = Notifier(
        [DiscordWebhook(f"{base}/hook"), TelegramBot(TOKEN, 1, api_base=refused_url())],
        queue_size=5,
        timeout=0.2,
        attempts=2,
        retry_initial=0.05,
    )
    await nursery.start(notifier.run)

    ticks = 0

    async def trading_loop() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    nursery.start_soon(trading_loop)
    await trio.sleep(0.05)
    ticks_before, started = ticks, time.perf_counter()
    accepted = [notifier.alert(Level.ERROR, f"alert {i}") for i in range(50)]
    assert time.perf_counter() - started < 0.05
    assert ticks == ticks_before  # no checkpoint: send_nowait never yields to the event loop
    assert accepted.count(True) == 6  # one handed to the waiting consumer + a full queue of five
    assert notifier.dropped == 44
    await trio.sleep(1.0)
    assert ticks >= 30  # the event loop kept running while both sinks failed
    assert notifier.failed >= 1 and notifier.delivered == 0
    assert len(hanging.requests) >= 2  # it was really tried (and retried) against the hang


async def test_bot_token_and_webhook_never_appear_in_logs(nursery, receiver, caplog):
    r, base = receiver
    r.statuses = [500, 500, 500, 500, 500, 500]
    webhook = f"{base}/api/webhooks/42/discord-secret-token"
    notifier = Notifier(
        [DiscordWebhook(webhook), TelegramBot(TOKEN, 1, api_base=base)],
        attempts=3,
        retry_initial=0.01,
    )
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # an earlier logging setup may quiet it
    await nursery.start(notifier.run)
    notifier.alert(Level.ERROR, "boom")
    await wait_until(lambda: notifier.failed == 1)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert TOKEN not in text and "discord-secret-token" not in text
    httpx_lines = [rec.getMessage() for rec in caplog.records if rec.name == "httpx"]
    assert any("[redacted]" in line for line in httpx_lines)  # httpx did log the request lines
    assert repr(notifier.__dict__["_sinks"]).count("[redacted]") == 2


async def test_flush_delivers_queued_alerts_despite_the_rate_limit(nursery, receiver):
    r, base = receiver
    notifier = Notifier([DiscordWebhook(f"{base}/hook")], max_per_window=1, window=60)
    await nursery.start(notifier.run)
    notifier.alert(Level.INFO, "polybot started")
    await wait_until(lambda: len(r.requests) == 1)
    notifier.alert(Level.INFO, "polybot stopped", "clean stop")
    await trio.sleep(0.1)
    assert len(r.requests) == 1  # rate-limited for a minute...
    with trio.fail_after(2):
        assert await notifier.flush(timeout=2)  # ...but a shutdown flush gets it out
    assert r.payloads()[1]["embeds"][0]["title"] == "polybot stopped"


async def test_dropped_alerts_are_counted_and_reported_in_the_next_message(nursery, receiver):
    r, base = receiver
    notifier = Notifier([DiscordWebhook(f"{base}/hook")], queue_size=2)
    await nursery.start(notifier.run)
    for i in range(6):
        notifier.alert(Level.WARNING, f"a{i}")
    assert notifier.dropped == 3
    await wait_until(lambda: notifier._outstanding == 0)
    descriptions = "\n".join(p["embeds"][0]["description"] for p in r.payloads())
    assert "(3 alert(s) dropped: queue full)" in descriptions


def test_send_nowait_works_before_the_consumer_runs_and_alert_is_a_value():
    notifier = Notifier([])
    assert notifier.send_nowait(Alert(Level.INFO, "queued before run"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Alert(Level.INFO, "x").title = "y"  # type: ignore[misc]


async def test_known_secrets_are_scrubbed_from_alert_texts(nursery, receiver):
    r, base = receiver
    odds_key = "opticodds-key-0123456789"
    notifier = Notifier([TelegramBot(TOKEN, 1, api_base=base)], secrets=[odds_key])
    await nursery.start(notifier.run)
    notifier.alert(
        Level.ERROR, "odds crashed", f"HTTPStatusError: 500 for url https://x/odds?key={odds_key}"
    )
    await wait_until(lambda: len(r.requests) == 1)
    assert (
        r.payloads()[0]["text"]
        == "🔴 odds crashed\nHTTPStatusError: 500 for url https://x/odds?key=[redacted]"
    )


async def test_an_instance_names_itself_first_in_every_alert_title(nursery, receiver):
    r, base = receiver
    notifier = Notifier([TelegramBot(TOKEN, -100123, api_base=base),
                         DiscordWebhook(f"{base}/api/webhooks/42/webhook-token")],
                        instance="alice")
    await nursery.start(notifier.run)
    notifier.alert(Level.WARNING, "Trading halted", "daily loss limit reached")
    await wait_until(lambda: len(r.requests) == 2)
    payloads = {path.split("/")[1]: payload for path, payload in r.requests}
    assert payloads[f"bot{TOKEN}"]["text"] == "⚠️ [alice] Trading halted\ndaily loss limit reached"
    assert payloads["api"]["embeds"][0]["title"] == "[alice] Trading halted"
