"""Admins can send a beat job to the workers now; the run is audited."""
from unittest import mock

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from integration_hub.core.models import AuditEntry


def test_run_now_sends_the_jobs_task_with_its_arguments(role_client):
    task = PeriodicTask.objects.create(name="stock: sweep", task="inventory.sweep_pending", kwargs='{"limit": 5}', queue="priority",
                                       interval=IntervalSchedule.objects.create(every=30, period="seconds"))
    client = role_client("admin")
    with mock.patch("integration_hub.celery.app.send_task") as send:
        send.return_value.id = "abc"
        resp = client.post(f"/schedules/{task.pk}/run/")
    assert resp.status_code == 302
    send.assert_called_once_with("inventory.sweep_pending", args=[], kwargs={"limit": 5}, queue="priority")
    entry = AuditEntry.objects.get(object_id=str(task.pk), after__has_key="run_now")
    assert entry.after == {"run_now": "abc"} and entry.actor.username == "user-admin"
    page = client.get(f"/schedules/{task.pk}/")
    assert b"Run now" in page.content


def test_run_now_refused_for_ops(role_client):
    task = PeriodicTask.objects.create(name="x", task="core.heartbeat",
                                       interval=IntervalSchedule.objects.create(every=60, period="seconds"))
    with mock.patch("integration_hub.celery.app.send_task") as send:
        assert role_client("ops").post(f"/schedules/{task.pk}/run/").status_code == 403
    send.assert_not_called()
