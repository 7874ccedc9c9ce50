"""scripts/backup.sh and scripts/restore.sh against a real SQLite database in WAL mode.

The writer is a separate process that commits batches the way the bot's store does (WAL, one
writer, short transactions), so the backup really runs against a database that changes under it.
Each batch inserts BATCH rows and sets a counter to the new row count in the same transaction:
a restored database whose counter equals its row count is a transaction-consistent snapshot, and
since the writer only appends deterministic rows, the snapshot must equal the source's first rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BACKUP = REPO / "scripts" / "backup.sh"
RESTORE = REPO / "scripts" / "restore.sh"
BATCH = 10
SECRET = "c2VjcmV0LXNlZWQtdGhhdC1tdXN0LW5ldmVyLWxlYWs="

WRITER = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    db, stop, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    c = sqlite3.connect(db, timeout=30, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("CREATE TABLE IF NOT EXISTS fills (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    c.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    c.execute("INSERT OR IGNORE INTO meta VALUES ('rows', 0)")
    n = 0
    deadline = time.monotonic() + 60
    while not os.path.exists(stop) and time.monotonic() < deadline:
        c.execute("BEGIN IMMEDIATE")
        for i in range(n + 1, n + batch + 1):
            c.execute("INSERT INTO fills VALUES (?, ?)", (i, f"fill-{i}-" + "x" * 200))
        n += batch
        c.execute("UPDATE meta SET n = ? WHERE k = 'rows'", (n,))
        c.execute("COMMIT")
    c.close()
    print(n)
    """
)


