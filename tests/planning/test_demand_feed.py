"""Planning: demand feed built from orders (set-based), sent to the Inventory Planner emulator over real
HTTP; returns and non-saleable states; recommendations read back; the ops page."""

from __future__ import annotations

import pytest
from django.utils import timezone

from exceptions_app.models import ExceptionRecord
from integration_hub.planning import services
from integration_hub.planning.models import DemandFeedEntry, Recommendation, ReturnLine
from tests.support.sandbox import controller
from tests.support import factories


ip_control = controller("inventory_planner")


@pytest.fixture
def pull(sandbox, live_server):
    """The planner's daily pull of the hub's files (Starter CSV connector: one warehouse per connector), over
    real HTTP from the emulator to the live hub, with the connection's feed token as the basic-auth password."""
    from integration_hub.planning import feeds

    tokens = {}

    def run(conn, warehouse="clarus-dc"):
        if conn.pk not in tokens:
            tokens[conn.pk] = feeds.issue_token(conn)
        root = f"{live_server.url}/planning/feeds/{conn.name}/{warehouse}"
        res = ip_control(
            sandbox,
            "pull",
            {
                "products_url": f"{root}/products.csv",
                "sales_orders_url": f"{root}/sales-orders.csv",
                "warehouse": warehouse,
                "username": "planner",
                "password": tokens[conn.pk],
            },
        )
        assert res["ok"], res
        return ip_control(sandbox, "state")["lines"]

    return run


@pytest.fixture
def world(db, sandbox):
    sf = factories.connection("commercetools", "ct", base_url="http://127.0.0.1:1/ct")
    wh = factories.connection("clarus", "clarus-dc", base_url="http://127.0.0.1:1/clarus")
    ip = factories.connection(
        "inventory_planner",
        "planner",
        base_url=f"{sandbox.url}/inventory_planner",
        client_id="demo-account",
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=1,
        secret="ip-demo-key",
    )
    channel = factories.channel(sf, "uk-web", name="UK web", external_id="uk", warehouse=wh)
    a, b = factories.item("A", name="Mug"), factories.item("B", name="Spoon")
    kit = factories.item("KIT", bundle_of={a: 1, b: 2})
    return {"ip": ip, "channel": channel, "wh": wh, "A": a, "B": b, "KIT": kit}


def make_order(world, ref, state, lines, promos=("SUMMER",)):
    from integration_hub.orders.models import Order, OrderLine

    order = Order.objects.create(
        channel=world["channel"],
        external_id=ref,
        order_number=ref,
        idempotency_key=f"uk-web:{ref}",
        state=state,
        warehouse=world["wh"],
        promotion_codes=list(promos),
        placed_at=timezone.now(),
        currency="GBP",
    )
    made = {}
    for line_id, sku, qty, parent in lines:
        made[line_id] = OrderLine.objects.create(
            order=order,
            line_id=line_id,
            storefront_sku=sku,
            item=world[sku],
            quantity=qty,
            parent=made.get(parent),
            unit_price_cents=999,
        )
    return order


@pytest.fixture
def orders(world):
    o1 = make_order(world, "O1", "dispatched", [("1", "A", 2, None), ("2", "KIT", 1, None)])  # bundle not exploded
    o2 = make_order(
        world,
        "O2",
        "sent",
        [("1", "KIT", 2, None), ("1a", "A", 2, "1"), ("1b", "B", 4, "1"), ("2", "A", 1, None)],
        promos=(),
    )
    o3 = make_order(world, "O3", "captured", [("1", "A", 5, None)])
    o4 = make_order(world, "O4", "cancelled", [("1", "B", 3, None)])
    return o1, o2, o3, o4


