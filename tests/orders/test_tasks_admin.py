"""Thin edges: Celery tasks, beat registration, admin actions."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from connectors import errors
from exceptions_app.models import ExceptionRecord
from integration_hub.orders import capture, processing, tasks
from integration_hub.orders.models import Order, OrderState as S

from .conftest import make_so
from tests.support.fakes import install_fakes


def test_beat_jobs_point_at_registered_tasks():
    from celery import current_app

    from integration_hub.orders.beat import SCHEDULE

    names = {j.task for j in SCHEDULE}
    assert {
        "orders.sweep",
        "orders.poll_orders",
        "orders.poll_dispatches",
        "orders.resend_unacknowledged",
        "orders.find_orphans",
        "orders.find_missing_dispatches",
        "orders.send_fulfilments",
    } <= names
    assert names <= set(current_app.tasks)


def test_process_task_runs_the_flow_and_sweep_recovers_dead_claims(world, fakes):
    capture.capture_many(world.ct, [make_so() for _ in range(5)])
    out = tasks.process.apply().get()
    assert out["validated"] == 5 and out["send_acknowledged"] == 5
    # an order claimed by a worker that died: the lease expires, the sweep clears the claim, it is due again
    o, _ = capture.capture(world.channel, make_so("ct-dead"))
    Order.objects.filter(pk=o.pk).update(claim_token="deadbeef", next_attempt_at=timezone.now() - timedelta(seconds=1))
    res = tasks.sweep.apply(kwargs={"lease_seconds": 5}).get()
    assert res == {"released": 1, "due": 1}
    tasks.process.apply()
    o.refresh_from_db()
    assert o.state == S.ACKNOWLEDGED and o.claim_token == ""


def test_poll_task_failure_is_recorded_and_cleared(world, fakes, monkeypatch):
    _, sf = fakes

    def boom(cursor, limit=100):
        raise errors.TimeoutError_("storefront slow")

    monkeypatch.setattr(sf, "orders_since", boom)
    res = tasks.poll_orders.apply().get()
    assert "error" in res["ct"]
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:ct:orders_since")
    assert rec.status == "open"
    monkeypatch.undo()
    install_fakes(monkeypatch).install(sf)
    sf.orders = [make_so("ct-poll")]
    res = tasks.poll_orders.apply().get()
    assert res["ct"]["created"] == 1
    rec.refresh_from_db()
    assert rec.status == "resolved"
    from integration_hub.core.models import SyncCursor

    assert SyncCursor.objects.get(connection=world.ct, stream="orders").value == "c1"


def test_admin_retry_and_cancel_actions_call_the_services(world, fakes, admin_client):
    held, _ = capture.capture(world.channel, make_so("ct-adm1", lines=[("MISSING", 1)]))
    other, _ = capture.capture(world.channel, make_so("ct-adm2"))
    processing.process_due()
    url = "/admin/orders/order/"
    r = admin_client.post(url, {"action": "cancel_orders", "_selected_action": [held.pk]}, follow=True)
    assert r.status_code == 200
    held.refresh_from_db()
    assert held.state == S.CANCELLED
    assert held.transitions.last().cause.startswith("cancelled: cancelled in admin")
    # an acknowledged order: the warehouse is asked to cancel it, and it is cancelled on its confirmation
    wh, _ = fakes
    r = admin_client.post(url, {"action": "cancel_orders", "_selected_action": [other.pk]}, follow=True)
    other.refresh_from_db()
    assert other.state == S.CANCELLED and wh.cancelled == [other.idempotency_key]
    r = admin_client.get(f"{url}{other.pk}/change/")
    assert r.status_code == 200