def run(script: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {
        k: v for k, v in os.environ.items() if k not in {"DATA_DIR", "BACKUP_S3_URI", "HEALTH_PORT"}
    }
    return subprocess.run(
        ["bash", str(script), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_bot_dir(root: Path) -> Path:
    bot = root / "bot"
    (bot / "data").mkdir(parents=True)
    (bot / "logs").mkdir()
    (bot / "logs" / "bot.log").write_text("2026-01-01T00:00:00Z INFO started\n")
    (bot / "logs" / "trades.log").write_text("2026-01-01T00:00:01Z fill market=x qty=1\n")
    (bot / ".env").write_text(
        "TRADING_MODE=paper\n"
        "PM_API_KEY_ID=11111111-2222-3333-4444-555555555555\n"
        f'PM_PRIVATE_KEY="{SECRET}"\n'
        f"# PM_PRIVATE_KEY={SECRET}\n"
        "DISCORD_WEBHOOK=https://discord.example/api/webhooks/1/tok\n"
        "HEALTH_PORT=1\n"
    )
    return bot


def make_db(path: Path, rows: int) -> None:
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    c.executemany("INSERT INTO fills VALUES (?, ?)", [(i, f"fill-{i}") for i in range(1, rows + 1)])
    c.commit()
    c.close()


def rows_of(db: Path) -> list[tuple]:
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return c.execute("SELECT id, payload FROM fills ORDER BY id").fetchall()
    finally:
        c.close()


def only_archive(backups: Path) -> Path:
    archives = sorted(backups.glob("polybot-backup-*.tar.gz"))
    assert len(archives) == 1, archives
    return archives[0]


@pytest.mark.slow
def test_backup_of_a_database_being_written_restores_a_consistent_identical_snapshot(tmp_path):
    bot = make_bot_dir(tmp_path)
    db = bot / "data" / "polybot.db"
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(stop), str(BATCH)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # let the writer get going (a few thousand rows)
            time.sleep(0.05)
            try:
                if len(rows_of(db)) >= 2000:
                    break
            except sqlite3.OperationalError:
                pass
        backed_up = run(BACKUP, "--bot-dir", str(bot), "--backup-dir", str(tmp_path / "backups"))
        time.sleep(0.3)  # the writer carries on after the snapshot
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=30)
    # The backup never made the writer fail ("database is locked").
    assert writer.returncode == 0, err
    assert backed_up.returncode == 0, backed_up.stderr
    written = int(out)

    archive = only_archive(tmp_path / "backups")
    target = make_bot_dir(tmp_path / "elsewhere")
    restored = run(RESTORE, "--bot-dir", str(target), str(archive))
    assert restored.returncode == 0, restored.stderr

    restored_db = target / "data" / "polybot.db"
    c = sqlite3.connect(restored_db)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (counter,) = c.execute("SELECT n FROM meta WHERE k = 'rows'").fetchone()
    c.close()
    snapshot = rows_of(restored_db)
    assert counter == len(snapshot) > 0 and counter % BATCH == 0  # whole transactions only
    assert snapshot == rows_of(db)[: len(snapshot)]  # exactly the source's rows at that moment
    assert len(snapshot) < written  # and the writer really wrote on past the snapshot

    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/polybot.db"))
        archived = tar.extractfile(member).read()
        manifest = next(m for m in tar.getmembers() if m.name.endswith("/MANIFEST"))
        manifest_text = tar.extractfile(manifest).read().decode()
    assert restored_db.read_bytes() == archived
    assert f"polybot_db_sha256={hashlib.sha256(archived).hexdigest()}" in manifest_text


def test_backup_archive_holds_logs_and_redacted_config_and_never_a_secret(tmp_path):
    bot = make_bot_dir(tmp_path)
    make_db(bot / "data" / "polybot.db", rows=3)
    result = run(BACKUP, "--bot-dir", str(bot), "--backup-dir", str(tmp_path / "backups"))
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr

    archive = only_archive(tmp_path / "backups")
    with tarfile.open(archive) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
        blobs = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert {"polybot.db", "logs/bot.log", "logs/trades.log", "config.env", "MANIFEST"} <= names
    assert all(
        SECRET.encode() not in blob and b"webhooks/1/tok" not in blob for blob in blobs.values()
    )
    config = next(v for k, v in blobs.items() if k.endswith("/config.env")).decode()
    assert "TRADING_MODE=paper" in config
    assert "PM_PRIVATE_KEY=REDACTED" in config and "# PM_PRIVATE_KEY=REDACTED" in config
    assert os.stat(archive).st_mode & 0o077 == 0  # not readable by group/others


def test_backup_keeps_seven_days_of_its_own_archives_and_nothing_else_is_deleted(tmp_path):
    bot = make_bot_dir(tmp_path)
    make_db(bot / "data" / "polybot.db", rows=1)
    backups = tmp_path / "backups"
    backups.mkdir()
    now = time.time()
    old = backups / "polybot-backup-20000101T000000Z.tar.gz"
    recent = backups / "polybot-backup-20000102T000000Z.tar.gz"
    unrelated = backups / "keep-me.tar.gz"
    for path, age_days in ((old, 8), (recent, 6), (unrelated, 30)):
        path.write_bytes(b"x")
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))

    result = run(BACKUP, "--bot-dir", str(bot), "--backup-dir", str(backups))
    assert result.returncode == 0, result.stderr
    assert not old.exists()
    assert recent.exists() and unrelated.exists()
    assert len(list(backups.glob("polybot-backup-*.tar.gz"))) == 2


def write_fake_aws(bin_dir: Path, bucket: Path, fail: bool = False) -> None:
    """A stand-in for the aws CLI on PATH: `aws s3 cp [--only-show-errors] SRC DST` against a folder."""
    bin_dir.mkdir()
    script = bin_dir / "aws"
    script.write_text(
        "#!/usr/bin/env bash\n"
        "set -euo pipefail\n"
        f'echo "$*" >> "{bucket}/calls"\n'
        + ("exit 1\n" if fail else "")
        + 'args=(); for a in "$@"; do case "$a" in --*) ;; *) args+=("$a");; esac; done\n'
        'src="${args[2]}"; dst="${args[3]}"\n'
        f'case "$src" in s3://*) cp "{bucket}/${{src##*/}}" "$dst";; *) cp "$src" "{bucket}/${{dst##*/}}";; esac\n'
    )
    script.chmod(0o755)


