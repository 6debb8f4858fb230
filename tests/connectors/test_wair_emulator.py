"""The WAIR emulator at the wire level: error shape, paging limits, rate limiting, odd order refs."""

from __future__ import annotations

import pytest
import requests
from tests.support.sandbox import control, faults

H = {"X-Api-Key": "wair-demo-key"}
ERROR_KEYS = {"statusCode", "code", "message", "errors"}


@pytest.fixture
def api(sandbox):
    return f"{sandbox.url}/wair/api/v1"


def test_error_bodies_have_one_shape(api, sandbox):
    cases = [
        requests.get(f"{api}/locations", timeout=5),  # no key
        requests.get(f"{api}/stock?limit=0", headers=H, timeout=5),
        requests.get(f"{api}/stock/changes?since=abc", headers=H, timeout=5),
        requests.post(f"{api}/orders", data=b"{nope", headers={**H, "Idempotency-Key": "k"}, timeout=5),
        requests.post(f"{api}/orders", json=[1], headers={**H, "Idempotency-Key": "k"}, timeout=5),
        requests.post(f"{api}/orders", json={}, headers=H, timeout=5),  # no Idempotency-Key
        requests.post(f"{api}/orders", json={"orderRef": "k"}, headers={**H, "Idempotency-Key": "k"}, timeout=5),
        requests.get(f"{api}/orders/unknown", headers=H, timeout=5),
        requests.delete(f"{api}/locations", headers=H, timeout=5),
        requests.get(f"{api}/nothing-here", headers=H, timeout=5),
    ]
    assert [r.status_code for r in cases] == [401, 400, 400, 400, 400, 400, 422, 404, 405, 404]
    for r in cases:
        assert ERROR_KEYS <= set(r.json()), r.text
    fields = {e["field"] for e in cases[6].json()["errors"]}
    assert {"lines", "shippingAddress", "serviceCode"} <= fields


def test_rate_limit_answers_429_with_retry_after(api, sandbox):
    faults(sandbox, "wair", rate_limit_per_second=2, rate_limit_burst=2)
    statuses = [requests.get(f"{api}/locations", headers=H, timeout=5) for _ in range(4)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1 and ERROR_KEYS <= set(limited[0].json())


def test_token_endpoint_as_published(sandbox):
    url = f"{sandbox.url}/wair/Token"
    ok = requests.post(
        url, json={"username": "hub", "password": "wair-demo-password"}, headers={"X-Tenant": "DEMO"}, timeout=5
    )
    assert ok.status_code == 200 and set(ok.json()) == {"accessToken", "expiresIn", "tokenType", "scope"}
    token = ok.json()["accessToken"]
    auth = {"Authorization": f"Bearer {token}", "X-Tenant": "DEMO"}
    assert requests.get(f"{sandbox.url}/wair/api/v1/locations", headers=auth, timeout=5).status_code == 200
    assert (
        requests.get(f"{sandbox.url}/wair/api/v1/locations", headers={**auth, "X-Tenant": "X"}, timeout=5).status_code
        == 401
    )
    assert (
        requests.post(
            url, json={"username": "hub", "password": "x"}, headers={"X-Tenant": "DEMO"}, timeout=5
        ).status_code
        == 401
    )
    bad = requests.post(url, json={"username": "hub"}, headers={"X-Tenant": "DEMO"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "password"


def test_paging_total_and_limits(api, sandbox):
    rows = [{"sku": f"S{i:03d}", "location": "DC1", "quantity": i} for i in range(7)]
    control(sandbox, "wair", "seed_stock", {"rows": rows})
    page = requests.get(f"{api}/stock?offset=5&limit=5", headers=H, timeout=5).json()
    assert (page["total"], len(page["stock"]), page["moreRecordsAvailable"]) == (7, 2, False)
    assert [r["skuId"] for r in page["stock"]] == ["S005", "S006"]
    assert requests.get(f"{api}/stock?limit=5001", headers=H, timeout=5).status_code == 400
