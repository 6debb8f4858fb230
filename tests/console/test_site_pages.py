"""The 403 page in the site layout with the role message, /favicon.ico, and no traceback logged per 403."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def cx(db, role_client):
    return role_client("cx")


def test_403_page_uses_the_layout_and_names_the_role(cx):
    r = cx.get("/rules/channel-rules/")
    html = r.content.decode()
    assert r.status_code == 403
    assert 'class="top"' in html and "Log out" in html  # the site's header and navigation
    assert "Your role does not allow this page." in html and "<strong>cx</strong>" in html
    assert "ask an administrator" in html


def test_favicon(client, db):
    r = client.get("/favicon.ico")
    assert r.status_code == 301 and r["Location"].endswith("console/favicon.ico")
    from django.contrib.staticfiles import finders

    with open(finders.find("console/favicon.ico"), "rb") as fh:
        assert fh.read(4) == b"\x00\x00\x01\x00"  # an ICO file


def test_a_403_logs_one_line_without_a_traceback(cx, capsys):
    from integration_hub.core.logfilters import QuietPermissionDenied

    # the project's handler filter: what reaches the log output for a refused request
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(QuietPermissionDenied())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        assert cx.get("/rules/channel-rules/").status_code == 403
    finally:
        logger.removeHandler(handler)
    assert [r for r in records if "Forbidden" in r] and not any("Traceback" in r for r in records)


def test_the_settings_attach_the_filter():
    from django.conf import settings

    assert "quiet_403" in settings.LOGGING["handlers"]["console"]["filters"]
