"""Wire encoding conventions of the sim (pure functions, no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from polybot.sim import wire


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.55", "0.5500"), ("0.005", "0.0050"), ("12", "12.0000"), ("-0.19", "-0.1900")],
)
def test_amounts_are_usd_objects_with_4_decimal_strings(value, expected):
    assert wire.amount(Decimal(value)) == {"value": expected, "currency": "USD"}
    assert wire.amount(None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "0"),
        ("5", "5"),
        ("1234", "1200"),
        ("99999", "99000"),
        ("0.567", "0.56"),
        ("12.5", "12"),
    ],
)
def test_resting_shares_round_down_to_two_significant_figures(value, expected):
    assert wire.two_sig_figs_down(Decimal(value)) == expected


def test_timestamps_are_rfc3339_utc_with_milliseconds():
    t = datetime(2026, 1, 27, 19, 2, 11, 512999, tzinfo=UTC)
    assert wire.timestamp(t) == "2026-01-27T19:02:11.512Z"
    eastern = t.astimezone(timezone(timedelta(hours=-5)))
    assert wire.timestamp(eastern) == "2026-01-27T19:02:11.512Z"
    assert wire.timestamp(None) is None


def test_json_numbers_keep_integral_values_integral():
    assert wire.number(Decimal("1")) == 1 and isinstance(wire.number(Decimal("1.0")), int)
    assert wire.number(Decimal("0.01")) == 0.01
