import base64
import os
from decimal import Decimal
from pathlib import Path

import pytest

from polybot import config
from polybot.config import ConfigError, Secret, load_settings

SEED_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # reference §2.2 test vector
SEED_PUB_B64 = ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA==")
KEY_ID = "123e4567-e89b-12d3-a456-426614174000"


def minimal(**extra: str) -> dict[str, str]:
    env = {"PM_API_KEY_ID": KEY_ID, "PM_PRIVATE_KEY": SEED_B64, "MARKET_SLUGS": "aec-nba-bos-nyk"}
    env.update(extra)
    return env


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_settings(env)
    return exc.value.problems


def test_every_variable_has_its_documented_default():
    s = load_settings(minimal())
    assert s.trading_mode == "paper"
    assert s.pm_base_url == "https://api.polymarket.us"
    assert s.pm_gateway_url == "https://gateway.polymarket.us"
    assert s.pm_ws_url == "wss://api.polymarket.us"
    assert s.pm_rate_limit_per_second == 20.0
    assert s.pm_public_rate_limit_per_second == 20.0
    assert s.http_timeout_seconds == 10.0
    assert s.initial_balance == Decimal("1000.00")
    assert s.risk_max_position_per_market == Decimal("50.00")
    assert s.risk_max_portfolio_exposure == Decimal("250.00")
    assert s.risk_max_daily_loss == Decimal("25.00")
    assert s.risk_kelly_fraction == Decimal("0.25")
    assert s.risk_min_edge == Decimal("0.02")
    assert s.risk_min_trade_size == Decimal("1.00")
    assert s.risk_max_correlated_exposure == Decimal("125.00")
    assert s.risk_max_positions == 10
    assert s.risk_max_drawdown_pct == Decimal("0.15")
    assert s.order_rate_per_minute == 6
    assert s.order_tif == "ioc"
    assert s.daily_reset_tz == "America/New_York"
    assert s.daily_reset_hour == 0
    assert s.trade_in_play is False
    assert s.stop_before_start_minutes == Decimal(0)
    assert s.opticodds_api_key is None
    assert s.opticodds_base_url == "https://api.opticodds.com/api/v3"
    assert s.opticodds_sportsbooks == ("pinnacle", "circa_sports", "betonline")
    assert s.odds_book_weights == (("pinnacle", Decimal("1.0")), ("circa_sports", Decimal("0.8")),
                                   ("betonline", Decimal("0.6")))
    assert s.odds_min_books == 1
    assert s.odds_devig_method == "shin"
    assert s.odds_market_map == ()
    assert s.stale_feed_seconds == 15.0
    assert s.log_level == "INFO"
    assert s.log_file == Path("logs/bot.log")
    assert s.log_json is False
    assert s.trades_log_file == Path("logs/trades.log")
    assert s.data_dir == Path("data")
    assert s.health_host == "127.0.0.1"
    assert s.health_port == 8080
    assert s.discord_webhook is None
    assert s.telegram_bot_token is None
    assert s.telegram_chat_id is None
    assert s.cancel_on_shutdown is True
    assert s.cancel_unknown_orders is False
    assert s.supervisor_max_restarts == 5
    assert s.supervisor_window_seconds == 300.0


def test_every_declared_variable_is_a_settings_field_and_in_env_example():
    example = Path(__file__).resolve().parents[2] / ".env.example"
    text = example.read_text()
    fields = {a.name for a in config.Settings.__attrs_attrs__}
    for var in config.VARIABLES:
        assert var.field in fields
        assert f"\n{var.name}=" in text, f"{var.name} missing from .env.example"
    # .env.example is generated from VARIABLES: regenerate it if this fails
    assert text.rstrip("\n").splitlines() == config.example_lines()


