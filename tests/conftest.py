"""Shared fixtures: a real sandbox over HTTP, a real Celery worker process, users per role.

The test-only environment (keys, plain http) is set by tests/hub_test_env.py, a plugin pytest.ini loads
before the settings are imported (this file is read too late for that)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("HUB_VAR_DIR", ROOT / "var"))
VAR.mkdir(parents=True, exist_ok=True)

# Tests never share the broker of a hub running on the same machine.
if not os.environ.get("CELERY_BROKER_URL"):
    os.environ["CELERY_BROKER_URL"] = f"sqla+sqlite:///{VAR / 'test-broker.sqlite3'}"


# --- sandbox ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sandbox_server():
    from connectors.sandbox import make_server

    server = make_server(port=0)
    server.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sandbox(sandbox_server):
    """The sandbox, reset to empty with faults off before each test."""
    for emulator in sandbox_server.emulators.values():
        emulator.reset_all()
    return sandbox_server


# --- enqueued tasks, fake connectors ---------------------------------------------------------------------
@pytest.fixture
def task_trap():
    """Every task sent during the test (``core.nudge.enqueue``, ``apply_async`` / ``delay``, ``send_task``) recorded,
    not run: a :class:`tests.support.tasks.TaskTrap`."""
    from tests.support.tasks import trap_tasks

    with trap_tasks() as trap:
        yield trap


@pytest.fixture
def fake_connectors(monkeypatch):
    """The one patch point for fake connectors (``connectors.registry.get_connector``) for the test:
    ``fake_connectors.install(fake, system_type="wair")`` — a :class:`tests.support.fakes.FakeConnectors`."""
    from tests.support.fakes import install_fakes

    return install_fakes(monkeypatch)


# --- users ---------------------------------------------------------------------------------------
@pytest.fixture
def make_user(db):
    from django.contrib.auth.models import Group, User

    def make(role: str | None, username: str | None = None, password: str = "pass-Word-123"):
        user = User.objects.create_user(username or f"user-{role}", password=password, is_staff=(role == "admin"))
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def role_client(make_user, client):
    """``role_client("ops")`` → a Django test client logged in as a user with that role."""

    def login(role: str | None):
        client.force_login(make_user(role))
        return client

    return login


# --- real Celery worker ----------------------------------------------------------------------------
def purge_test_broker() -> int:
    """Drop every message waiting on the worker's queues (``core.queues.ALL``) of the test broker; returns how many.

    Tests that run no worker still publish to the broker (e.g. an on-commit stock kick: ``inventory.push_pending``
    with the default batch of 200), and the broker (``var/test-broker.sqlite3`` embedded, Redis db 15 on CI)
    outlives the test, the run and the database those messages were about. Unpurged, the first real worker of a
    run would execute them against the next test's rows."""
    from integration_hub.celery import app
    from integration_hub.core.queues import ALL

    purged = 0
    with app.connection_for_write() as conn:
        for queue in ALL:
            try:
                with conn.channel() as channel:  # one per queue: AMQP closes a channel that names an unknown queue
                    purged += channel.queue_purge(queue) or 0
            except conn.channel_errors:  # a queue never declared has nothing in it
                pass
    return purged


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A test that starts a real worker starts with an empty broker: what earlier tests left queued is purged
    before any of its fixtures run (messages its own fixtures send, e.g. ``hub``'s, are kept)."""
    if "celery_worker_process" in getattr(item, "fixturenames", ()):
        purge_test_broker()


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """Start ``celery worker`` as a separate process on the test database and broker (purged of earlier tests'
    messages before the test's fixtures run: :func:`pytest_runtest_setup`).

    Yields a handle with ``kill()`` (SIGKILL, to test acks_late recovery) and ``restart()``."""
    from django.db import connection

    db_name = str(connection.settings_dict["NAME"])
    env = dict(
        os.environ,
        HUB_DB_NAME_OVERRIDE=db_name,
        DJANGO_SETTINGS_MODULE="integration_hub.settings",
        CELERY_TASK_ALWAYS_EAGER="0",
        PYTHONUNBUFFERED="1",
    )
    log_path = VAR / f"test-worker-{os.getpid()}.log"

    class Handle:
        proc: subprocess.Popen | None = None

        def start(self):
            self.log = open(log_path, "ab")
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "integration_hub",
                    "worker",
                    "-Q",
                    "priority,stock,default",
                    "-c",
                    "2",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    "INFO",
                ],
                cwd=ROOT,
                env=env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.time() + 60
            while time.time() < deadline:
                if b"ready." in log_path.read_bytes()[-20000:]:
                    return self
                if self.proc.poll() is not None:
                    raise RuntimeError(f"celery worker exited: {log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            raise RuntimeError(f"celery worker did not start: {log_path.read_text()[-3000:]}")

        def kill(self):
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)

        def stop(self):
            if self.proc and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()

        def restart(self):
            self.kill()
            log_path.write_bytes(b"")
            return self.start()

    log_path.parent.mkdir(exist_ok=True)
    log_path.write_bytes(b"")
    handle = Handle().start()
    yield handle
    handle.stop()


@pytest.fixture(scope="session", autouse=True)
def _close_stray_db_sessions(django_db_setup, django_db_blocker):
    """Live-server and sandbox threads keep persistent PostgreSQL connections (CONN_MAX_AGE); end them
    before pytest-django drops the test database, so teardown never finds it 'accessed by other users'."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock():
        try:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        except Exception:  # best effort: never fail the run over housekeeping
            pass


@pytest.fixture
def sftp_server(tmp_path):
    """A real SFTP server on 127.0.0.1 (paramiko's server side in a thread) with the Advanced CSV
    connector's subdirectories under a temporary root; stopped after the test."""
    from tests.sftp_server import SFTPServer

    root = tmp_path / "sftp"
    root.mkdir()
    for folder in ("warehouses", "variants", "variant_warehouses", "sales_orders"):
        (root / folder).mkdir()
    server = SFTPServer(root)
    yield server
    server.stop()
