"""Parsing helpers shared by the connectors: row-level rejects that lose nothing else, timestamps.

The one way a connector returns rows it could not read: every read that parses remote rows returns a
:class:`ParsedBatch` — the good rows, plus ``rejected`` (:class:`RejectedRow`: which row, what is wrong with it, the
raw row). A connector never files exception records itself (it knows no hub); the hub service that consumes the
batch turns ``rejected`` into ``bad_payload`` records (orders: :mod:`integration_hub.orders.rejected`; stock:
:func:`integration_hub.inventory.services.apply_stock_changes`; returns, fulfilments and dispatches: their
services in :mod:`integration_hub.orders`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence


@dataclass
class RejectedRow:
    """A row that did not parse: its position in the answer, its reference (an order id; ``row-<i>`` when it has
    none), the field that is wrong and why, the raw row, and ``name`` — what people call it (an order number)."""

    index: int
    ref: str
    field: str
    message: str
    raw: Any = None
    name: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class ParsedBatch(list):
    """A list of the rows that parsed, plus ``rejected``: the rows that did not (never silently lost)."""

    def __init__(self, items: Iterable = (), rejected: list[RejectedRow] | None = None):
        super().__init__(items)
        self.rejected: list[RejectedRow] = rejected or []

    def reject(self, ref: str, field_name: str, message: str, raw: Any = None, name: str = "") -> None:
        """Add a rejected row (numbered in the order of rejection)."""
        self.rejected.append(
            RejectedRow(index=len(self.rejected), ref=ref, field=field_name, message=message, raw=raw, name=name)
        )


class RowError(ValueError):
    """One row of a feed is unusable; ``field`` names what is wrong with it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


def parse_rows(rows: Sequence, parse: Callable[[Any], Any], ref_keys: Sequence[str]) -> ParsedBatch:
    """Parse every row; a row raising :class:`RowError` is rejected (with the first present ``ref_keys``
    value as its reference) and the others still go through."""
    good, rejected = [], []
    for i, row in enumerate(rows):
        try:
            good.append(parse(row))
        except RowError as exc:
            ref = next((str(row[k]) for k in ref_keys if isinstance(row, dict) and row.get(k)), f"row-{i}")
            rejected.append(RejectedRow(index=i, ref=ref, field=exc.field, message=str(exc), raw=row))
    return ParsedBatch(good, rejected)


def parse_iso(value) -> datetime | None:
    """ISO-8601 (``Z`` allowed) → aware datetime (naive means UTC); None when absent."""
    if value in (None, ""):
        return None
    dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def to_iso(dt: datetime | None) -> str | None:
    """Aware or naive (= UTC) datetime → ``2026-01-31T12:00:00Z``."""
    if dt is None:
        return None
    return (
        (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc))
        .astimezone(timezone.utc)
        .isoformat()
        .replace("+00:00", "Z")
    )