def test_values_are_parsed_and_typed():
    s = load_settings(minimal(
        TRADING_MODE="LIVE", MARKET_SLUGS="b-1, a-2 ,b-1,,c-3", RISK_KELLY_FRACTION="1",
        HTTP_TIMEOUT_SECONDS="2.5", RISK_MAX_POSITIONS="3", TRADE_IN_PLAY="yes",
        ORDER_TIF="GTC", PM_BASE_URL="http://127.0.0.1:9000/", PM_WS_URL="ws://127.0.0.1:9000",
        OPTICODDS_SPORTSBOOKS="pinnacle, draftkings", ODDS_BOOK_WEIGHTS="pinnacle=2,draftkings=0.25",
        ODDS_MARKET_MAP="aec-x=20261126ABCDEF01:boston_celtics,aec-y=mlb:2DACEC7C8AE9:new_york_yankees",
        LOG_FILE="", LOG_LEVEL="debug", HEALTH_PORT="0", DAILY_RESET_TZ="UTC", DAILY_RESET_HOUR="17",
        STOP_BEFORE_START_MINUTES="5", OPTICODDS_API_KEY="abc123key"))
    assert s.trading_mode == "live" and s.is_live
    assert s.market_slugs == ("b-1", "a-2", "c-3")  # de-duplicated, order kept
    assert s.risk_kelly_fraction == Decimal(1)
    assert s.http_timeout_seconds == 2.5
    assert s.trade_in_play is True
    assert s.order_tif == "gtc"
    assert s.pm_base_url == "http://127.0.0.1:9000"
    assert s.pm_ws_url == "ws://127.0.0.1:9000"
    assert s.opticodds_sportsbooks == ("pinnacle", "draftkings")
    assert dict(s.odds_book_weights) == {"pinnacle": Decimal(2), "draftkings": Decimal("0.25")}
    # each pair is split at its LAST colon: fixture ids may contain colons
    assert s.odds_market_map == (("aec-x", "20261126ABCDEF01", "boston_celtics"),
                                 ("aec-y", "mlb:2DACEC7C8AE9", "new_york_yankees"))
    assert s.log_file is None
    assert s.log_level == "DEBUG"
    assert s.health_port == 0
    assert s.daily_reset_hour == 17
    assert isinstance(s.opticodds_api_key, Secret) and s.opticodds_api_key.reveal() == "abc123key"


def test_money_is_decimal_from_its_string_not_through_float():
    s = load_settings(minimal(INITIAL_BALANCE="0.10", RISK_MIN_EDGE="0.015"))
    assert s.initial_balance == Decimal("0.10")
    assert str(s.risk_min_edge) == "0.015"


