"""Order-flow fixtures: a small catalogue + channel, fakes for unit tests, sandbox connections for HTTP tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest

from connectors.base import Acknowledgement, Address, OrderLineData, StorefrontOrder
from tests.support.factories import order_world

_seq = itertools.count(1)


def make_so(external_id=None, lines=(("SKU-1", 1),), channel_ref="uk-web", **kw) -> StorefrontOrder:
    n = next(_seq)
    external_id = external_id or f"ct-{n}"
    addr = kw.pop("shipping_address", None) or Address(
        first_name="Alex",
        last_name="Morgan",
        street="12 High Street",
        postal_code="SW1A 1AA",
        city="London",
        country="GB",
        email="a@example.com",
    )
    return StorefrontOrder(
        external_id=external_id,
        order_number=kw.pop("order_number", f"N{n}"),
        channel_ref=channel_ref,
        lines=[
            OrderLineData(line_id=f"{external_id}-L{i}", sku=s, quantity=q, unit_price_cents=1000)
            for i, (s, q) in enumerate(lines, 1)
        ],
        version=1,
        placed_at=datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc),
        currency="GBP",
        total_cents=2000,
        customer_email="a@example.com",
        shipping_address=addr,
        billing_address=addr,
        shipping_method=kw.pop("shipping_method", "standard"),
        **kw,
    )


@pytest.fixture
def world(db):
    """Storefront + warehouse connections, channel uk-web, items, a bundle, mappings, a shipping map."""
    return order_world()


class FakeWarehouse:
    """Records every send; ``script`` maps order_ref → list of outcomes (exception instances or "ack") used in turn."""

    def __init__(self):
        self.sent = []
        self.script: dict[str, list] = {}
        self.ids: dict[str, str] = {}
        self.fulfilments = []
        self.status: dict[str, str | None] = {}
        self.allocations: dict[str, dict[str, str]] = {}  # order_ref → {sku: location id} the ack names
        self.received_at = None  # the master's time of receipt the ack names (None: the hub's clock)

    def send_order(self, wo):
        self.sent.append(wo)
        todo = self.script.get(wo.order_ref)
        if todo:
            outcome = todo.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
        dup = wo.order_ref in self.ids
        self.ids.setdefault(wo.order_ref, f"WO-{len(self.ids) + 1}")
        return Acknowledgement(
            order_ref=wo.order_ref,
            warehouse_ref=self.ids[wo.order_ref],
            duplicate=dup,
            received_at=self.received_at,
            allocations=dict(self.allocations.get(wo.order_ref, {})),
        )

    def order_status(self, ref):
        return self.status.get(ref, "accepted" if ref in self.ids else None)

    def cancel_order(self, ref):
        """``script["C:<ref>"]``: outcomes in turn (exceptions raised); else cancelled if known, 404 if not."""
        from connectors import errors

        self.cancelled = getattr(self, "cancelled", []) + [ref]
        todo = self.script.get(f"C:{ref}")
        if todo:
            raise todo.pop(0)
        if ref not in self.ids:
            raise errors.NotFoundError(f"{ref} not found")
        self.status[ref] = "cancelled"
        return "cancelled"

    def dispatches_for(self, ref):
        """``dispatches[ref]``: what the warehouse holds for the order (lost confirmations)."""
        from connectors import errors

        if ref not in self.ids:
            raise errors.NotFoundError(f"{ref} not found")
        return list(getattr(self, "dispatches", {}).get(ref, []))

    def send_fulfilment(self, f):
        self.fulfilments.append(f)
        todo = self.script.get(f"F:{f.fulfilment_ref}")
        if todo:
            raise todo.pop(0)
        return f"FA-{len(self.fulfilments)}"


class FakeStorefront:
    def __init__(self):
        self.shipped = []
        self.fail: list[Exception] = []
        self.orders = []

    def mark_shipped(self, external_id, parcels, known_version=None, known_order=None):
        if self.fail:
            raise self.fail.pop(0)
        self.shipped.append((external_id, parcels))
        return (known_version or 0) + 1

    def orders_since(self, cursor, limit=100):
        from connectors.base import Page

        return Page(items=list(self.orders), cursor="c1", has_more=False)


WEBHOOK_PARTS = ("connection", "verify_webhook", "parse_order_webhook", "parse_dispatch_webhook")


@pytest.fixture
def fakes(world, fake_connectors):
    """The warehouse fake answers for WAIR connections, the storefront fake for every other; webhooks are still
    verified and parsed by the real connectors (their own code, no remote call)."""
    wh, sf = FakeWarehouse(), FakeStorefront()
    fake_connectors.install(sf, real=WEBHOOK_PARTS)
    fake_connectors.install(wh, system_type="wair", real=WEBHOOK_PARTS)
    return wh, sf
