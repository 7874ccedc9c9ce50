"""scripts/backup.sh and restore.sh for several accounts on one host (INSTANCE, issue 17): each
account's archives carry its name, retention deletes only its own, and an account's database is
never restored into another's folder by mistake."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

from tests.integration.test_backup import BACKUP, RESTORE, make_bot_dir, make_db, rows_of, run


def account(root: Path, name: str, rows: int) -> Path:
    bot = make_bot_dir(root / name)
    with (bot / ".env").open("a") as env:
        env.write(f"INSTANCE={name}\n")
    make_db(bot / "data" / "polybot.db", rows=rows)
    return bot


def test_an_accounts_backup_is_named_for_it_and_its_retention_spares_every_other(tmp_path):
    alice = account(tmp_path, "alice", rows=3)
    backups = tmp_path / "backups"
    backups.mkdir()
    now = time.time()
    old = {name: backups / f"polybot-backup-{name}20000101T000000Z.tar.gz"
           for name in ("alice-", "", "bob-", "alice-b-")}  # alice's, the single bot's, ...
    for path in old.values():
        path.write_bytes(b"x")
        os.utime(path, (now - 8 * 86400, now - 8 * 86400))

    result = run(BACKUP, "--bot-dir", str(alice), "--backup-dir", str(backups))
    assert result.returncode == 0, result.stderr
    (archive,) = [p for p in backups.glob("polybot-backup-alice-2*.tar.gz")
                  if p != old["alice-"]]
    with tarfile.open(archive) as tar:
        manifest = tar.extractfile(f"{archive.name.removesuffix('.tar.gz')}/MANIFEST")
        assert manifest is not None
        assert "instance=alice" in manifest.read().decode().splitlines()
    assert not old["alice-"].exists()  # alice's own, 8 days old
    assert all(old[other].exists() for other in ("", "bob-", "alice-b-"))

    # the single bot's run (no INSTANCE) spares the accounts' archives in turn
    single = make_bot_dir(tmp_path / "single")
    make_db(single / "data" / "polybot.db", rows=1)
    assert run(BACKUP, "--bot-dir", str(single), "--backup-dir", str(backups)).returncode == 0
    assert not old[""].exists()
    assert old["bob-"].exists() and old["alice-b-"].exists() and archive.exists()


def test_restore_refuses_another_accounts_archive_unless_told_and_leaves_the_database(tmp_path):
    alice, bob = account(tmp_path, "alice", rows=5), account(tmp_path, "bob", rows=2)
    backups = tmp_path / "backups"
    assert run(BACKUP, "--bot-dir", str(alice), "--backup-dir", str(backups)).returncode == 0
    (archive,) = backups.glob("polybot-backup-alice-*.tar.gz")
    before = rows_of(bob / "data" / "polybot.db")

    refused = run(RESTORE, "--bot-dir", str(bob), str(archive))
    assert refused.returncode == 1
    assert "is a backup of instance alice, this is instance bob" in refused.stderr
    assert "--any-instance" in refused.stderr
    assert rows_of(bob / "data" / "polybot.db") == before
    assert not list((bob / "data").glob("pre-restore-*"))

    into_alice = run(RESTORE, "--bot-dir", str(alice), str(archive))
    assert into_alice.returncode == 0, into_alice.stderr
    told = run(RESTORE, "--bot-dir", str(bob), "--any-instance", str(archive))
    assert told.returncode == 0, told.stderr
    assert rows_of(bob / "data" / "polybot.db") == rows_of(alice / "data" / "polybot.db")
