"""The dashboard's model of a status report: what the operator reads, from plain data."""

from __future__ import annotations

from pathlib import Path

from polybot.dashboard import Dashboard, DashboardConfig, price, qty, view


def _report(**kw: object) -> dict[str, object]:
    report: dict[str, object] = {
        "snapshot": 7, "mode": "live", "trading_state": "ACTIVE", "trading_reason": None,
        "pnl": {"equity": "1234.5678", "cash": "1000", "daily": "-25.00"},
        "extra": {"now": "2026-12-06T23:00:00.123456+00:00",
                  "day": {"start": "2026-12-06T05:00:00+00:00",
                          "end": "2026-12-07T05:00:00+00:00"},
                  "trading": {"halt_reasons": [], "flatten_requested": False},
                  "risk": {"portfolio": "250.00", "positions": 3, "daily_loss": "25.00",
                           "drawdown": "10.00",
                           "drawdown_limit": "150.00",
                           "caps": {"portfolio": "250.00", "positions": 10,
                                    "daily_loss": "25.00", "market": "50", "event": "125"}}},
    }
    report.update(kw)
    return report


def test_a_halt_says_why_and_when_it_clears() -> None:
    halted = _report(trading_state="HALTED", trading_reason="daily_loss,kill_switch")
    halted["extra"]["trading"]["halt_reasons"] = ["kill_switch", "daily_loss"]  # type: ignore[index]
    v = view(halted, {}, actions=False)
    assert (v["state"], v["reason"]) == ("HALTED", "daily_loss,kill_switch")
    assert v["clears"] == ("kill switch: until resume (`polybot resume` or the button); "
                           "daily loss: at the next trading day (2026-12-07 05:00:00 UTC)")
    reducing = _report(trading_state="REDUCING", trading_reason="operator_flatten")
    reducing["extra"]["trading"]["flatten_requested"] = True  # type: ignore[index]
    assert view(reducing, {}, actions=False)["clears"] == (
        "reducing: only closing orders; until resume")
    assert view(_report(), {}, actions=False)["clears"] == ""


def test_every_limit_is_shown_as_its_use_of_the_cap_formatted_like_the_report() -> None:
    v = view(_report(), {}, actions=True)
    assert [(lim["name"], lim["pct"], lim["text"]) for lim in v["limits"]] == [
        ("portfolio at risk", 100.0, "250.00 of 250.00"),
        ("positions", 30.0, "3 of 10"),
        ("daily loss", 100.0, "25.00 of 25.00"),  # a loss of 25.00 against RISK_MAX_DAILY_LOSS
        ("drawdown", 100 * 10 / 150, "10.00 of 150.00"),
    ]
    assert v["figures"]["equity"] == {"value": "1234.5678", "text": "1,234.57"}
    assert v["actions"] is True


def test_the_equity_curves_end_at_the_snapshots_live_equity() -> None:
    history = {"today": [("2026-12-06T22:00:00+00:00", "1200.00")],
               "since_start": [("2026-11-01T00:00:00+00:00", "1000"),
                               ("2026-12-06T22:00:00+00:00", "1200.00")]}
    v = view(_report(), history, actions=False)
    assert v["equity"]["today"] == {"x": ["2026-12-06 22:00:00", "2026-12-06 23:00:00"],
                                    "y": [1200.0, 1234.5678]}
    assert v["equity"]["since_start"]["y"] == [1000.0, 1200.0, 1234.5678]


def test_contracts_and_prices_are_shown_without_float_noise() -> None:
    assert (qty("25"), qty("-19.000"), qty("1234.5"), qty(None)) == ("25", "-19", "1,234.50", "-")
    assert (price("0.46"), price("0.5240"), price("0.52403"), price(None)) == (
        "0.46", "0.5240", "0.5240", "-")


def test_the_page_has_buttons_only_with_a_token_and_never_the_token_itself() -> None:
    token = "a-dashboard-token-0123456789"
    with_token = Dashboard(DashboardConfig(Path("data"), token=token)).page().decode()
    without = Dashboard(DashboardConfig(Path("data"))).page().decode()
    assert with_token.count("<button") == 4 and token not in with_token
    assert "<button" not in without
    assert token not in repr(DashboardConfig(Path("data"), token=token))


def test_loopback_hosts_with_ports_are_accepted_and_others_refused() -> None:
    dash = Dashboard(DashboardConfig(Path("data"), token="t" * 16, health_host="10.0.0.5"))
    for host, allowed in [("localhost:8080", True), ("127.0.0.1:9", True), ("[::1]:8080", True),
                          ("10.0.0.5:8080", True), ("evil.example:8080", False),
                          ("localhost.evil.example", False), ("", False)]:
        refusal = dash.refuse({"host": host, "origin": f"http://{host}"})
        assert (refusal is None or refusal.reason != "host not allowed") == allowed, host


def test_the_account_is_named_in_the_header_when_instance_is_set() -> None:
    named = _report()
    named["extra"]["instance"] = "alice"  # type: ignore[index]
    assert view(named, {}, actions=False)["instance"] == "alice"
    assert view(_report(), {}, actions=False)["instance"] == ""
    page = Dashboard(DashboardConfig(Path("unused"))).page().decode()
    assert '<span id="instance"></span>' in page and 'text("instance", d.instance)' in page
