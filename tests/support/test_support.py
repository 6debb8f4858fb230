"""The test support itself: the task trap sees every way in, the fake patch point picks the newest matching rule."""

from __future__ import annotations

import pytest

from tests.support import factories
from tests.support.fakes import fake_connectors
from tests.support.tasks import trap_tasks


def test_the_trap_records_enqueue_apply_async_delay_and_send_task_without_running_them(db):
    from integration_hub.celery import app
    from integration_hub.core import nudge
    from integration_hub.inventory.tasks import push_pending

    with trap_tasks() as trap:
        nudge.enqueue("orders.process", kwargs={"batch_size": 5}, countdown=2, retry=False)
        push_pending.apply_async(kwargs={"max_priority": 0}, countdown=None, retry=False)
        push_pending.delay(batch_size=3)
        app.send_task("inventory.poll_stock", args=[7], queue="default")
    assert trap.names() == [
        "orders.process",
        "inventory.push_pending",
        "inventory.push_pending",
        "inventory.poll_stock",
    ]
    assert trap.calls("orders.process") == [{"kwargs": {"batch_size": 5}, "countdown": 2, "retry": False}]
    assert trap.calls(push_pending) == [
        {"kwargs": {"max_priority": 0}, "countdown": None, "retry": False},
        {"args": (), "kwargs": {"batch_size": 3}},
    ]
    assert trap.assert_enqueued("inventory.poll_stock").args == (7,)
    assert trap.assert_enqueued(push_pending, batch_size=3).via == "apply_async"
    assert not any(s.ran for s in trap.sent)
    with pytest.raises(AssertionError):
        trap.assert_enqueued("orders.sweep")


def test_the_trap_runs_in_place_fails_on_demand_and_runs_what_was_trapped(db):
    from integration_hub.core.tasks import heartbeat

    with trap_tasks(run=["core.heartbeat"], fail={"orders.sweep": ConnectionRefusedError("broker down")}) as trap:
        heartbeat.apply_async(kwargs={"name": "t1"})
        assert trap.of(heartbeat)[0].ran
        from integration_hub.core import nudge

        with pytest.raises(ConnectionRefusedError):
            nudge.enqueue("orders.sweep")
    assert trap.names() == ["core.heartbeat"]
    with trap_tasks() as trap:
        heartbeat.apply_async(kwargs={"name": "t2"})
        assert trap.run() == trap.results(heartbeat) and len(trap.results(heartbeat)) == 1
        assert trap.run() == []  # nothing left to run


def test_fakes_answer_by_rule_newest_first_and_leave_the_rest_real(db):
    ct = factories.connection("commercetools", "ct")
    wh = factories.connection("wair")
    other = factories.connection("wair", "wair-2")
    shop, warehouse, special = object(), object(), object()
    with fake_connectors() as fakes:
        fakes.install(shop, system_type="commercetools")
        fakes.install(warehouse, system_type="wair")
        fakes.install(special, connection=other)
        import connectors.registry as registry

        assert registry.get_connector(ct) is shop and registry.get_connector(wh) is warehouse
        assert registry.get_connector(other) is special
        fakes.clear()
        assert type(registry.get_connector(wh)).__name__ == "WairConnector"
    assert registry.get_connector is not fakes


def test_a_partial_fake_leaves_named_attributes_to_the_real_connector(db):
    wh = factories.connection("wair", webhook_secret="s")

    class Fake:
        def send_order(self, wo):
            return "sent"

    with fake_connectors() as fakes:
        fake = fakes.install(Fake(), real=("verify_webhook", "connection"))
        import connectors.registry as registry

        got = registry.get_connector(wh)
        assert got.send_order(None) == "sent" and got.connection.pk == wh.pk
        assert not got.verify_webhook(b"{}", {})  # unsigned: the real connector refuses it
        got.note = 1
        assert fake.note == 1


def test_connection_factory_gives_valid_options_per_system_type(db):
    from connectors.options import check

    for system_type in factories.VALID_OPTIONS:
        check(factories.connection(system_type))


def test_a_worker_test_starts_with_an_empty_broker():
    """What a test without a worker leaves on the broker (a stock kick: ``inventory.push_pending`` with the default
    batch) is purged before a worker test's fixtures run, so the worker never runs it against that test's rows."""
    from integration_hub.celery import app
    from tests.conftest import purge_test_broker

    purge_test_broker()
    app.send_task("inventory.push_pending", kwargs={}, queue="default")  # what an untrapped on-commit kick sends
    app.send_task("orders.process", queue="priority")
    assert purge_test_broker() == 2
    assert purge_test_broker() == 0
