"""Exception queue screens: filters, pagination, fixed query counts, status actions with audit, SKU fixes."""

from __future__ import annotations

from types import SimpleNamespace
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exceptions_app import kinds
from exceptions_app import triage
from exceptions_app.models import ExceptionRecord, Kind, Status
from integration_hub.catalog.models import IdentifierTransform, SkuMapping
from integration_hub.core.audit import history_for
from integration_hub.inventory.models import PendingPush
from tests.support import factories as f
from tests.support.fakes import install_fakes


@pytest.fixture
def w(db):
    return f.console_world()


def _count(client, url):
    client.get(url)  # warm per-process caches (content types) so only per-request queries are counted
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(url)
    assert r.status_code == 200, r.content[:500]
    return len(ctx.captured_queries)


def test_queue_and_detail_run_a_fixed_number_of_queries(w, role_client):
    client = role_client("ops")
    its = f.items(50)
    recs = f.sku_exceptions(w, its[:5])
    small_list = _count(client, "/exceptions/")
    small_detail = _count(client, f"/exceptions/{recs[0].pk}/")
    f.sku_exceptions(w, its[5:])
    big_list = _count(client, "/exceptions/")
    big_detail = _count(client, f"/exceptions/{recs[0].pk}/")
    assert small_list == big_list
    assert small_detail == big_detail
    # session, user, roles/perms, the two filter dropdowns, grouped count + page, the page's records (window),
    # the 24 h trend, listed/snoozed counts, the assignable users
    assert big_list <= 13


def test_filters_search_and_pagination(w, role_client):
    client = role_client("cx")
    its = f.items(60)
    f.sku_exceptions(w, its)
    unknown = f.sku_exceptions(w, w.items[:1], kind=Kind.UNKNOWN_SKU, strip=False)[0]
    html = client.get("/exceptions/").content.decode()
    assert "Page 1 of 2" in html and "61 rows" in html
    html = client.get("/exceptions/?kind=unknown_sku").content.decode()
    assert unknown.sku in html and "1 row" in html
    target = its[7].sku.lstrip("0")
    html = client.get(f"/exceptions/?q={target}").content.decode()
    assert f"<code>{target}</code>" in html and "1 row" in html
    ExceptionRecord.objects.filter(pk=unknown.pk).update(status=Status.IGNORED)
    assert "0 rows" in client.get("/exceptions/?kind=unknown_sku").content.decode()
    assert "1 row" in client.get("/exceptions/?kind=unknown_sku&status=ignored").content.decode()
    assert "1 row" in client.get(f"/exceptions/?channel={w.channel.pk}&kind=unknown_sku&status=all").content.decode()
    ExceptionRecord.objects.filter(pk=unknown.pk).update(first_seen=f.ago(days=8))
    assert "1 row" in client.get("/exceptions/?age=7d&status=all").content.decode()
    # cx sees the queue but no triage controls
    assert 'name="ids"' not in html


def test_acknowledge_ignore_resolve_are_audited(w, role_client):
    client = role_client("ops")
    rec = f.sku_exceptions(w, w.items[:1])[0]
    assert client.post(f"/exceptions/{rec.pk}/status/", {"action": "acknowledge"}).status_code == 302
    rec.refresh_from_db()
    assert rec.status == Status.ACKNOWLEDGED and rec.status_changed_by.username == "user-ops"
    r = client.post(f"/exceptions/{rec.pk}/status/", {"action": "ignore", "reason": ""})
    assert r.status_code == 400 and "Say why" in r.content.decode()
    rec.refresh_from_db()
    assert rec.status == Status.ACKNOWLEDGED
    client.post(f"/exceptions/{rec.pk}/status/", {"action": "ignore", "reason": "discontinued line"})
    rec.refresh_from_db()
    assert rec.status == Status.IGNORED and rec.status_reason == "discontinued line"
    entries = list(history_for(rec))
    assert [(e.before["status"], e.after["status"]) for e in reversed(entries)] == [
        ("open", "acknowledged"),
        ("acknowledged", "ignored"),
    ]
    assert all(e.actor.username == "user-ops" for e in entries)
    html = client.get(f"/exceptions/{rec.pk}/").content.decode()
    assert "discontinued line" in html and "Audit history" in html


