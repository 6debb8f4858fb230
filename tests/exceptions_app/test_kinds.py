"""The exception-kind registry: every kind declared, every declared fix action and permission real, keys as before."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from exceptions_app import kinds
from exceptions_app.kinds import FIX_ACTIONS, SPECS, Grouping, Retry
from exceptions_app.models import Kind, Severity


def test_every_kind_has_a_spec_and_every_spec_a_kind():
    assert set(SPECS) == set(Kind.values)
    for kind, spec in SPECS.items():
        assert spec.kind == kind and spec.label == Kind(kind).label
        assert spec.key_parts and spec.severity in Severity.values
        assert spec.grouping in Grouping.ALL and spec.retry in Retry.ALL
        assert spec.subject in ("sku", "order", "connection", "stock", "payload", "item")
        assert spec.action == "" or spec.action in FIX_ACTIONS, (kind, spec.action)


@pytest.mark.django_db
def test_every_fix_action_permission_exists():
    def exists(perm: str) -> bool:
        app_label, codename = perm.split(".", 1)
        return Permission.objects.filter(content_type__app_label=app_label, codename=codename).exists()

    for action in FIX_ACTIONS.values():
        assert action.permissions, action.name
        for perm in action.permissions + tuple(p for step in action.steps.values() for p in step):
            assert exists(perm), (action.name, perm)
    for spec in SPECS.values():
        assert spec.permissions == (FIX_ACTIONS[spec.action].permissions if spec.action else ())


def test_keys_are_the_kind_and_the_parts_joined():
    assert kinds.key(Kind.SKU_MISMATCH, "web", "00123") == "sku_mismatch:web:00123"
    assert kinds.key(Kind.AUTH_FAILURE, "ct") == "auth_failure:ct"
    assert kinds.key("bad_payload", "ct", None, "", 7) == "bad_payload:ct:7"  # empty parts left out
    assert len(kinds.key(Kind.STUCK_ORDER, "x" * 400)) == 300
    with pytest.raises(ValueError):
        kinds.key("no_such_kind", "a")


def test_lookups():
    assert kinds.having(action="map_sku") == (Kind.SKU_MISMATCH, Kind.UNKNOWN_SKU)
    assert set(kinds.having(grouping=Grouping.CONNECTION)) == {Kind.SYNC_TIMEOUT, Kind.RATE_LIMITED, Kind.AUTH_FAILURE}
    assert set(kinds.having(grouping=Grouping.CHANNEL)) == {
        Kind.MISSING_DISPATCH,
        Kind.ORPHANED_ORDER,
        Kind.STOCK_DRIFT,
    }
    assert set(kinds.having(grouping=Grouping.OWN)) == {Kind.SKU_MISMATCH, Kind.UNKNOWN_SKU, Kind.ESCALATED}
    assert kinds.permissions("order", "edit") == ("orders.change_order", "orders.retry_order")
    assert kinds.fix_action(Kind.UNKNOWN_SKU, {"action": "retry_order"}) == "map_sku"
    assert kinds.fix_action(Kind.STOCK_DRIFT, {}) == "repush_stock"
    assert kinds.fix_action(Kind.STOCK_DRIFT, {"action": "retry_order"}) == "order"
    assert kinds.fix_action(Kind.BAD_PAYLOAD, {"action": "resend_dispatch"}) == "order"
    assert kinds.fix_action(Kind.BAD_PAYLOAD, {"action": "retry_push"}) == "retry_push"
    assert kinds.fix_action(Kind.MASTER_DATA_DRIFT, None) == "take_master_value"
    assert kinds.plain(Kind.ESCALATED) == "Customer service handed this order to ops with a note."
    assert kinds.plain(Kind.NOT_ON_STOREFRONT) == kinds.GENERIC_PLAIN == kinds.plain("no_such_kind")
