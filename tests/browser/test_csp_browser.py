"""The staff screens, the admin and the API docs work in a real browser under the Content-Security-Policy:
no violation is reported, the select-all and confirm-before-delete behaviours (static hub.js) still work."""

from __future__ import annotations

import pytest

from integration_hub.catalog.models import SkuMapping
from tests.support import factories as f

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_screens_work_under_the_csp(page, login):
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text or "Refused to" in m.text else None,
    )
    page.on("pageerror", lambda e: violations.append(f"page error: {e}"))
    w = f.console_world()
    f.pushes(w, w.items)
    mapping = f.mappings(w, w.items[:1])[0]
    login("admin")

    response = page.goto("/pushes/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    boxes = page.locator("input[name=ids]")
    assert boxes.count() == 3
    page.check("input[data-select-all]")
    assert all(boxes.nth(i).is_checked() for i in range(3))
    page.uncheck("input[data-select-all]")
    assert not any(boxes.nth(i).is_checked() for i in range(3))

    # confirm before delete: dismissed keeps the row, accepted deletes it
    page.goto(f"/rules/sku-mappings/{mapping.pk}/")
    page.once("dialog", lambda d: d.dismiss())
    page.click("button.danger")
    assert SkuMapping.objects.filter(pk=mapping.pk).exists()
    page.once("dialog", lambda d: d.accept())
    page.click("button.danger")
    page.wait_for_url("**/rules/sku-mappings/")
    assert not SkuMapping.objects.filter(pk=mapping.pk).exists()

    page.goto("/api/docs/")  # Swagger UI from our static files, its start-up script from ?script
    page.wait_for_selector(".swagger-ui .info .title")
    page.goto("/api/redoc/")
    page.wait_for_selector("redoc h1, .api-info h1, [role=navigation]")
    page.goto("/admin/")  # the admin's own scripts and styles are files: styled, no violation
    page.wait_for_selector("#site-name")
    assert page.eval_on_selector("#header", "e => getComputedStyle(e).display") == "flex"
    # Redoc's bundle links its "built with" logo from cdn.redoc.ly: blocking that is the policy working
    # (no third-party fetches), and the docs render without it.
    assert [v for v in violations if "cdn.redoc.ly" not in v] == []