def test_bulk_acknowledge(w, role_client):
    client = role_client("ops")
    recs = f.sku_exceptions(w, f.items(4))
    r = client.post("/exceptions/bulk/", {"ids": [str(r.pk) for r in recs[:3]], "action": "acknowledge"})
    assert r.status_code == 302
    assert ExceptionRecord.objects.filter(status=Status.ACKNOWLEDGED).count() == 3
    client.post("/exceptions/bulk/", {"ids": [str(recs[3].pk)], "action": "ignore"})  # no reason: refused
    assert ExceptionRecord.objects.get(pk=recs[3].pk).status == Status.OPEN


def test_suggestion_from_audit_context_and_computed(w):
    rec = f.sku_exceptions(w, w.items[:1])[0]
    s = triage.suggest(rec)
    assert s.item == w.items[0] and s.spec.strip_leading_zeros and s.source == "computed"
    rec.context = {"suggested_item_sku": w.items[1].sku, "transform": None}
    rec.save()
    s = triage.suggest(rec)
    assert s.item == w.items[1] and s.source == "audit"


class ConfirmingStorefront:
    """A storefront that accepts every quantity (what a successful push looks like to the push engine)."""

    def __init__(self, fail=False):
        self.pushed, self.fail = [], fail

    def set_stock(self, targets):
        from connectors import errors
        from connectors.base import InventoryResult

        self.pushed += [(t.sku, t.quantity) for t in targets]
        return [
            InventoryResult(
                t.sku,
                t.channel_ref,
                t.quantity,
                version=1,
                ok=not self.fail,
                error=errors.RetryableError("storefront down") if self.fail else None,
            )
            for t in targets
        ]


def drain_pushes(monkeypatch, storefront):
    from integration_hub.inventory.push import push_batch

    install_fakes(monkeypatch).install(storefront)
    return push_batch()


def test_fix_sku_mismatch_acknowledges_then_the_confirmed_push_resolves(w, role_client, monkeypatch):
    client = role_client("ops")
    f.stock(w, w.items, 7)
    rec = f.sku_exceptions(w, w.items[:1])[0]
    html = client.get(f"/exceptions/{rec.pk}/").content.decode()
    assert w.items[0].sku in html and "strip leading zeros" in html
    r = client.post(f"/exceptions/{rec.pk}/map-sku/", {"mode": "suggested"})
    assert r.status_code == 302
    m = SkuMapping.objects.get(storefront_sku=rec.sku)
    assert m.item == w.items[0] and m.channel == w.channel and m.transform.strip_leading_zeros
    # the mapping is saved, but nothing has reached the storefront yet: acknowledged (who, what), not resolved
    rec.refresh_from_db()
    assert rec.status == Status.ACKNOWLEDGED and rec.status_changed_by.username == "user-ops"
    assert "resolves when the storefront confirms" in rec.status_reason
    change = history_for(rec).get()
    assert (change.before["status"], change.after["status"], change.actor.username) == (
        "open",
        "acknowledged",
        "user-ops",
    )
    assert PendingPush.objects.filter(channel=w.channel, item=w.items[0]).exists()
    audit = list(history_for(m))
    assert audit and audit[0].action == "create" and audit[0].actor.username == "user-ops"
    # a failed push leaves it acknowledged (still in the active queue)
    drain_pushes(monkeypatch, ConfirmingStorefront(fail=True))
    rec.refresh_from_db()
    assert rec.status == Status.ACKNOWLEDGED
    # the storefront confirms the quantity under that SKU: now it is resolved
    PendingPush.objects.update(not_before=None)
    shop = ConfirmingStorefront()
    drain_pushes(monkeypatch, shop)
    assert (rec.sku, 7) in shop.pushed
    rec.refresh_from_db()
    assert rec.status == Status.RESOLVED and rec.status_reason == "stock push succeeded"


