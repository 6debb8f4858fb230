"""core.nudge.enqueue: by-name sending routes like apply_async and runs in-process in eager mode."""

from __future__ import annotations

from unittest import mock

from integration_hub.celery import app
from integration_hub.core import nudge


def test_sends_by_name_and_the_router_picks_the_queue():
    with mock.patch.object(app, "send_task") as send:
        nudge.enqueue("orders.process", countdown=2, retry=False)
    send.assert_called_once_with("orders.process", args=(), kwargs={}, countdown=2, retry=False)


def test_eager_mode_runs_the_registered_task_in_process():
    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        app.loader.import_default_modules()
        with (
            mock.patch.object(app.tasks["orders.process"], "apply_async") as run,
            mock.patch.object(app, "send_task") as send,
        ):
            nudge.enqueue("orders.process", kwargs={"x": 1})
        run.assert_called_once_with(args=(), kwargs={"x": 1})
        send.assert_not_called()
    finally:
        app.conf.task_always_eager = old


def test_every_task_name_the_hub_nudges_is_registered():
    app.loader.import_default_modules()
    for name in (
        "orders.process",
        "orders.fetch_orders",
        "inventory.push_pending",
        "inventory.full_load",
        "reconciliation.run_report",
        "monitoring.deliver_one",
        "catalog.drain_item_outbox",
        "catalog.pull_master_items",
    ):
        assert name in app.tasks, name
