"""httpx create vs the fast create (`polybot.polymarket.fastorder`): round trip to the local exchange.

    .venv/bin/python -m bench.fast_create [--n 1000] [--round 100] [--gap-ms 0]

**Set-up.** The local exchange runs in a child process (its own core and event loop, REST rate
limit off); this process is the client. Rounds of `--round` creates alternate between the two
paths (httpx `create_order_httpx`, then the fast path), each create awaited before the next, with
`--gap-ms` of sleep between creates (0 = back to back; on this VM an idle core makes the next
piece of work slower, so try 5–50 ms too). Between rounds the resting orders are cancelled (not
timed). Reported per path: the round trip from the call to the exchange id (p50/p90/p99 µs) and,
for the fast path, the time until `send_create` returned (the request handed to the socket), and
how many fast creates went out with a pre-signed pair (`fast_presigned`) or signed inline.
The orders rest far from any fill (a bid of 0.01), so the exchange's own work is the same for
both paths.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from bench.common import Run, percentile, print_table


async def _serve(creds: Path) -> None:
    from polybot.sim.harness import running_sim, write_credentials

    async with running_sim(seed=5, run_scenario=False, rate_limit=None,
                           cash=Decimal("100000000"), heartbeat_seconds=60) as sim:
        write_credentials(creds, sim.credentials())
        await trio.sleep_forever()


def _spawn(creds: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bench.fast_create", "--serve", str(creds)],
                            stdout=subprocess.DEVNULL)


def _stats(prefix: str, samples: list[float]) -> dict[str, float]:
    return {f"{prefix}_p50": percentile(samples, 50), f"{prefix}_p90": percentile(samples, 90),
            f"{prefix}_p99": percentile(samples, 99)}


async def _measure(c: dict[str, Any], n: int, per_round: int, gap: float) -> dict[str, Any]:
    from polybot.model import Intent, OrderRequest, TimeInForce
    from polybot.polymarket import PolymarketRestClient, RestConfig, Signer
    from polybot.polymarket.fastorder import FastCreate

    slug = c["markets"][0]
    req = OrderRequest(slug, Intent.BUY_LONG, Decimal("0.01"), Decimal("1"), TimeInForce.GTC)
    config = RestConfig(api_url=c["api_url"], gateway_url=c["gateway_url"],
                        rate_limit_per_second=1e9)
    httpx_rtt: list[float] = []
    fast_rtt: list[float] = []
    fast_send: list[float] = []
    async with (PolymarketRestClient(config, Signer(c["key_id"], c["secret_key"])) as rest,
                trio.open_nursery() as nursery):
        fast = FastCreate(rest)
        await nursery.start(fast.run)
        while fast.warm < 2:
            await trio.sleep(0.01)
        for _ in range(3):  # warm both paths (connections, caches) before measuring
            await rest.create_order_httpx(req)
            await fast.create_order(req)
        await rest.cancel_all([slug])
        rounds = -(-n // per_round)
        for _ in range(rounds):
            for _ in range(per_round):
                t0 = time.perf_counter()
                await rest.create_order_httpx(req)
                httpx_rtt.append((time.perf_counter() - t0) * 1e6)
                if gap:
                    await trio.sleep(gap)
            await rest.cancel_all([slug])
            for _ in range(per_round):
                t0 = time.perf_counter()
                pending = await fast.send_create(req)
                t1 = time.perf_counter()
                await pending.result()
                t2 = time.perf_counter()
                fast_send.append((t1 - t0) * 1e6)
                fast_rtt.append((t2 - t0) * 1e6)
                if gap:
                    await trio.sleep(gap)
            await rest.cancel_all([slug])
        counters = {"fast_creates": fast.creates, "fast_fallbacks": fast.fallbacks,
                    "fast_connects": fast.connects, "fast_closed_by_peer": fast.closed_by_peer,
                    "fast_presigned": fast.presigner.presigned,
                    "fast_signed_inline": fast.presigner.inline}
        nursery.cancel_scope.cancel()
    return {"httpx": httpx_rtt, "fast": fast_rtt, "fast_send": fast_send, **counters}


def run(n: int = 1000, per_round: int = 100, gap_ms: float = 0.0,
        out_dir: Path | None = None) -> dict[str, Any]:
    run_ = Run("fast_create", {"n": n, "round": per_round, "gap_ms": gap_ms,
                               "unit": "µs, client-side, loopback"})
    with tempfile.TemporaryDirectory() as tmp:
        creds = Path(tmp) / "creds.json"
        child = _spawn(creds)
        try:
            deadline = time.monotonic() + 30
            while not creds.exists() or not creds.stat().st_size:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("the local exchange did not start")
                time.sleep(0.05)
            time.sleep(0.1)
            c = json.loads(creds.read_text())
            out = trio.run(_measure, c, n, per_round, gap_ms / 1000)
        finally:
            child.terminate()
            child.wait(10)
    rows = [
        {"what": "httpx create_order (round trip)", "n": len(out["httpx"]),
         **_stats("us", out["httpx"])},
        {"what": "fast create (round trip)", "n": len(out["fast"]), **_stats("us", out["fast"])},
        {"what": "fast send_create (handed to socket)", "n": len(out["fast_send"]),
         **_stats("us", out["fast_send"])},
    ]
    print_table(f"create round trip, {n} per path, gap {gap_ms} ms (load {os.getloadavg()})",
                [("what", "path"), ("n", "n"), ("us_p50", "p50 µs"), ("us_p90", "p90 µs"),
                 ("us_p99", "p99 µs")], rows)
    summary = {
        **_stats("httpx_rtt_us", out["httpx"]),
        **_stats("fast_rtt_us", out["fast"]),
        **_stats("fast_send_us", out["fast_send"]),
        "fast_over_httpx_p50": percentile(out["fast"], 50) / percentile(out["httpx"], 50),
        **{k: out[k] for k in ("fast_creates", "fast_fallbacks", "fast_connects",
                               "fast_closed_by_peer", "fast_presigned", "fast_signed_inline")},
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in summary.items()}, indent=1))
    result, _path = run_.write(rows, summary, out_dir)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="creates per path")
    p.add_argument("--round", type=int, default=100, help="creates per path per round")
    p.add_argument("--gap-ms", type=float, default=0.0, help="sleep between creates")
    p.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve is not None:
        trio.run(_serve, args.serve)
        return 0
    run(args.n, args.round, args.gap_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
