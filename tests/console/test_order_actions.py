"""Order actions on the order page: Cancel is its own confirmed button that never turns into a resend, a form
keeps its choices after a validation error, and only the actions the order's state allows are offered."""

from __future__ import annotations

from types import SimpleNamespace
import re

import pytest

from exceptions_app import triage
from integration_hub.orders.models import OrderState

from tests.support import factories as f


@pytest.fixture
def w(db):
    return f.console_world()


class _Recorder:
    """An order flow whose every service records its name."""

    def __init__(self, calls):
        self.calls = calls

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append(name)


def _selects(html: str) -> list[str]:
    m = re.search(r'<select name="action".*?</select>', html, re.DOTALL)
    return re.findall(r'<option value="([a-z]+)"', m.group(0)) if m else []


def test_cancel_without_reason_keeps_cancel_and_never_resends(w, role_client, monkeypatch):
    client = role_client("ops")
    order = f.orders(w, 1, state=OrderState.HELD)[0]
    calls = []
    monkeypatch.setattr(
        triage,
        "order_flow",
        SimpleNamespace(
            **{
                "retry_send": lambda o, actor=None: calls.append(("retry", o.pk)),
                "cancel": lambda o, r, actor=None: calls.append(("cancel", r)),
            }
        ),
    )
    r = client.post(f"/orders/{order.pk}/", {"action": "cancel", "reason": ""})
    html = r.content.decode()
    assert r.status_code == 400 and "Say why the order is cancelled." in html
    # the cancel form is its own form with its own button and a confirmation; the Action list offers no cancel
    cancel_form = re.search(r'<form[^>]*class="order-cancel"[^>]*>.*?</form>', html, re.DOTALL).group(0)
    assert 'data-confirm="Cancel order WEB-0?' in cancel_form and 'value="cancel"' in cancel_form
    assert "Say why the order is cancelled." in cancel_form
    assert "cancel" not in _selects(html)
    # typing the reason in the cancel form cancels (does not resend)
    r = client.post(f"/orders/{order.pk}/", {"action": "cancel", "reason": "customer asked"})
    assert r.status_code == 302 and calls == [("cancel", "customer asked")]


def test_edit_validation_error_keeps_the_chosen_action_and_value(w, role_client):
    client = role_client("ops")
    order = f.orders(w, 1, state=OrderState.HELD)[0]
    r = client.post(f"/orders/{order.pk}/", {"action": "edit", "field": "", "value": "gift wrap please"})
    html = r.content.decode()
    assert r.status_code == 400 and "Choose the field to correct." in html
    assert re.search(r'<option value="edit" selected>', html)
    assert 'value="gift wrap please"' in html


@pytest.mark.parametrize(
    "state, offered, cancel",
    [
        (OrderState.HELD, ["retry", "edit"], True),
        (OrderState.SENT, ["retry"], True),
        (OrderState.ACKNOWLEDGED, [], True),
        (OrderState.DISPATCHED, ["notify"], False),
        (OrderState.STOREFRONT_NOTIFIED, [], False),
        (OrderState.CANCELLED, [], False),
    ],
)
def test_only_the_actions_the_state_allows(w, role_client, state, offered, cancel):
    client = role_client("ops")
    order = f.orders(w, 1, state=state)[0]
    html = client.get(f"/orders/{order.pk}/").content.decode()
    assert _selects(html) == offered
    assert ('class="order-cancel"' in html) is cancel


def test_a_shipped_order_refuses_retry_and_cancel_posted_anyway(w, role_client, monkeypatch):
    client = role_client("ops")
    order = f.orders(w, 1, state=OrderState.STOREFRONT_NOTIFIED)[0]
    calls = []
    monkeypatch.setattr(triage, "order_flow", _Recorder(calls))
    for data in ({"action": "retry"}, {"action": "cancel", "reason": "x"}):
        r = client.post(f"/orders/{order.pk}/", data, follow=True)
        assert "cannot be" in r.content.decode()
    assert calls == []