def test_first_feed_sends_each_demand_line_once(world, orders, sandbox, pull):
    res = services.push_demand_feed(world["ip"])
    assert not res.error and res.batches == 1
    lines = pull(world["ip"])
    got = {k: v["quantity"] for k, v in lines.items()}
    assert got == {
        "uk-web:O1|A||sale": 2,  # plain line
        "uk-web:O1|A|KIT|sale": 1,  # bundle exploded from the catalogue
        "uk-web:O1|B|KIT|sale": 2,
        "uk-web:O2|A|KIT|sale": 2,  # components exploded by the order flow (parent)
        "uk-web:O2|B|KIT|sale": 4,
        "uk-web:O2|A||sale": 1,
    }  # O3 is not validated yet, O4 was cancelled before it was ever sent
    first = lines["uk-web:O1|A||sale"]
    assert first["channel"] == "uk-web" and first["warehouse"] == "clarus-dc" and first["currency"] == "GBP"
    assert first["order_id"] == "uk-web:O1" and first["price"] == "9.99"
    assert (
        lines["uk-web:O1|B|KIT|sale"]["price"] == ""
    )  # a component exploded from the catalogue has no price of its own
    assert DemandFeedEntry.objects.filter(connection=world["ip"]).count() == 6

    sent_at = set(DemandFeedEntry.objects.values_list("sent_at", flat=True))
    again = services.push_demand_feed(world["ip"], full=True)
    assert again.sent == 0 and again.unchanged == 7  # incl. the never-sent cancelled O4 line (0)
    assert set(DemandFeedEntry.objects.values_list("sent_at", flat=True)) == sent_at  # nothing re-published
    assert pull(world["ip"]) == lines


def test_cancelled_after_sending_is_resent_as_zero(world, orders, sandbox, pull):
    from integration_hub.orders.models import Order

    services.push_demand_feed(world["ip"])
    assert "uk-web:O1|A||sale" in pull(world["ip"])
    Order.objects.filter(pk=orders[0].pk).update(state="cancelled", updated_at=timezone.now())
    Order.objects.filter(pk=orders[2].pk).update(state="validated", updated_at=timezone.now())
    res = services.push_demand_feed(world["ip"])
    assert res.zeroed == 3 and res.sent == 4
    assert DemandFeedEntry.objects.get(key="uk-web:O1|A||sale").quantity == 0
    lines = pull(world["ip"])  # a complete file: the cancelled order's lines are gone from it, so from the planner
    assert "uk-web:O1|A||sale" not in lines and "uk-web:O1|B|KIT|sale" not in lines
    assert lines["uk-web:O3|A||sale"]["quantity"] == 5


def test_returns_only_saleable_units_offset_demand(world, orders, sandbox, pull):
    services.push_demand_feed(world["ip"])
    stored = services.record_returns(
        [
            {
                "external_ref": "RMA-1",
                "order_ref": "uk-web:O2",
                "line_id": "2",
                "quantity": 1,
                "condition": "available",
            },
            {"external_ref": "RMA-2", "order_ref": "uk-web:O2", "line_id": "1b", "quantity": 2, "condition": "damaged"},
            {
                "external_ref": "RMA-3",
                "order_ref": "uk-web:O1",
                "line_id": "2",
                "quantity": 1,
                "condition": "inspection",
            },
            {"external_ref": "RMA-4", "order_ref": "uk-web:O9", "line_id": "1", "quantity": 1},
            {"external_ref": "RMA-5", "order_ref": "uk-web:O2", "line_id": "2", "quantity": 0},
        ]
    )
    assert stored == 3 and ReturnLine.objects.count() == 3
    assert ExceptionRecord.objects.filter(kind="bad_payload", dedupe_key__contains="RMA-4").exists()
    assert ExceptionRecord.objects.filter(kind="bad_payload", dedupe_key__contains="RMA-5").exists()
    res = services.push_demand_feed(world["ip"])
    assert res.returns_sent == 1
    lines = pull(world["ip"])
    returns = {k: v["quantity"] for k, v in lines.items() if v["type"] == "return"}
    assert returns == {"uk-web:O2|A||return": -1}  # damaged / quarantined units are not sent
    # the inspected bundle comes back saleable: its components go as returns with the bundle kept
    services.record_returns(
        [{"external_ref": "RMA-3", "order_ref": "uk-web:O1", "line_id": "2", "quantity": 1, "condition": "available"}]
    )
    services.push_demand_feed(world["ip"])
    lines = pull(world["ip"])
    assert lines["uk-web:O1|A|KIT|return"]["quantity"] == -1 and lines["uk-web:O1|B|KIT|return"]["quantity"] == -2


