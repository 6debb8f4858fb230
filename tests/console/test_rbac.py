"""Every console page and API endpoint, for every role: allowed → 2xx/3xx, denied → 403, anonymous → login."""

from __future__ import annotations

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from exceptions_app import kinds
from exceptions_app.models import Kind
from integration_hub.catalog.models import IdentifierTransform
from integration_hub.orders.models import OrderState, ShippingMethodMap
from integration_hub.reconciliation import services as recon

from tests.support import factories as f

ROLES = ["ops", "cx", "finance", "admin", None]


@pytest.fixture
def ids(db):
    w = f.console_world()
    rec = f.sku_exceptions(w, w.items[:1])[0]
    order_rec = f.sku_exceptions(w, w.items[1:2], kind=Kind.UNKNOWN_SKU, strip=False)[0]
    mapping = f.mappings(w, w.items[2:3])[0]
    transform = IdentifierTransform.objects.create(name="strip", strip_leading_zeros=True)
    ship = ShippingMethodMap.objects.create(channel=w.channel, storefront_method="std", warehouse_method="DPD")
    task = PeriodicTask.objects.create(
        name="job", task="x.y", interval=IntervalSchedule.objects.create(every=60, period="seconds")
    )
    report = recon.generate("stock_drift")
    order = f.orders(w, 1, state=OrderState.HELD)[0]
    from exceptions_app import services as exc
    from integration_hub.inventory.models import PendingPush, StockLevel

    f.stock(w, w.items, 3)
    f.pushes(w, w.items[:1])
    drift = exc.raise_exception(
        Kind.STOCK_DRIFT,
        kinds.key(Kind.STOCK_DRIFT, "web", mapping.storefront_sku),
        "drift",
        sku=mapping.storefront_sku,
        channel=w.channel,
    )
    stuck = exc.raise_exception(
        Kind.STUCK_ORDER,
        kinds.key(Kind.STUCK_ORDER, order.idempotency_key),
        "stuck",
        order_ref=order.idempotency_key,
        channel=w.channel,
    )
    from integration_hub.console.models import ScheduleRun
    from integration_hub.reconciliation.models import ReportSubscription

    run = ScheduleRun.objects.create(
        periodic_task=task, name="job", task="x.y", celery_task_id="hubrun-rbac", launched_at=report.started_at
    )
    sub = ReportSubscription.objects.create(addresses="fin@example.com")
    from integration_hub.core import audit
    from integration_hub.core.models import AuditEntry

    with audit.acting_as(None, "console"):
        w.rule.safety_buffer = 2
        w.rule.save()
    entry = AuditEntry.objects.filter(object_id=str(w.rule.pk), action="update").latest("id")
    return dict(
        entry=entry.pk,
        run=run.pk,
        sub=sub.pk,
        drift=drift.pk,
        stuck=stuck.pk,
        stock=StockLevel.objects.first().pk,
        push=PendingPush.objects.first().pk,
        rec=rec.pk,
        rec2=order_rec.pk,
        mapping=mapping.pk,
        transform=transform.pk,
        rule=w.rule.pk,
        ship=ship.pk,
        task=task.pk,
        report=report.pk,
        order=order.pk,
    )