def test_backup_uploads_to_s3_when_configured_and_restore_fetches_from_s3(tmp_path):
    bot = make_bot_dir(tmp_path)
    make_db(bot / "data" / "polybot.db", rows=5)
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    write_fake_aws(tmp_path / "bin", bucket)
    env = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "BACKUP_S3_URI": "s3://my-bucket/polybot/",
    }

    result = run(BACKUP, "--bot-dir", str(bot), "--backup-dir", str(tmp_path / "backups"), env=env)
    assert result.returncode == 0, result.stderr
    archive = only_archive(tmp_path / "backups")
    assert (bucket / archive.name).read_bytes() == archive.read_bytes()
    assert (
        f"s3 cp --only-show-errors {archive} s3://my-bucket/polybot/{archive.name}"
        in (bucket / "calls").read_text()
    )

    target = make_bot_dir(tmp_path / "new-host")
    restored = run(
        RESTORE, "--bot-dir", str(target), f"s3://my-bucket/polybot/{archive.name}", env=env
    )
    assert restored.returncode == 0, restored.stderr
    assert rows_of(target / "data" / "polybot.db") == rows_of(bot / "data" / "polybot.db")


def test_failed_s3_upload_fails_the_run_but_keeps_the_local_archive(tmp_path):
    bot = make_bot_dir(tmp_path)
    make_db(bot / "data" / "polybot.db", rows=1)
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    write_fake_aws(tmp_path / "bin", bucket, fail=True)
    env = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "BACKUP_S3_URI": "s3://my-bucket/polybot",
    }
    result = run(BACKUP, "--bot-dir", str(bot), "--backup-dir", str(tmp_path / "backups"), env=env)
    assert result.returncode == 1
    assert "upload" in result.stderr and "local archive kept" in result.stderr
    only_archive(tmp_path / "backups")


def test_restore_moves_the_old_database_and_its_stale_wal_aside_instead_of_mixing_them(tmp_path):
    source = make_bot_dir(tmp_path / "a")
    make_db(source / "data" / "polybot.db", rows=7)
    assert (
        run(BACKUP, "--bot-dir", str(source), "--backup-dir", str(tmp_path / "backups")).returncode
        == 0
    )

    target = make_bot_dir(tmp_path / "b")
    data = target / "data"
    make_db(data / "polybot.db", rows=2)
    (data / "polybot.db-wal").write_bytes(b"stale wal from another database")
    (data / "polybot.db-shm").write_bytes(b"stale shm")
    (data / "polybot.db-intents").write_bytes(b'{"v":1,"row":{"local_id":"stale"}}\n')
    result = run(
        RESTORE, "--bot-dir", str(target), "--with-logs", str(only_archive(tmp_path / "backups"))
    )
    assert result.returncode == 0, result.stderr

    assert not (data / "polybot.db-wal").exists() and not (data / "polybot.db-shm").exists()
    assert not (data / "polybot.db-intents").exists()  # the next start replays no stale intent
    assert rows_of(data / "polybot.db") == rows_of(source / "data" / "polybot.db")
    (aside,) = data.glob("pre-restore-*")
    assert {p.name for p in aside.iterdir()} == {"polybot.db", "polybot.db-wal", "polybot.db-shm",
                                                 "polybot.db-intents"}
    assert (aside / "polybot.db-wal").read_bytes() == b"stale wal from another database"
    (logs,) = (target / "logs").glob("restored-*")
    assert (logs / "trades.log").exists()
    assert (target / ".env").read_text().count(SECRET) == 2  # .env untouched


