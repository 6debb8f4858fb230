"""``./hub up`` a second time refuses at once when a port is taken (nothing started, nothing re-seeded)."""

from __future__ import annotations

import socket

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from integration_hub.core.management.commands import runhub


@pytest.fixture
def listening():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def test_port_in_use(listening):
    assert runhub.port_in_use("127.0.0.1", listening)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    assert not runhub.port_in_use("127.0.0.1", port)


def test_taken_web_port_refuses_before_starting_anything(listening, settings, monkeypatch):
    settings.DEBUG = True
    started = []
    monkeypatch.setattr(runhub.Command, "spawn", lambda self, *a, **k: started.append(a))
    monkeypatch.setattr(runhub, "call_command", lambda *a, **k: started.append(a))
    with pytest.raises(CommandError, match=f"port {listening} on 127.0.0.1 \\(the web console\\) is already in use"):
        call_command("runhub", addr=f"127.0.0.1:{listening}", no_seed=True)
    assert started == []


def test_taken_sandbox_port_refuses_too(listening, settings, monkeypatch):
    settings.DEBUG = True
    settings.HUB = {**settings.HUB, "SANDBOX_URL": f"http://127.0.0.1:{listening}"}
    started = []
    monkeypatch.setattr(runhub.Command, "spawn", lambda self, *a, **k: started.append(a))
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    web = free.getsockname()[1]
    free.close()
    with pytest.raises(CommandError, match="the sandbox"):
        call_command("runhub", addr=f"127.0.0.1:{web}", no_seed=True)
    assert started == []
