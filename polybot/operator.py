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
- `cancel-all --direct` needs no bot: it calls the exchange's slug-scoped cancel for the configured
  markets, which also cancels orders the bot did not place.

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

from polybot import control, store
from polybot.clock import LIVE_CLOCK
from polybot.config import Settings
from polybot.errors import EXIT_NOT_ACKNOWLEDGED, EXIT_OK

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
    control.remove_kill_file(data_dir)
    path = control.write_resume_request(data_dir)
    print(f"polybot: kill file removed and {path} left: the running bot (or the next start) "
          "clears a drawdown halt. A daily-loss halt lasts until the next trading day.")
    return EXIT_OK


def cancel_all(data_dir: Path) -> int:
    return request_and_wait(data_dir, "cancel-all", "cancel-all")


def flatten(data_dir: Path) -> int:
    return request_and_wait(data_dir, "flatten", "flatten")


def cancel_all_direct(settings: Settings) -> int:
    # the REST client and Trio load only here, so `halt` and `resume` never depend on them
    import trio

    from polybot.polymarket.rest import client_from_settings

    async def go() -> list[str]:
        async with client_from_settings(settings) as client:
            return list(await client.cancel_all(list(settings.market_slugs)))

    print("polybot: cancelling every open order in the configured markets at the exchange "
          "(this includes orders the bot did not place)...")
    ids = trio.run(go)
    print(f"polybot: the exchange cancelled {len(ids)} order(s) in {len(settings.market_slugs)} market(s)")
    return EXIT_OK
