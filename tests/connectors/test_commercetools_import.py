"""commercetools Import API for full loads (issue 12, part 4), against the sandbox's model of it over HTTP, with the
request bodies and answers checked against the commercetools SDK's Import API schemas."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from connectors import errors
from connectors.base import InventoryTarget
from connectors.commercetools import CommercetoolsConnector
from connectors.commercetools_import import InventoryImporter
from tests.support.sandbox import SandboxClient, controller

SKUS = [f"IMP-{i:03d}" for i in range(100)]


control = controller("commercetools")


@pytest.fixture
def make(db, sandbox):
    from integration_hub.core.models import Connection

    def build(**options):
        conn = Connection(
            name=f"ct-imp-{len(Connection.objects.all())}",
            system_type="commercetools",
            base_url=f"{sandbox.url}/commercetools",
            auth_url=f"{sandbox.url}/commercetools",
            client_id="hub-demo",
            options={"project_key": "demo", **options},
            rate_limit_per_second=1000,
            rate_limit_burst=1000,
            timeout_seconds=5,
            max_retries=1,
        )
        conn.set_secret("hub-demo-secret")
        conn.save()
        CommercetoolsConnector.auth_for(conn).invalidate()
        c = CommercetoolsConnector(conn)
        c.client = c.build_client(backoff_base=0.01)
        return c

    control(sandbox, "seed_catalog", {"channels": ["uk-web"], "skus": SKUS, "quantity": None})
    return build


def routes(sandbox, fragment, method="POST"):
    """Requests the commercetools emulator served on routes containing ``fragment`` (over the stats endpoint)."""
    return sum(
        v
        for k, v in SandboxClient.of(sandbox).stats("commercetools").by_route.items()
        if k.startswith(method) and fragment in k
    )


def settle_all(ct, since, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        snap = ct.import_snapshot(since)
        if snap.processing is not None and not snap.processing:
            return snap
        assert time.monotonic() < deadline, "imports still processing"
        time.sleep(0.05)


def targets(skus, q=lambda n: n, channel="uk-web"):
    return [InventoryTarget(s, channel, q(n), ledger=q(n)) for n, s in enumerate(skus)]


def test_batches_of_twenty_and_entry_keys():
    assert [len(b) for b in InventoryImporter.batches(list(range(41)))] == [20, 20, 1]
    assert InventoryImporter.batches([]) == []
    assert CommercetoolsConnector.entry_key("IMP-001", "uk-web") == "uk-web--IMP-001"
    odd = CommercetoolsConnector.entry_key("SKU WITH SPACE/1", "uk-web")
    assert (
        odd.startswith("hub-")
        and len(odd) == 44
        and odd == CommercetoolsConnector.entry_key("SKU WITH SPACE/1", "uk-web")
    )
    assert odd != CommercetoolsConnector.entry_key("SKU WITH SPACE/2", "uk-web")


def test_a_first_sync_is_imported_twenty_at_a_time_without_reads_and_confirmed_from_the_operations(make, sandbox):
    control(sandbox, "import_settings", {"delay": 0.3})
    ct = make()
    since = datetime.now(timezone.utc)
    results = ct.push_full(targets(SKUS))
    assert all(isinstance(r.error, errors.ImportPending) and r.error.retry_after == 900 for r in results)
    assert routes(sandbox, "inventories/import-containers") == 5  # 100 entries, 20 per InventoryImportRequest
    assert routes(sandbox, "inventory", "GET") == 0  # no per-100 inventory read: the import upserts by key
    assert (
        routes(sandbox, "/inventory$") == 0 and routes(sandbox, "inventory/(?P") == 0
    )  # no per-entry create or update
    snap = ct.import_snapshot(since)  # asynchronous: nothing has settled yet
    assert snap.processing_total == 100 and snap.outcome("uk-web--IMP-007", since)[0] == "processing"
    assert control(sandbox, "state", {"skus": SKUS})["inventory"].get("uk-web", {}) == {}
    snap = settle_all(ct, since)
    assert snap.outcome("uk-web--IMP-007", since) == ("imported", None)
    assert snap.requests <= 7  # processing total + keys + the five failure states
    inv = control(sandbox, "state", {"skus": SKUS})["inventory"]["uk-web"]
    assert inv == {s: n for n, s in enumerate(SKUS)}
    [stock] = ct.get_stock(["IMP-007"], "uk-web")
    assert stock.ledger == 7 and stock.unexplained_increase == 0  # the import carried the marker
    # the next (delta) write is the relative, versioned one on the keyed entry: the storefront's order is kept
    control(sandbox, "create_orders", {"orders": [{"channel": "uk-web", "lines": [{"sku": "IMP-007", "quantity": 1}]}]})
    [res] = ct.set_stock([InventoryTarget("IMP-007", "uk-web", 9, ledger=9)])
    assert res.ok and control(sandbox, "state", {"skus": ["IMP-007"]})["inventory"]["uk-web"]["IMP-007"] == 8
    assert routes(sandbox, "inventories/import-containers") == 5  # set_stock (hot deltas) never imports


def test_one_container_per_connection_created_once_and_reused(make, sandbox):
    emu = sandbox.emulators["commercetools"]
    ct = make()
    ct.push_full(targets(SKUS[:40]))
    ct.push_full(targets(SKUS[40:80]))
    assert list(emu.import_containers) == [f"integration-hub-inventory-{ct.connection.pk}"]
    assert routes(sandbox, "/import-containers", "POST") - routes(sandbox, "inventories/import-containers") == 1
    again = CommercetoolsConnector(ct.connection)  # a new worker: finds the container, does not create another
    again.push_full(targets(SKUS[80:]))
    assert len(emu.import_containers) == 1
    assert routes(sandbox, "/import-containers", "POST") - routes(sandbox, "inventories/import-containers") == 1


def test_pairs_the_hub_confirmed_before_go_through_the_versioned_delta_path(make, sandbox):
    """A resync of entries the hub wrote: read per 100, skip what is right, relative writes keep ct's own orders."""
    ct = make(import_min=1)
    assert all(r.ok for r in ct.set_stock(targets(SKUS[:30], q=lambda n: 5)))
    control(sandbox, "create_orders", {"orders": [{"channel": "uk-web", "lines": [{"sku": SKUS[0], "quantity": 2}]}]})
    known = [
        InventoryTarget(s, "uk-web", 5 if n else 6, ledger=5 if n else 6, known_ref="x")
        for n, s in enumerate(SKUS[:30])
    ]
    res = ct.push_full(known)
    assert all(r.ok for r in res) and routes(sandbox, "inventories/import-containers") == 0
    assert control(sandbox, "state", {"skus": [SKUS[0]]})["inventory"]["uk-web"][SKUS[0]] == 4  # 5 − 2 (order) + 1


