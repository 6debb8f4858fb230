"""Order claims are short and renewed while the warehouse call is in flight (issue 20, item 3): a slow
send keeps its claim; a worker that dies holding orders frees them within one short lease."""

from __future__ import annotations

import time

import pytest
from django.db.models import Q
from django.utils import timezone

from integration_hub.orders import capture, claims, processing, send
from integration_hub.orders.models import Order
from integration_hub.orders.models import OrderState as S

from .conftest import make_so


@pytest.mark.django_db(transaction=True)
def test_slow_send_keeps_its_claim_and_a_dead_claim_ends_soon(world, fakes, monkeypatch):
    wh, _sf = fakes
    assert claims.LEASE_SECONDS <= 60  # was 90: a dead worker's orders waited that long
    monkeypatch.setattr(claims, "LEASE_SECONDS", 1)
    o, _ = capture.capture(world.channel, make_so("lease-1"))
    processing.validate_due()
    seen = {}
    real = wh.send_order

    def slow(wo):
        time.sleep(2.5)  # far past the 1 s lease
        row = Order.objects.get(pk=o.pk)
        seen["due_again"] = row.next_attempt_at <= timezone.now()
        seen["claimable_elsewhere"] = claims.claim(claims.SEND_DUE, 10, 1)
        return real(wo)

    monkeypatch.setattr(wh, "send_order", slow)
    send.send_due(lease_seconds=1)
    assert seen == {"due_again": False, "claimable_elsewhere": []}, seen
    assert len(wh.sent) == 1 and Order.objects.get(pk=o.pk).state in (S.SENT, S.ACKNOWLEDGED)

    o2, _ = capture.capture(world.channel, make_so("lease-2"))
    processing.validate_due()
    assert claims.claim(claims.SEND_DUE & Q(pk=o2.pk), 1, 1) == [o2.pk]  # a worker claims it, then dies
    assert claims.claim(claims.SEND_DUE & Q(pk=o2.pk), 1, 1) == []
    time.sleep(1.2)
    assert claims.claim(claims.SEND_DUE & Q(pk=o2.pk), 1, 1) == [o2.pk]  # free again within the short lease