def test_map_to_chosen_item_and_bad_input(w, role_client):
    client = role_client("ops")
    rec = f.sku_exceptions(w, w.items[:1], kind=Kind.UNKNOWN_SKU, strip=False)[0]
    r = client.post(f"/exceptions/{rec.pk}/map-sku/", {"mode": "item", "item_sku": "NOPE"})
    assert r.status_code == 400 and "No master item" in r.content.decode()
    assert not SkuMapping.objects.exists()
    r = client.post(
        f"/exceptions/{rec.pk}/map-sku/", {"mode": "item", "item_sku": w.items[2].sku, "all_channels": "on"}
    )
    assert r.status_code == 302
    m = SkuMapping.objects.get(storefront_sku=rec.sku)
    assert m.item == w.items[2] and m.channel is None and m.transform is None
    rec.refresh_from_db()
    assert rec.status == Status.ACKNOWLEDGED


def test_bulk_apply_transform_to_similar_rows(w, role_client):
    client = role_client("ops")
    its = f.items(30)
    recs = f.sku_exceptions(w, its)
    # one row whose SKU no master item produces stays open
    odd = f.sku_exceptions(w, w.items[:1], strip=False)[0]
    ExceptionRecord.objects.filter(pk=odd.pk).update(kind=Kind.SKU_MISMATCH)
    r = client.post(f"/exceptions/{recs[0].pk}/map-sku/", {"mode": "suggested", "bulk": "on"})
    assert r.status_code == 302
    assert SkuMapping.objects.filter(channel=w.channel).count() == 30
    assert IdentifierTransform.objects.count() == 1
    assert ExceptionRecord.objects.filter(pk__in=[x.pk for x in recs], status=Status.ACKNOWLEDGED).count() == 30
    assert ExceptionRecord.objects.get(pk=odd.pk).status == Status.OPEN


def test_bulk_apply_is_set_based(w, django_assert_max_num_queries):
    its = f.items(200)
    recs = f.sku_exceptions(w, its)
    spec = triage.suggest(recs[0]).spec
    with django_assert_max_num_queries(25):
        result = triage.bulk_map_with_transform(recs[0], spec)
    assert result.mappings_created == 200 and result.acknowledged == 200


def test_order_action_without_order_flow_is_refused_cleanly(w, role_client, monkeypatch):
    from exceptions_app import services as exc
    from integration_hub.orders.models import OrderState

    order = f.orders(w, 1, state=OrderState.HELD)[0]
    rec = exc.raise_exception(
        Kind.STUCK_ORDER,
        kinds.key(Kind.STUCK_ORDER, order.idempotency_key),
        "stuck",
        order_ref=order.idempotency_key,
        channel=w.channel,
    )
    monkeypatch.setattr(triage, "order_flow", SimpleNamespace())  # an order flow offering nothing
    client = role_client("cx")
    html = client.get(f"/exceptions/{rec.pk}/").content.decode()
    assert "Retry send" in html and "Edit field and resend" not in html  # cx may retry/cancel, not edit
    r = client.post(f"/exceptions/{rec.pk}/order/", {"action": "retry"}, follow=True)
    assert "not installed" in r.content.decode()
    rec.refresh_from_db()
    assert rec.status == Status.OPEN
    r = client.post(f"/exceptions/{rec.pk}/order/", {"action": "edit", "field": "gift_message", "value": "x"})
    assert r.status_code == 403


