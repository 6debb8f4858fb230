"""commercetools Import API for first syncs / full resyncs (issue 12, part 4), against the sandbox's model of it,
with the request bodies and answers checked against the commercetools SDK's Import API schemas."""
from __future__ import annotations

import json

import pytest
import requests

from connectors import errors
from connectors.base import InventoryTarget
from connectors.commercetools import CommercetoolsConnector

SKUS = [f"IMP-{i:03d}" for i in range(100)]


def control(sandbox, action, payload=None):
    r = requests.post(f"{sandbox.url}/_sandbox/commercetools/{action}", json=payload or {}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def make(db, sandbox):
    from integration_hub.core.models import Connection

    def build(**options):
        conn = Connection(name=f"ct-imp-{len(Connection.objects.all())}", system_type="commercetools",
                          base_url=f"{sandbox.url}/commercetools", auth_url=f"{sandbox.url}/commercetools", client_id="hub-demo",
                          options={"project_key": "demo", "import_api": True, "import_poll_seconds": 0.01, **options},
                          rate_limit_per_second=1000, rate_limit_burst=1000, timeout_seconds=5, max_retries=1)
        conn.set_secret("hub-demo-secret")
        conn.save()
        CommercetoolsConnector.auth_for(conn).invalidate()
        c = CommercetoolsConnector(conn)
        c.client = c.build_client(backoff_base=0.01)
        return c

    control(sandbox, "seed_catalog", {"channels": ["uk-web"], "skus": SKUS, "quantity": None})
    return build


def routes(emu, fragment, method="POST"):
    return sum(v for k, v in emu.stats.by_route.items() if k.startswith(method) and fragment in k)


def test_first_sync_goes_through_the_import_api_twenty_at_a_time(make, sandbox):
    emu = sandbox.emulators["commercetools"]
    ct = make()
    results = ct.set_stock([InventoryTarget(s, "uk-web", n, ledger=n) for n, s in enumerate(SKUS)])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert routes(emu, "inventories/import-containers") == 5  # 100 entries, 20 per InventoryImportRequest
    assert routes(emu, "/inventory$") == 0 and routes(emu, "inventory/(?P") == 0  # no per-entry create or update
    assert routes(emu, "import-operations", "GET") <= 5  # outcomes read back 500 at a time
    inv = control(sandbox, "state", {"skus": SKUS})["inventory"]["uk-web"]
    assert inv == {s: n for n, s in enumerate(SKUS)}
    [stock] = ct.get_stock(["IMP-007"], "uk-web")
    assert stock.ledger == 7 and stock.unexplained_increase == 0  # the import carried the marker
    # the next write is the relative, versioned one on the keyed entry
    control(sandbox, "create_orders", {"orders": [{"channel": "uk-web", "lines": [{"sku": "IMP-007", "quantity": 1}]}]})
    [res] = ct.set_stock([InventoryTarget("IMP-007", "uk-web", 9, ledger=9)])
    assert res.ok and control(sandbox, "state", {"skus": ["IMP-007"]})["inventory"]["uk-web"]["IMP-007"] == 8
    assert routes(emu, "inventories/import-containers") == 5
    assert len(emu.import_containers) == 1  # one container per connection, reused
    ct.set_stock([InventoryTarget(s, "uk-web", 1, ledger=1) for s in SKUS[50:]])
    assert len(emu.import_containers) == 1


def test_few_absolute_writes_stay_on_the_synchronous_path(make, sandbox):
    emu = sandbox.emulators["commercetools"]
    ct = make()
    assert all(r.ok for r in ct.set_stock([InventoryTarget(s, "uk-web", 3, ledger=3) for s in SKUS[:5]]))
    assert routes(emu, "inventories/import-containers") == 0 and routes(emu, "/inventory$") == 5


def test_import_outcomes_become_results(make, sandbox):
    emu = sandbox.emulators["commercetools"]
    ct = make(import_wait_seconds=0.2)
    ct.ensure_ledger_type()
    bad = ct.importer.write([InventoryTarget("IMP-001", "no-such-channel", 2, ledger=2)])
    assert not bad[0].ok and isinstance(bad[0].error, errors.BadDataError) and "unresolved" in str(bad[0].error)
    with emu.lock:
        emu.import_delay = 60
    slow = ct.importer.write([InventoryTarget("IMP-002", "uk-web", 2, ledger=2)])
    assert not slow[0].ok and isinstance(slow[0].error, errors.RetryableError)


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

    ct = make()
    seen = []
    real = ct.client.session.request

    def record(method, url, **kw):
        resp = real(method, url, **kw)
        seen.append((method, url, kw.get("json"), resp.status_code, resp.json() if resp.content else None))
        return resp

    ct.client.session.request = record
    ct.set_stock([InventoryTarget(s, "uk-web", 4, ledger=4) for s in SKUS[:40]])
    checked = set()
    for method, url, body, status, answer in seen:
        if "/import-containers" in url and method == "POST" and "/inventories/" not in url:
            request_schema, answer_schema = ImportContainerDraftSchema, ImportContainerSchema
        elif "/inventories/import-containers/" in url:
            request_schema, answer_schema = InventoryImportRequestSchema, ImportResponseSchema
        elif url.endswith("/import-operations") or "/import-operations?" in url:
            request_schema, answer_schema = None, ImportOperationPagedResponseSchema
        else:
            continue
        if request_schema is not None:
            again = request_schema().dump(request_schema().load(body))
            assert json.loads(json.dumps(again)) == body, (url, body, again)
        answer_schema().load(answer)
        checked.add(answer_schema.__name__)
    assert checked == {"ImportContainerSchema", "ImportResponseSchema", "ImportOperationPagedResponseSchema"}