def test_restore_refuses_while_a_bot_answers_on_the_health_port(tmp_path):
    class Busy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    source = make_bot_dir(tmp_path / "a")
    make_db(source / "data" / "polybot.db", rows=3)
    assert (
        run(BACKUP, "--bot-dir", str(source), "--backup-dir", str(tmp_path / "backups")).returncode
        == 0
    )
    target = make_bot_dir(tmp_path / "b")
    make_db(target / "data" / "polybot.db", rows=1)
    before = (target / "data" / "polybot.db").read_bytes()

    server = http.server.HTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"HEALTH_PORT": str(server.server_address[1])}
        result = run(
            RESTORE, "--bot-dir", str(target), str(only_archive(tmp_path / "backups")), env=env
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 3
    assert "bot runs" in result.stderr
    assert (target / "data" / "polybot.db").read_bytes() == before


def test_restore_rejects_a_damaged_archive_and_leaves_the_database_alone(tmp_path):
    source = make_bot_dir(tmp_path / "a")
    make_db(source / "data" / "polybot.db", rows=3)
    assert (
        run(BACKUP, "--bot-dir", str(source), "--backup-dir", str(tmp_path / "backups")).returncode
        == 0
    )
    archive = only_archive(tmp_path / "backups")

    damaged = tmp_path / "polybot-backup-damaged.tar.gz"
    with tarfile.open(archive) as tar, tarfile.open(damaged, "w:gz") as out:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else None
            if member.name.endswith("/polybot.db"):
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            out.addfile(member, io.BytesIO(data) if data is not None else None)

    target = make_bot_dir(tmp_path / "b")
    make_db(target / "data" / "polybot.db", rows=1)
    before = (target / "data" / "polybot.db").read_bytes()
    result = run(RESTORE, "--bot-dir", str(target), str(damaged))
    assert result.returncode == 1
    assert "sha256" in result.stderr
    assert (target / "data" / "polybot.db").read_bytes() == before
    assert not list((target / "data").glob("pre-restore-*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the database to another user")
def test_backup_as_root_refuses_a_database_owned_by_the_bot_user(tmp_path):
    bot = make_bot_dir(tmp_path)
    db = bot / "data" / "polybot.db"
    make_db(db, rows=1)
    shutil.chown(db, user="nobody")
    result = run(BACKUP, "--bot-dir", str(bot), "--backup-dir", str(tmp_path / "backups"))
    assert result.returncode == 1
    assert "run as the database's owner (nobody)" in result.stderr
    assert not (bot / "data" / "polybot.db-wal").exists()  # it touched nothing


STORE_WRITER = textwrap.dedent(
    """
    import os, sys, trio
    from pathlib import Path
    from decimal import Decimal
    from polybot.model import Intent, Rejection
    from polybot.store import Store

    async def main(data_dir, stop):
        store = Store.open(Path(data_dir), in_thread=False, synchronous="NORMAL")
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            n = 0
            while not os.path.exists(stop) and n < 200_000:
                for _ in range(5):
                    store.record_rejection(Rejection("nba-lal-bos", Intent.BUY_LONG, "edge_below_min"))
                n += 5
                store.record_equity(equity=Decimal("1000.00"), cash=Decimal("1000.00"),
                                    realized_pnl=Decimal(0), unrealized_pnl=Decimal(0), fees=Decimal(0))
                await store.flush()
            nursery.cancel_scope.cancel()
        store.close()
        print(n)

    trio.run(main, sys.argv[1], sys.argv[2])
    """
)


@pytest.mark.slow
def test_database_written_by_the_bots_store_restores_and_polybot_report_reads_it(tmp_path):
    bot = make_bot_dir(tmp_path)
    data = bot / "data"
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", STORE_WRITER, str(data), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                c = sqlite3.connect(f"file:{data / 'polybot.db'}?mode=ro", uri=True)
                with contextlib.closing(c):
                    if c.execute("SELECT COUNT(*) FROM rejections").fetchone()[0] >= 500:
                        break
            except sqlite3.OperationalError:
                pass
        backed_up = run(BACKUP, "--bot-dir", str(bot), "--backup-dir", str(tmp_path / "backups"))
        time.sleep(0.2)
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=30)
    assert writer.returncode == 0, err
    assert backed_up.returncode == 0, backed_up.stderr

    target = make_bot_dir(tmp_path / "new-host")
    restored = run(RESTORE, "--bot-dir", str(target), str(only_archive(tmp_path / "backups")))
    assert restored.returncode == 0, restored.stderr

    c = sqlite3.connect(target / "data" / "polybot.db")
    with contextlib.closing(c):
        rows = c.execute("SELECT COUNT(*) FROM rejections").fetchone()[0]
    assert 0 < rows < int(out)  # a snapshot taken while the store kept writing
    report = subprocess.run(
        [sys.executable, "-m", "polybot", "report", "--json"],
        env={**os.environ, "DATA_DIR": str(target / "data")},
        cwd=tmp_path,  # no .env here: report needs DATA_DIR only
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    parsed = json.loads(report.stdout)
    assert parsed["rejections"] == {"edge_below_min": rows}
    assert parsed["summary"]["last_equity_snapshot"] is not None