def test_order_actions_call_the_order_services(w, role_client, monkeypatch):
    from exceptions_app import services as exc
    from integration_hub.orders.models import OrderState

    order = f.orders(w, 1, state=OrderState.HELD)[0]
    rec = exc.raise_exception(
        Kind.STUCK_ORDER,
        kinds.key(Kind.STUCK_ORDER, order.idempotency_key),
        "stuck",
        order_ref=order.idempotency_key,
        channel=w.channel,
    )
    calls = []
    fake = {
        "retry_send": lambda o, actor=None: calls.append(("retry", o.pk, actor.username)),
        "update_field_and_resend": lambda o, field, value, actor=None: calls.append(("edit", field, value)),
        "cancel": lambda o, reason, actor=None: calls.append(("cancel", reason)),
    }
    monkeypatch.setattr(triage, "order_flow", SimpleNamespace(**fake))
    client = role_client("ops")
    client.post(f"/exceptions/{rec.pk}/order/", {"action": "edit", "field": "shipping_method", "value": "express"})
    rec.refresh_from_db()
    assert calls == [("edit", "shipping_method", "express")]
    assert rec.status == Status.ACKNOWLEDGED and "resolves when the warehouse acknowledges" in rec.status_reason
    r = client.post(f"/exceptions/{rec.pk}/order/", {"action": "cancel", "reason": ""})
    assert r.status_code == 400
    client.post(f"/exceptions/{rec.pk}/order/", {"action": "cancel", "reason": "fraud"})
    rec.refresh_from_db()
    assert calls[-1] == ("cancel", "fraud") and rec.status == Status.RESOLVED


def test_repush_stock_for_drift(w, role_client):
    from exceptions_app import services as exc

    f.stock(w, w.items, 5)
    f.mappings(w, w.items[:1])
    sku = w.items[0].sku.lstrip("0")
    rec = exc.raise_exception(
        Kind.STOCK_DRIFT,
        kinds.key(Kind.STOCK_DRIFT, "web", sku),
        "drift",
        sku=sku,
        channel=w.channel,
        context={"master_ats": 5, "storefront_quantity": 9, "action": "repush_stock"},
    )
    client = role_client("ops")
    assert "Queue a stock push" in client.get(f"/exceptions/{rec.pk}/").content.decode()
    assert client.post(f"/exceptions/{rec.pk}/repush/").status_code == 302
    assert PendingPush.objects.filter(channel=w.channel, item=w.items[0]).exists()
    rec.refresh_from_db()
    assert rec.status == Status.ACKNOWLEDGED
    assert role_client("cx").post(f"/exceptions/{rec.pk}/repush/").status_code == 403


def test_held_order_exception_offers_the_named_field(w, role_client, monkeypatch):
    from exceptions_app import services as exc
    from integration_hub.orders.models import OrderState

    order = f.orders(w, 1, state=OrderState.HELD)[0]
    line = order.lines.get()
    path = f"lines.{line.line_id}.storefront_sku"
    rec = exc.raise_exception(
        Kind.BAD_PAYLOAD,
        kinds.key(Kind.BAD_PAYLOAD, "ct", "order", order.idempotency_key),
        f"Order {order} held: {path}",
        context={"fields": {path: "unknown SKU"}, "action": "retry_order", "order_id": order.pk},
    )
    assert triage.order_for(rec) == order
    client = role_client("ops")
    html = client.get(f"/exceptions/{rec.pk}/").content.decode()
    assert f'value="{path}"' in html
    calls = []
    monkeypatch.setattr(
        triage,
        "order_flow",
        SimpleNamespace(
            **{"update_field_and_resend": lambda o, field, value, actor=None: calls.append((field, value))}
        ),
    )
    client.post(f"/exceptions/{rec.pk}/order/", {"action": "edit", "field": path, "value": "SKU-9"})
    assert calls == [(path, "SKU-9")]
    html = client.get(f"/orders/{order.pk}/").content.decode()
    assert f'value="{path}"' in html and rec.title in html


def test_retry_that_succeeds_at_once_leaves_the_exception_resolved(w, role_client, monkeypatch):
    from exceptions_app import services as exc
    from integration_hub.orders.models import OrderState

    order = f.orders(w, 1, state=OrderState.SENT)[0]
    key = kinds.key(Kind.STUCK_ORDER, order.idempotency_key)
    rec = exc.raise_exception(Kind.STUCK_ORDER, key, "stuck", order_ref=order.idempotency_key, channel=w.channel)
    monkeypatch.setattr(triage, "order_flow", SimpleNamespace(**{"retry_send": lambda o, actor=None: exc.clear(key)}))
    role_client("ops").post(f"/exceptions/{rec.pk}/order/", {"action": "retry"})
    rec.refresh_from_db()
    assert rec.status == Status.RESOLVED


