"""Operator commands: `halt`, `resume`, `cancel-all`, `flatten`, acting on a running bot through files.

The bot stays the only writer of its own state, so an operator never edits the database: a command
leaves a request in `DATA_DIR` and the running bot consumes it.

- `halt` creates `DATA_DIR/KILL`. The bot halts within a poll interval while the file exists, and a
  bot started while it exists starts halted, so `halt` works with the bot down. Exit 0.
- `resume` removes `KILL` and leaves `DATA_DIR/RESUME`, a request that also clears a drawdown halt;
  the running bot (or the next start) consumes it. Exit 0.
- `cancel-all` and `flatten` write `DATA_DIR/requests/<id>.json` and wait up to 10 s for the bot's
  acknowledgement, which the bot records in its store (table `operator_acks`). Exit 0 with the
  outcome, or 4 if no bot acknowledged (the request file is then withdrawn, so a bot started later
  does not act on a stale request).
- `cancel-all --direct` needs no bot and no MARKET_SLUGS: it cancels, by order id, the bot's own
  orders its store last saw open (in any market, discovered ones included), then reads each one
  back to confirm it is closed. Never the whole account: orders the bot did not place are left
  alone. Exit 0 when every one is confirmed closed, else 1 naming what may still be open (an
  order whose create never got an id cannot be cancelled by id; the bot's next start resolves
  it).

Request files are written to a temporary name and renamed, so the bot never reads half a request.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

from polybot import control, store
from polybot.clock import LIVE_CLOCK
from polybot.config import Settings
from polybot.errors import EXIT_NOT_ACKNOWLEDGED, EXIT_OK, EXIT_UNCONFIRMED

REQUESTS_DIR = "requests"
ACK_TIMEOUT_SECONDS = 10.0



def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_request(data_dir: Path, kind: str, payload: dict[str, Any] | None = None) -> str:
    request_id = uuid.uuid4().hex
    created = LIVE_CLOCK.now().timestamp()  # the CLI's own process: the host's calendar
    body = {"id": request_id, "kind": kind, "created": created, **(payload or {})}
    _atomic_write(data_dir / REQUESTS_DIR / f"{request_id}.json", json.dumps(body))
    return request_id


def read_requests(data_dir: Path) -> list[dict[str, Any]]:
    """The bot side: pending requests, oldest first (malformed files are skipped and removed)."""
    folder = data_dir / REQUESTS_DIR
    if not folder.is_dir():
        return []
    out = []
    for f in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            body = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(body, dict) or "id" not in body or "kind" not in body:
                raise ValueError("not a request")
        except (OSError, ValueError):
            f.unlink(missing_ok=True)
            continue
        out.append(body)
    return out


def remove_request(data_dir: Path, request_id: str) -> None:
    (data_dir / REQUESTS_DIR / f"{request_id}.json").unlink(missing_ok=True)


def read_ack(data_dir: Path, request_id: str) -> str | None:
    """The outcome the bot recorded for a request, or None (no database or no ack yet)."""
    ack = store.read_ack(data_dir, request_id)
    if ack is None:
        return None
    return f"{ack['outcome']} {ack.get('detail') or ''}".strip()


def wait_for_ack(data_dir: Path, request_id: str, timeout: float = ACK_TIMEOUT_SECONDS,
                 poll: float = 0.1) -> str | None:
    deadline = time.monotonic() + timeout
    while True:
        outcome = read_ack(data_dir, request_id)
        if outcome is not None:
            return outcome
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)


def request_and_wait(data_dir: Path, kind: str, what: str,
                     timeout: float = ACK_TIMEOUT_SECONDS) -> int:
    request_id = write_request(data_dir, kind)
    print(f"polybot: {what} requested (request {request_id}); waiting up to "
          f"{timeout:.0f} s for the running bot...")
    outcome = wait_for_ack(data_dir, request_id, timeout)
    if outcome is None:
        remove_request(data_dir, request_id)
        print(f"polybot: no running bot acknowledged the {what} request; it was withdrawn.",
              file=sys.stderr)
        return EXIT_NOT_ACKNOWLEDGED
    print(f"polybot: {what}: {outcome}")
    return EXIT_OK


# --- the commands (called by polybot.cli) ---------------------------------------------------------


def halt(data_dir: Path) -> int:
    path = control.write_kill_file(data_dir, "halted by operator (polybot halt)")
    print(f"polybot: {path} created: a running bot halts at once and cancels its orders; a bot "
          "started while the file exists starts halted. `polybot resume` lifts it.")
    return EXIT_OK


def resume(data_dir: Path) -> int:
    path = control.resume(data_dir)
    print(f"polybot: kill file removed and {path} left: the running bot (or the next start) "
          "clears a drawdown halt. A daily-loss halt lasts until the next trading day.")
    return EXIT_OK


def cancel_all(data_dir: Path) -> int:
    return request_and_wait(data_dir, "cancel-all", "cancel-all")


def flatten(data_dir: Path) -> int:
    return request_and_wait(data_dir, "flatten", "flatten")


CANCEL_BATCH = 20  # the exchange's batched cancel takes at most this many


@attrs.frozen
class DirectCancel:
    """What `cancel-all --direct` did: the stored open orders, by exchange id."""

    cancelled: tuple[str, ...]  # confirmed closed at the exchange
    still_open: tuple[str, ...]  # read back open, or not readable
    without_id: tuple[str, ...]  # local ids of creates that never got an exchange id

    @property
    def ok(self) -> bool:
        return not self.still_open and not self.without_id


async def cancel_stored_orders(settings: Settings, client: Any = None) -> DirectCancel:
    """Cancel the bot's open orders recorded in the store, by id, and confirm each one."""
    from polybot.polymarket import errors as pm_errors
    from polybot.polymarket.rest import client_from_settings

    stored = store.read_open_orders(settings.data_dir)
    targets = [(exchange_id, slug) for _local, exchange_id, slug in stored if exchange_id]
    without_id = tuple(local for local, exchange_id, _slug in stored if not exchange_id)
    if client is None:
        async with client_from_settings(settings) as own:
            return await cancel_stored_orders(settings, own)
    for i in range(0, len(targets), CANCEL_BATCH):
        await client.cancel_orders(targets[i:i + CANCEL_BATCH])
    cancelled, still_open = [], []
    for exchange_id, _slug in targets:
        try:
            order = await client.order(exchange_id)
        except pm_errors.NotFound:  # never reached the exchange, or long gone
            cancelled.append(exchange_id)
            continue
        except pm_errors.PolymarketError:
            still_open.append(exchange_id)
            continue
        (still_open if order.state.is_open else cancelled).append(exchange_id)
    return DirectCancel(tuple(cancelled), tuple(still_open), without_id)


def cancel_all_direct(settings: Settings) -> int:
    # the REST client and Trio load only here, so `halt` and `resume` never depend on them
    import trio

    if settings.trading_mode != "live":
        print("polybot: paper mode: no order of the bot rests at the exchange; nothing to cancel")
        return EXIT_OK
    print("polybot: cancelling the bot's open orders recorded in its store, by order id "
          "(orders the bot did not place are left alone)...")
    result = trio.run(cancel_stored_orders, settings)
    print(f"polybot: {len(result.cancelled)} order(s) confirmed closed at the exchange")
    if result.still_open:
        print("polybot: still open or not readable: " + ", ".join(result.still_open),
              file=sys.stderr)
    if result.without_id:
        print("polybot: creates without an exchange id (outcome unknown; the next start "
              "resolves them): " + ", ".join(result.without_id), file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_UNCONFIRMED
