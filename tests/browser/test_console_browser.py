"""End-to-end in a real browser: ops triages and fixes a SKU mismatch; finance downloads a report."""

from __future__ import annotations

import csv
import io

import pytest

from exceptions_app.models import ExceptionRecord, Kind, Status
from integration_hub.catalog.models import SkuMapping
from integration_hub.inventory.models import PendingPush
from integration_hub.orders.models import OrderState
from tests.support import factories as f
from tests.support.sandbox import control

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _storefront_on_sandbox(w, sandbox, skus):
    """The world's storefront is the commercetools sandbox (real connector over HTTP) listing ``skus``."""
    import connectors.registry as registry

    registry.clear_cache()
    shop = w.storefront
    shop.base_url = shop.auth_url = f"{sandbox.url}/commercetools"
    shop.client_id, shop.options = "hub-demo", {"project_key": "hubtest"}
    shop.set_secret("hub-demo-secret")
    shop.save()
    control(
        sandbox, "commercetools", "seed_catalog", {"channels": [w.channel.external_id], "skus": skus, "quantity": 0}
    )


def test_ops_filters_exceptions_and_fixes_a_sku_mismatch(page, login, shots, sandbox):
    from integration_hub.inventory.push import push_batch

    w = f.console_world()
    f.stock(w, w.items, 12)
    recs = f.sku_exceptions(w, w.items)  # three mismatches: SKUs listed without leading zeros
    f.sku_exceptions(w, f.items(4, prefix="4"), kind=Kind.UNKNOWN_SKU, strip=False)
    f.orders(w, 3, state=OrderState.HELD)
    f.pushes(w, w.items[:2])
    target = recs[1]
    _storefront_on_sandbox(w, sandbox, [r.sku for r in recs])
    login("ops")
    page.wait_for_selector("text=Sync health")
    if shots:
        page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

    page.click("nav >> text=Exceptions")
    page.wait_for_selector("#exception-table")
    assert page.locator("#exception-table tbody tr").count() == 7
    page.select_option("#id_kind", "sku_mismatch")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**kind=sku_mismatch**")
    assert page.locator("#exception-table tbody tr").count() == 3
    page.fill("#id_q", target.sku)
    page.click("#filters button[type=submit]")
    page.wait_for_url(f"**q={target.sku}**")
    rows = page.locator("#exception-table tbody tr")
    assert rows.count() == 1
    if shots:
        page.goto("/exceptions/")
        page.screenshot(path=str(shots / "exceptions.png"), full_page=True)
        page.go_back()

    page.click(f"#exception-table a:has-text('{target.title}')")
    page.wait_for_selector("#fix-sku")
    assert w.items[1].sku in page.inner_text("#fix-sku")
    page.check("input[name=mode][value=suggested]")
    page.click("#apply-mapping")
    page.wait_for_selector(".messages li")
    assert "Mapping saved" in page.inner_text(".messages")
    # saved and re-queued, not yet on the storefront: acknowledged by this user until the push confirms
    assert page.inner_text("#record-status") == "acknowledged"
    m = SkuMapping.objects.get(storefront_sku=target.sku)
    assert m.item_id == w.items[1].pk and m.channel_id == w.channel.pk
    assert PendingPush.objects.filter(item=w.items[1], channel=w.channel).exists()

    # a worker drains the outbox: the storefront (sandbox, over HTTP) confirms the quantity → resolved
    result = push_batch()
    assert result.claimed >= 1 and not PendingPush.objects.filter(item=w.items[1], channel=w.channel).exists()
    page.reload()
    page.wait_for_selector("#record-status")
    assert page.inner_text("#record-status") == "resolved"
    assert "stock push succeeded" in page.inner_text("main")
    if shots:
        page.screenshot(path=str(shots / "resolved.png"), full_page=True)

    target.refresh_from_db()
    assert target.status == Status.RESOLVED
    # the queue no longer lists it
    page.goto(f"/exceptions/?q={target.sku}")
    assert "No exceptions match" in page.inner_text("#exception-table")
    assert ExceptionRecord.objects.filter(kind=Kind.SKU_MISMATCH, status=Status.OPEN).count() == 2


def test_finance_runs_and_downloads_a_report(page, login, tmp_path, shots):
    from integration_hub.celery import app

    old, app.conf.task_always_eager = app.conf.task_always_eager, True  # the task runs as the request commits
    try:
        _finance_runs_and_downloads_a_report(page, login, tmp_path, shots)
    finally:
        app.conf.task_always_eager = old


def _finance_runs_and_downloads_a_report(page, login, tmp_path, shots):
    w = f.console_world()
    f.stock(w, w.items, 10)
    f.mappings(w, w.items)
    f.channel_stock(w, w.items[:1], observed=16)
    f.channel_stock(w, w.items[1:], observed=10)
    login("finance")
    page.wait_for_selector("h1:has-text('Reconciliation reports')")
    assert page.locator("nav >> text=Exceptions").count() == 0
    page.select_option("#run-kind", "stock_drift")
    page.click("text=Run report")
    page.wait_for_selector(".messages li")
    assert "queued" in page.inner_text(".messages")
    page.wait_for_selector("[data-report-status=done]")  # the list refreshes itself while a report runs
    page.click("table >> text=Stock drift")
    page.wait_for_selector("#download-csv")
    assert "1 row" in page.inner_text("main")
    if shots:
        page.screenshot(path=str(shots / "report.png"), full_page=True)
    with page.expect_download() as info:
        page.click("#download-csv")
    download = info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    assert download.suggested_filename.startswith("stock_drift-")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads it as UTF-8 in any locale
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:4] == ["channel", "channel name", "master sku", "storefront sku"]
    assert rows[1] == [
        "web",
        "Web shop",
        f'="{w.items[0].sku}"',
        f'="{w.items[0].sku.lstrip("0")}"',
        "10",
        "16",
        "6",
        "2.50",
        "15.00",
        "GBP",
    ]
    assert len(rows) == 2


def test_ops_imports_mappings_and_sees_rejected_rows_and_history(page, login, tmp_path, shots):
    w = f.console_world()
    login("ops")
    page.click("nav >> text=SKU mappings")
    page.click("text=Import CSV")
    body = (
        f"master_sku,storefront_sku,channel\n{w.items[0].sku},A-1,web\nNOPE,B-1,web\n{w.items[1].sku},C-1,elsewhere\n"
    )
    path = tmp_path / "mappings.csv"
    path.write_text(body)
    page.set_input_files("input[type=file]", str(path))
    page.click("button[value=html]")
    page.wait_for_selector("#import-result")
    text = page.inner_text("#import-result")
    assert "unknown master SKU 'NOPE'" in text and "unknown channel 'elsewhere'" in text
    if shots:
        page.screenshot(path=str(shots / "import.png"), full_page=True)
    m = SkuMapping.objects.get(storefront_sku="A-1")
    page.goto(f"/rules/sku-mappings/{m.pk}/")
    page.fill("#id_safety_buffer", "3")
    page.click("button:has-text('Save')")
    page.wait_for_selector(".messages li")
    history = page.inner_text("#history")
    assert (
        "user-ops" in history and "csv-import" in history and "safety buffer" in history and "item: 00001000" in history
    )  # names, not ids
    if shots:
        page.screenshot(path=str(shots / "mapping-edit.png"), full_page=True)
