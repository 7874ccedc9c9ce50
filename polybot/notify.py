"""Operator alerts to Discord and Telegram: queued, rate-limited, never in trading's way.

Design
------
Producers call `Notifier.send_nowait(alert)` from anywhere in the Trio program. It puts the alert
on a bounded memory channel and returns at once; when the channel is full the alert is dropped
and counted (the count is reported in the next message), so a dead webhook can never stall or
crash trading. One consumer task, `Notifier.run()`, owns the HTTP client and the rate limit:

* at most ``max_per_window`` messages per ``window`` seconds (a sliding window);
* alerts waiting for the window are *coalesced*: alerts sharing a ``key`` collapse into one
  (with a repeat count) and, when the window's last slot is used while several alerts wait, they
  go out as one summary message;
* each message goes to every sink concurrently, each request bounded by ``timeout``; transport
  errors, 5xx and 429 are retried with exponential backoff (429 honours ``retry_after``), other
  4xx are not. A message that still fails is logged and abandoned — never raised.

The notifier must live OUTSIDE the supervised group (it has to report the group's crashes), and
`flush()` gives it a bounded moment to deliver the last alerts at shutdown.

Secrets: the Telegram bot token is part of the request path and the Discord webhook URL embeds
its token. Neither is ever logged: every error text is scrubbed of the sinks' secrets, and while
`run()` is active a filter scrubs them from httpx's own request log lines.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import attrs
import httpx
import trio

from polybot.clock import LIVE_CLOCK, Clock
from polybot.metrics import Metrics

log = logging.getLogger(__name__)

REDACTED = "[redacted]"


class Level(enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.INFO: 0, Level.WARNING: 1, Level.ERROR: 2, Level.CRITICAL: 3}
DISCORD_COLOURS = {
    Level.INFO: 0x3498DB,  # blue
    Level.WARNING: 0xF39C12,  # amber
    Level.ERROR: 0xE74C3C,  # red
    Level.CRITICAL: 0x992D22,  # dark red
}
_TELEGRAM_ICONS = {Level.INFO: "ℹ️", Level.WARNING: "⚠️", Level.ERROR: "🔴", Level.CRITICAL: "🚨"}


@attrs.frozen
class Alert:
    """One alert. ``key`` groups repeats of the same condition (e.g. "stream.markets.down") so a
    flapping condition coalesces into one message with a count while rate-limited."""

    level: Level
    title: str
    text: str = ""
    key: str | None = None
    count: int = 1  # how many alerts this one stands for (after coalescing)


class _Revealable(Protocol):
    def reveal(self) -> str: ...


def _reveal(value: str | _Revealable) -> str:
    return value if isinstance(value, str) else value.reveal()


class Sink(Protocol):
    """A destination: builds one HTTP POST for an alert and names its secrets for scrubbing."""

    name: str

    def request(self, alert: Alert) -> tuple[str, dict[str, Any]]: ...

    def secrets(self) -> tuple[str, ...]: ...


class DiscordWebhook:
    """Discord webhook: one embed per message, coloured by level, mentions disabled."""

    name = "discord"

    def __init__(self, url: str | _Revealable, *, clock: Clock = LIVE_CLOCK) -> None:
        self._url = url
        self._clock = clock

    def __repr__(self) -> str:
        return "DiscordWebhook(url=[redacted])"

    def secrets(self) -> tuple[str, ...]:
        url = _reveal(self._url)
        # The whole URL, and its last path segment (the webhook token) on its own.
        return (url, url.rstrip("/").rsplit("/", 1)[-1])

    def request(self, alert: Alert) -> tuple[str, dict[str, Any]]:
        title = _title(alert)
        payload = {
            "username": "polybot",
            "allowed_mentions": {"parse": []},  # an alert text must never ping @everyone
            "embeds": [
                {
                    "title": title[:256],
                    "description": alert.text[:4000],
                    "color": DISCORD_COLOURS[alert.level],
                    "timestamp": self._clock.now().isoformat(),
                }
            ],
        }
        return _reveal(self._url), payload


class TelegramBot:
    """Telegram Bot API ``sendMessage`` (plain text: no parse mode, nothing to escape)."""

    name = "telegram"

    def __init__(
        self,
        token: str | _Revealable,
        chat_id: str | int,
        *,
        api_base: str = "https://api.telegram.org",
    ) -> None:
        self._token = token
        self._chat_id = chat_id
        self._api_base = api_base.rstrip("/")

    def __repr__(self) -> str:
        return f"TelegramBot(token=[redacted], chat_id={self._chat_id!r})"

    def secrets(self) -> tuple[str, ...]:
        return (_reveal(self._token),)

    def request(self, alert: Alert) -> tuple[str, dict[str, Any]]:
        title = _title(alert)
        text = f"{_TELEGRAM_ICONS[alert.level]} {title}"
        if alert.text:
            text += "\n" + alert.text
        url = f"{self._api_base}/bot{_reveal(self._token)}/sendMessage"
        return url, {
            "chat_id": self._chat_id,
            "text": text[:4096],
            "disable_web_page_preview": True,
        }


def _title(alert: Alert) -> str:
    # Repeats of one keyed condition show their count; a summary's title already has it.
    return f"{alert.title} (×{alert.count})" if alert.key and alert.count > 1 else alert.title


class _ScrubFilter(logging.Filter):
    """Rewrites log records that mention a secret (httpx logs every request URL at INFO)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _scrub(message, self._secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def _scrub(text: str, secrets: Sequence[str]) -> str:
    # Longest first, so a URL is replaced whole before its token is.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class Notifier:
    """The alert queue and its consumer; see the module docstring.

    ``secrets``: raw secret values (e.g. ``settings.secret_values()``) scrubbed from every
    alert's title and text. Call `send_nowait` from the Trio thread only.

    With no sinks configured it still accepts alerts (and discards them after logging at debug),
    so callers never need to check whether alerts are enabled.

    ``instance``: INSTANCE, when one host runs several accounts; every title then starts with
    ``[NAME]`` (they usually share one channel, and "Trading halted" must say whose).
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        queue_size: int = 100,
        max_per_window: int = 10,
        window: float = 60.0,
        timeout: float = 5.0,
        attempts: int = 3,
        retry_initial: float = 1.0,
        retry_max: float = 30.0,
        metrics: Metrics | None = None,
        secrets: Sequence[str] = (),
        instance: str = "",
    ) -> None:
        if queue_size < 1 or max_per_window < 1 or window <= 0 or attempts < 1:
            raise ValueError("queue_size, max_per_window, attempts must be >= 1 and window > 0")
        self._sinks = tuple(sinks)
        self._max_per_window = max_per_window
        self._window = window
        self._timeout = timeout
        self._attempts = attempts
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._metrics = metrics
        self._tag = f"[{instance}] " if instance else ""
        # Alert texts are often exception messages: scrub known secrets before they leave.
        self._secrets = [*secrets, *(v for sink in self._sinks for v in sink.secrets())]
        self._send_channel, self._receive_channel = trio.open_memory_channel[Alert](queue_size)
        self._sent_at: deque[float] = deque()
        self._outstanding = 0  # alerts accepted and not yet delivered or abandoned
        self._dropped_unreported = 0
        self._flushing = False
        self._slot_scope: trio.CancelScope | None = None
        self.dropped = 0
        self.delivered = 0  # messages delivered to at least one sink
        self.failed = 0  # messages no sink accepted

    def __repr__(self) -> str:
        return f"Notifier(sinks={[s.name for s in self._sinks]})"

    # --- producers ----------------------------------------------------------------------------

    def send_nowait(self, alert: Alert) -> bool:
        """Queue `alert`; never blocks, never raises. False if it was dropped (queue full/closed)."""
        try:
            self._send_channel.send_nowait(alert)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped += 1
            self._dropped_unreported += 1
            self._count("all", "dropped")
            if self._dropped_unreported == 1:  # once per streak: a flood must not flood the log too
                log.warning("alert queue full, dropping alerts (first: %s)", alert.title)
            return False
        self._outstanding += 1
        return True

    def alert(self, level: Level, title: str, text: str = "", *, key: str | None = None) -> bool:
        return self.send_nowait(Alert(level=level, title=title, text=text, key=key))

    # --- consumer -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The consumer task; runs until cancelled."""
        secrets = self._secrets
        scrub_filter = _ScrubFilter(secrets)
        httpx_log = logging.getLogger("httpx")
        httpx_log.addFilter(scrub_filter)
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                task_status.started()
                pending: list[Alert] = []
                while True:
                    if not pending:
                        self._merge(pending, await self._receive_channel.receive())
                    self._drain(pending)
                    wait = self._slot_wait(trio.current_time())
                    if wait > 0:
                        # Out of slots: keep collecting (and coalescing) until one frees up.
                        with trio.move_on_after(wait) as self._slot_scope:
                            while True:
                                self._merge(pending, await self._receive_channel.receive())
                        self._slot_scope = None
                        continue
                    free = self._free_slots(trio.current_time())
                    if len(pending) > 1 and free <= 1:
                        message = _summary(pending)
                        pending.clear()
                    else:
                        message = pending.pop(0)
                    await self._deliver(client, message, secrets)
        finally:
            httpx_log.removeFilter(scrub_filter)

    async def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` for every queued alert to be delivered (or abandoned).

        Ignores the rate limit while waiting, so a final summary can still go out at shutdown.
        True if the queue drained.
        """
        self._flushing = True
        if self._slot_scope is not None:
            self._slot_scope.cancel()  # stop waiting for the rate-limit window
        try:
            with trio.move_on_after(timeout):
                while self._outstanding > 0:
                    await trio.sleep(0.01)
        finally:
            self._flushing = False
        return self._outstanding == 0

    # --- internals ----------------------------------------------------------------------------

    def _drain(self, pending: list[Alert]) -> None:
        while True:
            try:
                self._merge(pending, self._receive_channel.receive_nowait())
            except trio.WouldBlock:
                return

    @staticmethod
    def _merge(pending: list[Alert], alert: Alert) -> None:
        if alert.key is not None:
            for i, old in enumerate(pending):
                if old.key == alert.key:
                    # Latest text wins (it is the current condition), highest level kept.
                    level = alert.level if alert.level.rank >= old.level.rank else old.level
                    pending[i] = attrs.evolve(alert, level=level, count=old.count + alert.count)
                    return
        pending.append(alert)

    def _free_slots(self, now: float) -> int:
        while self._sent_at and self._sent_at[0] <= now - self._window:
            self._sent_at.popleft()
        return self._max_per_window - len(self._sent_at)

    def _slot_wait(self, now: float) -> float:
        if self._flushing or self._free_slots(now) > 0:
            return 0.0
        return self._sent_at[0] + self._window - now

    async def _deliver(self, client: httpx.AsyncClient, alert: Alert, secrets: list[str]) -> None:
        if self._dropped_unreported:
            note = f"({self._dropped_unreported} alert(s) dropped: queue full)"
            alert = attrs.evolve(alert, text=f"{alert.text}\n{note}" if alert.text else note)
            self._dropped_unreported = 0
        alert = attrs.evolve(
            alert, title=self._tag + _scrub(alert.title, secrets), text=_scrub(alert.text, secrets)
        )
        self._sent_at.append(trio.current_time())
        ok: list[bool] = []
        try:
            if not self._sinks:
                log.debug("alert (no sink configured): %s", alert.title)
                return
            async with trio.open_nursery() as nursery:
                for sink in self._sinks:
                    nursery.start_soon(self._deliver_one, client, sink, alert, secrets, ok)
        finally:
            self._outstanding = max(0, self._outstanding - alert.count)
        if any(ok):
            self.delivered += 1
        else:
            self.failed += 1

    async def _deliver_one(
        self,
        client: httpx.AsyncClient,
        sink: Sink,
        alert: Alert,
        secrets: list[str],
        ok: list[bool],
    ) -> None:
        url, payload = sink.request(alert)
        problem = ""
        for attempt in range(1, self._attempts + 1):
            delay = min(self._retry_max, self._retry_initial * 2 ** (attempt - 1))
            try:
                response = await client.post(url, json=payload)
            except httpx.HTTPError as exc:
                problem = _scrub(f"{type(exc).__name__}: {exc}", secrets)
            else:
                if response.is_success:
                    self._count(sink.name, "sent")
                    ok.append(True)
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code == 429:
                    delay = min(self._retry_max, _retry_after(response) or delay)
                elif response.status_code < 500:
                    break  # our request is wrong (bad token, bad chat id): retrying cannot help
            if attempt < self._attempts:
                log.info("alert to %s failed (%s), retry in %.1fs", sink.name, problem, delay)
                await trio.sleep(delay)
        self._count(sink.name, "failed")
        log.warning("alert to %s abandoned after %s: %s", sink.name, problem, alert.title)

    def _count(self, channel: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.alerts.labels(channel=channel, outcome=outcome).inc()


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a 429: Discord's/Telegram's JSON body or the Retry-After header."""
    try:
        body = response.json()
    except ValueError:
        body = None
    candidates: list[Any] = []
    if isinstance(body, dict):
        candidates.append(body.get("retry_after"))
        params = body.get("parameters")
        if isinstance(params, dict):
            candidates.append(params.get("retry_after"))
    candidates.append(response.headers.get("retry-after"))
    for value in candidates:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _summary(pending: Sequence[Alert]) -> Alert:
    """One message standing for several rate-limited alerts."""
    level = max((a.level for a in pending), key=lambda lv: lv.rank)
    total = sum(a.count for a in pending)
    lines = []
    for a in pending:
        first = a.text.splitlines()[0] if a.text else ""
        repeat = f" ×{a.count}" if a.count > 1 else ""
        lines.append(f"• [{a.level.value}] {a.title}{repeat}" + (f": {first}" if first else ""))
    text = "\n".join(lines)
    if len(text) > 3500:
        text = text[:3500] + "\n…"
    return Alert(level=level, title=f"{total} alerts (rate limited)", text=text, count=total)
