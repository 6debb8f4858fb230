"""Admins: schedules in words with their next run, bulk enable/disable (audited, beat told to reload), and
"Run now" recorded with its task id and a result page the worker's signals fill in."""

from datetime import datetime, timedelta, timezone as dt_timezone
from unittest import mock

import pytest
from django.test import Client
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

from integration_hub.console import schedules
from integration_hub.console.models import ScheduleRun
from integration_hub.core.models import AuditEntry
from tests.support import factories as f

NOW = datetime(2026, 12, 3, 6, 15, tzinfo=dt_timezone.utc)


def _cron(m, h, dom="*", mon="*", dow="*", tz="UTC"):
    return CrontabSchedule.objects.create(
        minute=m, hour=h, day_of_month=dom, month_of_year=mon, day_of_week=dow, timezone=tz
    )


@pytest.mark.parametrize(
    "expr,words",
    [
        (("0", "2"), "every day at 02:00 UTC"),
        (("30", "5", "*", "*", "1-5"), "every Monday to Friday at 05:30 UTC"),
        (("0", "7", "*", "*", "1,3"), "every Monday and Wednesday at 07:00 UTC"),
        (("15", "3", "1"), "on day 1 of every month at 03:15 UTC"),
        (("*/15", "*"), "every 15 minutes"),
        (("5", "*"), "every hour at minute 5"),
        (("0", "6,18"), "every day at 06:00, 18:00 UTC"),
    ],
)
def test_cron_in_words(expr, words):
    assert schedules.describe_cron(*(list(expr) + ["*"] * (5 - len(expr)))) == words


def test_unusual_cron_falls_back_to_cron_descriptor():
    assert "(UTC)" in schedules.describe_cron("0", "2-4", "*/2", "*", "*")


def test_interval_words():
    assert schedules.describe_interval(1, "minutes") == "every minute"
    assert schedules.describe_interval(30, "seconds") == "every 30 seconds"


def test_next_run(db):
    daily = PeriodicTask.objects.create(name="d", task="core.heartbeat", crontab=_cron("0", "2"))
    assert schedules.next_run(daily, NOW) == datetime(2026, 12, 4, 2, 0, tzinfo=dt_timezone.utc)
    london = PeriodicTask.objects.create(name="l", task="core.heartbeat", crontab=_cron("30", "7", tz="Europe/Berlin"))
    assert schedules.next_run(london, NOW) == datetime(2026, 12, 3, 6, 30, tzinfo=dt_timezone.utc)  # 07:30 CET
    every = PeriodicTask.objects.create(
        name="i",
        task="core.heartbeat",
        last_run_at=NOW - timedelta(seconds=10),
        interval=IntervalSchedule.objects.create(every=60, period="seconds"),
    )
    assert schedules.next_run(every, NOW) == NOW + timedelta(seconds=50)
    every.enabled = False
    assert schedules.next_run(every, NOW) is None


def test_list_shows_words_and_next_run_in_fixed_queries(db, role_client):
    client = role_client("admin")
    PeriodicTask.objects.create(name="daily", task="core.heartbeat", crontab=_cron("0", "2"))
    small = f.count_queries(client, "/schedules/")
    for i in range(10):
        PeriodicTask.objects.create(name=f"j{i}", task="core.heartbeat", crontab=_cron(str(i), "3"))
        PeriodicTask.objects.create(
            name=f"k{i}",
            task="core.heartbeat",
            interval=IntervalSchedule.objects.get_or_create(every=i + 1, period="minutes")[0],
        )
    assert f.count_queries(client, "/schedules/") == small
    html = client.get("/schedules/").content.decode()
    assert "every day at 02:00 UTC" in html and "every 3 minutes" in html and "UTC" in html


def test_bulk_disable_and_enable_are_audited(db, role_client):
    a = PeriodicTask.objects.create(name="a", task="core.heartbeat", crontab=_cron("0", "2"))
    b = PeriodicTask.objects.create(name="b", task="core.heartbeat", crontab=_cron("0", "3"), enabled=False)
    client = role_client("admin")
    before = PeriodicTasks.last_change()
    r = client.post("/schedules/bulk/", {"ids": [a.pk, b.pk], "action": "disable"}, follow=True)
    assert "1 schedule(s) disabled (1 already disabled)" in r.content.decode()
    assert not PeriodicTask.objects.filter(enabled=True).exists()
    entry = AuditEntry.objects.get(object_id=str(a.pk), action="update")
    assert entry.before["enabled"] is True and entry.after["enabled"] is False and entry.actor.username == "user-admin"
    assert not AuditEntry.objects.filter(object_id=str(b.pk), action="update").exists()
    assert PeriodicTasks.last_change() != before  # beat reloads
    client.post("/schedules/bulk/", {"ids": [a.pk, b.pk], "action": "enable"})
    assert PeriodicTask.objects.filter(enabled=True).count() == 2