@pytest.mark.parametrize("name,value", [
    ("INITIAL_BALANCE", "1e3"), ("INITIAL_BALANCE", "inf"), ("INITIAL_BALANCE", "NaN"),
    ("RISK_MAX_DAILY_LOSS", ".5"), ("RISK_MAX_DAILY_LOSS", "25,00"), ("RISK_MAX_DAILY_LOSS", "0"),
    ("RISK_KELLY_FRACTION", "0"), ("RISK_KELLY_FRACTION", "1.01"), ("RISK_MAX_DRAWDOWN_PCT", "1"),
    ("RISK_MAX_DRAWDOWN_PCT", "0"), ("RISK_MIN_EDGE", "-0.01"), ("RISK_MIN_EDGE", "1"),
    ("RISK_MAX_POSITION_PER_MARKET", "-5"), ("RISK_MAX_POSITIONS", "0"), ("RISK_MAX_POSITIONS", "2.5"),
    ("ORDER_RATE_PER_MINUTE", "0"), ("ORDER_TIF", "fok"), ("TRADING_MODE", "yolo"),
    ("PM_API_KEY_ID", "not-a-uuid"), ("MARKET_SLUGS", "Bad Slug!"), ("MARKET_SLUGS", " , "),
    ("PM_BASE_URL", "ftp://x"), ("PM_WS_URL", "https://api.polymarket.us"),
    ("PM_GATEWAY_URL", "gateway.polymarket.us"), ("HTTP_TIMEOUT_SECONDS", "0"),
    ("PM_RATE_LIMIT_PER_SECOND", "-1"), ("DAILY_RESET_TZ", "Mars/Olympus"),
    ("DAILY_RESET_HOUR", "24"), ("TRADE_IN_PLAY", "maybe"), ("STOP_BEFORE_START_MINUTES", "-1"),
    ("OPTICODDS_SPORTSBOOKS", "a,b,c,d,e,f"), ("ODDS_BOOK_WEIGHTS", "pinnacle"),
    ("ODDS_BOOK_WEIGHTS", "pinnacle=-1"), ("ODDS_MIN_BOOKS", "0"), ("ODDS_DEVIG_METHOD", "magic"),
    ("ODDS_MARKET_MAP", "slug-without-target"), ("ODDS_MARKET_MAP", "s=fixture-no-colon"),
    ("STALE_FEED_SECONDS", "0"), ("LOG_LEVEL", "LOUD"), ("LOG_JSON", "2"),
    ("HEALTH_PORT", "70000"), ("CANCEL_ON_SHUTDOWN", "nope"), ("CANCEL_UNKNOWN_ORDERS", "x"),
    ("SUPERVISOR_MAX_RESTARTS", "-1"), ("SUPERVISOR_WINDOW_SECONDS", "abc"),
])
def test_each_bad_value_is_one_problem_naming_its_variable_and_value(name, value):
    problems = problems_of(minimal(**{name: value}))
    assert len(problems) == 1
    assert problems[0].startswith(f"{name}=")
    assert repr(value) in problems[0]
    assert "expected" in problems[0]


def test_all_problems_are_reported_together_one_line_each():
    problems = problems_of(minimal(RISK_KELLY_FRACTION="2", ORDER_TIF="day", HEALTH_PORT="-1"))
    assert len(problems) == 3
    assert [p.split("=")[0] for p in problems] == ["RISK_KELLY_FRACTION", "ORDER_TIF", "HEALTH_PORT"]
    assert all("\n" not in p for p in problems)


def test_required_variables_are_named_when_missing():
    problems = problems_of({})
    names = sorted(p.split(" ")[0] for p in problems)
    assert names == ["MARKET_SLUGS", "PM_API_KEY_ID", "PM_PRIVATE_KEY"]


def test_private_key_accepts_seed_and_seed_plus_public_key():
    assert load_settings(minimal()).private_key_seed() == bytes(range(32))
    s = load_settings(minimal(PM_PRIVATE_KEY=SEED_PUB_B64))
    assert s.private_key_seed() == bytes(range(32))


@pytest.mark.parametrize("bad", ["not base64!!", base64.b64encode(b"x" * 31).decode(),
                                 base64.b64encode(bytes(range(32)) + b"\x00" * 32).decode()])
def test_bad_private_key_is_reported_without_showing_it(bad):
    problems = problems_of(minimal(PM_PRIVATE_KEY=bad))
    assert len(problems) == 1
    assert problems[0].startswith("PM_PRIVATE_KEY=(value hidden)")
    assert bad not in problems[0]


def test_private_key_file_is_read_and_loose_permissions_warned(tmp_path):
    key = tmp_path / "key"
    key.write_text(SEED_B64 + "\n")
    os.chmod(key, 0o600)
    warnings: list[str] = []
    env = minimal(PM_PRIVATE_KEY_FILE=str(key))
    del env["PM_PRIVATE_KEY"]
    s = load_settings(env, warn=warnings.append)
    assert s.private_key_seed() == bytes(range(32)) and warnings == []
    os.chmod(key, 0o644)
    load_settings(env, warn=warnings.append)
    assert len(warnings) == 1 and "readable by group/others" in warnings[0]
    assert SEED_B64 not in warnings[0]