def test_unknown_skus_and_channels_are_refused_before_the_import(make, sandbox):
    ct = make()
    res = ct.push_full(
        targets(SKUS[:25])
        + [
            InventoryTarget("NOT-A-PRODUCT", "uk-web", 1, ledger=1),
            InventoryTarget(SKUS[0], "no-such-channel", 1, ledger=1),
        ]
    )
    by = {(r.sku, r.channel_ref): r for r in res}
    assert isinstance(by[("NOT-A-PRODUCT", "uk-web")].error, errors.NotFoundError)
    assert isinstance(by[(SKUS[0], "no-such-channel")].error, errors.PermanentError)
    assert sum(isinstance(r.error, errors.ImportPending) for r in res) == 25
    assert routes(sandbox, "inventories/import-containers") == 2


def test_the_catalogue_check_reads_the_cheaper_way(make, sandbox):
    """A first sync of most of the catalogue scans it 500 products a page instead of querying 100 SKUs at a time."""
    emu = sandbox.emulators["commercetools"]
    many = [f"CAT-{i:04d}" for i in range(1200)]
    control(sandbox, "seed_catalog", {"channels": ["uk-web"], "skus": many, "quantity": None})
    ct = make()
    before = routes(sandbox, "product-projections", "GET")
    res = ct.push_full(targets(many))
    assert all(isinstance(r.error, errors.ImportPending) for r in res)
    products = len(emu.products)
    assert routes(sandbox, "product-projections", "GET") - before == 1 + -(
        -products // 500
    )  # count + pages, not 12 queries
    before = routes(sandbox, "product-projections", "GET")
    ct.push_full(targets(many, channel="uk-web") + targets(many[:30], q=lambda n: 1))  # later rounds: known, no request
    assert routes(sandbox, "product-projections", "GET") == before
    other = make()  # a fresh connector, 150 SKUs of ~1,300 products: two variant queries beat three pages
    before = routes(sandbox, "product-projections", "GET")
    assert all(isinstance(r.error, errors.ImportPending) for r in other.push_full(targets(many[:150])))
    assert routes(sandbox, "product-projections", "GET") - before == 1 + 2