def test_bulk_needs_admin_and_csrf(db, role_client, make_user):
    a = PeriodicTask.objects.create(name="a", task="core.heartbeat", crontab=_cron("0", "2"))
    assert role_client("ops").post("/schedules/bulk/", {"ids": [a.pk], "action": "disable"}).status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user("admin", "adm2"))
    assert strict.post("/schedules/bulk/", {"ids": [a.pk], "action": "disable"}).status_code == 403
    assert PeriodicTask.objects.get().enabled


def test_run_now_sends_the_jobs_task_and_records_the_run(role_client):
    task = PeriodicTask.objects.create(
        name="stock: sweep",
        task="inventory.sweep_pending",
        kwargs='{"limit": 5}',
        queue="priority",
        interval=IntervalSchedule.objects.create(every=30, period="seconds"),
    )
    client = role_client("admin")
    with mock.patch("integration_hub.celery.app.send_task") as send:
        resp = client.post(f"/schedules/{task.pk}/run/")
    run = ScheduleRun.objects.get()
    assert resp.status_code == 302 and resp["Location"] == f"/schedules/runs/{run.pk}/"
    send.assert_called_once_with(
        "inventory.sweep_pending", args=[], kwargs={"limit": 5}, queue="priority", task_id=run.celery_task_id
    )
    assert (
        run.celery_task_id.startswith("hubrun-") and run.state == "queued" and run.launched_by.username == "user-admin"
    )
    entry = AuditEntry.objects.get(object_id=str(task.pk), after__has_key="run_now")
    assert entry.after == {"run_now": run.celery_task_id, "run": run.pk} and entry.actor.username == "user-admin"
    page = client.get(f"/schedules/runs/{run.pk}/").content.decode()
    assert run.celery_task_id in page and "queued" in page
    # what the worker's signals record
    schedules.on_task_prerun(task_id=run.celery_task_id)
    run.refresh_from_db()
    assert run.state == "started" and run.started_at
    schedules.on_task_postrun(task_id=run.celery_task_id, retval={"pushed": 3}, state="SUCCESS")
    run.refresh_from_db()
    assert run.state == "succeeded" and run.outcome == '{"pushed": 3}'
    page = client.get(f"/schedules/runs/{run.pk}/").content.decode()
    assert "succeeded" in page and "pushed" in page
    assert f"/schedules/runs/{run.pk}/" in client.get(f"/schedules/{task.pk}/").content.decode()


def test_other_tasks_cost_no_query(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        schedules.on_task_prerun(task_id="6f0c-ordinary")
        schedules.on_task_postrun(task_id="6f0c-ordinary", retval=1, state="SUCCESS")


def test_run_now_eager_runs_and_records_failure(role_client, settings):
    from integration_hub.celery import app

    task = PeriodicTask.objects.create(
        name="hb", task="core.heartbeat", interval=IntervalSchedule.objects.create(every=60, period="seconds")
    )
    previous, app.conf.task_always_eager = app.conf.task_always_eager, True
    try:
        run = schedules.run_now(task)
    finally:
        app.conf.task_always_eager = previous
    assert run.state == "succeeded", run.error
    with mock.patch("integration_hub.celery.app.send_task", side_effect=ConnectionError("broker down")):
        run = schedules.run_now(task)
    assert run.state == "failed" and "broker down" in run.error


def test_run_now_refused_for_ops(role_client):
    task = PeriodicTask.objects.create(
        name="x", task="core.heartbeat", interval=IntervalSchedule.objects.create(every=60, period="seconds")
    )
    with mock.patch("integration_hub.celery.app.send_task") as send:
        assert role_client("ops").post(f"/schedules/{task.pk}/run/").status_code == 403
    send.assert_not_called()
    assert not ScheduleRun.objects.exists()


def test_api_schedule_in_words_next_run_and_run_now(db, make_user):
    from rest_framework.test import APIClient

    task = PeriodicTask.objects.create(name="daily", task="core.heartbeat", crontab=_cron("0", "2"))
    api = APIClient()
    api.force_authenticate(make_user("admin"))
    data = api.get(f"/api/schedules/{task.pk}/").json()
    assert data["runs"] == "every day at 02:00 UTC" and data["next_run_at"].endswith(("02:00:00Z", "02:00:00+00:00"))
    with mock.patch("integration_hub.celery.app.send_task"):
        r = api.post(f"/api/schedules/{task.pk}/run/")
    assert r.status_code == 202 and r.json()["state"] == "queued" and r.json()["task_id"].startswith("hubrun-")
    assert api.get(f"/api/schedules/runs/{r.json()['id']}/").json()["task_id"] == r.json()["task_id"]