def test_private_key_and_key_file_together_is_an_error(tmp_path):
    key = tmp_path / "key"
    key.write_text(SEED_B64)
    problems = problems_of(minimal(PM_PRIVATE_KEY_FILE=str(key)))
    assert len(problems) == 1 and problems[0].startswith("PM_PRIVATE_KEY_FILE")


def test_missing_key_file_is_named(tmp_path):
    env = minimal(PM_PRIVATE_KEY_FILE=str(tmp_path / "absent"))
    del env["PM_PRIVATE_KEY"]
    problems = problems_of(env)
    assert len(problems) == 1 and problems[0].startswith("PM_PRIVATE_KEY_FILE=")


def test_telegram_token_needs_a_chat_id():
    problems = problems_of(minimal(TELEGRAM_BOT_TOKEN="123:abc"))
    assert len(problems) == 1 and problems[0].startswith("TELEGRAM_CHAT_ID")


def test_discord_webhook_must_be_a_url_and_is_hidden_when_bad():
    problems = problems_of(minimal(DISCORD_WEBHOOK="hooks-secret-value"))
    assert problems == ["DISCORD_WEBHOOK=(value hidden): expected an https:// webhook URL"]


def test_secrets_never_show_in_repr_str_or_effective_config():
    s = load_settings(minimal(OPTICODDS_API_KEY="oddskey-123456", DISCORD_WEBHOOK="https://discord.test/hook-999",
                              TELEGRAM_BOT_TOKEN="tg-token-777", TELEGRAM_CHAT_ID="42"))
    text = repr(s) + str(s) + repr(s.effective()) + str(s.pm_private_key)
    for secret in (SEED_B64, "oddskey-123456", "https://discord.test/hook-999", "tg-token-777"):
        assert secret not in text
    shown = dict(s.effective())
    assert shown["PM_PRIVATE_KEY"] == "***" and shown["OPTICODDS_API_KEY"] == "***"
    assert sorted(s.secret_values()) == sorted([SEED_B64, "oddskey-123456",
                                                "https://discord.test/hook-999", "tg-token-777"])


def test_secret_cannot_be_pickled():
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))


def test_env_file_is_read_and_the_real_environment_wins(tmp_path):
    f = tmp_path / "bot.env"
    f.write_text("# comment\nexport TRADING_MODE=live\nMARKET_SLUGS='a-1,b-2'\n"
                 "RISK_MIN_EDGE=0.03 # inline comment\nNOT_OURS=1\n")
    env = config.environment(f, environ={"TRADING_MODE": "paper", "PATH": "/bin"})
    assert env == {"TRADING_MODE": "paper", "MARKET_SLUGS": "a-1,b-2", "RISK_MIN_EDGE": "0.03"}


def test_missing_env_file_given_explicitly_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as exc:
        config.environment(tmp_path / "nope.env", environ={})
    assert "--env-file" in exc.value.problems[0]


def test_data_dir_alone_ignores_every_other_broken_setting():
    assert config.load_data_dir({"DATA_DIR": "/var/lib/bot", "RISK_KELLY_FRACTION": "bad"}) == Path("/var/lib/bot")
    assert config.load_data_dir({}) == Path("data")


# --- discovery settings (issue 14) ---------------------------------------------------------------


def test_discovery_settings_have_their_documented_defaults():
    s = load_settings(minimal())
    assert s.market_leagues == ()
    assert s.market_types == ("moneyline",)
    assert s.discovery_horizon_hours == 36.0
    assert s.discovery_interval_seconds == 300.0
    assert s.max_markets == 500
    assert s.odds_league("cbb") == "ncaab" and s.odds_league("cfb") == "ncaaf"
    assert s.odds_league("nba") == "nba"  # the same slug where the two sides agree


def test_leagues_alone_are_enough_and_slugs_become_optional():
    env = minimal(MARKET_LEAGUES="NBA, nhl,cbb,nba")
    del env["MARKET_SLUGS"]
    s = load_settings(env)
    assert s.market_slugs == ()
    assert s.market_leagues == ("nba", "nhl", "cbb")


