"""The queue's search syntax: parsing (pure) and what each key selects."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from exceptions_app import search
from exceptions_app import services as exc
from exceptions_app.models import ExceptionRecord, Status
from tests.support import factories as f


def test_parses_keys_quoted_values_and_free_text():
    q = search.parse(
        'kind:unknown_sku channel:uk-web sku:00045 order:UK-1002 is:open assignee:me free text "a phrase" sku:"A 1"'
    )
    assert q.errors == []
    assert q.filters == [
        ("kind", "unknown_sku"),
        ("channel", "uk-web"),
        ("sku", "00045"),
        ("order", "UK-1002"),
        ("is", "open"),
        ("assignee", "me"),
        ("sku", "A 1"),
    ]
    assert q.words == ["free", "text", "a phrase"]
    assert q.sets_status and not q.wants_snoozed


def test_keys_and_fixed_values_are_case_insensitive_but_values_keep_their_case():
    q = search.parse("KIND:Stuck_Order Channel:UK-Web IS:Snoozed")
    assert q.filters == [("kind", "stuck_order"), ("channel", "UK-Web"), ("is", "snoozed")]
    assert q.wants_snoozed


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour:red", 'Unknown search key "colour:"'),
        ("kind:", '"kind:" needs a value'),
        ('sku:"00045', "A quote is not closed"),
        ("kind:nonsense", '"nonsense" is not an exception kind'),
        ("is:later", '"is:later" is not known'),
        ("severity:huge", '"huge" is not a severity'),
    ],
)
def test_bad_input_gets_a_clear_message(text, message):
    q = search.parse(text)
    assert q.errors and message in q.errors[0], q.errors
    with pytest.raises(search.SearchError):
        search.apply(q, ExceptionRecord.objects.none())


def test_every_error_is_reported_and_the_rest_still_parses():
    q = search.parse("foo:1 kind:sku_mismatch bar:2 text")
    assert len(q.errors) == 2 and q.filters == [("kind", "sku_mismatch")] and q.words == ["text"]


def test_empty_search_is_no_filter():
    q = search.parse("   ")
    assert (q.filters, q.words, q.errors) == ([], [], [])


@pytest.mark.django_db
def test_each_key_selects_what_it_names(make_user):
    w = f.console_world()
    from integration_hub.core.models import Channel

    other_channel = Channel.objects.create(key="uk-web", name="UK web", connection=w.storefront, external_id="uk")
    order = f.orders(w, 1, start=1002)[0]
    from integration_hub.orders.models import Order

    Order.objects.filter(pk=order.pk).update(order_number="UK-1002", customer_email="jane@example.com")
    me = make_user("ops")
    a = exc.raise_exception(
        "unknown_sku", "unknown_sku:uk-web:00045", "Unknown SKU 00045 on uk-web", channel=other_channel, sku="00045"
    )
    b = exc.raise_exception(
        "stuck_order",
        f"stuck_order:{order.idempotency_key}",
        "Order UK-1002 not acknowledged",
        channel=w.channel,
        connection=w.master,
        order_ref=order.idempotency_key,
        message="the warehouse never answered",
    )
    c = exc.raise_exception(
        "bad_payload", "bad_payload:wair:x", "WAIR refused", severity="critical", connection=w.master
    )
    ExceptionRecord.objects.filter(pk=c.pk).update(assignee=me, status=Status.RESOLVED)

    def ids(text):
        return set(search.apply(search.parse(text), ExceptionRecord.objects.all(), me).values_list("pk", flat=True))

    assert ids("kind:unknown_sku") == {a.pk}
    assert ids("kind:unknown_sku kind:stuck_order") == {a.pk, b.pk}  # one key twice: either
    assert ids("channel:uk-web") == {a.pk}
    assert ids('channel:"Web shop"') == {b.pk}
    assert ids("connection:wair") == {b.pk, c.pk}
    assert ids("sku:0004") == {a.pk}
    assert ids("order:UK-1002") == ids("order:#UK-1002") == ids("order:jane@") == {b.pk}
    assert ids("is:open") == {a.pk, b.pk} and ids("is:resolved") == {c.pk}
    assert ids("is:open is:unassigned") == {a.pk, b.pk}  # different is: dimensions all apply
    assert ids("assignee:me") == {c.pk} and ids("assignee:none") == {a.pk, b.pk}
    assert ids(f"assignee:{me.username}") == {c.pk}
    assert ids("severity:critical") == {c.pk}
    assert ids("never answered") == {b.pk}  # free text: every word, in the title or message
    assert ids('"never answered" kind:unknown_sku') == set()
    ExceptionRecord.objects.filter(pk=a.pk).update(snoozed_until=timezone.now() + timedelta(hours=1))
    assert ids("is:snoozed") == {a.pk}
