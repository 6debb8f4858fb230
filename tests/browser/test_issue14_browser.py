"""Issue 14 in a real browser: CX finds an order by partial e-mail and cancels it with the Cancel button (a
validation error never turns it into a resend); admin changes a buffer through the impact preview; pages
fit a 390 px screen; badges reach 4.5:1 contrast; the skip link leads to the content."""

from __future__ import annotations

import pytest

from integration_hub.inventory.models import ChannelStockRule
from integration_hub.orders.models import Order, OrderState
from tests.support import factories as f

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CONTRAST_JS = """(sel) => {
  const lum = (rgb) => { const [r, g, b] = rgb.match(/\\d+/g).slice(0, 3).map(Number).map(v => v / 255)
      .map(c => c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4)); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  return [...document.querySelectorAll(sel)].map(el => { const s = getComputedStyle(el);
      const a = lum(s.color), b = lum(s.backgroundColor); return [el.className, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]; });
}"""


def test_cx_finds_an_order_by_partial_email_and_cancels_it(page, login):
    w = f.console_world()
    o = f.orders(w, 1, state=OrderState.HELD, start=100233)[0]
    Order.objects.filter(pk=o.pk).update(
        order_number="UK-100233",
        customer_email="jane.doe@example.com",
        shipping_address={"first_name": "Jane", "last_name": "Doe", "city": "Leeds"},
    )
    f.orders(w, 2, state=OrderState.SENT, start=1)
    login("cx")
    page.goto("/orders/")
    page.fill("#q", "jane.doe")
    page.click("text=Filter")
    page.click("table >> text=UK-100233")
    page.wait_for_selector("#customer-name")
    assert page.inner_text("#customer-name") == "Jane Doe"
    page.on("dialog", lambda d: d.accept())  # the Cancel button asks first
    page.click("form.order-cancel button")  # no reason yet
    page.wait_for_selector("form.order-cancel .errorlist")
    assert "Say why the order is cancelled." in page.inner_text("form.order-cancel")
    assert page.locator("#order-action option[value=cancel]").count() == 0
    page.fill("form.order-cancel textarea, form.order-cancel input[name=reason]", "customer asked")
    page.click("form.order-cancel button")
    page.wait_for_selector(".messages li")
    assert "cancelled" in page.inner_text(".messages") and "resend" not in page.inner_text(".messages")
    o.refresh_from_db()
    assert o.state == OrderState.CANCELLED and o.send_attempts == 0


def test_admin_changes_a_buffer_through_the_impact_preview(page, login):
    w = f.console_world()
    f.stock(w, w.items, 5)
    f.mappings(w, w.items)
    login("admin")
    page.goto(f"/rules/channel-rules/{w.rule.pk}/")
    page.fill("#id_safety_buffer", "99999999999")
    page.click("button:has-text('Save')")
    page.wait_for_selector(".errorlist")
    assert "at most 1,000,000" in page.inner_text("main")
    page.fill("#id_safety_buffer", "5")
    page.click("button:has-text('Save')")
    page.wait_for_selector("#impact")
    assert "3 SKUs on web drop to 0" in page.inner_text("#impact")
    assert ChannelStockRule.objects.get().safety_buffer == 0
    page.click("button:has-text('Confirm and save')")
    page.wait_for_selector(".messages li")
    assert ChannelStockRule.objects.get().safety_buffer == 5


def test_390px_layouts_badges_and_skip_link(browser, live_server, make_user):
    from exceptions_app import services as exc

    w = f.console_world()
    o = f.orders(w, 1, state=OrderState.HELD)[0]
    for i, (sev, status) in enumerate(
        [("warning", "acknowledged"), ("error", "resolved"), ("info", "open"), ("critical", "ignored")]
    ):
        rec = exc.raise_exception(
            "stuck_order", f"k{i}", f"problem {i} " + "x" * 80, severity=sev, order_ref=o.idempotency_key
        )
        rec.status = status
        rec.save()
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=live_server.url)
    page = context.new_page()
    user = make_user("ops")
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pass-Word-123")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    try:
        for url in ("/", f"/orders/{o.pk}/", "/exceptions/"):
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            wide = page.evaluate("""() => [...document.querySelectorAll('body *')].filter(e =>
            !e.closest('.table-wrap') && e.getBoundingClientRect().right > 391)
                .slice(0, 8).map(e => e.tagName + '.' + e.className + '#' + e.id + ':' + Math.round(e.getBoundingClientRect().right))""")
            assert width <= 390, f"{url} is {width}px wide at 390px: {wide}"
        page.goto("/exceptions/?status=all")
        ratios = page.evaluate(CONTRAST_JS, ".badge")
        assert ratios and all(r >= 4.5 for _, r in ratios), ratios
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
    finally:
        context.close()
