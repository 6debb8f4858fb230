"""In a real browser: the dashboard's stock tile goes red while the sandbox fails every call to the master,
and back to green when the faults are lifted — refreshed by htmx, no page reload."""

from __future__ import annotations

import pytest

from tests.support import factories as f
from tests.support.sandbox import control, faults
from tests.monitoring.conftest import make_rule

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_tile_goes_red_and_back_while_the_sandbox_injects_faults(page, login, shots, sandbox, settings):
    from connectors import registry
    from integration_hub.inventory.tasks import poll_stock
    from integration_hub.monitoring.tasks import tick

    settings.HUB = {**settings.HUB, "DASHBOARD_REFRESH_SECONDS": 1}
    registry.clear_cache()
    w = f.console_world()
    master = w.master
    master.base_url = f"{sandbox.url}/wair"
    master.max_retries = 0
    master.set_secret("wair-demo-key")
    master.save()
    control(sandbox, "wair", "seed_locations", {"locations": [{"id": "WH1"}]})
    make_rule(
        name="master failing",
        figure="connection_failing",
        key="*",
        op="gte",
        threshold=1,
        severity="error",
        cooldown_minutes=0,
    )
    assert "error" not in poll_stock(master.pk)
    tick()

    login("ops")
    page.goto("/dashboard/")
    tile = page.locator('[data-testid="tile-stock"]')
    tile.wait_for()
    assert tile.get_attribute("data-colour") == "green"
    page.evaluate("window.__marker = 'same page'")  # gone if the page reloads

    faults(sandbox, "wair", error_rate=1.0)
    assert "error" in poll_stock(master.pk)
    tick()
    page.wait_for_selector('[data-testid="tile-stock"][data-colour="red"]', timeout=15_000)
    assert "master failing" in page.locator('[data-testid="tile-stock"]').inner_text()
    if shots:
        page.screenshot(path=str(shots / "dashboard-red.png"), full_page=True)

    faults(sandbox, "wair", error_rate=0.0)
    assert "error" not in poll_stock(master.pk)
    tick()
    page.wait_for_selector('[data-testid="tile-stock"][data-colour="green"]', timeout=15_000)
    assert page.evaluate("window.__marker") == "same page"  # refreshed in place, never reloaded
    assert page.locator('[data-testid="chart-queue"] svg').count() == 1

    page.click("text=Alerts and notification channels")
    page.wait_for_selector('[data-testid="firing"]')
    row = page.locator('[data-testid="firing"]').first.inner_text()
    assert "master failing" in row and "open" not in row  # fired once, recovered once
    assert page.locator('[data-testid="firing"]').count() == 1
    if shots:
        page.screenshot(path=str(shots / "alerts.png"), full_page=True)
    registry.clear_cache()
