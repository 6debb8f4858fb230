"""How import outcomes are read when the container holds more operations than the Import API lets a client page
(limit ≤ 500, offset ≤ 10,000): nothing is ever confirmed blindly."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from connectors.commercetools_import import MAX_OFFSET, PAGE, ImportSnapshot, InventoryImporter


class FakeImporter(InventoryImporter):
    def __init__(self, processing: int, failed: dict[str, int], created: datetime):
        self.processing_n, self.failed_n, self.created = processing, failed, created
        self.calls = []
        self._container_ready = True
        self.container = "c"

    def _page(self, params, snap):
        snap.requests += 1
        self.calls.append(params)
        state, limit, offset = params["state"], params["limit"], params.get("offset", 0)
        total = self.processing_n if state == "processing" else self.failed_n.get(state, 0)
        n = max(0, min(limit, total - offset))
        ts = self.created.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {
            "total": total,
            "results": [{"resourceKey": f"{state}-{offset + i}", "state": state, "createdAt": ts} for i in range(n)],
        }


NOW = datetime.now(timezone.utc)


def test_a_big_load_still_processing_costs_one_request_per_poll():
    imp = FakeImporter(processing=MAX_OFFSET + 1, failed={}, created=NOW)
    snap = imp.snapshot(NOW - timedelta(minutes=1))
    assert snap.requests == 1 and imp.calls == [{"state": "processing", "limit": 0}]
    assert snap.outcome("anything", NOW)[0] == "processing"


def test_processing_keys_and_failures_are_read_and_the_rest_is_imported():
    imp = FakeImporter(processing=700, failed={"unresolved": 3}, created=NOW)
    snap = imp.snapshot(NOW - timedelta(minutes=1))
    assert snap.outcome("processing-699", NOW)[0] == "processing"
    assert snap.outcome("unresolved-2", NOW)[0] == "failed"
    assert snap.outcome("done-1", NOW) == ("imported", None)
    assert snap.requests == 1 + 2 + 5  # total, two pages of keys, one page per failure state
    assert all(c["limit"] <= PAGE and c.get("offset", 0) <= MAX_OFFSET for c in imp.calls)


def test_more_failures_than_can_be_paged_leave_the_unseen_pairs_unknown():
    imp = FakeImporter(processing=0, failed={"validationFailed": MAX_OFFSET + 2 * PAGE}, created=NOW)
    snap = imp.snapshot(NOW - timedelta(minutes=1))
    assert snap.truncated and snap.outcome("validationFailed-5", NOW)[0] == "failed"
    assert snap.outcome("never-seen", NOW) == ("unknown", None)  # it may be one of the failures past the cap
    assert max(c.get("offset", 0) for c in imp.calls) <= MAX_OFFSET


def test_old_failures_stop_the_paging_and_do_not_count():
    imp = FakeImporter(processing=0, failed={"rejected": 5000}, created=NOW - timedelta(hours=3))
    snap = imp.snapshot(NOW - timedelta(minutes=1))
    assert [c for c in imp.calls if c["state"] == "rejected"] == [
        {"state": "rejected", "limit": PAGE, "offset": 0, "sort": "createdAt desc"}
    ]
    assert snap.outcome("rejected-1", NOW) == ("imported", None)  # an operation of an earlier load


def test_pairs_older_than_the_operations_retention_are_never_inferred():
    snap = ImportSnapshot(processing=set(), since=NOW - timedelta(days=3))
    assert snap.outcome("k", NOW - timedelta(hours=48))[0] == "unknown"