def test_slugs_and_leagues_combine():
    s = load_settings(minimal(MARKET_LEAGUES="nba"))
    assert s.market_slugs == ("aec-nba-bos-nyk",) and s.market_leagues == ("nba",)


@pytest.mark.parametrize("slugs,leagues", [(None, None), ("", None), ("", " ")])
def test_neither_slugs_nor_leagues_is_one_problem_saying_so(slugs, leagues):
    env = minimal()
    del env["MARKET_SLUGS"]
    env.update({k: v for k, v in (("MARKET_SLUGS", slugs), ("MARKET_LEAGUES", leagues)) if v is not None})
    problems = problems_of(env)
    assert len(problems) == 1
    assert "MARKET_SLUGS and MARKET_LEAGUES are both unset" in problems[0]


@pytest.mark.parametrize("wrong,right", [("ncaab", "cbb"), ("ncaaf", "cfb")])
def test_opticodds_spelling_of_a_college_league_is_refused_with_the_polymarket_slug(wrong, right):
    problems = problems_of(minimal(MARKET_LEAGUES=f"nba,{wrong}"))
    assert len(problems) == 1
    assert problems[0].startswith(f"MARKET_LEAGUES='nba,{wrong}'")
    assert repr(right) in problems[0]


@pytest.mark.parametrize("bad", ["spread", "moneyline,totals", ","])
def test_a_market_type_other_than_moneyline_is_a_configuration_error_naming_it(bad):
    problems = problems_of(minimal(MARKET_TYPES=bad))
    assert len(problems) == 1 and problems[0].startswith("MARKET_TYPES=")
    named = [p for p in bad.split(",") if p and p != "moneyline"]
    assert all(repr(n) in problems[0] for n in named)


def test_odds_league_map_entries_override_the_shipped_defaults():
    s = load_settings(minimal(ODDS_LEAGUE_MAP="cbb=college_bb, wnba=wnba_x"))
    assert s.odds_league("cbb") == "college_bb"
    assert s.odds_league("cfb") == "ncaaf"  # a default not overridden stays
    assert s.odds_league("wnba") == "wnba_x"


@pytest.mark.parametrize("name,value", [
    ("ODDS_LEAGUE_MAP", "cbb"), ("ODDS_LEAGUE_MAP", "=ncaab"), ("MAX_MARKETS", "0"),
    ("DISCOVERY_HORIZON_HOURS", "0"), ("DISCOVERY_INTERVAL_SECONDS", "-5"),
    ("MARKET_LEAGUES", "Bad League!"),
])
def test_each_bad_discovery_value_is_one_problem(name, value):
    problems = problems_of(minimal(**{name: value}))
    assert len(problems) == 1 and problems[0].startswith(f"{name}=")


def test_risk_caps_alone_take_defaults_and_leave_out_a_broken_value():
    caps = config.load_risk_caps({"RISK_MAX_DAILY_LOSS": "ten", "RISK_MAX_POSITIONS": "3",
                                  "PM_API_KEY_ID": "not a uuid"})
    assert "RISK_MAX_DAILY_LOSS" not in caps
    assert caps["RISK_MAX_POSITIONS"] == 3
    assert caps["RISK_MAX_PORTFOLIO_EXPOSURE"] == Decimal("250.00")  # the default


def test_instance_is_empty_by_default_and_a_name_fit_for_units_folders_and_labels():
    assert load_settings(minimal()).instance == ""
    assert load_settings(minimal(INSTANCE="")).instance == ""
    assert load_settings(minimal(INSTANCE=" alice-2_b ")).instance == "alice-2_b"
    for bad in ("Alice", "-alice", "a/b", "a b", "a.b", "x" * 33, "ali$ce"):
        (problem,) = problems_of(minimal(INSTANCE=bad))
        assert problem.startswith(f"INSTANCE={bad!r}: expected an instance name"), problem
