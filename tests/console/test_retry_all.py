""" "Retry all matching" on the push queue and the order list: the whole filtered set beyond one page, the count
shown before confirming, set-based, a worker for large sets, ops/admin only."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from integration_hub.inventory.models import PendingPush
from integration_hub.orders import actions
from integration_hub.orders.models import Order, OrderState
from tests.support import factories as f
from tests.support.tasks import trap_tasks


@pytest.fixture
def w(db):
    return f.console_world()


def failing_pushes(w, n: int, prefix: str = "00") -> list[PendingPush]:
    its = f.items(n, prefix=prefix)
    f.pushes(w, its)
    PendingPush.objects.filter(item__in=its).update(
        attempts=3, not_before=timezone.now() + timedelta(hours=1), last_error="RetryableError: 503"
    )
    return list(PendingPush.objects.filter(item__in=its))


def test_retry_all_failing_pushes_beyond_one_page(w, role_client):
    failing_pushes(w, 120)
    f.pushes(w, w.items)  # waiting, not failing: left alone
    client = role_client("ops")
    html = client.get("/pushes/?failing=1").content.decode()
    assert "Page 1 of 3" in html and "Retry all 120 failing pushes matching" in html
    r = client.post("/pushes/retry-all/", {"query": "failing=1"})
    assert r.status_code == 200 and 'id="confirm-count">120<' in r.content.decode()
    assert not PendingPush.objects.filter(not_before__isnull=True, attempts__gt=0).exists()  # nothing yet
    with mock.patch("integration_hub.inventory.outbox.kick") as kick:
        r = client.post("/pushes/retry-all/", {"query": "failing=1", "confirmed": "120"}, follow=True)
    assert "120 failing push(es) will be retried now" in r.content.decode() and kick.called
    assert PendingPush.objects.filter(attempts__gt=0, not_before__isnull=True).count() == 120


def test_retry_all_pushes_keeps_the_filters(w, role_client):
    from integration_hub.core.models import Channel

    failing_pushes(w, 5)
    other = Channel.objects.create(key="uk", name="UK", connection=w.storefront, external_id="uk")
    PendingPush.objects.bulk_create(
        [
            PendingPush(channel=other, item=i, reason="t", attempts=2, not_before=timezone.now() + timedelta(hours=1))
            for i in w.items
        ]
    )
    client = role_client("admin")
    client.post("/pushes/retry-all/", {"query": "failing=1&channel=uk", "confirmed": "3"})
    assert PendingPush.objects.filter(channel=other, not_before__isnull=True).count() == 3
    assert PendingPush.objects.filter(channel=w.channel, not_before__isnull=True).count() == 0


def test_large_retry_all_goes_to_a_worker(w, role_client, settings):
    settings.HUB = {**settings.HUB, "BULK_INLINE_LIMIT": 10}
    failing_pushes(w, 30)
    client = role_client("ops")
    with trap_tasks() as trap:
        r = client.post("/pushes/retry-all/", {"query": "failing=1", "confirmed": "30"}, follow=True)
    sent = trap.of("console.retry_all")
    assert "30 failing push(es) queued" in r.content.decode() and len(sent) == 1
    assert not PendingPush.objects.filter(not_before__isnull=True).exists()
    from integration_hub.console.tasks import retry_all as task

    assert task(*sent[0].args, **sent[0].kwargs) == {"retried": 30}
    assert PendingPush.objects.filter(not_before__isnull=True).count() == 30


def test_retry_all_matching_orders(w, role_client):
    later = timezone.now() + timedelta(hours=1)
    sent = f.orders(w, 70, state=OrderState.SENT, next_attempt_at=later)  # unacknowledged: resend now
    failed = f.orders(w, 3, state=OrderState.FAILED, start=500, send_attempts=30)
    done = f.orders(w, 2, state=OrderState.STOREFRONT_NOTIFIED, start=900)  # nothing to retry
    client = role_client("ops")
    html = client.get("/orders/").content.decode()
    assert "Retry all 73 retryable orders matching" in html
    r = client.post("/orders/retry-all/", {"query": ""})
    assert 'id="confirm-count">73<' in r.content.decode()
    r = client.post("/orders/retry-all/", {"query": "", "confirmed": "73"}, follow=True)
    assert "70 order(s) due to be sent" in r.content.decode() and "3 still held" in r.content.decode()
    assert not Order.objects.filter(pk__in=[o.pk for o in sent], next_attempt_at__isnull=False).exists()
    assert set(Order.objects.filter(pk__in=[o.pk for o in failed]).values_list("send_attempts", flat=True)) == {0}
    assert Order.objects.filter(pk__in=[o.pk for o in done], state=OrderState.STOREFRONT_NOTIFIED).count() == 2
    # the order list's filters choose the set
    r = client.post("/orders/retry-all/", {"query": "state=failed"})
    assert 'id="confirm-count">3<' in r.content.decode()


def test_a_send_in_flight_is_not_doubled(w):
    o = f.orders(
        w, 1, state=OrderState.SENT, claim_token="lease", next_attempt_at=timezone.now() + timedelta(minutes=5)
    )[0]
    assert actions.retry_orders([o.pk]).due == 0
    o.refresh_from_db()
    assert o.claim_token == "lease"


@pytest.mark.parametrize("role", ["cx", "finance"])
def test_cx_and_finance_cannot_retry_all(w, role_client, role):
    failing_pushes(w, 2)
    f.orders(w, 2, state=OrderState.SENT)
    client = role_client(role)
    assert client.post("/pushes/retry-all/", {"query": "", "confirmed": "2"}).status_code == 403
    assert client.post("/orders/retry-all/", {"query": "", "confirmed": "2"}).status_code == 403
    assert not PendingPush.objects.filter(not_before__isnull=True).exists()
    if role == "cx":  # cx see the order list but not the bulk button
        assert "Retry all" not in client.get("/orders/").content.decode()


def test_push_and_order_lists_keep_fixed_query_counts_with_the_retry_all_counts(w, role_client):
    client = role_client("ops")
    failing_pushes(w, 2)
    f.orders(w, 2, state=OrderState.SENT)
    small = (f.count_queries(client, "/pushes/?failing=1"), f.count_queries(client, "/orders/"))
    failing_pushes(w, 80, prefix="8")
    f.orders(w, 80, state=OrderState.FAILED, start=1000)
    assert (f.count_queries(client, "/pushes/?failing=1"), f.count_queries(client, "/orders/")) == small