# (url template, roles allowed)
PAGES = [
    ("/dashboard/", {"ops", "cx", "admin"}),
    ("/exceptions/", {"ops", "cx", "admin"}),
    ("/exceptions/{rec}/", {"ops", "cx", "admin"}),
    ("/rules/sku-mappings/", {"ops", "admin"}),
    ("/rules/sku-mappings/new/", {"ops", "admin"}),
    ("/rules/sku-mappings/{mapping}/", {"ops", "admin"}),
    ("/rules/sku-mappings/import/", {"ops", "admin"}),
    ("/rules/transforms/", {"ops", "admin"}),
    ("/rules/transforms/new/", {"admin"}),
    ("/rules/transforms/{transform}/", {"ops", "admin"}),
    ("/rules/channel-rules/", {"ops", "admin"}),
    ("/rules/channel-rules/new/", {"admin"}),
    ("/rules/channel-rules/{rule}/", {"ops", "admin"}),
    ("/rules/shipping-methods/", {"ops", "admin"}),  # not cx: orders and their exceptions only
    ("/rules/shipping-methods/new/", {"admin"}),
    ("/rules/shipping-methods/{ship}/", {"ops", "admin"}),
    ("/orders/", {"ops", "cx", "finance", "admin"}),
    ("/orders/{order}/", {"ops", "cx", "finance", "admin"}),
    ("/pushes/", {"ops", "admin"}),
    ("/schedules/", {"admin"}),
    ("/schedules/{task}/", {"admin"}),
    ("/reports/", {"finance", "admin"}),
    ("/reports/{report}/", {"finance", "admin"}),
    ("/reports/{report}/csv/", {"finance", "admin"}),
    ("/reports/{report}/xlsx/", {"finance", "admin"}),
    ("/reports/subscriptions/", {"finance", "admin"}),
    ("/activity/", {"ops", "admin"}),
    ("/schedules/runs/{run}/", {"admin"}),
    ("/activity/{entry}/revert/", {"admin"}),
    ("/api/reports/{report}/xlsx/", {"finance", "admin"}),
    ("/api/schedules/runs/{run}/", {"admin"}),
    ("/api/", {"ops", "cx", "finance", "admin"}),
    ("/api/redoc/", {"ops", "cx", "finance", "admin"}),
    ("/api/transforms/{transform}/", {"ops", "admin"}),
    ("/api/channel-rules/{rule}/", {"ops", "admin"}),
    ("/api/shipping-methods/{ship}/", {"ops", "admin"}),
    ("/api/stock-levels/{stock}/", {"ops", "finance", "admin"}),
    ("/api/pending-pushes/{push}/", {"ops", "admin"}),
    ("/api/schema/", {"ops", "cx", "finance", "admin"}),
    ("/api/docs/", {"ops", "cx", "finance", "admin"}),
    ("/api/exceptions/", {"ops", "cx", "admin"}),
    ("/api/exceptions/{rec}/", {"ops", "cx", "admin"}),
    ("/api/orders/", {"ops", "cx", "finance", "admin"}),
    ("/api/orders/{order}/", {"ops", "cx", "finance", "admin"}),
    ("/api/sku-mappings/", {"ops", "admin"}),
    ("/api/sku-mappings/{mapping}/", {"ops", "admin"}),
    ("/api/transforms/", {"ops", "admin"}),
    ("/api/channel-rules/", {"ops", "admin"}),
    ("/api/shipping-methods/", {"ops", "admin"}),
    ("/api/stock-levels/", {"ops", "finance", "admin"}),
    ("/api/pending-pushes/", {"ops", "admin"}),
    ("/api/reports/", {"finance", "admin"}),
    ("/api/reports/{report}/", {"finance", "admin"}),
    ("/api/reports/{report}/rows/", {"finance", "admin"}),
    ("/api/reports/{report}/csv/", {"finance", "admin"}),
    ("/api/schedules/", {"admin"}),
    ("/api/schedules/{task}/", {"admin"}),
    ("/items/", {"ops", "finance", "admin"}),
    ("/items/import/", {"admin"}),
]

