"""A real Celery worker process consumes tasks from the configured broker (and from RabbitMQ when one
is running), and the beat registry installs editable schedules."""

from __future__ import annotations

import os
import time

import pytest

from integration_hub.core.models import Heartbeat


def wait_for(predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.worker
def test_real_worker_consumes_from_broker(celery_worker_process):
    from integration_hub.core.tasks import heartbeat

    heartbeat.apply_async(kwargs={"name": "test-worker"})
    assert wait_for(lambda: Heartbeat.objects.filter(name="test-worker").exists())
    beat = Heartbeat.objects.get(name="test-worker")
    assert beat.detail["pid"] != os.getpid()  # ran in the worker process, not here


@pytest.mark.worker
@pytest.mark.skipif(not os.environ.get("HUB_TEST_AMQP_URL"), reason="no RabbitMQ on this machine (CI has one)")
def test_real_worker_over_rabbitmq(transactional_db, monkeypatch, request):
    from kombu import Connection

    monkeypatch.setenv("CELERY_BROKER_URL", os.environ["HUB_TEST_AMQP_URL"])
    worker = request.getfixturevalue("celery_worker_process")  # started with the AMQP broker
    from integration_hub.core.tasks import heartbeat

    with Connection(os.environ["HUB_TEST_AMQP_URL"]) as conn:
        heartbeat.apply_async(kwargs={"name": "amqp-worker"}, connection=conn)
    assert wait_for(lambda: Heartbeat.objects.filter(name="amqp-worker").exists())
    worker.stop()


def test_setup_beat_installs_and_respects_admin_edits(db):
    from django.core.management import call_command
    from django_celery_beat.models import PeriodicTask

    call_command("setup_beat")
    task = PeriodicTask.objects.get(name="core: worker heartbeat")
    assert task.interval.every == 60 and task.enabled
    task.enabled = False
    task.save()
    call_command("setup_beat")
    assert not PeriodicTask.objects.get(name="core: worker heartbeat").enabled  # admin's choice kept
    call_command("setup_beat", reset=True)
    assert PeriodicTask.objects.get(name="core: worker heartbeat").enabled
