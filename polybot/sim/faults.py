"""Run-time fault switches for the local exchange.

One `Faults` object is shared by the REST face, the websocket face and the admin endpoint. Tests
flip its fields directly (`handle.faults.reject_all_orders = True`); other processes use
`POST /admin/faults` with the same field names as JSON keys. Everything here is read by the
serving code at the moment it needs it, so a switch takes effect on the next request or frame.

Switches (field / method names are the public contract):

- ``delay_seconds``: every REST response (not admin) is held this long before it is handled.
- ``error_burst`` / ``error_status``: the next N REST requests answer ``error_status`` (default
  500) without touching the exchange.
- ``rate_limit_burst``: the next N REST requests answer 429 without touching the exchange.
- ``listing_error_burst`` / ``listing_error_league`` / ``listing_error_status``: the next N
  event listings of that league (``GET /v1/events`` with one of its series in ``seriesId``, or
  ``GET /v2/leagues/{slug}/events``; ``""`` = any event listing) answer ``listing_error_status``
  (default 503) without touching the exchange; other requests are served. `fail_listings`
  sets all three.
- ``hang_orders`` / ``hang_seconds``: the next N order-placing requests (create, batched create,
  close-position) are executed by the exchange but their HTTP answer is withheld forever, or for
  ``hang_seconds`` if set (use a value longer than the client's timeout).
- ``reject_all_orders``: every new order gets its id and is then REJECTED (200 + reject, as the
  real exchange does for business errors).
- ``maintenance``: setting it True cancels every open order, then every REST request answers 503
  and websocket upgrades are refused (503), open sockets are closed (code 1012), the open markets
  go SUSPENDED; setting it False reopens them
  SUSPENDED -> OPEN with empty books. (Wired by the server through `on_maintenance`.)
- ``clock_skew_seconds``: added to the server clock used for auth timestamp checks and the
  ``Date`` header (positive = server runs ahead).
- ``ws_silent``: open sockets stay connected but send nothing, heartbeats included, and ignore
  what they receive; turning it off resumes sending (frames produced meanwhile are lost).
- ``drop_websockets()``: close every open websocket now (close code 1011).
- ``unanswer_subscriptions(slug, times)``: the next ``times`` markets-socket subscriptions naming
  ``slug`` are silently not answered for it (no snapshot, no later frame, no error); the other
  markets of the same subscription are served. A known trap of the real gateway.
- ``malformed_frames`` / ``unknown_frames``: the next N outgoing websocket frames are each
  preceded by a frame that is not valid JSON / by a well-formed frame with an unknown payload key.
- ``private_empty_error_probability``: chance that a normal private-socket frame carries
  ``"error": ""`` (the real gateway does this); drawn from a seeded RNG.

Counters (``*_burst``, ``hang_orders``, ``*_frames``) are consumed by `take_*`; a switch that was
consumed shows the remaining count in `snapshot()`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs

SETTABLE = (
    "delay_seconds",
    "error_burst",
    "error_status",
    "rate_limit_burst",
    "listing_error_burst",
    "listing_error_league",
    "listing_error_status",
    "hang_orders",
    "hang_seconds",
    "reject_all_orders",
    "maintenance",
    "clock_skew_seconds",
    "ws_silent",
    "malformed_frames",
    "unknown_frames",
    "private_empty_error_probability",
)


@attrs.define(eq=False)
class Faults:
    delay_seconds: float = 0.0
    error_burst: int = 0
    error_status: int = 500
    rate_limit_burst: int = 0
    listing_error_burst: int = 0
    listing_error_league: str = ""
    listing_error_status: int = 503
    hang_orders: int = 0
    hang_seconds: float | None = None
    reject_all_orders: bool = False
    clock_skew_seconds: float = 0.0
    ws_silent: bool = False
    ws_unanswered: dict[str, int] = attrs.field(factory=dict)  # slug -> subscribes left unanswered
    malformed_frames: int = 0
    unknown_frames: int = 0
    private_empty_error_probability: float = 0.0
    seed: int = 0
    _maintenance: bool = attrs.field(default=False, init=False)
    _rng: random.Random = attrs.field(init=False)
    # Hooks installed by the server: maintenance transitions and websocket drops need the
    # exchange and the socket registry, which this value object does not know.
    on_maintenance: Callable[[bool], None] | None = attrs.field(default=None, repr=False)
    on_drop_websockets: Callable[[], None] | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @property
    def maintenance(self) -> bool:
        return self._maintenance

    @maintenance.setter
    def maintenance(self, on: bool) -> None:
        on = bool(on)
        if on == self._maintenance:
            return
        self._maintenance = on
        if self.on_maintenance is not None:
            self.on_maintenance(on)

    def drop_websockets(self) -> None:
        if self.on_drop_websockets is not None:
            self.on_drop_websockets()

    def reset(self) -> None:
        """Switch every fault off (maintenance included)."""
        self.maintenance = False
        self.delay_seconds = 0.0
        self.error_burst = 0
        self.error_status = 500
        self.rate_limit_burst = 0
        self.listing_error_burst = 0
        self.listing_error_league = ""
        self.listing_error_status = 503
        self.hang_orders = 0
        self.hang_seconds = None
        self.reject_all_orders = False
        self.clock_skew_seconds = 0.0
        self.ws_silent = False
        self.ws_unanswered.clear()
        self.malformed_frames = 0
        self.unknown_frames = 0

    # -- consumption by the serving code ------------------------------------------------------

    def take_error(self) -> int | None:
        """Status to answer instead of handling this request, if a burst is active."""
        if self.error_burst > 0:
            self.error_burst -= 1
            return self.error_status
        if self.rate_limit_burst > 0:
            self.rate_limit_burst -= 1
            return 429
        return None

    def fail_listings(self, count: int, league: str = "", status: int = 503) -> None:
        """The next `count` event listings of `league` ("" = any) answer `status`."""
        self.listing_error_burst = count
        self.listing_error_league = league
        self.listing_error_status = status

    def take_listing_error(self, leagues: set[str] | None) -> int | None:
        """Status to answer instead of this event listing (of `leagues`; None = unfiltered)."""
        if self.listing_error_burst <= 0:
            return None
        target = self.listing_error_league
        if target and (leagues is None or target not in leagues):
            return None
        self.listing_error_burst -= 1
        return self.listing_error_status

    def take_hang(self) -> bool:
        if self.hang_orders > 0:
            self.hang_orders -= 1
            return True
        return False

    def unanswer_subscriptions(self, slug: str, times: int) -> None:
        if times > 0:
            self.ws_unanswered[slug] = times
        else:
            self.ws_unanswered.pop(slug, None)

    def take_unanswered(self, slug: str) -> bool:
        """Whether this subscription leaves `slug` silently unanswered (consumes one)."""
        left = self.ws_unanswered.get(slug, 0)
        if left <= 0:
            return False
        if left == 1:
            del self.ws_unanswered[slug]
        else:
            self.ws_unanswered[slug] = left - 1
        return True

    def take_extra_frames(self) -> list[str]:
        """Junk frames to send before the next real frame."""
        extra: list[str] = []
        if self.malformed_frames > 0:
            self.malformed_frames -= 1
            extra.append('{"marketData": {"marketSlug": "trunc')
        if self.unknown_frames > 0:
            self.unknown_frames -= 1
            extra.append('{"requestId": "", "subscriptionType": "", "fromTheFuture": {"x": 1}}')
        return extra

    def empty_error_roll(self) -> bool:
        p = self.private_empty_error_probability
        return p > 0 and self._rng.random() < p

    # -- admin endpoint ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SETTABLE}

    def apply(self, changes: dict[str, Any]) -> None:
        """Set fields from an admin JSON body; unknown keys raise ValueError before any change.

        ``{"drop_websockets": true}`` drops sockets; ``{"reset": true}`` switches all off first.
        """
        unknown = set(changes) - set(SETTABLE) - {"drop_websockets", "reset"}
        if unknown:
            raise ValueError(f"unknown fault switch(es): {sorted(unknown)}")
        typed: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("drop_websockets", "reset"):
                continue
            typed[name] = _coerce(name, value)
        if changes.get("reset"):
            self.reset()
        for name, value in typed.items():
            setattr(self, name, value)
        if changes.get("drop_websockets"):
            self.drop_websockets()


def _coerce(name: str, value: Any) -> Any:
    if name in ("reject_all_orders", "maintenance", "ws_silent"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    if name == "listing_error_league":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        return value
    if name in ("error_burst", "error_status", "rate_limit_burst", "hang_orders",
                "listing_error_burst", "listing_error_status"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer")
        return value
    if name in ("malformed_frames", "unknown_frames"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer")
        return value
    if name == "hang_seconds" and value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    if name == "private_empty_error_probability" and not 0 <= value <= 1:
        raise ValueError(f"{name} must be within [0, 1]")
    if name in ("delay_seconds", "hang_seconds") and value < 0:
        raise ValueError(f"{name} must be non-negative")
    return float(value)