# state-changing endpoints: (url, data, roles allowed). Denied roles must get 403 and change nothing.
POSTS = [
    ("/exceptions/{rec}/status/", {"action": "acknowledge"}, {"ops", "admin"}),
    ("/exceptions/{rec}/map-sku/", {"mode": "item", "item_sku": "00001000"}, {"ops", "admin"}),
    ("/exceptions/{drift}/repush/", {}, {"ops", "admin"}),
    ("/exceptions/{drift}/take-master-value/", {}, {"ops", "admin"}),
    ("/exceptions/{stuck}/order/", {"action": "cancel", "reason": "test"}, {"ops", "cx", "admin"}),
    ("/rules/transforms/new/", {"name": "t-new", "case": "keep"}, {"admin"}),
    ("/exceptions/bulk/", {"ids": "{rec}", "action": "acknowledge"}, {"ops", "admin"}),
    ("/rules/sku-mappings/{mapping}/delete/", {}, {"admin"}),
    ("/pushes/retry/", {"ids": "{push}"}, {"ops", "admin"}),
    ("/pushes/retry-all/", {"query": ""}, {"ops", "admin"}),
    ("/orders/retry-all/", {"query": ""}, {"ops", "admin"}),
    ("/orders/{order}/", {"action": "cancel", "reason": "test"}, {"ops", "cx", "admin"}),
    ("/rules/transforms/{transform}/", {"name": "strip2", "case": "keep"}, {"admin"}),
    ("/rules/shipping-methods/{ship}/", {"storefront_method": "std", "warehouse_method": "UPS"}, {"admin"}),
    ("/schedules/{task}/", {"enabled": "on", "every": "30", "period": "seconds"}, {"admin"}),
    ("/schedules/{task}/run/", {}, {"admin"}),
    ("/reports/run/", {"kind": "stock_drift"}, {"finance", "admin"}),
    ("/api/exceptions/{rec}/acknowledge/", {}, {"ops", "admin"}),
    ("/api/exceptions/{rec2}/ignore/", {"reason": "x"}, {"ops", "admin"}),
    ("/api/exceptions/{rec2}/resolve/", {}, {"ops", "admin"}),
    ("/api/exceptions/{rec2}/map-sku/", {"item": "00001001"}, {"ops", "admin"}),
    ("/api/exceptions/{drift}/repush/", {}, {"ops", "admin"}),
    ("/api/orders/{order}/retry/", {}, {"ops", "cx", "admin"}),
    ("/api/transforms/", {"name": "api-t", "case": "keep"}, {"admin"}),
    ("/api/shipping-methods/", {"storefront_method": "exp", "warehouse_method": "DHL"}, {"admin"}),
    ("/api/orders/{order}/cancel/", {"reason": "customer asked"}, {"ops", "cx", "admin"}),
    ("/api/sku-mappings/", {"item": "00001001", "storefront_sku": "NEW-1"}, {"ops", "admin"}),
    ("/api/reports/run/", {"kind": "stock_drift"}, {"finance", "admin"}),
    ("/rules/transforms/{transform}/delete/", {}, {"admin"}),
    ("/orders/{order}/escalate/", {"note": "customer called twice"}, {"ops", "cx", "admin"}),
    ("/schedules/bulk/", {"ids": "{task}", "action": "disable"}, {"admin"}),
    ("/reports/subscriptions/", {"addresses": "a@example.com", "format": "xlsx"}, {"finance", "admin"}),
    ("/reports/subscriptions/{sub}/pause/", {}, {"finance", "admin"}),
    ("/rules/channel-rules/{rule}/delete/", {}, {"admin"}),
    ("/api/schedules/{task}/run/", {}, {"admin"}),
    ("/items/import/", {}, {"admin"}),
    ("/api/items/import/", {}, {"admin"}),
]


def _status(client, url):
    return client.get(url).status_code


@pytest.mark.parametrize("role", ROLES)
def test_every_page_allows_exactly_its_roles(role, ids, client, make_user):
    if role:
        client.force_login(make_user(role))
    failures = []
    for template, allowed in PAGES:
        url = template.format(**ids)
        code = _status(client, url)
        if role is None:
            ok = code in (302, 401, 403) and code != 200
        elif role in allowed:
            ok = code == 200
        else:
            ok = code == 403
        if not ok:
            failures.append((url, code))
    assert not failures, f"{role}: {failures}"


@pytest.mark.parametrize("role", ROLES)
def test_every_action_refuses_other_roles(role, ids, client, make_user):
    if role:
        client.force_login(make_user(role))
    failures = []
    for template, data, allowed in POSTS:
        url = template.format(**ids)
        body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in data.items()}
        code = client.post(url, body).status_code
        if role is None:
            ok = code in (302, 401, 403)
        elif role in allowed:
            ok = code not in (401, 403, 404, 405, 500)
        else:
            ok = code == 403
        if not ok:
            failures.append((url, code))
    assert not failures, f"{role}: {failures}"


def test_home_routes_each_role(ids, client, make_user):
    assert client.get("/").status_code == 302  # anonymous → login
    client.force_login(make_user("finance"))
    r = client.get("/")
    assert r.status_code == 302 and r["Location"].endswith("/reports/")
    client.force_login(make_user("ops"))
    assert client.get("/").status_code == 200
    client.force_login(make_user(None, username="nobody"))
    assert client.get("/").status_code == 403


def test_anonymous_pages_redirect_to_login(ids, client):
    r = client.get("/exceptions/")
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]


def test_navigation_shows_only_allowed_sections(ids, client, make_user):
    client.force_login(make_user("finance"))
    html = client.get("/reports/").content.decode()
    assert "Finance reports" in html and ">Exceptions<" not in html and "SKU mappings" not in html
    client.force_login(make_user("cx"))
    html = client.get("/exceptions/").content.decode()
    assert (
        ">Exceptions<" in html
        and "Finance reports" not in html
        and "SKU mappings" not in html
        and "Schedules" not in html
    )


