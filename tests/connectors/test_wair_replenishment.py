"""WAIR's published replenishment API: upload cycles wrapped in Batch/start … Batch/stop, records split to the
documented sizes, on-hand stock, sales with their channel location, open allocations as a full load; stock
targets and transfers read back. Against the emulator, over real HTTP."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from connectors import errors
from connectors.base import DemandLine, PlannerAllocation, PlannerVariant, PlannerWarehouse
from connectors.registry import api_notice, get_connector
from connectors.wair_replenishment import SHAPE, WairReplenishmentConnector
from tests.support.sandbox import controller
from tests.support.sandbox import faults


control = controller("wair_replenishment")


@pytest.fixture
def wr_conn(db, sandbox):
    from integration_hub.core.models import Connection

    conn = Connection(
        name="wair-repl",
        system_type="wair_replenishment",
        base_url=f"{sandbox.url}/wair_replenishment",
        client_id="hub",
        options={"tenant": "DEMO", "channel_locations": {"uk-web": "WEB-UK"}, "page_size": 2},
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=2,
    )
    conn.set_secret("wair-demo-password")
    conn.save()
    return conn


def connector(conn, **opts):
    conn.options = {**conn.options, **opts}
    c = WairReplenishmentConnector(conn)
    c.client.backoff_base = 0.01
    return c


AT = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def test_registry_and_published_document(wr_conn):
    assert isinstance(get_connector(wr_conn, fresh=True), WairReplenishmentConnector)
    assert api_notice("wair_replenishment") == (
        False,
        "WairReplenishmentConnector follows the published API: "
        "https://docs.wair.ai/v1/docs/integration-core-principles",
    )
    assert SHAPE["Sales"][1] == 10_000 and SHAPE["Stock"][1] == 50_000 and SHAPE["Items"][1] == 25_000


def test_one_upload_cycle_in_a_batch_split_to_size(wr_conn, sandbox):
    c = connector(wr_conn, max_per_call={"Sales": 2, "StockNotForReplenishment": 1})
    lines = [
        DemandLine(
            f"O{i}", "A", 1, "uk-web", "DC1", ordered_at=AT, unit_price_cents=1000, currency="GBP", key=f"O{i}|A||sale"
        )
        for i in range(5)
    ]
    lines.append(
        DemandLine("O0", "A", 1, "uk-web", "DC1", ordered_at=AT, is_return=True, currency="GBP", key="O0|A||return")
    )
    variants = [PlannerVariant("A", title="Mug", product_id="MUG", stock={"DC1": 3}, on_hand={"DC1": 5})]
    allocations = [PlannerAllocation("O3|A", "A", "DC1", 1, AT), PlannerAllocation("O4|A", "A", "DC1", 2)]
    assert c.push_demand(lines, variants, [PlannerWarehouse("DC1", "Leeds DC")], allocations) == 6
    st = control(sandbox, "state")
    assert st["batches"] == {"started": 1, "stopped": 1} and not st["batch_open"]
    assert [e for e, _ in st["calls"]] == [
        "Items",
        "Locations",
        "Stock",
        "Sales",
        "Sales",
        "Sales",
        "StockNotForReplenishment",
        "StockNotForReplenishment",
    ]
    assert st["stock"]["DC1|A"]["quantity"] == 5  # on hand, not the 3 available
    assert {loc["locationId"]: loc["locationType"] for loc in st["locations"].values()} == {
        "DC1": "warehouse",
        "WEB-UK": "webshop",
    }
    sale, ret = st["sales"]["O1|A||sale"], st["sales"]["O0|A||return"]
    assert (sale["locationId"], sale["quantity"], sale["price"], sale["salesDateTime"]) == (
        "WEB-UK",
        1,
        10.0,
        "2026-11-20T10:00:00Z",
    )
    assert ret["quantity"] == -1
    assert set(st["stocknotforreplenishment"]) == {"O3|A", "O4|A"}  # the full load, over two calls
    assert st["stocknotforreplenishment"]["O4|A"]["startDateTime"] == "1970-01-01T00:00:00Z"

    # the next cycle's full load replaces the allocations: a dispatched order's units are free again
    c.push_demand(lines[:1], variants, [PlannerWarehouse("DC1")], allocations[:1])
    st = control(sandbox, "state")
    assert set(st["stocknotforreplenishment"]) == {"O3|A"} and st["batches"]["stopped"] == 2
    assert len(st["sales"]) == 6  # upsert by id: the resent sale is not a second one


def test_a_failed_call_still_stops_the_batch(wr_conn, sandbox):
    c = connector(wr_conn)
    faults(sandbox, "wair_replenishment", fail_next=[400])
    with pytest.raises(errors.ConnectorError):
        c.push_demand(
            [DemandLine("O1", "A", 1, "uk-web", "DC1", key="k")], [PlannerVariant("A")], [PlannerWarehouse("DC1")]
        )
    assert not control(sandbox, "state")["batch_open"]
    with pytest.raises(errors.BadDataError, match="channel"):
        c.push_demand([DemandLine("O1", "A", 1, "", "DC1")])


def test_data_outside_a_batch_and_oversized_calls_are_refused_by_the_emulator(wr_conn, sandbox):
    c = connector(wr_conn)
    with pytest.raises(errors.BadDataError):
        c.client.post(
            "/api/v1/Sales", json={"sales": [{"salesId": "x", "skuId": "A", "locationId": "L", "quantity": 1}]}
        )
    c.client.post("/api/v1/Batch/start", json={})
    with pytest.raises(errors.BadDataError) as exc:
        c.client.post(
            "/api/v1/Sales",
            json={
                "sales": [{"salesId": str(i), "skuId": "A", "locationId": "L", "quantity": 1} for i in range(10_001)]
            },
        )
    assert "at most 10000" in exc.value.detail  # what the remote said: admin-only detail, not the message
    c.client.post("/api/v1/Batch/stop", json={})


def test_stock_targets_and_transfers_come_back(wr_conn, sandbox):
    c = connector(wr_conn)
    c.push_demand(
        [DemandLine("O1", "A", 4, "uk-web", "DC1", key="O1|A||sale")],
        [PlannerVariant("A", on_hand={"DC1": 1})],
        [PlannerWarehouse("DC1")],
        [PlannerAllocation("O2|A", "A", "DC1", 2)],
    )
    control(
        sandbox,
        "seed_transfers",
        {
            "transfers": [
                {
                    "fromLocationId": "DC1",
                    "toLocationId": "S1",
                    "skuId": "A",
                    "quantity": 2.0,
                    "referenceId": "RD_1",
                    "transferType": "Replenishment",
                },
                {"fromLocationId": "DC2", "toLocationId": "S1", "skuId": "A", "quantity": 1.0, "referenceId": "RD_2"},
                {"fromLocationId": "DC1", "toLocationId": "S2", "skuId": "B", "quantity": 3.0, "referenceId": "RD_3"},
            ]
        },
    )
    recs = {(r.kind, r.sku, r.location): r for r in c.recommendations()}  # page size 2: paged
    assert recs[("target", "A", "DC1")].recommended_quantity == 6  # 4 sold + 2 held
    assert recs[("transfer", "A", "S1")].recommended_quantity == 3 and recs[("transfer", "A", "S1")].supplier == "DC1"
    assert "RD_1" in recs[("transfer", "A", "S1")].reason and recs[("transfer", "B", "S2")].recommended_quantity == 3


def test_bad_credentials_are_permanent(wr_conn, sandbox):
    wr_conn.set_secret("wrong")
    with pytest.raises(errors.PermanentError):
        connector(wr_conn).recommendations()
    wr_conn.client_id = ""
    with pytest.raises(errors.PermanentError, match="client_id"):
        WairReplenishmentConnector(wr_conn)
