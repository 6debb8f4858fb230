"""Polling and sweeping jobs hold short, renewed locks: a SIGKILLed worker in the middle of a poll must not make
every later poll skip for minutes (a flash sale's catch-up poll after a kill found the dead holder's 300 s lock and
captured nothing more until it expired)."""

import contextlib

import pytest

from integration_hub.core import locks
from tests.support import factories


@pytest.fixture
def lock_calls(monkeypatch):
    calls = []

    @contextlib.contextmanager
    def spy(name, timeout=300, renew=False):
        calls.append((name, timeout, renew))
        yield False  # "held elsewhere": the job skips, which is all this test needs

    for module in ("integration_hub.orders.tasks", "integration_hub.inventory.tasks", "integration_hub.core.locks"):
        monkeypatch.setattr(f"{module}.exclusive", spy, raising=False)
    return calls


def _assert_short_and_renewed(calls, prefix):
    mine = [c for c in calls if c[0].startswith(prefix)]
    assert mine, f"no lock taken for {prefix}"
    for name, timeout, renew in mine:
        assert renew, f"{name} is not renewed while its holder runs"
        assert timeout <= locks.POLL_LOCK_SECONDS <= 60, f"{name} outlives a dead holder by {timeout} s"


@pytest.mark.django_db
def test_order_polls_take_short_renewed_locks(lock_calls):
    from integration_hub.orders import tasks

    from integration_hub.core.models import Channel

    ct = factories.connection(
        "commercetools", "ct", enabled=True, base_url="https://api.example.com", options={"project_key": "p"}
    )
    wh = factories.connection("wair", "wh", enabled=True, base_url="https://wair.example.com")
    Channel.objects.create(key="uk-web", name="UK", connection=ct, external_id="uk-web", warehouse=wh)
    assert tasks.poll_orders() == {"ct": {"skipped": "already running"}}
    tasks.poll_dispatches()
    _assert_short_and_renewed(lock_calls, "orders:orders_since:")
    _assert_short_and_renewed(lock_calls, "orders:dispatches_since:")


@pytest.mark.django_db
def test_stock_poll_and_repair_sweep_take_short_renewed_locks(lock_calls):
    from integration_hub.inventory import tasks

    conn = factories.connection("wair", "wh", enabled=True, base_url="https://wair.example.com")
    assert tasks.poll_stock(connection_id=conn.pk) == {"skipped": "already polling"}
    tasks.repair_sweep()
    _assert_short_and_renewed(lock_calls, "stock-poll-")
    _assert_short_and_renewed(lock_calls, "stock-repair-sweep")
