"""Settings from environment variables (and an optional `.env` file), validated up front.

Every variable the bot reads is declared once in `VARIABLES`: its name, default, parser and whether
it is a secret. `load_settings` parses all of them and reports *every* problem at once, one line
each, naming the variable, the bad value (never for secrets) and what was expected; the CLI prints
those lines and exits 2 before anything starts. Commands that need only part of the configuration
(`report`, `halt`, `resume` need only `DATA_DIR`) parse only those variables, so they still work in
an emergency with a broken `.env`.

Money and percentages are parsed from decimal strings into `Decimal`; a float-looking value
(`1e-3`, `inf`, `.5`) is an error rather than a silent conversion. Secrets are wrapped in `Secret`,
whose repr/str never show the value; `Settings.secret_values()` lists them for the log redactor.

The real environment wins over the `.env` file; the file's path comes from `--env-file`, default
`./.env` if present.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs


class Secret:
    """A value that must never be printed: repr/str show `***`; `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:  # pickling would leak the value into files
        raise TypeError("Secret values cannot be pickled")


class ConfigError(Exception):
    """One or more settings are invalid; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Invalid(ValueError):
    """A parser's complaint: `expected` says what a good value looks like."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


# --- parsers: str -> value, raising _Invalid(expected) ------------------------------------------

_DECIMAL_RE = re.compile(r"^[+-]?\d+(\.\d+)?$")


def _decimal(lo: Decimal | None = None, hi: Decimal | None = None, *, lo_open: bool = False,
             hi_open: bool = False) -> Callable[[str], Decimal]:
    lo_b = "(" if lo_open else "["
    hi_b = ")" if hi_open else "]"
    rng = f" in {lo_b}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{hi_b}"
    expected = "a decimal string like 50.00" + (rng if (lo is not None or hi is not None) else "")

    def parse(raw: str) -> Decimal:
        s = raw.strip()
        if not _DECIMAL_RE.match(s):
            raise _Invalid(expected)
        try:
            d = Decimal(s)
        except InvalidOperation:
            raise _Invalid(expected) from None
        if lo is not None and (d < lo or (lo_open and d == lo)):
            raise _Invalid(expected)
        if hi is not None and (d > hi or (hi_open and d == hi)):
            raise _Invalid(expected)
        return d

    return parse


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    expected = "an integer" + (f" >= {lo}" if lo is not None and hi is None else "") + (
        f" in [{lo}, {hi}]" if lo is not None and hi is not None else "")

    def parse(raw: str) -> int:
        s = raw.strip()
        if not re.fullmatch(r"[+-]?\d+", s):
            raise _Invalid(expected)
        v = int(s)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _Invalid(expected)
        return v

    return parse


def _seconds(lo_open_zero: bool = True) -> Callable[[str], float]:
    """Durations are not money: a positive decimal number of seconds, held as float."""
    inner = _decimal(Decimal(0), None, lo_open=lo_open_zero)

    def parse(raw: str) -> float:
        try:
            return float(inner(raw))
        except _Invalid:
            raise _Invalid("a number of seconds " + ("> 0" if lo_open_zero else ">= 0")) from None

    return parse


def _hours(raw: str) -> float:
    try:
        return _seconds()(raw)
    except _Invalid:
        raise _Invalid("a number of hours > 0") from None


def _bool(raw: str) -> bool:
    s = raw.strip().lower()
    if s in ("true", "1", "yes", "on"):
        return True
    if s in ("false", "0", "no", "off"):
        return False
    raise _Invalid("true or false")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        s = raw.strip().lower()
        if s not in options:
            raise _Invalid("one of " + ", ".join(options))
        return s

    return parse


def _url(*schemes: str) -> Callable[[str], str]:
    expected = "a URL starting with " + " or ".join(f"{s}://" for s in schemes)

    def parse(raw: str) -> str:
        s = raw.strip()
        parts = urlsplit(s)
        if parts.scheme not in schemes or not parts.hostname:
            raise _Invalid(expected)
        return s.rstrip("/")

    return parse


def _uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise _Invalid("a UUID like 123e4567-e89b-12d3-a456-426614174000") from None


_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _slugs(raw: str) -> tuple[str, ...]:
    if not raw.strip():  # unset: the markets come from MARKET_LEAGUES
        return ()
    out: list[str] = []
    for part in raw.split(","):
        s = part.strip()
        if not s:
            continue
        if not _SLUG_RE.match(s):
            raise _Invalid("comma-separated market slugs (lower-case letters, digits, '-')")
        if s not in out:
            out.append(s)
    if not out:
        raise _Invalid("at least one market slug, comma-separated")
    return tuple(out)


# Polymarket US spells the college leagues cbb/cfb; OpticOdds spells them ncaab/ncaaf
_LEAGUE_HINTS = {"ncaab": "cbb", "ncaaf": "cfb"}


def _leagues(raw: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in raw.split(","):
        s = part.strip().lower()
        if not s:
            continue
        if s in _LEAGUE_HINTS:
            raise _Invalid(f"Polymarket US league slugs: {s!r} is spelled "
                           f"{_LEAGUE_HINTS[s]!r} on Polymarket US")
        if not _SLUG_RE.match(s):
            raise _Invalid("comma-separated Polymarket US league slugs like nba,nhl,cbb")
        if s not in out:
            out.append(s)
    return tuple(out)


MARKET_TYPE_CHOICES = ("moneyline",)


def _market_types(raw: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in raw.split(","):
        s = part.strip().lower()
        if not s:
            continue
        if s not in MARKET_TYPE_CHOICES:
            raise _Invalid(f"market types among {', '.join(MARKET_TYPE_CHOICES)} "
                           f"({s!r} is not supported)")
        if s not in out:
            out.append(s)
    if not out:
        raise _Invalid("at least one market type: " + ", ".join(MARKET_TYPE_CHOICES))
    return tuple(out)


# Polymarket US league slug -> OpticOdds league id, where the two differ (reference §1.8, §4)
DEFAULT_ODDS_LEAGUES: tuple[tuple[str, str], ...] = (
    ("cbb", "ncaab"), ("cfb", "ncaaf"),
    ("epl", "england_-_premier_league"), ("mls", "usa_-_major_league_soccer"),
)


def _league_map(raw: str) -> tuple[tuple[str, str], ...]:
    """`pm=opticodds,...` on top of the shipped defaults (an entry overrides its default)."""
    out = dict(DEFAULT_ODDS_LEAGUES)
    for part in raw.split(","):
        s = part.strip()
        if not s:
            continue
        pm, sep, oo = s.partition("=")
        if not sep or not pm.strip() or not oo.strip():
            raise _Invalid("league=opticodds_league pairs like cbb=ncaab,cfb=ncaaf")
        out[pm.strip().lower()] = oo.strip()
    return tuple(out.items())


def _books(raw: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in raw.split(","):
        s = part.strip()
        if s and s not in out:
            out.append(s)
    if not 1 <= len(out) <= 5:
        raise _Invalid("1 to 5 comma-separated OpticOdds sportsbook ids")
    return tuple(out)


def _weights(raw: str) -> tuple[tuple[str, Decimal], ...]:
    out: dict[str, Decimal] = {}
    parse_w = _decimal(Decimal(0))
    for part in raw.split(","):
        s = part.strip()
        if not s:
            continue
        book, sep, w = s.partition("=")
        if not sep or not book.strip():
            raise _Invalid("book=weight pairs like pinnacle=1.0,circa_sports=0.8")
        try:
            out[book.strip()] = parse_w(w)
        except _Invalid:
            raise _Invalid("book=weight pairs with decimal weights >= 0") from None
    return tuple(out.items())


def _market_map(raw: str) -> tuple[tuple[str, str, str], ...]:
    """`slug=fixture_id:normalized_selection,...`, each pair split at its last `:`."""
    out: list[tuple[str, str, str]] = []
    for part in raw.split(","):
        s = part.strip()
        if not s:
            continue
        slug, sep, target = s.partition("=")
        fixture, colon, selection = target.rpartition(":")
        if not sep or not colon or not slug.strip() or not fixture or not selection:
            raise _Invalid("slug=fixture_id:normalized_selection pairs, comma-separated")
        out.append((slug.strip(), fixture.strip(), selection.strip()))
    return tuple(out)


def _timezone(raw: str) -> str:
    try:
        ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise _Invalid("an IANA time zone like America/New_York") from None
    return raw.strip()


def _log_level(raw: str) -> str:
    s = raw.strip().upper()
    if s not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise _Invalid("one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return s


def _optional_path(raw: str) -> Path | None:
    s = raw.strip()
    return Path(s) if s else None


def _path(raw: str) -> Path:
    s = raw.strip()
    if not s:
        raise _Invalid("a directory path")
    return Path(s)


def _text(raw: str) -> str:
    return raw.strip()


def _instance(raw: str) -> str:
    name = raw.strip()
    if name and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", name):
        raise _Invalid("an instance name of 1-32 characters: lower-case letters, digits, '-' and "
                       "'_', starting with a letter or digit (it names a systemd unit, folders, "
                       "backups, alarms and a metric label)")
    return name


def _secret(raw: str) -> Secret:
    return Secret(raw.strip())


def _dashboard_token(raw: str) -> Secret:
    s = raw.strip()
    if len(s) < 16 or any(c.isspace() for c in s):
        raise _Invalid("at least 16 characters without spaces (e.g. `openssl rand -hex 24`)")
    return Secret(s)


def _webhook(raw: str) -> Secret:
    s = raw.strip()
    if not s.startswith(("https://", "http://")):
        raise _Invalid("an https:// webhook URL")
    return Secret(s)


def decode_private_key(raw: str) -> bytes:
    """Base64 of a 32-byte Ed25519 seed or a 64-byte seed+public key -> the 32-byte seed."""
    expected = "base64 of a 32-byte Ed25519 seed or a 64-byte seed+public key"
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _Invalid(expected) from None
    if len(key) not in (32, 64):
        raise _Invalid(expected)
    if len(key) == 64:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        pub = Ed25519PrivateKey.from_private_bytes(key[:32]).public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw)
        if pub != key[32:]:
            raise _Invalid(expected + " (its public half does not match the seed)")
    return key[:32]


def _private_key(raw: str) -> Secret:
    decode_private_key(raw)
    return Secret(raw.strip())


# --- the declaration of every variable ------------------------------------------------------------


@attrs.frozen
class Var:
    name: str
    default: str | None  # None = no default (absent -> the field is None, or an error if required)
    parse: Callable[[str], Any]
    secret: bool = False
    required: bool = False
    group: str = ""
    doc: str = ""
    empty_ok: bool = False  # an empty value means "off" (e.g. LOG_FILE) instead of the default

    @property
    def field(self) -> str:
        return self.name.lower()


D = Decimal
VARIABLES: tuple[Var, ...] = (
    # exchange
    Var("TRADING_MODE", "paper", _choice("paper", "live"), group="Exchange",
        doc="paper (simulated fills against the real book) or live"),
    Var("PM_API_KEY_ID", None, _uuid, required=True, group="Exchange",
        doc="API key id (UUID); required in both modes: the market websocket is authenticated too"),
    Var("PM_PRIVATE_KEY", None, _private_key, secret=True, group="Exchange",
        doc="base64 Ed25519 secret (32-byte seed or 64-byte seed+public key)"),
    Var("PM_PRIVATE_KEY_FILE", None, _optional_path, group="Exchange",
        doc="or: a file holding that base64 secret (keep it mode 0600)"),
    Var("MARKET_SLUGS", "", _slugs, group="Exchange", empty_ok=True,
        doc="comma-separated market slugs to trade (de-duplicated, order kept); "
            "optional with MARKET_LEAGUES"),
    Var("PM_BASE_URL", "https://api.polymarket.us", _url("https", "http"), group="Exchange",
        doc="authenticated REST host"),
    Var("PM_GATEWAY_URL", "https://gateway.polymarket.us", _url("https", "http"), group="Exchange",
        doc="public REST host"),
    Var("PM_WS_URL", "wss://api.polymarket.us", _url("wss", "ws"), group="Exchange",
        doc="websocket host; paths /v1/ws/markets and /v1/ws/private are appended"),
    Var("PM_RATE_LIMIT_PER_SECOND", "20", _seconds(), group="Exchange",
        doc="client-side cap on authenticated calls per second (per key)"),
    Var("PM_PUBLIC_RATE_LIMIT_PER_SECOND", "20", _seconds(), group="Exchange",
        doc="client-side cap on public calls per second; the exchange's 20/s is per IP, so with N "
            "bots on one host give each 20/N (discovery listings use at most half of it)"),
    Var("HTTP_TIMEOUT_SECONDS", "10", _seconds(), group="Exchange",
        doc="overall deadline of one REST call"),
    Var("PM_FAST_CREATE", "true", _bool, group="Exchange",
        doc="live order creates over kept-alive sockets with a prebuilt request (false: httpx)"),
    # discovery
    Var("MARKET_LEAGUES", "", _leagues, group="Discovery", empty_ok=True,
        doc="Polymarket US league slugs whose games are discovered and traded, e.g. nba,nhl,cbb "
            "(cbb/cfb, not ncaab/ncaaf)"),
    Var("MARKET_TYPES", "moneyline", _market_types, group="Discovery",
        doc="market types discovered per game: moneyline (the two-outcome full-game winner)"),
    Var("DISCOVERY_HORIZON_HOURS", "36", _hours, group="Discovery",
        doc="discover games starting within this many hours"),
    Var("DISCOVERY_INTERVAL_SECONDS", "300", _seconds(), group="Discovery",
        doc="a discovery pass over the leagues this often"),
    Var("ODDS_LEAGUE_MAP", "", _league_map, group="Discovery", empty_ok=True,
        doc="Polymarket US league=OpticOdds league where they differ; defaults cbb=ncaab,"
            "cfb=ncaaf,epl=england_-_premier_league,mls=usa_-_major_league_soccer, "
            "entries here override them"),
    Var("MAX_MARKETS", "500", _int(1), group="Discovery",
        doc="markets in the universe at most (nearest start first; held markets always stay)"),
    # risk
    Var("INITIAL_BALANCE", "1000.00", _decimal(D(0)), group="Risk", doc="paper starting cash (USD)"),
    Var("RISK_MAX_POSITION_PER_MARKET", "50.00", _decimal(D(0), lo_open=True), group="Risk",
        doc="USD at risk in one market"),
    Var("RISK_MAX_PORTFOLIO_EXPOSURE", "250.00", _decimal(D(0), lo_open=True), group="Risk",
        doc="USD at risk in all markets"),
    Var("RISK_MAX_DAILY_LOSS", "25.00", _decimal(D(0), lo_open=True), group="Risk",
        doc="USD; realized + unrealized since the day's start; halts until the next day"),
    Var("RISK_KELLY_FRACTION", "0.25", _decimal(D(0), D(1), lo_open=True), group="Risk",
        doc="fraction of the Kelly stake, 0 < f <= 1"),
    Var("RISK_MIN_EDGE", "0.02", _decimal(D(0), D(1), hi_open=True), group="Risk",
        doc="probability points, net of fees"),
    Var("RISK_MIN_TRADE_SIZE", "1.00", _decimal(D(0)), group="Risk",
        doc="USD at risk an opening order adds (qty x cost per contract of the side bought)"),
    Var("RISK_MAX_CORRELATED_EXPOSURE", "125.00", _decimal(D(0), lo_open=True), group="Risk",
        doc="USD at risk across the markets of one event"),
    Var("RISK_MAX_POSITIONS", "10", _int(1), group="Risk",
        doc="markets with a non-zero position or an open opening order"),
    Var("RISK_MAX_DRAWDOWN_PCT", "0.15", _decimal(D(0), D(1), lo_open=True, hi_open=True),
        group="Risk", doc="from the equity high-water mark, 0 < x < 1; halts until resumed"),
    Var("ORDER_RATE_PER_MINUTE", "6", _int(1), group="Risk",
        doc="orders per market per minute, at most"),
    Var("ORDER_TIF", "ioc", _choice("ioc", "gtc"), group="Risk",
        doc="ioc (take and cancel the rest) or gtc (the rest rests at the limit)"),
    Var("DAILY_RESET_TZ", "America/New_York", _timezone, group="Risk",
        doc="time zone of the trading day (daily loss)"),
    Var("DAILY_RESET_HOUR", "0", _int(0, 23), group="Risk", doc="hour the trading day starts"),
    Var("TRADE_IN_PLAY", "false", _bool, group="Risk",
        doc="open positions after a game's start time (closing is always allowed)"),
    Var("STOP_BEFORE_START_MINUTES", "0", _decimal(D(0)), group="Risk",
        doc="stop opening positions this long before the start"),
    # odds
    Var("OPTICODDS_API_KEY", None, _secret, secret=True, group="Odds",
        doc="without it the bot runs but cannot price, so it never trades"),
    Var("OPTICODDS_BASE_URL", "https://api.opticodds.com/api/v3", _url("https", "http"),
        group="Odds", doc="OpticOdds API base"),
    Var("OPTICODDS_SPORTSBOOKS", "pinnacle,circa_sports,betonline", _books, group="Odds",
        doc="OpticOdds book ids used for fair value, at most 5"),
    Var("ODDS_BOOK_WEIGHTS", "pinnacle=1.0,circa_sports=0.8,betonline=0.6", _weights, group="Odds",
        doc="consensus weights; a book not listed weighs 0.5"),
    Var("ODDS_MIN_BOOKS", "1", _int(1), group="Odds",
        doc="books quoting a market before it has a fair value"),
    Var("ODDS_DEVIG_METHOD", "shin", _choice("multiplicative", "additive", "power", "shin"),
        group="Odds", doc="multiplicative, additive, power or shin"),
    Var("ODDS_MARKET_MAP", "", _market_map, group="Odds",
        doc="optional overrides slug=fixture_id:normalized_selection,... (YES = that selection)"),
    Var("STALE_FEED_SECONDS", "15", _seconds(), group="Odds",
        doc="a stream silent this long (no data, no heartbeat/ping) is dead"),
    # operations
    Var("INSTANCE", "", _instance, group="Operations", empty_ok=True,
        doc="this bot's name when one host runs several (polymarket-bot@NAME): labels every log "
            "line, the metrics, backups and alarms; empty = the single bot, unlabelled"),
    Var("LOG_LEVEL", "INFO", _log_level, group="Operations", doc="DEBUG, INFO, WARNING, ERROR"),
    Var("LOG_FILE", "logs/bot.log", _optional_path, group="Operations", empty_ok=True,
        doc="rotating log file; empty = stderr only"),
    Var("LOG_JSON", "false", _bool, group="Operations", doc="one JSON object per line when true"),
    Var("TRADES_LOG_FILE", "logs/trades.log", _optional_path, group="Operations", empty_ok=True,
        doc="one JSON line per order event and fill; empty = into the main log"),
    Var("DATA_DIR", "data", _path, group="Operations", doc="SQLite state lives here"),
    Var("RECORD_DIR", None, _optional_path, group="Operations",
        doc="record the raw feeds here (markets and private websockets, OpticOdds events; "
            "hourly gzip files); empty = off; `run --record DIR` overrides it"),
    Var("CLAIMS_DIR", None, _optional_path, group="Operations",
        doc="shared by every instance on a host: a market is traded by the one instance "
            "holding its claim file here (never trade against yourself); empty = one instance"),
    Var("HEALTH_HOST", "127.0.0.1", _text, group="Operations", doc="health app bind address"),
    Var("HEALTH_PORT", "8080", _int(0, 65535), group="Operations", doc="health app port"),
    Var("DASHBOARD_TOKEN", None, _dashboard_token, secret=True, group="Operations",
        doc="enables the dashboard's halt/resume/cancel-all/flatten buttons; the operator types "
            "it in the page (unset = the dashboard is read-only)"),
    Var("DISCORD_WEBHOOK", None, _webhook, secret=True, group="Operations",
        doc="Discord webhook URL for alerts (optional)"),
    Var("TELEGRAM_BOT_TOKEN", None, _secret, secret=True, group="Operations",
        doc="Telegram bot token for alerts (optional; needs TELEGRAM_CHAT_ID)"),
    Var("TELEGRAM_CHAT_ID", None, _text, group="Operations", doc="Telegram chat id for alerts"),
    Var("CANCEL_ON_SHUTDOWN", "true", _bool, group="Operations",
        doc="cancel the bot's open orders on a clean stop"),
    Var("CANCEL_UNKNOWN_ORDERS", "false", _bool, group="Operations",
        doc="also cancel open orders in configured markets that the bot did not place"),
    Var("SUPERVISOR_MAX_RESTARTS", "5", _int(0), group="Operations",
        doc="crash restarts allowed within the window before the process exits"),
    Var("SUPERVISOR_WINDOW_SECONDS", "300", _seconds(), group="Operations",
        doc="the restart budget's window"),
)
_BY_NAME = {v.name: v for v in VARIABLES}


@attrs.frozen(kw_only=True)
class Settings:
    """The validated configuration. Field names are the variables' names in lower case."""

    trading_mode: str
    pm_api_key_id: str
    pm_private_key: Secret
    pm_private_key_file: Path | None = None
    market_slugs: tuple[str, ...] = ()
    pm_base_url: str
    pm_gateway_url: str
    pm_ws_url: str
    pm_rate_limit_per_second: float
    pm_public_rate_limit_per_second: float
    http_timeout_seconds: float
    pm_fast_create: bool
    market_leagues: tuple[str, ...] = ()
    market_types: tuple[str, ...] = ("moneyline",)
    discovery_horizon_hours: float = 36.0
    discovery_interval_seconds: float = 300.0
    odds_league_map: tuple[tuple[str, str], ...] = DEFAULT_ODDS_LEAGUES
    max_markets: int = 500
    initial_balance: Decimal
    risk_max_position_per_market: Decimal
    risk_max_portfolio_exposure: Decimal
    risk_max_daily_loss: Decimal
    risk_kelly_fraction: Decimal
    risk_min_edge: Decimal
    risk_min_trade_size: Decimal
    risk_max_correlated_exposure: Decimal
    risk_max_positions: int
    risk_max_drawdown_pct: Decimal
    order_rate_per_minute: int
    order_tif: str
    daily_reset_tz: str
    daily_reset_hour: int
    trade_in_play: bool
    stop_before_start_minutes: Decimal
    opticodds_api_key: Secret | None = None
    opticodds_base_url: str
    opticodds_sportsbooks: tuple[str, ...]
    odds_book_weights: tuple[tuple[str, Decimal], ...]
    odds_min_books: int
    odds_devig_method: str
    odds_market_map: tuple[tuple[str, str, str], ...]
    stale_feed_seconds: float
    instance: str = ""
    log_level: str
    log_file: Path | None
    log_json: bool
    trades_log_file: Path | None
    data_dir: Path
    record_dir: Path | None = None
    claims_dir: Path | None = None
    health_host: str
    health_port: int
    dashboard_token: Secret | None = None
    discord_webhook: Secret | None = None
    telegram_bot_token: Secret | None = None
    telegram_chat_id: str | None = None
    cancel_on_shutdown: bool
    cancel_unknown_orders: bool
    supervisor_max_restarts: int
    supervisor_window_seconds: float

    @property
    def is_live(self) -> bool:
        return self.trading_mode == "live"

    def odds_league(self, league: str) -> str:
        """The OpticOdds league id of Polymarket US league `league` (the same slug unless mapped)."""
        return dict(self.odds_league_map).get(league, league)

    def secret_values(self) -> list[str]:
        """Every configured secret's value, for the log redactor (never print these)."""
        out = []
        for v in VARIABLES:
            if v.secret:
                s = getattr(self, v.field)
                if isinstance(s, Secret) and s.reveal():
                    out.append(s.reveal())
        return out

    def private_key_seed(self) -> bytes:
        return decode_private_key(self.pm_private_key.reveal())

    def effective(self) -> list[tuple[str, str]]:
        """(variable, shown value) pairs for `check`; secrets shown as ***."""
        rows = []
        for v in VARIABLES:
            value = getattr(self, v.field)
            rows.append((v.name, _show(value)))
        return rows


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Secret):
        return "***"
    if isinstance(value, tuple):
        if value and isinstance(value[0], tuple):
            if len(value[0]) == 2:
                return ",".join(f"{k}={w}" for k, w in value)
            return ",".join(f"{s}={f}:{sel}" for s, f, sel in value)
        return ",".join(str(x) for x in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- loading ------------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `.env` file: KEY=VALUE lines, `#` comments, optional `export`, optional quotes."""
    out: dict[str, str] = {}
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key] = value
    return out


