"""A real Celery worker runs the beat job: one firing per breach (however many ticks run, concurrently), one
notification, one recovery — delivered over real HTTP to a local receiver."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from .conftest import make_channel, make_rule

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def wait_for(predicate, timeout=180, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_fire_once_recover_once_on_a_real_worker(celery_worker_process, receiver):
    from integration_hub.inventory.models import PendingPush
    from integration_hub.monitoring.models import Delivery, Firing, Sample
    from integration_hub.monitoring.tasks import tick
    from tests.support import factories as f

    w = f.console_world()
    hook = make_channel("hook", "webhook", url=receiver.url + "/hook", secret="s3cret")
    broken = make_channel("broken", "slack", url=receiver.url + "/broken")
    receiver.status["/broken"] = 500
    make_rule(name="queue high", threshold=2, cooldown_minutes=0, channels=[broken, hook])

    f.pushes(w, w.items)  # 3 pending > 2
    # leased to a pretend pusher: a stale push task left in the shared test broker by another test cannot
    # drain them under our feet (the figure counts them all the same)
    PendingPush.objects.update(claimed_until=timezone.now() + timedelta(hours=1), claim_token="held-by-test")
    for _ in range(4):  # concurrent ticks (worker runs 2 at a time): still one firing
        tick.delay()
    wait_for(lambda: len(receiver.to("/hook")) >= 1, what="the fired notification")
    wait_for(lambda: Sample.objects.filter(figure="push_queue_depth", key="").count() >= 4, what="4 ticks")
    wait_for(
        lambda: Delivery.objects.filter(channel=broken, attempts__gte=1).exists(), what="the failing channel's try"
    )
    time.sleep(1.5)
    assert Firing.objects.count() == 1
    assert [b["event"] for b in receiver.json("/hook")] == ["fired"]
    assert Delivery.objects.get(channel=broken).status == "pending"  # failing channel: retrying, did not block

    PendingPush.objects.all().delete()
    for _ in range(3):
        tick.delay()
    wait_for(lambda: len(receiver.to("/hook")) >= 2, what="the recovery notice")
    wait_for(lambda: Sample.objects.filter(figure="push_queue_depth", key="").count() >= 7, what="3 more ticks")
    time.sleep(1.5)
    assert [b["event"] for b in receiver.json("/hook")] == ["fired", "recovered"]
    firing = Firing.objects.get()
    assert firing.recovered_at is not None
