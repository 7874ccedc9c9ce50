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
* ``/status`` — JSON for people: the composition root's `StatusReport` plus the supervisor state,
  under a ``snapshot`` id (a counter per report built). ``/status?snapshot=N`` returns report N
  again while it is among the last `KEPT_SNAPSHOTS` (404 after): the dashboard shows the id of the
  report its figures came from, so a reader can check them against /status of the same moment.
* ``/dashboard`` (and ``/dashboard/data``, ``/dashboard/plotly.min.js``, ``/dashboard/ack/ID``,
  POST ``/dashboard/action/KIND``) — the live page for people, `polybot.dashboard`.

The app never sees Settings. It reads everything through `HealthSources`, a handful of
callables the composition root wires. As a last line of defence against a leaked secret, every
response body is scrubbed of the secret values handed to `HealthApp(secrets=...)`, and /status
blanks string values under secret-sounding keys ("token", "api_key", "webhook", ...).
"""

from __future__ import annotations

import enum
import itertools
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import attrs
import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from polybot.dashboard import ACTIONS, Dashboard, dumps
from polybot.metrics import METRICS_CONTENT_TYPE, Metrics
from polybot.supervisor import Phase, Progress, SupervisorState

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
JSON = "application/json"
HTML = "text/html; charset=utf-8"
KEPT_SNAPSHOTS = 64  # /status?snapshot=N answers for the last this many reports
PAGE_HEADERS = [  # the dashboard's page: never framed (its buttons), no referrer, no sniffing
    (b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"), (b"x-content-type-options", b"nosniff")]
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

    def __init__(self, sources: HealthSources, *, secrets: Sequence[str] = (),
                 dashboard: Dashboard | None = None) -> None:
        self._sources = sources
        self._secrets = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self._dashboard = dashboard
        self._snapshot_ids = itertools.count(1)
        self._snapshots: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._plotly_js: bytes | None = None
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
        return 200, JSON, _json(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """A new status report (plain data) under the next snapshot id, kept for a while."""
        report = _plain(self._sources.status())
        if not isinstance(report, dict):
            report = {"status": report}
        report["supervisor"] = self._sources.supervisor().to_json()
        snapshot_id = next(self._snapshot_ids)
        report = {"snapshot": snapshot_id, **report}
        self._snapshots[snapshot_id] = report
        while len(self._snapshots) > KEPT_SNAPSHOTS:
            self._snapshots.popitem(last=False)
        return report

    def status_of(self, snapshot: str) -> Response:
        """/status?snapshot=N: report N again, the same JSON as when it was built."""
        report = self._snapshots.get(int(snapshot)) if snapshot.isdigit() else None
        if report is None:
            return 404, JSON, _json({"error": f"snapshot {snapshot} is not kept",
                                     "kept": list(self._snapshots)[:1] + list(self._snapshots)[-1:]})
        return 200, JSON, _json(report)

    async def dashboard(self, path: str, method: str,
                        headers: Mapping[str, str]) -> tuple[int, str, bytes, list[Any]] | None:
        """The dashboard's routes (None: not one of them)."""
        dash = self._dashboard
        if dash is None or not (path == "/dashboard" or path.startswith("/dashboard/")):
            return None
        sub = path[len("/dashboard"):]
        if sub.startswith("/action/"):
            kind = sub[len("/action/"):]
            if method != "POST":
                return 405, JSON, _json({"error": "method not allowed"}), [(b"allow", b"POST")]
            if kind not in ACTIONS:
                return 404, JSON, _json({"error": f"no action {kind!r}"}), []
            refusal = dash.refuse(headers)
            if refusal is not None:
                log.warning("dashboard: %s refused: %s", kind, refusal.reason)
                return refusal.status, JSON, _json({"error": refusal.reason}), []
            return 200, JSON, _json(dash.act(kind)), []
        if method not in ("GET", "HEAD"):
            return 405, JSON, _json({"error": "method not allowed"}), [(b"allow", b"GET, HEAD")]
        if sub in ("", "/"):
            return 200, HTML, dash.page(), PAGE_HEADERS
        if sub == "/data":
            return 200, JSON, dumps(await dash.data(self.snapshot())), []
        if sub == "/plotly.min.js":
            if self._plotly_js is None:
                self._plotly_js = await trio.to_thread.run_sync(_read_plotly_js)
            return (200, "text/javascript; charset=utf-8", self._plotly_js,
                    [(b"cache-control", b"public, max-age=86400")])
        if sub.startswith("/ack/"):
            ack = await dash.ack(sub[len("/ack/"):])
            if ack is None:
                return 404, JSON, _json({"error": "not a request id"}), []
            return 200, JSON, _json(ack), []
        return 404, JSON, _json({"error": "not found"}), []

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
        query = scope.get("query_string", b"").decode("latin-1")
        request_headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                           for k, v in scope.get("headers", [])}
        try:
            routed = await self.dashboard(path, method, request_headers)
        except Exception:
            log.exception("dashboard endpoint %s failed", path)
            routed = 500, JSON, _json({"error": "internal error"}), []
        if routed is not None:
            status, ctype, body, more = routed
            if any(name == b"cache-control" for name, _ in more):
                headers = []
            headers += more
        elif handler is None:
            status, ctype, body = (
                404,
                JSON,
                _json({"error": "not found", "paths": list(self._routes)
                                + (["/dashboard"] if self._dashboard else [])}),
            )
        elif method not in ("GET", "HEAD"):
            status, ctype, body = 405, JSON, _json({"error": "method not allowed"})
            headers.append((b"allow", b"GET, HEAD"))
        else:
            try:
                snapshot = (parse_qs(query).get("snapshot") or [None])[0]
                if path == "/status" and snapshot is not None:
                    status, ctype, body = self.status_of(snapshot)
                else:
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


def _read_plotly_js() -> bytes:
    """plotly.js as the `plotly` package ships it (the same the HTML report embeds)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


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
