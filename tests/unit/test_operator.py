"""Operator commands act through files in DATA_DIR; the bot acknowledges in its store."""

import os
import subprocess
import sys
import threading

from polybot import operator
from polybot.store import Store


def run_cli(args, cwd, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PM_", "RISK_", "DATA_DIR"))}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "polybot", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_halt_and_resume_work_with_a_broken_env_file(tmp_path):
    (tmp_path / ".env").write_text("RISK_KELLY_FRACTION=banana\nDATA_DIR=state\n")
    r = run_cli(["halt"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "state" / "KILL").exists()
    r = run_cli(["resume"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "state" / "KILL").exists()
    assert (tmp_path / "state" / "RESUME").exists()


def test_request_unacknowledged_exits_4_and_is_withdrawn(tmp_path):
    code = operator.request_and_wait(tmp_path, "cancel-all", "cancel-all", timeout=0.3)
    assert code == operator.EXIT_NOT_ACKNOWLEDGED
    assert operator.read_requests(tmp_path) == []  # a later bot must not act on a stale request


def test_request_acknowledged_by_the_bot_store_exits_0(tmp_path, capsys):
    store = Store.open(tmp_path, in_thread=False)

    def bot():  # what the running bot does: consume the request, ack it in its store
        for _ in range(100):
            pending = operator.read_requests(tmp_path)
            if pending:
                req = pending[0]
                store.ack_request(req["id"], req["kind"], "done", "cancelled 2 orders")
                store.drain_sync()
                operator.remove_request(tmp_path, req["id"])
                return
            threading.Event().wait(0.02)

    t = threading.Thread(target=bot)
    t.start()
    code = operator.request_and_wait(tmp_path, "cancel-all", "cancel-all", timeout=5)
    t.join()
    store.close()
    assert code == operator.EXIT_OK
    assert "done cancelled 2 orders" in capsys.readouterr().out


def test_malformed_request_files_are_skipped_and_removed(tmp_path):
    folder = tmp_path / operator.REQUESTS_DIR
    folder.mkdir()
    (folder / "junk.json").write_text("{not json")
    rid = operator.write_request(tmp_path, "flatten")
    assert [r["id"] for r in operator.read_requests(tmp_path)] == [rid]
    assert not (folder / "junk.json").exists()
