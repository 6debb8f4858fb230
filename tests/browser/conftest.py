"""Headless Debian chromium via Playwright, against pytest-django's live_server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run browser tests"
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop on this thread while it is open; the test body still talks to
    # the database synchronously (fixtures, assertions), which is safe here: one thread, no concurrent
    # coroutines. Allowed only while the browser module runs, then restored.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            yield b
            b.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(
        accept_downloads=True, viewport={"width": 1440, "height": 900}, base_url=live_server.url
    )
    p = context.new_page()
    p.set_default_timeout(15_000)
    yield p
    context.close()


@pytest.fixture
def login(page, make_user):
    def as_role(role: str):
        user = make_user(role)
        page.goto("/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", "pass-Word-123")
        page.click("button[type=submit]")
        page.wait_for_load_state()
        return user

    return as_role


@pytest.fixture
def shots():
    """Directory for screenshots when HUB_SCREENSHOT_DIR is set (for people checking the look), else None."""
    d = os.environ.get("HUB_SCREENSHOT_DIR")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
    return Path(d) if d else None