def environment(env_file: Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables to parse: the `.env` file (if any), overridden by the real environment."""
    real = dict(os.environ if environ is None else environ)
    merged: dict[str, str] = {}
    path = env_file if env_file is not None else Path(".env")
    if env_file is not None or path.exists():
        try:
            merged.update({k: v for k, v in read_env_file(path).items() if k in _BY_NAME})
        except OSError as exc:
            raise ConfigError([f"--env-file {path}: cannot read it ({exc.strerror})"]) from None
    merged.update({k: v for k, v in real.items() if k in _BY_NAME})
    return merged


NO_MARKETS_PROBLEM = ("MARKET_SLUGS and MARKET_LEAGUES are both unset: expected market slugs to "
                      "trade, or league slugs whose games to discover (e.g. MARKET_LEAGUES=nba,nhl)")


def _problem(var: Var, raw: str, expected: str) -> str:
    shown = "(value hidden)" if var.secret else repr(raw)
    return f"{var.name}={shown}: expected {expected}"


def _parse(env: Mapping[str, str], names: list[str], problems: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in names:
        var = _BY_NAME[name]
        raw = env.get(name)
        if raw is None or (raw.strip() == "" and var.default is None):
            if var.required:
                problems.append(f"{name} is not set: expected {var.doc}")
            values[var.field] = None
            continue
        if raw.strip() == "" and var.default is not None and not var.empty_ok:
            raw = var.default
        try:
            values[var.field] = var.parse(raw)
        except _Invalid as exc:
            problems.append(_problem(var, raw, exc.expected))
            values[var.field] = None
    return values


def load_settings(env: Mapping[str, str], *, warn: Callable[[str], None] | None = None,
                  require_markets: bool = True) -> Settings:
    """Parse and validate every variable; raise ConfigError listing every problem.

    `require_markets=False` is for commands that trade nothing (`cancel-all --direct` cancels the
    stored orders by id): neither MARKET_SLUGS nor MARKET_LEAGUES needs to be set.
    """
    problems: list[str] = []
    merged = {v.name: env[v.name] for v in VARIABLES if v.name in env}
    for v in VARIABLES:
        if v.name not in merged and v.default is not None:
            merged[v.name] = v.default
    values = _parse(merged, [v.name for v in VARIABLES], problems)

    key_file: Path | None = values.get("pm_private_key_file")
    has_inline = bool(merged.get("PM_PRIVATE_KEY", "").strip())
    if key_file is not None and has_inline:
        problems.append("PM_PRIVATE_KEY_FILE: expected either PM_PRIVATE_KEY or PM_PRIVATE_KEY_FILE, not both")
    elif key_file is not None:
        values["pm_private_key"] = _load_key_file(key_file, problems, warn)
    elif not has_inline:
        problems.append("PM_PRIVATE_KEY is not set: expected base64 of a 32-byte Ed25519 seed or "
                        "a 64-byte seed+public key (or PM_PRIVATE_KEY_FILE, a path to it)")

    if require_markets and values.get("market_slugs") == () and \
            values.get("market_leagues") == ():
        problems.append(NO_MARKETS_PROBLEM)

    if values.get("telegram_bot_token") is not None and not values.get("telegram_chat_id"):
        problems.append("TELEGRAM_CHAT_ID is not set: expected the chat id that goes with TELEGRAM_BOT_TOKEN")

    if problems:
        raise ConfigError(problems)
    return Settings(**values)


def _load_key_file(path: Path, problems: list[str], warn: Callable[[str], None] | None) -> Secret | None:
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.append(f"PM_PRIVATE_KEY_FILE={str(path)!r}: expected a readable file ({exc.strerror})")
        return None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) and warn is not None:
        warn(f"PM_PRIVATE_KEY_FILE={str(path)!r} is readable by group/others; chmod 600 it")
    try:
        return _private_key(text)
    except _Invalid as exc:
        problems.append(f"PM_PRIVATE_KEY_FILE={str(path)!r}: expected a file holding {exc.expected}")
        return None


def load_data_dir(env: Mapping[str, str]) -> Path:
    """Only DATA_DIR: enough for `report`, `halt` and `resume` with a broken `.env`."""
    problems: list[str] = []
    merged = {"DATA_DIR": env.get("DATA_DIR", "") or "data"}
    values = _parse(merged, ["DATA_DIR"], problems)
    if problems:
        raise ConfigError(problems)
    path: Path = values["data_dir"]
    return path


RISK_CAPS = ("RISK_MAX_POSITION_PER_MARKET", "RISK_MAX_PORTFOLIO_EXPOSURE", "RISK_MAX_DAILY_LOSS",
             "RISK_MAX_CORRELATED_EXPOSURE", "RISK_MAX_POSITIONS", "RISK_MAX_DRAWDOWN_PCT")


def load_risk_caps(env: Mapping[str, str]) -> dict[str, Any]:
    """Only the risk caps (their defaults where unset), for `report --html` to draw against: a
    cap whose value does not parse is left out, so a broken `.env` costs only that line."""
    merged = {name: env.get(name, "") or (_BY_NAME[name].default or "") for name in RISK_CAPS}
    values = _parse(merged, list(RISK_CAPS), [])
    return {name: values[_BY_NAME[name].field] for name in RISK_CAPS
            if values[_BY_NAME[name].field] is not None}


def risk_caps(settings: Settings) -> dict[str, Any]:
    """The risk caps of validated settings, by name (what a backtest's page draws against: the
    replay's own settings, not the environment's)."""
    return {name: getattr(settings, _BY_NAME[name].field) for name in RISK_CAPS}


def example_lines() -> list[str]:
    """The body of `.env.example`: every variable with its default and a one-line comment."""
    lines = ["# polybot configuration. Copy to .env and fill in the blanks.",
             "# Money and percentages are decimal strings (50.00, 0.25), never floats like 1e-3."]
    group = None
    for v in VARIABLES:
        if v.group != group:
            group = v.group
            lines += ["", f"# --- {group} " + "-" * (60 - len(group))]
        req = " (required)" if v.required or v.name == "PM_PRIVATE_KEY" else ""
        lines.append(f"# {v.doc}{req}")
        lines.append(f"{v.name}={v.default or ''}")
    return lines
