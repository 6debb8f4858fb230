"""WAIR for Retail connector: inventory master (stock feed, webhooks, snapshots) and warehouse (order
intake with acknowledgement, dispatch confirmations, storefront-side fulfilments).

**Modelled on no published API.** WAIR's published API (docs.wair.ai) is a replenishment engine's: the
retailer pushes items, locations, stock and sales in and pulls recommendations out. Nothing published lets
WAIR act as a stock master that pushes available-to-sell, or as a warehouse that takes web orders and
confirms dispatch — the role this adapter plays, for retailers who describe running WAIR that way. Its
routes (change feed, orders, dispatches, fulfilments) are an assumption, described in
:mod:`connectors.sandbox.wair`; only the conventions are WAIR's published ones (``POST /Token`` with
``X-Tenant``, camelCase JSON, ``skuId``/``locationId``, offset/limit paging with ``moreRecordsAvailable``,
401/400/500 semantics).

Connection settings: ``base_url`` = API root (e.g. ``https://wair.example.com`` or the sandbox's
``http://127.0.0.1:8765/wair``). Authentication, two modes:
- ``client_id`` set: WAIR's published token flow — ``POST <base_url>/Token`` with ``X-Tenant`` and
  ``{username: client_id, password: secret}``; the bearer token is cached (Django cache, so shared by
  workers) until shortly before ``expiresIn`` and fetched again once on a 401 (:class:`WairTokenAuth`).
- ``client_id`` empty: the connection secret is a static API key sent as ``X-Api-Key``.
``options``: ``tenant`` (sent as ``X-Tenant`` on every call), ``page_size`` (default 500),
``api_prefix`` (default ``/api/v1``).

Public entry points (besides the role methods stock_changes, parse_stock_webhook, stock_snapshot,
send_order, dispatches_since, parse_dispatch_webhook, order_status, send_fulfilment):
``locations()``, ``acknowledgement(order_ref)`` (read-only ack check), ``cancel_order(order_ref)``,
``order_body(order)`` (the exact request body, for logs / previews), ``get_order(order_ref)``.

Error handling (every call goes through :class:`connectors.http.HttpClient`):
- 401/403 → PermanentError; 404 → NotFoundError; 429 → RateLimitedError (Retry-After honoured);
  5xx/timeouts → RetryableError (retried with backoff by the client first).
- 422 → :class:`WairValidationError` (a BadDataError) with ``fields`` = {field path: message}.
- ``send_order``'s acknowledgement carries WAIR's ``allocations`` (SKU → location where the line was allocated;
  a uk-web order may be allocated at EU1): the hub releases each line's hold on a moved figure there.
- ``send_order`` / ``send_fulfilment`` answered 202 "pending" (received, not acknowledged) →
  :class:`NotAcknowledged`, the taxonomy's :class:`connectors.errors.NotAcknowledgedError` (a RetryableError,
  ``kind == "not_acknowledged"``): the order is at WAIR
  but has no acknowledgement id yet, so the hub marks it *sent*, not *acknowledged*. Re-sending is safe
  (the Idempotency-Key is the order ref; WAIR never creates a second order) and is how the hub asks again.
  Order intake retries 409 too ("key in flight"), since the key makes every retry a replay.
- ``cancel_order`` once dispatched → :class:`AlreadyDispatched` (PermanentError); ``send_order`` for an
  order WAIR holds as cancelled → :class:`OrderCancelled` (PermanentError).

Malformed rows in inbound payloads
- Stock (``parse_stock_webhook`` / ``stock_changes``): every row becomes a StockChange. Rows that are
  well-formed are typed (int quantity, aware datetime, hub state name); fields that are not are carried
  through *raw* (e.g. ``quantity="lots"``, ``state="on-fire"``), so
  :func:`integration_hub.inventory.services.apply_stock_changes` — the one validator — rejects exactly
  that row with a ``bad_payload`` exception record and applies every other row. Nothing is dropped here.
- Dispatches (``parse_dispatch_webhook`` / ``dispatches_since``): return a :class:`ParsedBatch` (a list of
  good Dispatch items) whose ``rejected`` lists :class:`RejectedRow` (index, ref, field, message, raw)
  for rows that could not be understood; callers record those as ``bad_payload`` exceptions. Only an
  unusable envelope (not an object / no list) raises BadDataError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable
from urllib.parse import quote

from . import errors
from .base import (
    Acknowledgement,
    Connector,
    Dispatch,
    Fulfilment,
    InventoryMaster,
    Page,
    Parcel,
    StockChange,
    Warehouse,
    WarehouseOrder,
)
from .egress import display_url
from .http import CachedTokenAuth, HeaderAuth, HttpClient
from .parsing import ParsedBatch, parse_rows, to_iso as _iso
from .parsing import RowError as _RowError

API_KEY_HEADER = "X-Api-Key"
DEFAULT_PAGE_SIZE = 500
SNAPSHOT_SKU_CHUNK = 100
# WAIR wire state → hub inventory state (integration_hub.inventory.models.InventoryState)
STATE_FROM_WIRE = {
    "available": "available",
    "inspection": "inspection",
    "damaged": "damaged",
    "inTransit": "in_transit",
    "reserved": "reserved",
}
_INT_RX = re.compile(r"^\s*-?\d+\s*$")


@dataclass
class WairTokenAuth(CachedTokenAuth):
    """WAIR's ``POST /Token`` (JSON username/password + ``X-Tenant``) → bearer token, cached until shortly
    before it expires; :meth:`invalidate` (called by the client on a 401) forces a new one."""

    token_url: str
    username: str
    password: str
    tenant: str = ""
    timeout: float = 10.0
    system = "wair"

    @property
    def cache_key(self) -> str:
        return f"hub:wair-token:{self.token_url}:{self.tenant}:{self.username}"

    def fetch(self, session):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.tenant:
            headers["X-Tenant"] = self.tenant
        return session.post(
            self.token_url,
            json={"username": self.username, "password": self.password},
            headers=headers,
            timeout=self.timeout,
            allow_redirects=False,
        )

    def parse(self, body: dict) -> tuple[str, int]:
        return body["accessToken"], int(body.get("expiresIn") or 3600)


class NotAcknowledged(errors.NotAcknowledgedError):
    """WAIR received the order (202) but has not acknowledged it: no order id yet. The order is *sent*,
    not *acknowledged*; ask again later (same Idempotency-Key — never a duplicate order). The taxonomy's
    :class:`connectors.errors.NotAcknowledgedError` (``kind == "not_acknowledged"``), named for WAIR."""


class AlreadyDispatched(errors.PermanentError):
    """Cancel refused: WAIR has dispatched (part of) the order."""

    kind = "already_dispatched"


class OrderCancelled(errors.PermanentError):
    """``send_order`` for an order WAIR holds as cancelled (a replay after a cancel)."""

    kind = "cancelled"


class WairValidationError(errors.BadDataError):
    """422 from WAIR; ``fields`` maps each offending field path (e.g. ``shippingAddress.postalCode``,
    ``lines[0].quantity``) to WAIR's message."""

    def __init__(self, message: str, *, fields: dict[str, str] | None = None, code: str = "", **kw):
        super().__init__(message, **kw)
        self.fields = fields or {}
        self.code = code