def test_csrf_is_enforced(ids, make_user):
    from django.test import Client

    c = Client(enforce_csrf_checks=True)
    c.force_login(make_user("ops"))
    assert c.post(f"/exceptions/{ids['rec']}/status/", {"action": "acknowledge"}).status_code == 403
    assert c.post(f"/api/exceptions/{ids['rec']}/acknowledge/", {}).status_code == 403
    page = c.get(f"/exceptions/{ids['rec']}/")
    token = page.cookies["csrftoken"].value
    assert (
        c.post(f"/exceptions/{ids['rec']}/status/", {"action": "acknowledge", "csrfmiddlewaretoken": token}).status_code
        == 302
    )


def test_token_auth_uses_the_same_roles(ids, make_user):
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    api = APIClient()
    _, token = AuthToken.objects.create(user=make_user("cx"))
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/orders/").status_code == 200
    assert api.get("/api/reports/").status_code == 403
    assert api.get("/api/sku-mappings/").status_code == 403
    api.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert api.get("/api/orders/").status_code == 401  # token auth is listed first: DRF answers 401


def test_the_matrix_covers_every_url(ids):
    """Every named route of the console, exceptions, reports and API appears in the matrix above."""
    from django.urls import URLPattern, URLResolver, get_resolver, resolve

    def names(patterns, ns=None):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from names(p.url_patterns, p.namespace or ns)
            elif (
                isinstance(p, URLPattern)
                and p.name
                and ns in ("console", "exceptions", "reconciliation", "api", "catalog")
            ):
                yield f"{ns}:{p.name}"

    every = set(names(get_resolver().url_patterns))
    covered = {resolve(t.format(**ids).split("?")[0]).view_name for t, _ in PAGES}
    covered |= {resolve(t.format(**ids)).view_name for t, _, _ in POSTS}
    exempt = {
        "console:home",  # tested in test_home_routes_each_role
        "console:favicon",  # public: a redirect to the static icon (tests/console/test_site_pages.py)
        "api:token",  # public by design: exchanges a username/password for a token
        "api:token-logout",
        "api:token-logoutall",  # any token holder revokes its own (tests/api/test_auth_tokens.py)
        "api:api-root",
    }
    missing = sorted(every - covered - exempt)
    assert not missing, missing


def test_cx_reads_orders_and_their_exceptions_but_not_shipping_maps(ids, client, make_user):
    """README: cx looks up orders and their exceptions only — shipping-method maps are a rule table."""
    from rest_framework.test import APIClient

    cx = make_user("cx")
    assert not cx.has_perm("orders.view_shippingmethodmap") and cx.has_perm("orders.view_ordertransition")
    client.force_login(cx)
    for url in ("/rules/shipping-methods/", f"/rules/shipping-methods/{ids['ship']}/"):
        assert client.get(url).status_code == 403, url
    html = client.get(f"/orders/{ids['order']}/").content.decode()
    assert "Shipping maps" not in html
    api = APIClient()
    api.force_authenticate(cx)
    assert api.get("/api/shipping-methods/").status_code == 403
    assert api.get(f"/api/shipping-methods/{ids['ship']}/").status_code == 403
    assert api.get(f"/api/orders/{ids['order']}/").status_code == 200
    assert api.get(f"/api/exceptions/{ids['stuck']}/").status_code == 200


@pytest.mark.parametrize("data", [{"action": "cancel"}, {"action": "cancel", "reason": ""}, {"action": "nonsense"}, {}])
def test_order_actions_check_the_permission_before_validating_the_form(ids, client, make_user, data):
    """A role without the order permission gets 403 whatever it posts, never the form's validation messages."""
    from django.contrib.auth.models import Permission

    from integration_hub.orders.models import Order

    client.force_login(make_user("finance"))
    r = client.post(f"/orders/{ids['order']}/", data)
    assert r.status_code == 403 and "Say why" not in r.content.decode()
    # the exception page's order action: a user who may read exceptions but not act on orders
    reader = make_user(None, username="reader")
    reader.user_permissions.add(Permission.objects.get(codename="view_exceptionrecord"))
    client.force_login(reader)
    r = client.post(f"/exceptions/{ids['stuck']}/order/", data)
    assert r.status_code == 403 and "Say why" not in r.content.decode()
    assert Order.objects.get(pk=ids["order"]).state == "held"
    # a role that may cancel sees the validation message (400) instead
    client.force_login(make_user("cx"))
    r = client.post(f"/orders/{ids['order']}/", data)
    assert r.status_code == 400
    if data.get("action") == "cancel":
        assert "Say why the order is cancelled." in r.content.decode()