def test_build_demand_is_set_based(world, orders, django_assert_max_num_queries):
    for i in range(30):
        make_order(world, f"X{i}", "acknowledged", [("1", "KIT", 1, None), ("2", "A", 1, None)])
    with django_assert_max_num_queries(2):
        desired = services.build_demand(None)
    assert len(desired) == 7 + 30 * 3  # O4 (cancelled) is present with quantity 0
    with django_assert_max_num_queries(2):
        services.build_returns(None)


def _sftp(world, server, monkeypatch, port=None):
    import connectors.registry as registry

    monkeypatch.setenv("HUB_CONN_IP_SFTP_PASSWORD", server.password)
    world["ip"].options = {
        "delivery": "sftp",
        "sftp_host": server.host,
        "sftp_port": port or server.port,
        "sftp_username": server.username,
        "sftp_password_env": "HUB_CONN_IP_SFTP_PASSWORD",
        "sftp_host_key": server.host_key_line,
        "sftp_timeout": 2,
    }
    world["ip"].save()
    registry.clear_cache()


def test_planner_failure_becomes_exception_and_next_run_resumes(world, orders, sandbox, sftp_server, monkeypatch):
    """Advanced CSV connector (SFTP): the server down → an exception record, nothing recorded as sent; the
    next run uploads everything, variants and warehouses before the sales orders."""
    import socket

    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead_port = free.getsockname()[1]
    free.close()
    _sftp(world, sftp_server, monkeypatch, port=dead_port)
    res = services.push_demand_feed(world["ip"])
    assert res.error and res.sent == 0
    rec = ExceptionRecord.objects.get(dedupe_key="sync_timeout:planner:push_demand")
    assert rec.status == "open"
    assert DemandFeedEntry.objects.count() == 0
    _sftp(world, sftp_server, monkeypatch)
    res = services.push_demand_feed(world["ip"])
    assert res.sent == 6 and not res.error
    rec.refresh_from_db()
    assert rec.status == "resolved"
    for kind in ("warehouses", "variants", "sales_orders"):
        [f] = sftp_server.files(kind)
        assert ip_control(sandbox, "ingest", {"kind": kind, "text": f.read_text()})["processed"], kind
    lines = ip_control(sandbox, "state")["lines"]
    assert lines["uk-web:O2|B|KIT|sale"]["quantity"] == 4 and lines["uk-web:O2|B|KIT|sale"]["currency"] == "GBP"
    assert ip_control(sandbox, "state")["variants"] == ["A", "B"]  # the components the lines name


def test_recommendations_refresh_replaces_rows(world, orders, sandbox, pull):
    ip_control(
        sandbox,
        "seed_variants",
        {
            "variants": [
                {"sku": "A", "warehouse": "clarus-dc", "stock": 1, "vendor": "Acme"},
                {"sku": "GHOST", "warehouse": "clarus-dc", "stock": -3},
            ]
        },
    )
    services.push_demand_feed(world["ip"])
    pull(world["ip"])
    res = services.refresh_recommendations(world["ip"])
    assert not res.error and res.unknown_skus == 1
    recs = {r.sku: r for r in Recommendation.objects.all()}
    assert (
        recs["A"].recommended_quantity == 2 + 1 + 2 + 1 - 1
        and recs["A"].supplier == "acme"
        and recs["A"].item == world["A"]
    )
    assert recs["B"].recommended_quantity == 6 and recs["GHOST"].item is None
    ip_control(sandbox, "seed_variants", {"variants": [{"sku": "B", "warehouse": "clarus-dc", "stock": 100}]})
    res = services.refresh_recommendations(world["ip"])
    assert res.removed == 1 and not Recommendation.objects.filter(sku="B").exists()


def test_tasks_run_every_planner(world, orders, sandbox, pull):
    from integration_hub.planning import tasks

    out = tasks.push_demand()
    assert out["planner"]["sent"] == 6
    pull(world["ip"])
    ip_control(
        sandbox,
        "seed_purchase_orders",
        {
            "orders": [
                {
                    "id": "po1",
                    "reference": "PO-1",
                    "type": "po",
                    "vendor": "Acme",
                    "items": [{"sku": "A", "replenishment": 5, "received_qty": 1}],
                }
            ]
        },
    )
    out = tasks.refresh_recommendations()["planner"]
    assert out["stored"] >= 2 and out["stock_orders"]["stored"] == 1


