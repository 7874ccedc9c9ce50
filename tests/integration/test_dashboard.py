"""The dashboard's routes on a real hypercorn over loopback: its snapshot ids, its read-only mode,
and every check a POST must pass before it leaves an operator request in DATA_DIR.

The browser side (charts, a running bot, a flatten clicked) is tests/e2e/test_dashboard.py; here
the bot is a hand-made status report, so each refusal is pinned down cheaply, on the mock clock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from polybot import config
from polybot.control import KILL_FILE, RESUME_FILE
from polybot.dashboard import Dashboard, DashboardConfig
from polybot.health import KEPT_SNAPSHOTS, HealthApp, HealthSources, StatusReport, serve_health
from polybot.metrics import Metrics
from polybot.operator import REQUESTS_DIR
from polybot.store import db_path, migrate
from tests.integration.test_health import running_state
from tests.unit.test_config import minimal

TOKEN = "dashboard-token-0123456789abcdef"

Served = tuple[httpx.AsyncClient, str, Path]


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.01)


def _report(counter: list[int]) -> StatusReport:
    counter[0] += 1  # every report differs: equity moves a cent each time
    return StatusReport(
        mode="paper", trading_state="ACTIVE",
        pnl={"equity": Decimal("1000.00") + Decimal(counter[0]) / 100, "cash": Decimal("950.00"),
             "daily": Decimal("-3.50")},
        recent_errors=(f"a log line that quoted {TOKEN}",),
        extra={"risk": {"portfolio": Decimal("50.00"), "positions": 1, "daily_loss": Decimal("3.50"),
                        "by_market": {"aec-nba-bos-nyk": Decimal("50.00")}, "by_event": {},
                        "caps": {"market": Decimal("50"), "event": Decimal("125"),
                                 "portfolio": Decimal("250"), "positions": 10,
                                 "daily_loss": Decimal("25")}},
               "positions": [{"market": "aec-nba-bos-nyk", "qty": Decimal("100"),
                              "avg_price": Decimal("0.5"), "mark": Decimal("0.52"),
                              "unrealized": Decimal("2.00"), "at_risk": Decimal("50.00")}]})


async def _serve(nursery: trio.Nursery, data_dir: Path, token: str | None) -> Served:
    counter = [0]
    app = HealthApp(
        HealthSources(supervisor=running_state, not_ready_reason=lambda: None,
                      status=partial(_report, counter), metrics=Metrics.create()),
        secrets=[TOKEN], dashboard=Dashboard(DashboardConfig(data_dir, token=token)))
    port = await nursery.start(partial(serve_health, app, "127.0.0.1", 0))
    base = f"http://127.0.0.1:{port}"
    return httpx.AsyncClient(base_url=base, timeout=5), base, data_dir


@pytest.fixture
async def read_only(nursery, tmp_path) -> AsyncIterator[Served]:
    client, base, data_dir = await _serve(nursery, tmp_path, None)
    async with client:
        yield client, base, data_dir


@pytest.fixture
async def with_token(nursery, tmp_path) -> AsyncIterator[Served]:
    client, base, data_dir = await _serve(nursery, tmp_path, TOKEN)
    async with client:
        yield client, base, data_dir


def _csrf(page: str) -> str:
    return page.split('const CSRF = "', 1)[1].split('"', 1)[0]


def _left(data_dir: Path) -> list[str]:
    """What an action left in DATA_DIR for the bot."""
    found = [p.name for p in (data_dir / KILL_FILE, data_dir / RESUME_FILE) if p.exists()]
    return found + sorted(p.name for p in (data_dir / REQUESTS_DIR).glob("*.json"))


async def test_the_figures_of_dashboard_data_are_those_of_status_for_the_same_snapshot_id(
        read_only: Served) -> None:
    client, _base, _ = read_only
    data = (await client.get("/dashboard/data")).json()
    later = (await client.get("/status")).json()
    assert later["snapshot"] == data["snapshot"] + 1
    assert later["pnl"]["equity"] != data["figures"]["equity"]["value"]  # another moment
    same = (await client.get(f"/status?snapshot={data['snapshot']}")).json()
    assert same["snapshot"] == data["snapshot"]
    assert data["figures"]["equity"] == {"value": same["pnl"]["equity"], "text": "1,000.01"}
    assert data["figures"]["cash"] == {"value": "950.00", "text": "950.00"}
    assert data["figures"]["at_risk"] == {"value": same["extra"]["risk"]["portfolio"],
                                          "text": "50.00"}
    assert data["positions"]["rows"] == [
        ["aec-nba-bos-nyk", "100", "0.50", "0.52", "2.00", "50.00"]]
    assert data["limits"][2] | {"pct": None} == {
        "name": "daily loss", "used": "3.50", "cap": "25", "pct": None,
        "text": "3.50 of 25.00"}
    for _ in range(KEPT_SNAPSHOTS):
        await client.get("/status")
    gone = await client.get(f"/status?snapshot={data['snapshot']}")
    assert gone.status_code == 404


async def test_without_a_token_the_page_has_no_button_and_every_post_is_refused(
        read_only: Served) -> None:
    client, base, data_dir = read_only
    page = (await client.get("/dashboard")).text
    assert "<button" not in page and 'id="token"' not in page
    assert '<script src="/dashboard/plotly.min.js">' in page and "http" not in page.split(
        "<script", 1)[1].split(">", 1)[0]  # no CDN
    for action in ("halt", "resume", "cancel-all", "flatten"):
        r = await client.post(f"/dashboard/action/{action}", headers={
            "Origin": base, "X-CSRF-Token": _csrf(page), "Authorization": f"Bearer {TOKEN}"})
        assert (r.status_code, r.json()["error"]) == (
            403, "read-only dashboard: DASHBOARD_TOKEN is not set")
    assert _left(data_dir) == []
    assert (await client.get("/dashboard/action/halt")).status_code == 405
    assert (await client.get("/dashboard/data")).json()["actions"] is False


async def test_a_post_lacking_any_of_host_origin_csrf_or_token_is_refused_and_leaves_nothing(
        with_token: Served) -> None:
    client, base, data_dir = with_token
    page = (await client.get("/dashboard")).text
    good = {"Origin": base, "X-CSRF-Token": _csrf(page), "Authorization": f"Bearer {TOKEN}"}
    forged: list[tuple[dict[str, str], str]] = [
        ({**good, "Host": "attacker.example"}, "host not allowed"),  # DNS rebinding
        ({**good, "Origin": "http://attacker.example"}, "cross-origin request refused"),
        ({k: v for k, v in good.items() if k != "Origin"}, "cross-origin request refused"),
        ({**good, "Sec-Fetch-Site": "cross-site"}, "cross-site request refused"),
        ({**good, "X-CSRF-Token": "from-an-old-page"},
         "missing or stale CSRF token: reload the page"),
        ({k: v for k, v in good.items() if k != "Authorization"}, "wrong dashboard token"),
        ({**good, "Authorization": f"Bearer {TOKEN}x"}, "wrong dashboard token"),
    ]
    for headers, reason in forged:
        r = await client.post("/dashboard/action/flatten", headers=headers)
        assert (r.status_code, r.json()["error"]) == (403, reason), headers
    assert _left(data_dir) == []
    assert (await client.post("/dashboard/action/sell-everything", headers=good)).status_code == 404


async def test_with_the_token_actions_leave_the_clis_requests_and_the_ack_is_read_back(
        with_token: Served) -> None:
    client, base, data_dir = with_token
    page = (await client.get("/dashboard")).text
    assert page.count("data-action=") == 4 and TOKEN not in page
    good = {"Origin": base, "X-CSRF-Token": _csrf(page), "Authorization": f"Bearer {TOKEN}"}
    post: Callable[[str], Any] = partial(_post, client, good)

    assert (await post("halt"))["expect"] == "halted"
    assert (data_dir / KILL_FILE).read_text().startswith("halted by operator (dashboard)")
    await post("resume")
    assert _left(data_dir) == [RESUME_FILE]
    sent = await post("flatten")
    request = json.loads((data_dir / REQUESTS_DIR / f"{sent['request']}.json").read_text())
    assert (request["id"], request["kind"]) == (sent["request"], "flatten")

    ack = f"/dashboard/ack/{sent['request']}"
    assert (await client.get(ack)).json() == {"request": sent["request"], "outcome": None}
    with sqlite3.connect(db_path(data_dir)) as conn:  # the bot's acknowledgement, as the store
        migrate(conn)                                 # writes it
        conn.execute("INSERT INTO operator_acks VALUES (?, 'flatten', 'done', "
                     "'2 closing order(s) sent', '2026-12-06T00:00:00+00:00')", (sent["request"],))
    conn.close()
    assert (await client.get(ack)).json()["outcome"] == "done 2 closing order(s) sent"
    assert (await client.get("/dashboard/ack/..%2FKILL")).status_code == 404


async def _post(client: httpx.AsyncClient, headers: dict[str, str], action: str) -> Any:
    r = await client.post(f"/dashboard/action/{action}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_no_response_of_the_dashboard_carries_the_token(with_token: Served) -> None:
    client, _base, _ = with_token
    bodies = [(await client.get(p)).text
              for p in ("/dashboard", "/dashboard/data", "/status", "/status?snapshot=1")]
    assert all(TOKEN not in body for body in bodies)
    assert "a log line that quoted [redacted]" in bodies[1]
    js = await client.get("/dashboard/plotly.min.js")
    assert js.headers["cache-control"] == "public, max-age=86400"
    assert js.content.startswith(b"/**") and len(js.content) > 1_000_000


def test_dashboard_token_is_a_secret_of_at_least_16_characters() -> None:
    env = minimal()
    with pytest.raises(config.ConfigError) as exc:
        config.load_settings({**env, "DASHBOARD_TOKEN": "short-token"})
    assert exc.value.problems == ["DASHBOARD_TOKEN=(value hidden): expected at least 16 "
                                  "characters without spaces (e.g. `openssl rand -hex 24`)"]
    settings = config.load_settings({**env, "DASHBOARD_TOKEN": TOKEN})
    assert settings.dashboard_token is not None and settings.dashboard_token.reveal() == TOKEN
    assert TOKEN in settings.secret_values() and TOKEN not in repr(settings)
    assert config.load_settings(env).dashboard_token is None
