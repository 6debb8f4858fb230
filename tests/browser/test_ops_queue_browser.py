"""Issue 14, ops, in a real browser: ops finds a SKU mismatch with the search syntax, fixes it, expands an outage's
parent row, takes it with the keyboard ("a": assign to me, after the count is confirmed), snoozes a row, filters
"mine", and retries all failing stock pushes — more than one page of them — after seeing the count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from exceptions_app import services as exc
from exceptions_app.models import ExceptionRecord, Kind, Status
from integration_hub.catalog.models import SkuMapping
from integration_hub.inventory.models import PendingPush
from integration_hub.orders.models import OrderState
from tests.support import factories as f

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _outage(w, n):
    orders = f.orders(w, n, state=OrderState.FAILED, start=700)
    exc.raise_many(
        [
            exc.Problem(
                "bad_payload",
                f"bad_payload:wair:order-send:{o.idempotency_key}",
                f"wair refused order-send for order {o.order_number}",
                message=f"WAIR 422: locationId: location 'uk-web' is not known ({o.order_number})",
                connection_id=w.master.pk,
                channel_id=w.channel.pk,
                order_ref=o.idempotency_key,
                context={"order_id": o.pk, "action": "check_order"},
            )
            for o in orders
        ]
    )


def test_ops_fixes_a_mismatch_and_retries_all_failing_pushes(page, login, shots):
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: violations.append(f"page error: {e}"))
    w = f.console_world()
    f.stock(w, w.items, 12)
    mismatches = f.sku_exceptions(w, w.items)
    _outage(w, 12)  # newest: the first row
    its = f.items(60, prefix="7")
    f.pushes(w, its)
    PendingPush.objects.filter(item__in=its).update(
        attempts=4, not_before=timezone.now() + timedelta(hours=1), last_error="RetryableError: ct answered 503"
    )
    user = login("ops")

    # search syntax
    page.goto("/exceptions/")
    page.wait_for_selector("#exception-table")
    assert page.locator("#exception-table tbody.group").count() == 4  # 3 mismatches + 1 outage parent
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "id_q"
    page.keyboard.type("kind:sku_mismatch is:open")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=kind%3Asku_mismatch**")
    assert page.locator("#exception-table tbody.group").count() == 3
    page.fill("#id_q", "colour:red")
    page.click("#filters button[type=submit]")
    assert 'Unknown search key "colour:"' in page.inner_text("#search-errors")

    # keyboard: j moves to the first row, Enter opens it; the mismatch is fixed with the suggestion
    page.fill("#id_q", f"sku:{mismatches[1].sku}")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#exception-table tbody.group")
    page.keyboard.press("j")
    assert page.locator("tr.current").count() == 1
    page.keyboard.press("Enter")
    page.wait_for_selector("#fix-sku")
    page.check("input[name=mode][value=suggested]")
    page.click("#apply-mapping")
    page.wait_for_selector(".messages li")
    assert "Mapping saved" in page.inner_text(".messages")
    assert SkuMapping.objects.get(storefront_sku=mismatches[1].sku).item_id == w.items[1].pk

    # the outage is one parent row; expand it to see its records
    page.goto("/exceptions/")
    parent = page.locator("#exception-table tbody.group").first
    assert "12 affected" in parent.inner_text()
    assert parent.locator("tr.child:visible").count() == 0
    parent.locator("button[data-expand]").click()
    assert parent.locator("tr.child:visible").count() == 11  # 10 records and "… and 2 more"
    assert parent.locator("button[data-expand]").get_attribute("aria-expanded") == "true"
    if shots:
        page.screenshot(path=str(shots / "queue-groups.png"), full_page=True)

    # keyboard: x selects the parent, a assigns it to me — the count (12 records) is confirmed first
    page.keyboard.press("?")
    assert page.is_visible("#shortcut-help")
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("x")
    assert page.inner_text("#selected-count") == "1"
    page.keyboard.press("a")
    page.wait_for_selector("#confirm-bulk")
    assert page.inner_text("#confirm-count") == "12"
    page.click("#confirm-apply")
    page.wait_for_selector(".messages li")
    assert "12 exception(s) assigned to you" in page.inner_text(".messages")
    assert ExceptionRecord.objects.filter(kind=Kind.BAD_PAYLOAD, assignee=user).count() == 12

    # snooze a mismatch for an hour: it leaves the default view
    row = page.locator(f"#exception-table tr[data-id='{mismatches[0].pk}']")
    row.locator("input[name=ids]").check()
    page.select_option("#bulk-action", "snooze")
    page.select_option("select[name=snooze]", "1h")
    page.click("#bulk-apply")
    page.wait_for_selector(".messages li")
    assert "1 exception(s) snoozed" in page.inner_text(".messages")
    assert page.locator(f"#exception-table tr[data-id='{mismatches[0].pk}']").count() == 0
    assert "1 snoozed hidden" in page.inner_text("#quick-filters")
    assert ExceptionRecord.objects.get(pk=mismatches[0].pk).snoozed_until > timezone.now()

    # "mine": only the parent ops took
    page.click("#quick-filters >> text=mine")
    page.wait_for_url("**assignee%3Ame**")
    assert page.locator("#exception-table tbody.group").count() == 1

    # retry all failing pushes: 60, more than one page, after seeing the count
    page.goto("/pushes/?failing=1")
    assert "Page 1 of 2" in page.inner_text(".pager")
    page.click("#retry-all-pushes")
    page.wait_for_selector("#confirm-bulk")
    assert page.inner_text("#confirm-count") == "60"
    page.click("#confirm-apply")
    page.wait_for_selector(".messages li")
    assert "60 failing push(es) will be retried now" in page.inner_text(".messages")
    assert PendingPush.objects.filter(item__in=its, not_before__isnull=True).count() == 60
    assert ExceptionRecord.objects.get(pk=mismatches[1].pk).status == Status.ACKNOWLEDGED
    assert violations == []
