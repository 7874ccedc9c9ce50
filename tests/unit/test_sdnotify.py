"""sd_notify over a real AF_UNIX datagram socket (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

from polybot.sdnotify import SystemdNotifier, watchdog_interval


@pytest.fixture
def listener(tmp_path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_ready_watchdog_stopping_and_status_reach_the_socket(listener):
    sock, path = listener
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready() and notifier.watchdog() and notifier.stopping()
    assert notifier.status("restarting in 4s\nafter crash")
    received = [sock.recv(4096) for _ in range(4)]
    assert received == [
        b"READY=1",
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"STATUS=restarting in 4s after crash",
    ]
    notifier.close()


def test_abstract_namespace_socket_named_with_at_sign():
    name = f"polybot-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = SystemdNotifier(f"@{name}")
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_without_notify_socket_every_call_is_a_no_op():
    notifier = SystemdNotifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False


def test_a_vanished_socket_is_logged_not_raised(tmp_path, caplog):
    notifier = SystemdNotifier(str(tmp_path / "gone.sock"))
    assert notifier.ready() is False
    assert "sd_notify READY failed" in caplog.text


def test_from_env_defaults_to_the_process_environment(monkeypatch, listener):
    sock, path = listener
    monkeypatch.setitem(os.environ, "NOTIFY_SOCKET", path)
    assert SystemdNotifier.from_env().ready()
    assert sock.recv(4096) == b"READY=1"


def test_watchdog_interval_is_half_of_watchdog_usec_capped_by_the_default():
    assert watchdog_interval({"WATCHDOG_USEC": "4000000"}) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 5.0
    assert watchdog_interval({}) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}, default=3.0) == 3.0