def test_beat_jobs_point_at_registered_tasks():
    from integration_hub.celery import app
    from integration_hub.planning.beat import SCHEDULE

    app.loader.import_default_modules()
    assert {j.task for j in SCHEDULE} <= set(app.tasks)


def test_ops_page_lists_recommendations(world, orders, sandbox, role_client, django_assert_max_num_queries, pull):
    services.push_demand_feed(world["ip"])
    pull(world["ip"])
    services.refresh_recommendations(world["ip"])
    client = role_client("ops")
    client.get("/planning/")
    with django_assert_max_num_queries(13):  # 12 + the planner's stock orders
        resp = client.get("/planning/?q=A")
    assert resp.status_code == 200
    body = resp.content.decode()
    assert "Replenishment recommendations" in body and "Mug" in body and "Spoon" not in body  # B filtered out


def test_ops_page_permissions(db, client, role_client):
    assert client.get("/planning/").status_code == 302  # login first
    assert role_client("cx").get("/planning/").status_code == 403


def test_planner_warehouse_ids_from_options(world, orders, sandbox, pull):
    world["ip"].options = {"warehouses": {"clarus-dc": "wh-42"}}
    world["ip"].save()
    import connectors.registry as registry

    registry.clear_cache()
    services.push_demand_feed(world["ip"])
    lines = pull(world["ip"], "wh-42")
    assert {v["warehouse"] for v in lines.values()} == {"wh-42"} and len(lines) == 6
    assert set(DemandFeedEntry.objects.values_list("location", flat=True)) == {"wh-42"}


def test_record_returns_is_idempotent_and_follows_state_changes(world, orders, sandbox, pull):
    row = {
        "external_ref": "ct/R1",
        "order_ref": "uk-web:O1",
        "line_id": "1",
        "quantity": 2,
        "condition": "advised",
        "returned_at": "2026-11-20T10:00:00Z",
    }
    assert services.record_returns([row]) == 1
    first = ReturnLine.objects.get()
    assert services.record_returns([row, dict(row)]) == 0  # seen again: nothing written
    assert ReturnLine.objects.get().updated_at == first.updated_at
    services.push_demand_feed(world["ip"])
    assert DemandFeedEntry.objects.filter(is_return=True).count() == 0  # announced units do not offset demand
    # advised → back in stock, with a stale copy earlier in the same batch: the last row wins
    assert services.record_returns([row, dict(row, condition="available")]) == 1
    assert ReturnLine.objects.get().condition == "available" and ReturnLine.objects.count() == 1
    assert services.push_demand_feed(world["ip"]).returns_sent == 1
    assert pull(world["ip"])["uk-web:O1|A||return"]["quantity"] == -2
    assert services.record_returns([dict(row, condition="available", returned_at="yesterday")]) == 0
    assert ExceptionRecord.objects.filter(
        dedupe_key="bad_payload:returns:return:ct/R1", title__contains="returned_at"
    ).exists()


def test_ops_page_shows_returns_in_fixed_queries(world, orders, sandbox, role_client, django_assert_num_queries):
    client = role_client("ops")

    def add(n, start):
        services.record_returns(
            [
                {
                    "external_ref": f"R{i}",
                    "order_ref": "uk-web:O2",
                    "line_id": "2",
                    "quantity": 1,
                    "condition": ("available", "damaged", "inspection", "advised")[i % 4],
                }
                for i in range(start, start + n)
            ]
        )

    add(5, 0)
    client.get("/planning/")
    with django_assert_num_queries(12) as small:  # 11 + the planner's stock orders
        resp = client.get("/planning/")
    body = resp.content.decode()
    assert "Latest returns" in body and "advised (not back yet)" in body and "O2" in body
    summary = {c["condition"]: (c["lines"], c["units"]) for c in services.returns_summary()["conditions"]}
    assert summary == {"available": (2, 2), "damaged": (1, 1), "inspection": (1, 1), "advised": (1, 1)}
    add(45, 5)
    with django_assert_num_queries(len(small.captured_queries)):
        resp = client.get("/planning/")
    assert resp.status_code == 200 and services.returns_summary()["lines"] == 50
