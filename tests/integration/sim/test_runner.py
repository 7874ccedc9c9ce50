"""`python -m polybot.sim.harness` runs the sim standalone and writes the credentials file."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from functools import partial

import httpx
import trio

from polybot.sim.auth import signed_headers

from .helpers import now_ms

EXPECTED_KEYS = {
    "key_id",
    "secret_key",
    "api_url",
    "gateway_url",
    "ws_url",
    "admin_url",
    "markets",
    "opticodds_url",
    "opticodds_key",
}


async def test_standalone_runner_writes_0600_credentials_once_listening(tmp_path):
    creds_path = tmp_path / "creds.json"
    cmd = [
        sys.executable,
        "-m",
        "polybot.sim.harness",
        "--seed",
        "4",
        "--credentials-file",
        str(creds_path),
        "--heartbeat-seconds",
        "1",
    ]
    log = (tmp_path / "out.txt").open("wb")
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(partial(trio.run_process, cmd, check=False, stdout=log))
        try:
            with trio.fail_after(20):
                while not creds_path.exists():
                    await trio.sleep(0.05)
            creds = json.loads(creds_path.read_text())
            assert set(creds) == EXPECTED_KEYS
            assert stat.S_IMODE(os.stat(creds_path).st_mode) == 0o600
            assert creds["ws_url"].startswith("ws://127.0.0.1:") and creds["markets"]
            async with httpx.AsyncClient(timeout=5) as http:
                r = await http.get(creds["gateway_url"] + "/v1/markets")
                assert {m["slug"] for m in r.json()["markets"]} >= set(creds["markets"])
                path = "/v1/account/balances"
                h = signed_headers(creds["key_id"], creds["secret_key"], "GET", path, now_ms())
                r = await http.get(creds["api_url"] + path, headers=h)
                assert r.status_code == 200 and r.json()["balances"][0]["currentBalance"] > 0
                r = await http.get(
                    creds["opticodds_url"] + "/sportsbooks",
                    headers={"X-Api-Key": creds["opticodds_key"]},
                )
                assert r.status_code == 200
                assert (await http.get(creds["admin_url"] + "/admin/faults")).status_code == 200
        finally:
            proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            await proc.wait()
    assert proc.returncode == 0
    log.close()
    out = (tmp_path / "out.txt").read_text()
    assert creds["key_id"] in out and creds["secret_key"] not in out


async def test_standalone_runner_serves_a_league_schedule_and_refuses_unknown_leagues(tmp_path):
    creds_path = tmp_path / "creds.json"
    cmd = [sys.executable, "-m", "polybot.sim.harness", "--seed", "2", "--schedule", "nba,nhl",
           "--credentials-file", str(creds_path)]
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(partial(trio.run_process, cmd, check=False,
                                           stdout=(tmp_path / "out.txt").open("wb")))
        try:
            with trio.fail_after(20):
                while not creds_path.exists():
                    await trio.sleep(0.05)
            creds = json.loads(creds_path.read_text())
            async with httpx.AsyncClient(timeout=5) as http:
                body = (await http.get(creds["gateway_url"] + "/v2/leagues/nba/events")).json()
                slugs = {m["slug"] for e in body["events"] for m in e["markets"]}
                assert slugs and slugs <= set(creds["markets"])
                assert all(e["seriesSlug"].startswith("nba-") for e in body["events"])
        finally:
            proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            await proc.wait()
    assert proc.returncode == 0
    bad = await trio.run_process([sys.executable, "-m", "polybot.sim.harness", "--schedule",
                                  "nba,ncaab"], check=False, capture_stderr=True)
    assert bad.returncode == 2 and b"unknown league 'ncaab'" in bad.stderr