def _parse_dt(value: Any) -> datetime | None:
    """ISO-8601 (with ``Z``) → aware datetime; None if absent; raises ValueError if unreadable."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a timestamp")
    dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _flag(value: Any, name: str, default: bool = True) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _RowError(name, f"{name} {value!r} is not true/false")


def _address(a) -> dict | None:
    if a is None:
        return None
    return {
        "firstName": a.first_name,
        "lastName": a.last_name,
        "company": a.company,
        "street": a.street,
        "street2": a.street2,
        "postalCode": a.postal_code,
        "city": a.city,
        "region": a.region,
        "country": a.country,
        "phone": a.phone,
        "email": a.email,
    }


class WairConnector(Connector, InventoryMaster, Warehouse):
    system_type = "wair"
    api_document = ""  # WAIR publishes no master / warehouse API (docs.wair.ai is its replenishment API)
    modelled = True

    def __init__(self, connection, client=None):
        options = connection.options or {}
        self.page_size = int(options.get("page_size") or DEFAULT_PAGE_SIZE)
        self.api = "/" + str(options.get("api_prefix") or "/api/v1").strip("/")
        super().__init__(connection, client)

    def build_client(self) -> HttpClient:
        conn = self.connection
        tenant = str((conn.options or {}).get("tenant") or "")
        if conn.client_id:
            auth = WairTokenAuth(
                f"{conn.base_url.rstrip('/')}/Token",
                conn.client_id,
                conn.get_secret(),
                tenant,
                timeout=conn.timeout_seconds,
            )
        else:
            auth = HeaderAuth(API_KEY_HEADER, conn.get_secret())
        return HttpClient.for_connection(conn, auth=auth, default_headers={"X-Tenant": tenant} if tenant else None)

    def _path(self, path: str) -> str:
        return f"{self.api}/{path.lstrip('/')}"

    def _call(self, method: str, path: str, **kw):
        """One request; 422 becomes WairValidationError with the field list."""
        try:
            return self.client.request(method, self._path(path), **kw)
        except errors.BadDataError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            fields = {}
            for e in body.get("errors") or []:
                if isinstance(e, dict) and e.get("field"):
                    fields[str(e["field"])] = str(e.get("message") or e.get("code") or "invalid")
            if not fields and exc.status != 422:
                raise
            detail = "; ".join(f"{k}: {v}" for k, v in fields.items()) or str(body.get("message") or exc)
            raise WairValidationError(
                f"WAIR rejected {method} {path}: {detail}",
                fields=fields,
                code=str(body.get("code") or ""),
                status=exc.status,
                body=exc.body,
                system=self.system_type,
            ) from exc

    def _json(self, resp) -> dict:
        """The JSON object of a 2xx answer; anything else (an HTML page from a proxy, a list) is bad data."""
        if not resp.content:
            return {}
        try:
            body = resp.json()
        except ValueError:
            raise errors.BadDataError(
                f"WAIR {resp.request.method} {display_url(resp.url)} answered {resp.status_code} "
                f"with non-JSON ({resp.headers.get('Content-Type') or 'no content type'})",
                status=resp.status_code,
                body=resp.text[:2000],
                system=self.system_type,
            ) from None
        if not isinstance(body, dict):
            raise errors.BadDataError(
                f"WAIR {resp.request.method} {resp.url} answered a {type(body).__name__}, not an object",
                status=resp.status_code,
                body=body,
                system=self.system_type,
            )
        return body

    # --- locations ---------------------------------------------------------------------------------
    def locations(self) -> list[dict]:
        """[{id, code, name}] as WAIR knows them (Location.external_id = id)."""
        return list(self._json(self._call("GET", "locations")).get("locations") or [])

    # --- inventory master --------------------------------------------------------------------------
    @staticmethod
    def stock_change_from_row(row: Any, index: int = 0) -> StockChange:
        """One feed/webhook row → StockChange. Well-formed fields are typed; malformed ones are carried
        raw so the hub's validator rejects just this row (see module docstring)."""
        if not isinstance(row, dict):
            return StockChange(sku=None, location=None, quantity=None, ref=f"row-{index}:{str(row)[:40]}")  # type: ignore[arg-type]
        qty = row.get("quantity")
        if isinstance(qty, str) and _INT_RX.match(qty):
            qty = int(qty)
        elif isinstance(qty, float) and qty.is_integer():
            qty = int(qty)
        state = row.get("state")
        if state in (None, ""):
            state = "available"
        elif isinstance(state, str):
            state = STATE_FROM_WIRE.get(state, state)  # unknown names stay as sent: the hub rejects the row
        changed = row.get("changedAt", row.get("updatedAt"))
        try:
            changed = _parse_dt(changed)
        except ValueError:
            pass  # carried raw: the hub rejects the row with "changed_at ... is not a timestamp"
        loc, sku = row.get("locationId"), row.get("skuId")
        if isinstance(loc, int) and not isinstance(loc, bool):
            loc = str(loc)
        if isinstance(sku, int) and not isinstance(sku, bool):
            sku = str(sku)  # a numeric id sent as a JSON number; catalogue transforms handle padding
        ref = row.get("id")
        return StockChange(
            sku=sku,
            location=loc,
            quantity=qty,
            state=state,
            changed_at=changed,
            ref=str(ref) if ref not in (None, "") else "",
        )

    def stock_changes(self, cursor: str) -> Page:
        params = {"limit": self.page_size}
        if cursor:
            params["since"] = cursor
        body = self._json(self._call("GET", "stock/changes", params=params))
        rows = body.get("changes")
        if not isinstance(rows, list):
            raise errors.BadDataError(
                "WAIR stock/changes answer has no 'changes' list", body=body, system=self.system_type
            )
        items = [self.stock_change_from_row(r, i) for i, r in enumerate(rows)]
        return Page(
            items=items,
            cursor=str(body.get("nextCursor") or cursor or ""),
            has_more=bool(body.get("moreRecordsAvailable")),
        )

    def parse_stock_webhook(self, payload: dict) -> list[StockChange]:
        """``{"type": "stock.changed", "batchId", "changes": [...]}`` → one StockChange per row."""
        if not isinstance(payload, dict) or not isinstance(payload.get("changes"), list):
            raise errors.BadDataError("stock webhook: 'changes' must be a list", body=payload, system=self.system_type)
        if payload.get("type") not in (None, "stock.changed"):
            raise errors.BadDataError(
                f"stock webhook: unexpected type {payload.get('type')!r}", body=payload, system=self.system_type
            )
        batch = str(payload.get("batchId") or "")
        out = []
        for i, row in enumerate(payload["changes"]):
            change = self.stock_change_from_row(row, i)
            if not change.ref and batch:
                change.ref = f"{batch}#{i}"
            out.append(change)
        return out

    def stock_snapshot(self, skus: Iterable[str] | None = None, location: str | None = None) -> Iterable[StockChange]:
        """Every current quantity (optionally only for ``skus`` and/or one ``location``), paging through
        ``/stock`` (SKUs asked for in chunks of 100). A generator; rows carry ``changed_at`` = WAIR's updatedAt."""
        base = {"locationId": location} if location else {}
        if skus is None:
            yield from self._stock_pages(base)
            return
        skus = list(dict.fromkeys(skus))
        for i in range(0, len(skus), SNAPSHOT_SKU_CHUNK):
            yield from self._stock_pages({**base, "skuId": ",".join(skus[i : i + SNAPSHOT_SKU_CHUNK])})

    def _stock_pages(self, params: dict) -> Iterable[StockChange]:
        offset = 0
        while True:
            body = self._json(self._call("GET", "stock", params={**params, "offset": offset, "limit": self.page_size}))
            rows = body.get("stock")
            if not isinstance(rows, list):
                raise errors.BadDataError("WAIR stock answer has no 'stock' list", body=body, system=self.system_type)
            for i, row in enumerate(rows):
                yield self.stock_change_from_row(row, offset + i)
            offset += len(rows)
            if not rows or not body.get("moreRecordsAvailable"):
                return

    # --- warehouse ---------------------------------------------------------------------------------
    @staticmethod
    def order_body(order: WarehouseOrder) -> dict:
        """Every WarehouseOrder field in WAIR's order shape (bundle components keep ``parentLineId``)."""
        return {
            "orderRef": order.order_ref,
            "orderNumber": order.order_number,
            "channel": order.channel,
            "placedAt": _iso(order.placed_at),
            "currency": order.currency,
            "totalCents": order.total_cents,
            "customerEmail": order.customer_email,
            "serviceCode": order.shipping_method,
            "carrier": order.carrier,
            "shippingAddress": _address(order.shipping_address),
            "billingAddress": _address(order.billing_address),
            "giftMessage": order.gift_message,
            "deliveryNotes": order.delivery_notes,
            "customFields": dict(order.custom_fields or {}),
            # a bundle's own line (WarehouseOrderLine.pickable False) is not flagged separately: WAIR never picks
            # a line that other lines name as parentLineId (its components are the goods). Adding a field would
            # change the body of orders already in flight, which WAIR refuses under the same Idempotency-Key.
            "lines": [
                {
                    "lineId": line.line_id,
                    "skuId": line.sku,
                    "quantity": line.quantity,
                    "parentLineId": line.parent_line_id or None,
                    "unitPriceCents": line.unit_price_cents,
                    "customFields": dict(line.custom_fields or {}),
                }
                for line in order.lines
            ],
        }

    def send_order(self, order: WarehouseOrder) -> Acknowledgement:
        # Idempotency-Key = order ref: retries (timeouts, 5xx, 429, 409 "key in flight") can never create a
        # second order, so the client may retry every one of them.
        resp = self._call(
            "POST",
            "orders",
            json=self.order_body(order),
            headers={"Idempotency-Key": order.order_ref},
            ok=(200, 201, 202),
            retry_conflicts=True,
        )
        body = self._json(resp)
        order_id = body.get("orderId")
        if body.get("status") == "cancelled":
            raise OrderCancelled(
                f"WAIR has order {order.order_ref} as cancelled; it will not be fulfilled",
                status=resp.status_code,
                body=body,
                system=self.system_type,
            )
        if resp.status_code == 202 or not order_id:
            raise NotAcknowledged(
                f"WAIR received order {order.order_ref} but has not acknowledged it "
                f"(status {body.get('status') or resp.status_code})",
                order_ref=order.order_ref,
                status=resp.status_code,
                body=body,
                system=self.system_type,
            )
        duplicate = resp.status_code == 200 or resp.headers.get("Idempotent-Replayed", "").lower() == "true"
        try:
            received = _parse_dt(body.get("receivedAt"))
        except ValueError:
            received = None  # a timestamp we cannot read is not worth refusing an acknowledgement over
        return Acknowledgement(
            order_ref=order.order_ref,
            warehouse_ref=str(order_id),
            duplicate=duplicate,
            received_at=received,
            allocations=self._allocations(body),
        )

    @staticmethod
    def _allocations(body: dict) -> dict[str, str]:
        """``allocations: [{skuId, locationId, quantity}]`` → {sku: location id}; unreadable rows are skipped
        (the hold then waits for a moved figure at any of WAIR's locations, as without allocations)."""
        out = {}
        for row in body.get("allocations") or []:
            if isinstance(row, dict) and isinstance(row.get("skuId"), str) and row.get("locationId") not in (None, ""):
                out[row["skuId"]] = str(row["locationId"])
        return out

    def acknowledgement(self, order_ref: str) -> Acknowledgement | None:
        """Ask (read-only) whether WAIR has acknowledged an order it received: the Acknowledgement, None
        while it is still pending. NotFoundError if WAIR never received it (send it again)."""
        body = self._json(self._call("GET", f"orders/{quote(order_ref, safe='')}"))
        if not body.get("orderId"):
            return None
        return Acknowledgement(
            order_ref=order_ref, warehouse_ref=str(body["orderId"]), duplicate=True, allocations=self._allocations(body)
        )

    def cancel_order(self, order_ref: str) -> str:
        """Ask WAIR to cancel an order not yet dispatched → its status ("cancelled"). Raises NotFoundError
        if WAIR does not have it, :class:`AlreadyDispatched` (a PermanentError) once it shipped."""
        try:
            body = self._json(self._call("POST", f"orders/{quote(order_ref, safe='')}/cancel"))
        except errors.ConflictError as exc:
            raise AlreadyDispatched(
                f"WAIR cannot cancel {order_ref}: already dispatched",
                status=exc.status,
                body=exc.body,
                system=self.system_type,
            ) from exc
        return str(body.get("status") or "")

    def dispatches_for(self, order_ref: str) -> list[Dispatch]:
        """The dispatches WAIR recorded for one order: the order names their ids, and the dispatch feed's cursor
        is the last id seen, so ``since=<id - 1>&limit=1`` reads exactly dispatch ``id``. NotFoundError if
        WAIR does not have the order."""
        body = self._json(self._call("GET", f"orders/{quote(order_ref, safe='')}"))
        out = []
        for did in body.get("dispatches") or []:
            try:
                since = int(did) - 1
            except (TypeError, ValueError):
                raise errors.BadDataError(
                    f"WAIR order {order_ref} names dispatch {did!r}, not a dispatch id",
                    body=body,
                    system=self.system_type,
                ) from None
            params = {"limit": 1, **({"since": str(since)} if since > 0 else {})}
            page = self._json(self._call("GET", "dispatches", params=params))
            batch = self._dispatch_rows(
                [r for r in page.get("dispatches") or [] if isinstance(r, dict) and str(r.get("id")) == str(did)]
            )
            out += [d for d in batch if d.order_ref == order_ref]
        return out

    def order_status(self, order_ref: str) -> str | None:
        """WAIR's status (pending | accepted | partially_dispatched | dispatched | cancelled), or None if
        WAIR does not have the order (orphan check)."""
        try:
            body = self._json(self._call("GET", f"orders/{quote(order_ref, safe='')}"))
        except errors.NotFoundError:
            return None
        return str(body.get("status") or "")

    def get_order(self, order_ref: str) -> dict | None:
        """WAIR's full record for an order (orderId, status, lines, dispatch ids), or None."""
        try:
            return self._json(self._call("GET", f"orders/{quote(order_ref, safe='')}"))
        except errors.NotFoundError:
            return None

    @staticmethod
    def dispatch_from_row(row: Any) -> Dispatch:
        """Raises _RowError naming the offending field."""
        if not isinstance(row, dict):
            raise _RowError("", "dispatch row is not an object")
        ref = row.get("orderRef")
        if not isinstance(ref, str) or not ref:
            raise _RowError("orderRef", "orderRef is missing")
        try:
            when = _parse_dt(row.get("dispatchedAt"))
        except ValueError:
            raise _RowError("dispatchedAt", f"dispatchedAt {row.get('dispatchedAt')!r} is not a timestamp") from None
        parcels_raw = row.get("parcels")
        if not isinstance(parcels_raw, list) or not parcels_raw:
            raise _RowError("parcels", "a dispatch needs at least one parcel")
        parcels = []
        for i, p in enumerate(parcels_raw):
            if not isinstance(p, dict):
                raise _RowError(f"parcels[{i}]", "parcel is not an object")
            tn = p.get("trackingNumber")
            if not isinstance(tn, str) or not tn:
                raise _RowError(f"parcels[{i}].trackingNumber", "trackingNumber is missing")
            lines = []
            for j, line in enumerate(p.get("lines") or []):
                sku = line.get("skuId") if isinstance(line, dict) else None
                qty = line.get("quantity") if isinstance(line, dict) else None
                if not isinstance(sku, str) or not sku or isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                    raise _RowError(
                        f"parcels[{i}].lines[{j}]", f"parcel line {line!r} needs skuId and a positive quantity"
                    )
                lines.append((sku, qty))
            parcels.append(
                Parcel(
                    carrier=str(p.get("carrier") or ""),
                    tracking_number=tn,
                    tracking_url=str(p.get("trackingUrl") or ""),
                    lines=lines,
                )
            )
        return Dispatch(
            order_ref=ref,
            warehouse_ref=str(row.get("orderId") or ""),
            dispatched_at=when,
            parcels=parcels,
            ref=str(row.get("id") or ""),
            complete=_flag(row.get("complete"), "complete"),
        )

    def _dispatch_rows(self, rows: list) -> ParsedBatch:
        return parse_rows(rows, self.dispatch_from_row, ("id", "orderRef"))

    def dispatches_since(self, cursor: str, limit: int | None = None) -> Page:
        """Page.items is a :class:`ParsedBatch` (check ``page.items.rejected``); ``limit`` rows at most (None: the
        page size)."""
        params = {"limit": limit or self.page_size}
        if cursor:
            params["since"] = cursor
        body = self._json(self._call("GET", "dispatches", params=params))
        rows = body.get("dispatches")
        if not isinstance(rows, list):
            raise errors.BadDataError(
                "WAIR dispatches answer has no 'dispatches' list", body=body, system=self.system_type
            )
        return Page(
            items=self._dispatch_rows(rows),
            cursor=str(body.get("nextCursor") or cursor or ""),
            has_more=bool(body.get("moreRecordsAvailable")),
        )

    def parse_dispatch_webhook(self, payload: dict) -> ParsedBatch:
        """``{"type": "dispatch.confirmed", "dispatches": [...]}`` → ParsedBatch of Dispatch (+ ``rejected``)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("dispatches"), list):
            raise errors.BadDataError(
                "dispatch webhook: 'dispatches' must be a list", body=payload, system=self.system_type
            )
        return self._dispatch_rows(payload["dispatches"])

    def send_fulfilment(self, fulfilment: Fulfilment) -> str:
        """Report a storefront-side fulfilment → WAIR's fulfilment id. Idempotency-Key
        ``<order_ref>:<fulfilment_ref>``; 202 pending → :class:`NotAcknowledged` (send again later)."""
        body = {
            "orderRef": fulfilment.order_ref,
            "fulfilmentRef": fulfilment.fulfilment_ref,
            "locationId": fulfilment.location or None,
            "fulfilledAt": _iso(fulfilment.fulfilled_at),
            "lines": [{"skuId": sku, "quantity": qty} for sku, qty in fulfilment.lines],
        }
        key = f"{fulfilment.order_ref}:{fulfilment.fulfilment_ref}"
        resp = self._call(
            "POST", "fulfilments", json=body, headers={"Idempotency-Key": key}, ok=(200, 201, 202), retry_conflicts=True
        )
        answer = self._json(resp)
        fid = answer.get("fulfilmentId")
        if resp.status_code == 202 and not fid:
            raise NotAcknowledged(
                f"WAIR received fulfilment {key} but has not acknowledged it",
                order_ref=fulfilment.order_ref,
                status=202,
                body=answer,
                system=self.system_type,
            )
        if not fid:
            raise errors.RetryableError(
                f"WAIR answered {resp.status_code} without a fulfilmentId",
                status=resp.status_code,
                body=resp.text[:500],
                system=self.system_type,
            )
        return str(fid)
