"""Flash sale: 5,000 orders through a real Celery worker with 409s, 429s, timeouts, lost responses and a
worker kill.

The real duplicate risk is a response lost *after* WAIR stored the order (the injected timeouts of the
base sandbox hang before the handler runs, so they cannot create anything): WAIR's ``lose_responses``
stores the order and then answers 504 past the client's timeout, so the hub's retry must be a replay.

Every order must reach the warehouse exactly once (one WAIR order per hub order; replays of the same
idempotency key are fine) and no storefront order may be marked shipped before the warehouse confirms
its dispatch.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from integration_hub.orders.models import Order, OrderState as S

from tests.support.factories import sandbox_order_world
from tests.support.sandbox import SandboxClient, control, faults

N = 5000
DISPATCHED = 4000  # the rest stay undispatched: they must never show as shipped


def _counts():
    return Counter(Order.objects.values_list("state", flat=True))


def _wait(what, cond, timeout, tick):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        tick()
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}: {dict(_counts())}")


@pytest.mark.worker
@pytest.mark.slow
def test_flash_sale_every_order_once_none_shipped_without_dispatch(sandbox, celery_worker_process):
    from integration_hub.orders import tasks

    started = time.time()
    # the hub's client limit (100/s, shared by the worker's processes) sits near the sandbox limits, so bursts may
    # draw 429s; one 429 is also injected on commercetools (the first poll) so that path always runs
    ct, wh, channel = sandbox_order_world(sandbox, rate=100, retries=2, timeout=1.0)
    for i in range(0, N, 1000):
        control(
            sandbox,
            "commercetools",
            "create_orders",
            {
                "orders": [
                    {
                        "channel": "uk-web",
                        "order_number": f"FS{j}",
                        "shipping_method": "standard" if j % 3 else "express",
                        "gift_message": "Enjoy" if j % 7 == 0 else "",
                        "lines": [{"sku": "SKU-1", "quantity": 1 + j % 2}, {"sku": "SKU-3", "quantity": 1}],
                    }
                    for j in range(i, i + 1000)
                ]
            },
        )
    faults(
        sandbox,
        "wair",
        rate_limit_per_second=200,
        rate_limit_burst=40,
        conflict_rate=0.03,
        timeout_rate=0.005,
        hang_seconds=1.5,
    )
    # order stored, answer lost beyond the client's 1 s timeout: the retry (same Idempotency-Key) must be a replay
    control(sandbox, "wair", "lose_responses", {"rate": 0.01, "hang_seconds": 1.2})
    faults(
        sandbox,
        "commercetools",
        rate_limit_per_second=300,
        rate_limit_burst=60,
        conflict_rate=0.05,
        timeout_rate=0.003,
        hang_seconds=1.5,
        fail_next=[429],
    )

    def tick():
        tasks.sweep.apply_async(kwargs={"lease_seconds": 15, "workers": 2}, queue="priority")

    phases = {}
    t = time.time()
    tasks.poll_orders.apply_async(kwargs={"max_pages": 50})
    # kill the worker in the middle of the sale (capture and sending both under way)
    _wait("some acknowledgements", lambda: _counts()[S.ACKNOWLEDGED] >= 1000, 240, tick)
    celery_worker_process.kill()
    killed_at = _counts()
    celery_worker_process.restart()
    tasks.poll_orders.apply_async(
        kwargs={"max_pages": 50}
    )  # catch-up poll overlapping what was captured: no duplicates
    _wait("capture", lambda: Order.objects.count() >= N, 240, tick)
    phases["capture"] = time.time() - t
    _wait("all acknowledged", lambda: _counts()[S.ACKNOWLEDGED] == N, 420, tick)
    phases["acknowledged"] = time.time() - t
    assert killed_at[S.ACKNOWLEDGED] < N, "the kill came too late to test anything"

    # nothing is shipped before the warehouse confirms
    ct_state = control(sandbox, "commercetools", "state")["orders"]
    assert not [o for o in ct_state.values() if o["shipment_state"] == "Shipped"]

    keys = sorted(Order.objects.values_list("idempotency_key", flat=True))
    for k in keys[:DISPATCHED]:
        control(sandbox, "wair", "dispatch", {"order_ref": k, "parcels": [{"carrier": "dhl"}]})
    t = time.time()
    tasks.poll_dispatches.apply_async(kwargs={"max_pages": 50})
    _wait(
        "storefront notified",
        lambda: _counts()[S.STOREFRONT_NOTIFIED] == DISPATCHED,
        420,
        lambda: (tick(), tasks.poll_dispatches.apply_async(kwargs={"max_pages": 50})),
    )

    phases["notified"] = time.time() - t
    # exactly once in the warehouse
    state = control(sandbox, "wair", "state")
    assert len(keys) == len(set(keys)) == N
    assert set(state["orders"]) == set(keys)
    assert len({o["orderId"] for o in state["orders"].values()}) == N
    # shipped in the storefront exactly when dispatched in the warehouse
    ct_state = control(sandbox, "commercetools", "state")["orders"]
    shipped = {oid for oid, o in ct_state.items() if o["shipment_state"] == "Shipped"}
    dispatched_ids = set(
        Order.objects.filter(idempotency_key__in=keys[:DISPATCHED]).values_list("external_id", flat=True)
    )
    assert shipped == dispatched_ids
    assert all(ct_state[oid]["deliveries"] == 1 for oid in shipped)
    counts = _counts()
    assert counts == Counter({S.STOREFRONT_NOTIFIED: DISPATCHED, S.ACKNOWLEDGED: N - DISPATCHED}), counts
    # the faults really happened
    ws, cs = SandboxClient.of(sandbox).stats("wair"), SandboxClient.of(sandbox).stats("commercetools")
    assert ws.rate_limited and ws.conflicts and ws.injected_timeouts, ws
    assert cs.conflicts and cs.rate_limited, cs
    # exactly one WAIR order per idempotency key: WAIR numbers every order it creates, so N keys and ids
    # WO-0000001 … WO-<N> mean nothing was created twice, although responses were lost after the write
    assert state["lost_responses"] > 0, state["lost_responses"]
    assert sorted(o["orderId"] for o in state["orders"].values()) == [f"WO-{i:07d}" for i in range(1, N + 1)]
    receipts = sum(state["order_receipts"].values())
    assert receipts > N and all(state["order_receipts"][k] >= 1 for k in keys)  # the lost answers were replayed
    print(
        f"flash sale: {N} orders in {time.time() - started:.0f}s; warehouse receipts {receipts} (replays {receipts - N}); "
        f"acknowledged at kill: {killed_at[S.ACKNOWLEDGED]}; phases { ({k: round(v) for k, v in phases.items()}) }"
    )
