"""SFCC on OCI: full loads through the Inventory Impex availability import (request an import, upload the NDJSON
file to its upload link, poll the status, read the result file), against the SFCC emulator over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


from connectors import errors
from connectors.base import InventoryTarget

from .conftest import control
from tests.support.sandbox import SandboxClient

ORG = "f_ecom_zzxy_prd"
IMPORTS = f"/inventory/impex/v1/organizations/{ORG}/availability-records/imports"


def _fast(scapi, sandbox, delay=0.1):
    control(sandbox, "configure_impex", {"delay": delay})
    scapi.import_poll = delay + 0.05  # one status call sees it completed


def _stats(sandbox):
    return SandboxClient.of(sandbox).stats("sfcc")


def _oci_routes(stats):
    return {k: v for k, v in stats["by_route"].items() if "/inventory/" in k}


def _seed(sandbox, n, location="inv_uk"):
    skus = [f"FL-{i:04d}" for i in range(n)]
    control(sandbox, "seed_catalog", {"channels": [location], "skus": skus, "quantity": 0})
    return skus


def test_a_1000_sku_full_load_is_one_import_not_ten_batches(scapi, sandbox):
    _fast(scapi, sandbox)
    skus = _seed(sandbox, 1000)
    as_of = datetime.now(UTC)
    targets = [InventoryTarget(s, "inv_uk", i % 7, as_of=as_of, held=1 if i == 0 else 0) for i, s in enumerate(skus)]
    before = _oci_routes(_stats(sandbox))
    results = scapi.push_full(targets)
    after = _oci_routes(_stats(sandbox))
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    assert all(r.ok for r in results) and len(results) == 1000
    assert not any("batch-update" in k for k in calls)  # the delta path would take 10 batch updates
    assert sum(calls.values()) <= 5, calls  # import + upload + status + result file (+ one more status at most)
    oci = control(sandbox, "oci", {"location": "inv_uk"})["inv_uk"]
    assert oci["FL-0000"]["onHand"] == 1 and oci["FL-0006"]["onHand"] == 6 and oci["FL-0999"]["onHand"] == 999 % 7
    [imp] = list(control(sandbox, "imports").values())
    assert imp["status"] == "COMPLETED" and imp["import"]["recordsReadCount"] == 1000
    lines = imp["lines"]
    assert [ln["sku"] for ln in lines] == sorted(skus)  # SKUs grouped, as the high-performance layout wants
    assert all(set(ln) == {"recordId", "sku", "onHand", "effectiveDate", "locationId"} for ln in lines)


def test_bad_lines_fail_alone_and_good_lines_land(scapi, sandbox):
    _fast(scapi, sandbox)
    skus = _seed(sandbox, 600)
    targets = [InventoryTarget(s, "inv_uk", 5, as_of=datetime.now(UTC)) for s in skus]
    targets += [
        InventoryTarget("BAD SKU/1", "inv_uk", 5),
        InventoryTarget("FL-0001", "inv_nowhere", 5),
        InventoryTarget("FL-0002x", "inv_uk", -3),
    ]
    results = {(r.channel_ref, r.sku): r for r in scapi.push_full(targets)}
    bad = {k: r for k, r in results.items() if not r.ok}
    assert set(bad) == {("inv_uk", "BAD SKU/1"), ("inv_nowhere", "FL-0001"), ("inv_uk", "FL-0002x")}
    assert all(isinstance(r.error, errors.BadDataError) for r in bad.values())
    assert "white space" in str(bad[("inv_uk", "BAD SKU/1")].error)
    assert "does not exist" in str(bad[("inv_nowhere", "FL-0001")].error)
    assert "positive" in str(bad[("inv_uk", "FL-0002x")].error)
    oci = control(sandbox, "oci", {"location": "inv_uk"})["inv_uk"]
    assert all(oci[s]["onHand"] == 5 for s in skus)
    assert "BAD SKU/1" not in oci and "FL-0002x" not in oci


def test_a_small_full_load_uses_the_batch_updates(scapi, sandbox):
    skus = _seed(sandbox, 30)
    before = _oci_routes(_stats(sandbox))
    assert all(r.ok for r in scapi.push_full([InventoryTarget(s, "inv_uk", 2, as_of=datetime.now(UTC)) for s in skus]))
    after = _oci_routes(_stats(sandbox))
    assert not any("impex" in k and after[k] != before.get(k, 0) for k in after)
    assert control(sandbox, "state", {"skus": skus[:1]})["inventory"]["inv_uk"][skus[0]] == 2


def test_an_older_figure_in_a_full_load_never_overwrites_a_newer_delta(scapi, sandbox):
    _fast(scapi, sandbox)
    skus = _seed(sandbox, 500)
    now = datetime.now(UTC)
    [res] = scapi.set_stock([InventoryTarget(skus[0], "inv_uk", 9, as_of=now)])
    assert res.ok
    assert all(
        r.ok for r in scapi.push_full([InventoryTarget(s, "inv_uk", 1, as_of=now - timedelta(minutes=1)) for s in skus])
    )
    oci = control(sandbox, "oci", {"location": "inv_uk"})["inv_uk"]
    assert oci[skus[0]]["onHand"] == 9 and oci[skus[1]]["onHand"] == 1


def test_an_import_that_outlasts_the_timeout_is_retryable(scapi, sandbox):
    control(sandbox, "configure_impex", {"delay": 5})
    skus = _seed(sandbox, 500)
    scapi.import_poll, scapi.import_timeout = 0.1, 0.3
    try:
        scapi.push_full([InventoryTarget(s, "inv_uk", 1, as_of=datetime.now(UTC)) for s in skus])
    except errors.RetryableError as exc:
        assert "still" in str(exc)
    else:
        raise AssertionError("a running import must not read as done")


def _raw(scapi, method, path, **kw):
    return scapi.client.request(method, path, ok=range(200, 600), retries=0, **kw)


def test_the_sandbox_follows_the_impex_contract(scapi, sandbox):
    control(sandbox, "configure_impex", {"delay": 0.05})
    for body in (
        {},
        {"fileName": "x.json", "fileFormat": "CSV"},
        {"fileName": "x.json", "linkDuration": 61},
        {"fileName": "x.json", "mode": "UPDATE"},
    ):
        r = _raw(scapi, "POST", IMPORTS, json=body)
        assert r.status_code == 400 and {"type", "title", "detail"} <= set(r.json()), (body, r.text)
    started = _raw(scapi, "POST", IMPORTS, json={"fileName": "mixed.json"}).json()
    assert set(started) == {"importId", "importStatusLink", "uploadLink", "uploadMethod", "uploadLinkExpirationUTC"}
    assert _raw(scapi, "GET", f"{IMPORTS}/{started['importId']}/file-content").status_code == 409  # nothing yet
    assert (
        _raw(
            scapi, "POST", started["uploadLink"], data=b'{"x":1}', headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )  # not multipart
    mixed = (
        b'{"location":"inv_uk","mode":"UPDATE"}\n'
        b'{"recordId":"r1","sku":"SF-001","onHand":1,"effectiveDate":"2026-01-01T00:00:00Z"}\n'
        b'{"recordId":"r2","sku":"SF-002","onHand":1,"effectiveDate":"2026-01-01T00:00:00Z","locationId":"inv_uk"}\n'
    )
    form = b'--b\r\nContent-Disposition: form-data; name="file"; filename="f.json"\r\n\r\n' + mixed + b"\r\n--b--\r\n"
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    up = _raw(scapi, "POST", started["uploadLink"], data=form, headers=headers)
    assert up.status_code == 200 and up.json() == {"status": "PENDING", "importId": started["importId"]}
    assert _raw(scapi, "POST", started["uploadLink"], data=form, headers=headers).status_code == 409  # already received
    import time

    time.sleep(0.2)
    status = _raw(scapi, "GET", f"{IMPORTS}/{started['importId']}/status").json()
    assert status["status"] == "FAILED" and any("mixes" in e for e in status["validation"]["errors"])
    assert _raw(scapi, "GET", f"{IMPORTS}/{started['importId']}/file-content").text.strip() == '{"status": "FAILED"}'
    assert control(sandbox, "oci", {"location": "inv_uk"})["inv_uk"]["SF-001"]["onHand"] == 3  # nothing applied
    assert _raw(scapi, "GET", f"{IMPORTS}/nope/status").status_code == 404
