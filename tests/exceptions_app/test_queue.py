"""The ops queue: root-cause groups set when records are raised, the 24 h trend, the grouped sortable list with
fixed query counts, and the bulk bar (assign, snooze, status, retry; parents act on their records; all
matching with a count to confirm; a worker above the inline limit), with role checks and CSRF."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from exceptions_app import kinds
from exceptions_app import bulk, queue
from exceptions_app import services as exc
from exceptions_app.models import ExceptionOccurrence, ExceptionRecord, Kind, Status
from integration_hub.core.audit import history_for
from integration_hub.inventory.models import PendingPush
from integration_hub.orders.models import Order, OrderState
from tests.support import factories as f
from tests.support.tasks import trap_tasks


@pytest.fixture
def w(db):
    return f.console_world()


def outage(
    w, n: int, start: int = 0, message: str = "WAIR 422: locationId: location 'uk-web' is not known"
) -> list[ExceptionRecord]:
    """One WAIR refusal of ``n`` orders: a bad_payload per order, same connection, same error."""
    orders = f.orders(w, n, state=OrderState.FAILED, start=start)
    problems = [
        exc.Problem(
            "bad_payload",
            kinds.key("bad_payload", "wair", "order-send", o.idempotency_key),
            f"wair refused order-send for order {o.order_number}",
            message=f"{message} (order {o.order_number})",
            connection_id=w.master.pk,
            channel_id=w.channel.pk,
            order_ref=o.idempotency_key,
            context={"order_id": o.pk, "action": "check_order"},
        )
        for o in orders
    ]
    exc.raise_many(problems)
    return list(ExceptionRecord.objects.filter(dedupe_key__in=[p.key for p in problems]).order_by("id"))


# --- grouping when records are raised --------------------------------------------------------------------------
def test_one_outage_is_one_group_and_other_causes_are_not(w):
    recs = outage(w, 5)
    assert (
        len({r.group_key for r in recs}) == 1
        and recs[0].fingerprint
        and recs[0].group_key.startswith(recs[0].fingerprint + "@")
    )
    other = outage(w, 2, start=100, message="WAIR 422: shippingMethod 'NEXT' is not known")
    assert len({r.group_key for r in other}) == 1 and other[0].group_key != recs[0].group_key
    # connection-level failures of several operations of one connection: one group
    a = exc.raise_exception(
        "sync_timeout", "sync_timeout:wair:poll", "Polling stock from wair failed", connection=w.master
    )
    b = exc.raise_exception(
        "sync_timeout", "sync_timeout:wair:order-send", "wair: order-send failing", connection=w.master
    )
    assert a.group_key == b.group_key
    # SKU problems are each their own fix
    skus = f.sku_exceptions(w, w.items)
    assert len({r.group_key for r in skus}) == 3 and all(r.fingerprint == "" for r in skus)


def test_a_group_is_an_episode_within_the_window(w, settings):
    settings.HUB = {**settings.HUB, "EXCEPTION_GROUP_WINDOW_MINUTES": 60}
    first = outage(w, 3)
    key = first[0].group_key
    assert outage(w, 2, start=10)[0].group_key == key  # same cause within the hour: the same parent
    ExceptionRecord.objects.update(last_seen=timezone.now() - timedelta(hours=2))
    later = outage(w, 2, start=20)
    assert later[0].group_key != key  # the outage ended more than a window ago: a new group
    old = first[0]  # an old record that recurs joins the current episode
    exc.raise_many(
        [
            exc.Problem(
                "bad_payload",
                old.dedupe_key,
                old.title,
                message=old.message,
                connection_id=w.master.pk,
                channel_id=w.channel.pk,
                order_ref=old.order_ref,
            )
        ]
    )
    old.refresh_from_db()
    assert old.group_key == later[0].group_key


def test_occurrences_are_counted_per_hour_and_a_recurrence_unsnoozes(w):
    rec = outage(w, 1)[0]
    exc.raise_many(
        [exc.Problem("bad_payload", rec.dedupe_key, rec.title, message=rec.message, connection_id=w.master.pk)] * 2
    )
    exc.raise_exception("bad_payload", rec.dedupe_key, rec.title, message=rec.message, connection=w.master)
    occ = ExceptionOccurrence.objects.get(record=rec)
    assert occ.n == 4 and occ.hour.minute == 0
    ExceptionRecord.objects.filter(pk=rec.pk).update(status=Status.RESOLVED, snooze_until_sync=True)
    exc.raise_many(
        [exc.Problem("bad_payload", rec.dedupe_key, rec.title, message=rec.message, connection_id=w.master.pk)]
    )
    rec.refresh_from_db()
    assert rec.status == Status.OPEN and not rec.snooze_until_sync


def test_error_signature_drops_what_differs_per_record():
    a = exc.error_signature("Order UK-1001 refused: locationId 'uk-web' unknown (ref 9f8e7d6c5b4a)", "web:ext-1")
    b = exc.error_signature("Order UK-2002 refused: locationId 'uk-web' unknown (ref 0a1b2c3d4e5f)", "web:ext-2")
    assert a == b and "uk-web" in a


# --- the list -------------------------------------------------------------------------------------------------
def test_the_queue_shows_a_parent_row_with_its_records_and_trend(w, role_client):
    recs = outage(w, 12)
    f.sku_exceptions(w, w.items)
    client = role_client("ops")
    html = client.get("/exceptions/").content.decode()
    assert html.count('<tbody class="group"') == 4
    assert "12 affected" in html and html.count('class="child"') == queue.CHILDREN + 1  # 10 records + "and 2 more"
    assert "WAIR 422: locationId: location &#x27;uk-web&#x27; is not known" in html  # the parent names the shared error
    assert "and 2 more" in html and "?q=group%3A" + quote(recs[0].group_key, safe="/") in html
    assert '12 in the last 24 hours' in html
    flat = client.get("/exceptions/", {"q": f"group:{recs[0].group_key}"}).content.decode()
    assert flat.count('<tbody class="group"') == 12  # a group's own listing: one row per record


def test_sorting_is_server_side_and_whitelisted(w, role_client):
    outage(w, 3)
    skus = f.sku_exceptions(w, w.items)
    client = role_client("ops")
    first = lambda html: html.split('<tbody class="group" data-group="')[1].split('"')[0]  # noqa: E731
    assert first(client.get("/exceptions/?sort=-affected").content.decode()).startswith("bad_payload:")
    assert first(client.get("/exceptions/?sort=affected").content.decode()) == skus[-1].group_key  # ties: newest first
    assert client.get("/exceptions/?sort=title;drop").status_code == 200  # not a column: the default order
    assert queue.clean_sort("-severity") == "-severity" and queue.clean_sort("dedupe_key") == queue.DEFAULT_SORT
    html = client.get("/exceptions/?sort=-affected").content.decode()
    assert 'aria-sort="descending"' in html and "sort=affected" in html  # the current column's link flips it


def test_list_queries_are_fixed_for_one_or_many_rows(w, role_client, django_assert_num_queries):
    client = role_client("ops")
    outage(w, 1)
    client.get("/exceptions/")
    with CaptureQueriesContext(connection) as one:
        assert client.get("/exceptions/").status_code == 200
    outage(w, 30, start=50)  # 30 more records of the same outage (still one row) …
    outage(w, 4, start=200, message="WAIR 422: something else")  # … another of 4
    f.sku_exceptions(w, f.items(20))  # … and 20 records on their own
    with django_assert_num_queries(len(one.captured_queries)):
        html = client.get("/exceptions/").content.decode()
    assert html.count('<tbody class="group"') == 22


def test_snoozed_records_leave_the_default_view_and_come_back_by_themselves(w, role_client):
    recs = f.sku_exceptions(w, w.items)
    ExceptionRecord.objects.filter(pk=recs[0].pk).update(snoozed_until=timezone.now() + timedelta(hours=1))
    ExceptionRecord.objects.filter(pk=recs[1].pk).update(snooze_until_sync=True)
    client = role_client("ops")
    html = client.get("/exceptions/").content.decode()
    assert html.count('<tbody class="group"') == 1 and "2 snoozed hidden" in html
    assert client.get("/exceptions/?q=is:snoozed").content.decode().count('<tbody class="group"') == 2
    ExceptionRecord.objects.filter(pk=recs[0].pk).update(snoozed_until=timezone.now() - timedelta(seconds=1))
    assert client.get("/exceptions/").content.decode().count('<tbody class="group"') == 2


def test_a_bad_search_says_why_and_lists_nothing(w, role_client):
    f.sku_exceptions(w, w.items)
    html = role_client("ops").get("/exceptions/?q=colour:red").content.decode()
    assert 'Unknown search key &quot;colour:&quot;' in html and '<tbody class="group"' not in html


# --- bulk bar -----------------------------------------------------------------------------------------------------
def test_resolving_a_parent_resolves_its_records_after_confirming_the_count(w, role_client):
    recs = outage(w, 12)
    client = role_client("ops")
    r = client.post("/exceptions/bulk/", {"groups": [recs[0].group_key], "action": "resolve"})
    assert r.status_code == 200 and 'id="confirm-count">12<' in r.content.decode()
    assert not ExceptionRecord.objects.filter(status=Status.RESOLVED).exists()  # nothing until confirmed
    r = client.post("/exceptions/bulk/", {"groups": [recs[0].group_key], "action": "resolve", "confirmed": "12"})
    assert r.status_code == 302
    assert ExceptionRecord.objects.filter(status=Status.RESOLVED).count() == 12
    assert history_for(recs[5]).filter(action="update").count() == 1


def test_assign_to_me_and_filter_mine(w, role_client, make_user):
    recs = f.sku_exceptions(w, w.items)
    client = role_client("ops")
    client.post("/exceptions/bulk/", {"ids": [recs[0].pk, recs[1].pk], "action": "assign_me"})
    me = ExceptionRecord.objects.get(pk=recs[0].pk).assignee
    assert me is not None and me.username == "user-ops"
    assert client.get("/exceptions/?q=assignee:me").content.decode().count('<tbody class="group"') == 2
    assert client.get("/exceptions/?q=assignee:none").content.decode().count('<tbody class="group"') == 1
    entry = history_for(recs[0]).get()
    assert entry.actor == me and entry.before["assignee_id"] is None and entry.after["assignee_id"] == me.pk
    admin = make_user("admin")
    client.post("/exceptions/bulk/", {"ids": [recs[2].pk], "action": "assign", "assignee": admin.pk})
    assert ExceptionRecord.objects.get(pk=recs[2].pk).assignee == admin
    cx = make_user("cx", username="cx-person")  # cx cannot own exceptions
    client.post("/exceptions/bulk/", {"ids": [recs[2].pk], "action": "assign", "assignee": cx.pk})
    assert ExceptionRecord.objects.get(pk=recs[2].pk).assignee == admin


def test_snooze_choices_validation_and_unsnooze(w, role_client):
    recs = f.sku_exceptions(w, w.items)
    client = role_client("ops")
    client.post("/exceptions/bulk/", {"ids": [recs[0].pk], "action": "snooze", "snooze": "4h"})
    until = ExceptionRecord.objects.get(pk=recs[0].pk).snoozed_until
    assert timedelta(hours=3, minutes=59) < until - timezone.now() <= timedelta(hours=4)
    r = client.post(
        "/exceptions/bulk/",
        {"ids": [recs[1].pk], "action": "snooze", "snooze": "until", "snooze_until": "2020-01-01 10:00"},
        follow=True,
    )
    assert "choose a time in the future" in r.content.decode()
    client.post(
        "/exceptions/bulk/",
        {"ids": [recs[1].pk], "action": "snooze", "snooze": "until", "snooze_until": "2099-01-01 10:00"},
    )
    assert ExceptionRecord.objects.get(pk=recs[1].pk).snoozed_until.year == 2099
    client.post("/exceptions/bulk/", {"ids": [recs[2].pk], "action": "snooze_sync"})
    assert ExceptionRecord.objects.get(pk=recs[2].pk).snooze_until_sync
    exc.clear(recs[2].dedupe_key)  # the sync resolves it
    assert ExceptionRecord.objects.get(pk=recs[2].pk).status == Status.RESOLVED
    client.post("/exceptions/bulk/", {"ids": [recs[0].pk, recs[1].pk], "action": "unsnooze"})
    assert not ExceptionRecord.objects.filter(pk__in=[recs[0].pk, recs[1].pk], snoozed_until__isnull=False).exists()
    assert len(history_for(recs[0])) == 2


def test_all_matching_acts_beyond_the_page_and_rereads_a_changed_count(w, role_client):
    f.sku_exceptions(w, f.items(60))
    f.sku_exceptions(w, w.items, kind=Kind.UNKNOWN_SKU, strip=False)
    client = role_client("ops")
    html = client.get("/exceptions/?q=kind:sku_mismatch").content.decode()
    assert 'id="matching-count">60<' in html
    post = {"all": "1", "action": "acknowledge", "query": "q=kind%3Asku_mismatch"}
    r = client.post("/exceptions/bulk/", post)
    assert 'id="confirm-count">60<' in r.content.decode()
    r = client.post("/exceptions/bulk/", {**post, "confirmed": "59"})  # the set changed since: asked again
    assert r.status_code == 200 and 'id="confirm-count">60<' in r.content.decode()
    client.post("/exceptions/bulk/", {**post, "confirmed": "60"})
    assert ExceptionRecord.objects.filter(kind=Kind.SKU_MISMATCH, status=Status.ACKNOWLEDGED).count() == 60
    assert ExceptionRecord.objects.filter(kind=Kind.UNKNOWN_SKU, status=Status.OPEN).count() == 3


def test_large_sets_go_to_a_worker(w, role_client, settings):
    settings.HUB = {**settings.HUB, "BULK_INLINE_LIMIT": 10}
    f.sku_exceptions(w, f.items(25))
    client = role_client("ops")
    post = {"all": "1", "action": "snooze", "snooze": "24h", "query": "", "confirmed": "25"}
    with trap_tasks() as trap:
        r = client.post("/exceptions/bulk/", post, follow=True)
    sent = trap.of("exceptions.bulk_action")
    assert "25 exception(s) queued" in r.content.decode() and len(sent) == 1
    assert not ExceptionRecord.objects.filter(snoozed_until__isnull=False).exists()  # not in the request
    args, kwargs = sent[0].args, sent[0].kwargs
    from exceptions_app.tasks import bulk_action

    result = bulk_action(*args, **kwargs)  # what the worker runs
    assert result["changed"] == 25 and ExceptionRecord.objects.filter(snoozed_until__isnull=False).count() == 25


def test_retry_hands_records_back_to_their_flows(w, role_client):
    recs = outage(w, 3)  # refused orders (failed, and invalid: no shipping method): revalidated, reasons kept
    stuck = f.orders(w, 2, state=OrderState.SENT, start=300, next_attempt_at=timezone.now() + timedelta(hours=1))
    exc.raise_many(
        [
            exc.Problem(
                "stuck_order",
                f"stuck_order:{o.idempotency_key}",
                f"Order {o} not acknowledged",
                connection_id=w.master.pk,
                channel_id=w.channel.pk,
                order_ref=o.idempotency_key,
                context={"order_id": o.pk, "action": "retry_order"},
            )
            for o in stuck
        ]
    )
    stuck_recs = list(ExceptionRecord.objects.filter(kind=Kind.STUCK_ORDER))
    f.mappings(w, w.items[:1])
    push = exc.raise_exception(
        "stock_drift",
        "stock_drift:web:" + w.items[0].sku.lstrip("0"),
        "drift",
        channel=w.channel,
        sku=w.items[0].sku.lstrip("0"),
    )
    auth = exc.raise_exception(
        "auth_failure", "auth_failure:wair", "wair refused the hub's credentials", connection=w.master
    )
    client = role_client("ops")
    picked = [r.pk for r in recs + stuck_recs] + [push.pk, auth.pk]
    r = client.post("/exceptions/bulk/", {"ids": picked, "action": "retry"}, follow=True)
    text = r.content.decode()
    assert "6 exception(s) retried: 2 order(s) due for resend (3 still invalid" in text, text[
        text.find('class="messages"') :
    ][:600]
    assert "1 stock push(es) queued" in text and "1 left as they are" in text and "credentials" in text
    assert PendingPush.objects.filter(channel=w.channel, item=w.items[0]).exists()
    for o in Order.objects.filter(
        pk__in=[x.context["order_id"] for x in ExceptionRecord.objects.filter(pk__in=[x.pk for x in recs])]
    ):
        assert o.send_attempts == 0 and "shipping_method" in o.hold_reason  # a fresh budget, revalidated
    assert not Order.objects.filter(pk__in=[o.pk for o in stuck], next_attempt_at__isnull=False).exists()  # due now
    assert ExceptionRecord.objects.get(pk=auth.pk).status == Status.OPEN
    assert ExceptionRecord.objects.filter(pk__in=picked, status=Status.ACKNOWLEDGED).count() == 6


@pytest.mark.parametrize("role", ["cx", "finance"])
def test_cx_and_finance_cannot_act_on_the_queue(w, role_client, role):
    recs = f.sku_exceptions(w, w.items)
    client = role_client(role)
    for action in ("assign_me", "snooze", "retry", "resolve"):
        assert (
            client.post("/exceptions/bulk/", {"ids": [recs[0].pk], "action": action, "snooze": "1h"}).status_code == 403
        )
    assert not ExceptionRecord.objects.filter(assignee__isnull=False).exists()


def test_admin_may_act_and_every_post_needs_csrf(w, make_user):
    recs = f.sku_exceptions(w, w.items)
    admin = make_user("admin")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin)
    assert strict.post("/exceptions/bulk/", {"ids": [recs[0].pk], "action": "assign_me"}).status_code == 403
    for url in ("/pushes/retry-all/", "/orders/retry-all/"):
        assert strict.post(url, {"query": ""}).status_code == 403
    ok = Client()
    ok.force_login(admin)
    assert ok.post("/exceptions/bulk/", {"ids": [recs[0].pk], "action": "assign_me"}).status_code == 302
    assert ExceptionRecord.objects.get(pk=recs[0].pk).assignee == admin


def test_bulk_params_are_checked_first():
    with pytest.raises(bulk.BulkError, match="Choose an action"):
        bulk.clean("explode", {}, None)
    with pytest.raises(bulk.BulkError, match="Say why"):
        bulk.clean("ignore", {"reason": "  "}, None)
    with pytest.raises(bulk.BulkError, match="YYYY-MM-DD HH:MM"):
        bulk.snooze_until("until", "tomorrow")


def test_a_record_page_assigns_and_snoozes_it_and_links_its_group(w, role_client):
    rec = outage(w, 2)[0]
    client = role_client("ops")
    html = client.get(f"/exceptions/{rec.pk}/").content.decode()
    assert 'id="record-assignee">nobody<' in html and "every record of this group" in html
    r = client.post("/exceptions/bulk/", {"ids": [rec.pk], "action": "assign_me", "next": f"/exceptions/{rec.pk}/"})
    assert r.status_code == 302 and r["Location"] == f"/exceptions/{rec.pk}/"
    r = client.post("/exceptions/bulk/", {"ids": [rec.pk], "action": "snooze_sync", "next": "https://evil.example/"})
    assert r["Location"] == "/exceptions/"  # only the hub's own pages
    html = client.get(f"/exceptions/{rec.pk}/").content.decode()
    assert 'id="record-assignee">user-ops<' in html and "until a sync resolves it" in html


def test_old_hourly_counts_are_pruned_by_a_beat_job(w):
    from integration_hub.core.beat import collect

    rec = outage(w, 1)[0]
    ExceptionOccurrence.objects.create(record=rec, hour=timezone.now() - timedelta(days=4), n=3)
    from exceptions_app.tasks import prune_occurrences

    assert prune_occurrences() == 1 and ExceptionOccurrence.objects.filter(record=rec).count() == 1
    assert any(j.task == "exceptions.prune_occurrences" for j in collect())