def test_missing_dispatch_offers_resend_notification(w, role_client, monkeypatch):
    from exceptions_app import services as exc
    from integration_hub.orders.models import OrderState

    order = f.orders(w, 1, state=OrderState.DISPATCHED, dispatched_at=f.ago(hours=3))[0]
    rec = exc.raise_exception(
        Kind.MISSING_DISPATCH,
        kinds.key(Kind.MISSING_DISPATCH, order.idempotency_key),
        "not shipped",
        context={"order_id": order.pk, "action": "resend_dispatch"},
    )
    calls = []
    monkeypatch.setattr(
        triage, "order_flow", SimpleNamespace(**{"notify_storefront": lambda o, actor=None: calls.append(o.pk)})
    )
    client = role_client("cx")
    html = client.get(f"/exceptions/{rec.pk}/").content.decode()
    assert "Resend shipped notification" in html and "Retry send" not in html
    client.post(f"/exceptions/{rec.pk}/order/", {"action": "notify"})
    rec.refresh_from_db()
    assert calls == [order.pk] and rec.status == Status.ACKNOWLEDGED


def test_triage_offers_near_matches_and_configured_transforms_as_choices(w, role_client):
    from integration_hub.catalog.models import Item

    client = role_client("ops")
    plain = Item.objects.create(sku="1000", name="the unpadded one")  # loosely equal to 00001000, like the suggestion
    rec = f.sku_exceptions(w, w.items[:1])[0]  # storefront lists "1000"
    html = client.get(f"/exceptions/{rec.pk}/").content.decode()
    assert 'id="near-matches"' in html and 'value="1000"' in html and "the unpadded one" in html
    # pick the near match rather than the suggested 00001000
    r = client.post(f"/exceptions/{rec.pk}/map-sku/", {"mode": "alternative"})
    assert r.status_code == 400 and "Choose one of the near matches" in r.content.decode()
    r = client.post(f"/exceptions/{rec.pk}/map-sku/", {"mode": "alternative", "alternative": "1000"})
    assert r.status_code == 302
    m = SkuMapping.objects.get(storefront_sku="1000")
    assert m.item == plain and m.transform is None  # "1000" is "1000": no transform needed

    # a configured transform (prefix + strip zeros) that turns a master SKU into the storefront SKU
    uk = IdentifierTransform.objects.create(
        name="uk shop", channel=w.channel, connection=w.storefront, prefix="UK-", strip_leading_zeros=True
    )
    IdentifierTransform.objects.create(name="other", channel=w.channel, prefix="FR-")  # produces nothing here
    from exceptions_app import services as exc

    other = exc.raise_exception(
        Kind.UNKNOWN_SKU,
        kinds.key(Kind.UNKNOWN_SKU, "web", "UK-1001"),
        "UK-1001 unknown",
        sku="UK-1001",
        channel=w.channel,
    )
    assert [(t.name, i.sku) for t, i in triage.transform_options(other)] == [("uk shop", w.items[1].sku)]
    html = client.get(f"/exceptions/{other.pk}/").content.decode()
    assert 'id="transform-options"' in html and f"{w.items[1].sku} → UK-1001" in html and "FR-" not in html
    r = client.post(f"/exceptions/{other.pk}/map-sku/", {"mode": "transform", "transform": f"{uk.pk}:{w.items[1].pk}"})
    assert r.status_code == 302
    m = SkuMapping.objects.get(storefront_sku="UK-1001")
    assert m.item == w.items[1] and m.transform == uk and m.channel == w.channel
    other.refresh_from_db()
    assert other.status == Status.ACKNOWLEDGED
    # a choice the page did not offer is refused
    third = exc.raise_exception(
        Kind.UNKNOWN_SKU,
        kinds.key(Kind.UNKNOWN_SKU, "web", "UK-1002"),
        "UK-1002 unknown",
        sku="UK-1002",
        channel=w.channel,
    )
    r = client.post(f"/exceptions/{third.pk}/map-sku/", {"mode": "transform", "transform": f"{uk.pk}:{w.items[1].pk}"})
    assert r.status_code == 400 and not SkuMapping.objects.filter(storefront_sku="UK-1002").exists()