def test_the_catalogue_check_switches_to_one_scan_once_queries_would_cost_as_much(make, sandbox, monkeypatch):
    """Rounds of a load over a catalogue much bigger than one round: variant queries first, one scan when they add
    up to its cost, then nothing (rent-or-buy, at most twice the cheaper way for the whole load)."""
    from connectors import commercetools as mod

    emu = sandbox.emulators["commercetools"]
    many = [f"RB-{i:04d}" for i in range(3000)]
    control(sandbox, "seed_catalog", {"channels": ["uk-web"], "skus": many, "quantity": None})
    ct = make()
    pages = -(-len(emu.products) // 500)  # 7
    counts = []
    for start in range(0, 3000, 200):  # 15 rounds of 200 SKUs: 2 queries each
        before = routes(sandbox, "product-projections", "GET")
        ct._catalogue_members(many[start : start + 200])
        counts.append(routes(sandbox, "product-projections", "GET") - before)
    assert counts[0] == 1 + 2  # count + two variant queries
    assert sum(counts) <= 1 + 2 * pages + 2 and counts[-1] == 0, counts  # ≤ 2× the one scan, then free
    assert ct._catalogue_members(["RB-0001", "NOPE"]) == {"RB-0001"}
    monkeypatch.setattr(mod, "CATALOGUE_TTL", -1)  # the window ends: checked again
    before = routes(sandbox, "product-projections", "GET")
    assert ct._catalogue_members(["RB-0001"]) == {"RB-0001"} and routes(sandbox, "product-projections", "GET") > before


def test_failed_operations_name_their_reason(make, sandbox):
    emu = sandbox.emulators["commercetools"]
    ct = make()
    since = datetime.now(timezone.utc)
    control(sandbox, "import_settings", {"delay": 0.2, "reject_skus": [SKUS[1]]})
    ct.channel_ids(["uk-web"])
    res = ct.push_full(targets(SKUS[:20]))
    assert all(isinstance(r.error, errors.ImportPending) for r in res)
    with emu.lock:  # the channel is deleted while the import is queued: the reference cannot be resolved
        emu.channel_by_key["gone-web"] = emu.channel_by_key["uk-web"]
    ct._channel_id_by_key["gone-web"] = ct._channel_id_by_key["uk-web"]
    res = ct.push_full(targets(SKUS[20:40], channel="gone-web"))
    with emu.lock:
        del emu.channel_by_key["gone-web"]
    snap = settle_all(ct, since)
    state, op = snap.outcome(ct.entry_key(SKUS[1], "uk-web"), since)
    assert state == "failed" and op["state"] == "rejected"
    state, op = snap.outcome(ct.entry_key(SKUS[20], "gone-web"), since)
    assert state == "failed" and op["unresolvedReferences"] == [{"typeId": "channel", "key": "gone-web"}]
    err = ct.import_failure(SKUS[20], "gone-web", op)
    assert (
        isinstance(err, errors.BadDataError)
        and "unresolved channel key 'gone-web'" in str(err)
        and SKUS[20] in str(err)
    )
    assert snap.outcome(ct.entry_key(SKUS[2], "uk-web"), since) == ("imported", None)
    # an operation from before the pending submission is not this target's outcome
    assert snap.outcome(ct.entry_key(SKUS[1], "uk-web"), since + timedelta(minutes=10))[0] == "imported"


def test_an_undefined_custom_field_fails_validation_after_resolution(make, sandbox):
    ct = make()
    since = datetime.now(timezone.utc)
    draft = {
        "key": ct.ledger_type_key,
        "name": {"en": "x"},
        "resourceTypeIds": ["inventory-entry"],
        "fieldDefinitions": [
            {"type": {"name": "Number"}, "name": ct.ledger_field, "label": {"en": "L"}, "required": False}
        ],
    }
    ct.client.post(ct.path("types"), json=draft)  # a Type without hubOnStock
    ct.push_full(targets(SKUS[:20]))
    snap = settle_all(ct, since)
    state, op = snap.outcome(ct.entry_key(SKUS[0], "uk-web"), since)
    assert state == "failed" and op["state"] == "validationFailed" and op["errors"][0]["field"] == ct.on_stock_field


def test_the_sandbox_refuses_what_the_import_api_refuses(make, sandbox):
    ct = make()
    imp = ct.importer
    imp.ensure_container()
    url = imp.url(f"inventories/import-containers/{imp.container}")
    res = {
        "key": "uk-web--IMP-001",
        "sku": "IMP-001",
        "quantityOnStock": 1,
        "supplyChannel": {"typeId": "channel", "key": "uk-web"},
    }
    with pytest.raises(errors.BadDataError):  # more than 20 resources
        ct.client.post(url, json={"type": "inventory", "resources": [res] * 21})
    with pytest.raises(errors.BadDataError):  # not an inventory request
        ct.client.post(url, json={"type": "product", "resources": [res]})
    answer = ct.client.post(
        url,
        json={
            "type": "inventory",
            "resources": [
                {k: v for k, v in res.items() if k != "key"},
                {**res, "supplyChannel": {"typeId": "channel", "id": "x"}},
                {**res, "quantity": 3},
            ],
        },
    ).json()
    states = answer["operationStatus"]
    assert [s["state"] for s in states] == ["validationFailed"] * 3
    assert states[0]["errors"][0] == {
        "code": "RequiredField",
        "message": "The required field 'key' is missing.",
        "field": "key",
    }
    with pytest.raises(errors.NotFoundError) as nf:
        ct.client.post(
            imp.url("inventories/import-containers/no-such-container"), json={"type": "inventory", "resources": [res]}
        )
    assert nf.value.body == {
        "statusCode": 404,
        "message": "The requested import container wasn't found.",
        "errors": [{"code": "ResourceNotFound", "message": "The requested import container wasn't found."}],
    }
    ops = imp.url(f"import-containers/{imp.container}/import-operations")
    for params in ({"limit": 501}, {"offset": 10_001}, {"state": "done"}, {"sort": "id desc"}):
        with pytest.raises(errors.BadDataError):
            ct._get(ops, params=params)
    with pytest.raises(errors.NotFoundError):
        ct._get(imp.url("import-containers/no-such-container/import-operations"))
    with pytest.raises(errors.BadDataError):
        ct.client.post(imp.url("import-containers"), json={"key": "x-y", "resourceType": "inventories"})


def test_import_bodies_and_answers_match_the_sdk_import_schemas(make, sandbox):
    pytest.importorskip("commercetools")
    from commercetools.importapi.models._schemas.importcontainers import (
        ImportContainerDraftSchema,
        ImportContainerSchema,
    )
    from commercetools.importapi.models._schemas.importoperations import (
        ImportOperationPagedResponseSchema,
    )
    from commercetools.importapi.models._schemas.importrequests import (
        ImportResponseSchema,
        InventoryImportRequestSchema,
    )
    from commercetools.importapi.models._schemas.importsummaries import ImportSummarySchema

    ct = make()
    seen = []
    real = ct.client.session.request

    def record(method, url, **kw):
        resp = real(method, url, **kw)
        seen.append((method, url, kw.get("json"), resp.status_code, resp.json() if resp.content else None))
        return resp

    ct.client.session.request = record
    since = datetime.now(timezone.utc)
    ct.push_full(targets(SKUS[:40]) + [InventoryTarget("NOT-A-PRODUCT", "uk-web", 1, ledger=1)])
    control(sandbox, "import_settings", {"reject_skus": [SKUS[3]]})
    ct.push_full(targets(SKUS[40:60]))
    settle_all(ct, since)
    ImportSummarySchema().load(
        ct._get(ct.importer.url(f"import-containers/{ct.importer.container}/import-summaries")).json()
    )
    checked = set()
    for method, url, body, status, answer in seen:
        if "/import-containers" in url and method == "POST" and "/inventories/" not in url:
            request_schema, answer_schema = ImportContainerDraftSchema, ImportContainerSchema
        elif "/inventories/import-containers/" in url:
            request_schema, answer_schema = InventoryImportRequestSchema, ImportResponseSchema
        elif "/import-operations" in url:
            request_schema, answer_schema = None, ImportOperationPagedResponseSchema
        else:
            continue
        if request_schema is not None:
            again = request_schema().dump(request_schema().load(body))
            assert json.loads(json.dumps(again)) == body, (url, body, again)  # no unknown or dropped field
        answer_schema().load(answer)
        checked.add(answer_schema.__name__)
    assert checked == {"ImportContainerSchema", "ImportResponseSchema", "ImportOperationPagedResponseSchema"}


def test_import_options_are_checked():
    from connectors.options import option_errors

    assert (
        option_errors(
            "commercetools",
            {
                "project_key": "p",
                "import_api": False,
                "import_container": "hub-inv",
                "import_min": 50,
                "import_settle_seconds": 600,
            },
        )
        == {}
    )
    bad = option_errors(
        "commercetools",
        {
            "project_key": "p",
            "import_api": "yes",
            "import_container": "a b",
            "import_min": 0,
            "import_settle_seconds": -1,
        },
    )
    assert set(bad) == {"import_api", "import_container", "import_min", "import_settle_seconds"}, bad


def test_scopes_ask_for_import_containers_only_when_full_loads_use_the_import_api(db):
    from integration_hub.core.models import Connection

    conn = Connection(
        name="s",
        system_type="commercetools",
        base_url="https://api.europe-west1.gcp.commercetools.com",
        client_id="c",
        options={"project_key": "shop"},
    )
    assert "manage_import_containers:shop" in CommercetoolsConnector.auth_for(conn).scope.split()
    conn.options = {"project_key": "shop", "import_api": False}
    assert "manage_import_containers:shop" not in CommercetoolsConnector.auth_for(conn).scope.split()
    assert InventoryImporter.import_root(conn) == "https://import.europe-west1.gcp.commercetools.com"


def test_a_request_failing_mid_load_fails_only_its_own_targets(make, sandbox):
    ct = make()
    imp = ct.importer
    imp.ensure_container()
    ct.ensure_ledger_type()
    real, calls = ct.client.post, []

    def flaky(url, **kw):
        calls.append(url)
        if len(calls) == 2:
            raise errors.RetryableError("503 from commercetools", status=503)
        return real(url, **kw)

    ct.client.post = flaky
    res = imp.submit(targets(SKUS[:60]))
    assert [type(r.error).__name__ for r in res] == ["ImportPending"] * 20 + ["RetryableError"] * 20 + [
        "ImportPending"
    ] * 20
    calls.clear()
    ct.client.post = lambda url, **kw: (_ for _ in ()).throw(errors.RetryableError("down", status=503))
    with pytest.raises(errors.RetryableError):  # nothing was sent: the whole call failed (the outbox retries it)
        imp.submit(targets(SKUS[:60]))
