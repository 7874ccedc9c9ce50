"""The health app: a framework-free ASGI app served by hypercorn's Trio worker.

Endpoints (GET or HEAD):

* ``/health`` — liveness of the bot's own machinery. 200 ``{"status": "ok"}`` while the supervised
  group is starting or running and no child is hung; 200 ``"degraded"`` with reasons when a
  dependency is down (a stream reconnecting, the exchange in maintenance): an unreachable
  exchange is not our failure. 503 ``"unhealthy"`` when a child is hung or the group is
  restarting/stopping/failed. Cheap: it only reads a supervisor snapshot.
* ``/ready`` — 200 only when trading is allowed (the group runs and the composition root's
  ``not_ready_reason()`` returns None: reconciled, feeds live, trading state ACTIVE/REDUCING);
  else 503 with the reason.
* ``/metrics`` — Prometheus text of the process's own registry.
* ``/status`` — JSON for people: the composition root's `StatusReport` plus the supervisor state.

The app never sees Settings. It reads everything through `HealthSources`, a handful of
callables the composition root wires. As a last line of defence against a leaked secret, every
response body is scrubbed of the secret values handed to `HealthApp(secrets=...)`, and /status
blanks string values under secret-sounding keys ("token", "api_key", "webhook", ...).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import attrs
import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from polybot.metrics import METRICS_CONTENT_TYPE, Metrics
from polybot.supervisor import Phase, Progress, SupervisorState

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
JSON = "application/json"
_SECRET_KEY = re.compile(
    r"secret|token|passw|passphrase|private|api_?key|webhook|authori[sz]ation|credential|signature",
    re.IGNORECASE,
)


@attrs.frozen
class MarketRow:
    """One market on /status. Prices are YES prices; edge on the side the signal would buy."""

    slug: str
    bid: Decimal | None = None
    ask: Decimal | None = None
    fair: Decimal | None = None
    edge: Decimal | None = None
    position: Decimal = Decimal(0)
    state: str | None = None  # e.g. "trusted", "stale", "closed"
    phase: str | None = None  # the universe's: listed, pre-game, in play, closed, resolved
    start_time: datetime | None = None  # the game's, from the market's Event
    fixture: str | None = None  # its OpticOdds fixture id, once matched
    origin: str | None = None  # configured, discovered, held
    league: str | None = None
    not_traded: str = ""  # why no opening order goes there ("" when it may trade)
    settlement: Decimal | None = None  # the published value, once resolved


@attrs.frozen
class StatusReport:
    """What /status shows besides the supervisor; built by the composition root on request."""

    mode: str  # "paper" | "live"
    trading_state: str  # TradingState value: ACTIVE / REDUCING / HALTED
    trading_reason: str | None = None
    markets: Sequence[MarketRow] = ()
    pnl: Mapping[str, Decimal] = attrs.Factory(dict)  # e.g. equity, daily, realized, unrealized
    recent_errors: Sequence[str] = ()
    extra: Mapping[str, Any] = attrs.Factory(dict)  # anything else worth a glance (plain values)


def _no_degradation() -> Sequence[str]:
    return ()


@attrs.frozen
class HealthSources:
    """How the app reads the bot; every callable is synchronous, cheap and must not raise.

    supervisor: ``Supervisor.state``.
    not_ready_reason: None when trading is allowed, else a short reason ("reconciling",
        "market feed down 42s", "trading HALTED: daily loss limit").
    status: builds the /status report.
    degraded: extra degraded reasons not visible to the supervisor (e.g. "exchange in
        maintenance"); children's own ``progress.degraded()`` reasons are included anyway.
    """

    supervisor: Callable[[], SupervisorState]
    not_ready_reason: Callable[[], str | None]
    status: Callable[[], StatusReport | Mapping[str, Any]]
    metrics: Metrics
    degraded: Callable[[], Sequence[str]] = _no_degradation


Response = tuple[int, str, bytes]


class HealthApp:
    """The ASGI callable. ``secrets``: raw secret values that must never leave in a response."""

    def __init__(self, sources: HealthSources, *, secrets: Sequence[str] = ()) -> None:
        self._sources = sources
        self._secrets = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self._routes: dict[str, Callable[[], Response]] = {
            "/health": self.health,
            "/ready": self.ready,
            "/metrics": self.metrics,
            "/status": self.status,
        }

    # --- endpoints (plain functions of the sources, testable without a server) -----------------

    def health(self) -> Response:
        state = self._sources.supervisor()
        body: dict[str, Any] = {
            "phase": state.phase.value,
            "restarts": state.restarts,
            "uptime": None if state.uptime is None else round(state.uptime, 1),
        }
        if state.phase not in (Phase.STARTING, Phase.RUNNING):
            reason = f"group {state.phase.value}"
            if state.reason:
                reason += f" after {state.reason}"
            if state.next_start_in is not None:
                reason += f"; next start in {state.next_start_in:.1f}s"
            return 503, JSON, _json({**body, "status": "unhealthy", "reasons": [reason]})
        hung = [
            f"{c.name} hung: no progress for {c.last_progress_age:.1f}s "
            f"(deadline {c.progress_deadline:g}s)"
            for c in state.children
            if c.hung and c.last_progress_age is not None and c.progress_deadline is not None
        ]
        if hung:
            return 503, JSON, _json({**body, "status": "unhealthy", "reasons": hung})
        reasons = list(state.degraded) + list(self._sources.degraded())
        if state.phase is Phase.STARTING:
            waiting = next((c.name for c in state.children if not c.started), None)
            reasons.insert(0, f"starting: waiting for {waiting}" if waiting else "starting")
        status = "degraded" if reasons else "ok"
        return 200, JSON, _json({**body, "status": status, "reasons": reasons})

    def ready(self) -> Response:
        state = self._sources.supervisor()
        reason: str | None
        if state.phase is not Phase.RUNNING:
            reason = f"supervised group {state.phase.value}"
        elif state.hung:
            reason = f"hung: {', '.join(state.hung)}"
        else:
            reason = self._sources.not_ready_reason()
        if reason is None:
            return 200, JSON, _json({"ready": True})
        return 503, JSON, _json({"ready": False, "reason": reason})

    def metrics(self) -> Response:
        return 200, METRICS_CONTENT_TYPE, self._sources.metrics.render()

    def status(self) -> Response:
        report = _plain(self._sources.status())
        if not isinstance(report, dict):
            report = {"status": report}
        report["supervisor"] = self._sources.supervisor().to_json()
        return 200, JSON, _json(report)

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: not served (hypercorn closes the connection)
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"]
        handler = self._routes.get(path)
        headers: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-store")]
        if handler is None:
            status, ctype, body = (
                404,
                JSON,
                _json({"error": "not found", "paths": list(self._routes)}),
            )
        elif method not in ("GET", "HEAD"):
            status, ctype, body = 405, JSON, _json({"error": "method not allowed"})
            headers.append((b"allow", b"GET, HEAD"))
        else:
            try:
                status, ctype, body = handler()
            except Exception:
                log.exception("health endpoint %s failed", path)
                status, ctype, body = 500, JSON, _json({"error": "internal error"})
        body = self._scrub(body)
        headers += [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    def _scrub(self, body: bytes) -> bytes:
        for secret in self._secrets:
            body = body.replace(secret, REDACTED.encode())
        return body


def secret_values(*sources: Any) -> list[str]:
    """The revealed values of every secret field (anything with ``reveal()``) of attrs instances,
    e.g. ``HealthApp(sources, secrets=secret_values(settings))``."""
    values = []
    for source in sources:
        for field in attrs.fields(type(source)):
            value = getattr(source, field.name)
            if hasattr(value, "reveal"):
                revealed = value.reveal()
                if revealed:
                    values.append(str(revealed))
    return values


async def _lifespan(
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _json(value: Any) -> bytes:
    return orjson.dumps(_plain(value))


def _plain(value: Any, key: str = "") -> Any:
    """`value` as JSON-ready plain data; secret-looking keys and secret objects are blanked."""
    if hasattr(value, "reveal"):  # a config Secret, whatever its str() says
        return REDACTED
    if isinstance(value, str):
        return REDACTED if value and _SECRET_KEY.search(key) else value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value, key)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if attrs.has(type(value)):
        value = {f.name: getattr(value, f.name) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): _plain(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, key) for v in value]
    return f"<{type(value).__name__}>"  # never str() an unknown object: it might hold a secret


async def serve_health(
    app: HealthApp,
    host: str,
    port: int,
    progress: Progress | None = None,
    *,
    on_listening: Callable[[int], object] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` with hypercorn on host:port (0 = a free port) until cancelled.

    Reports the bound port through ``task_status.started(port)`` and ``on_listening(port)``.
    Fits `ChildSpec` as ``functools.partial(serve_health, app, host, port)`` (no progress
    deadline: it only waits for requests).
    """
    del progress  # accepted for the ChildSpec calling convention; a server has no progress beat
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        asgi: Any = app  # hypercorn's ASGI types are stricter than a plain dict-based app
        binds = await nursery.start(partial(hypercorn_serve, asgi, config, mode="asgi"))
        bound = int(binds[0].rsplit(":", 1)[1])
        log.info("health app listening on http://%s:%d", host, bound)
        if on_listening is not None:
            on_listening(bound)
        task_status.started(bound)
