"""Inventory Planner as Planner: demand goes in as the files Inventory Planner ingests, recommendations and
stock orders come out of its public API.

Published documents followed (help.inventory-planner.com):

- *Inventory Planner Public API(s)*: root ``https://app.inventory-planner.com/``; every call carries
  ``Authorization: <API key>`` and ``Account: <account id>``; collection resources ``api/v1/<plural>``;
  JSON answers with an optional ``result`` document. "Data for products and variants cannot be pushed into
  Inventory Planner using the API" — there is **no** ``POST api/v1/sales-orders``; this connector never
  writes demand through the API.
- *Reports API*: ``api/v1/variants`` (``id, sku, lead_time, review_period, replenishment, oos,
  under_value``); a variant's ``vendors``: ``vendor_id`` is the vendor's name in lower case (the supplier),
  ``vendor_name`` is the vendor's *title for the variant* (not the supplier), ``cost_price``,
  ``vendor_reference``, ``vendor_packaging`` (MOQ), ``uom_ordering``.
- *Stock Orders API*: ``api/v1/purchase-orders`` — purchase orders, transfers and assembly orders (``id,
  reference, status, type`` po | transfer | assembly, ``vendor, source_warehouse, warehouse, created_date,
  expected_date``, line ``items``).
- *CSV/Excel integration* (the Starter, or classic, CSV connector): the planner **pulls** complete files
  from permanent URLs once a day (GET; HEAD when the connection is set up; optional HTTP basic auth); each
  CSV connector is one warehouse; rows missing from a file are deleted. Products file columns
  ``product_id, title, price, SKU, created_at, stock_quantity`` (+ optional ``barcode, updated_at …``).
- *Advanced CSV connector* — "Syncing data with the Advanced CSV connector" (SFTP; files hold only new or
  updated records; ``REMOVED = true`` soft-removes; unique file names; each entity in its own
  subdirectory; variant and warehouse files before or with the sales orders) and the data file
  specifications for warehouses (``WAREHOUSE_ID, DISPLAY_NAME, UPDATED_AT, REMOVED, CURRENCY``), variants
  (``VARIANT_ID, SKU, TITLE, BARCODE, PRODUCT_ID, PRICE, CREATED_AT, UPDATED_AT, REMOVED, TYPE``), variant
  warehouses (``VARIANT_ID, WAREHOUSE_ID, IN_STOCK, REMOVED, UPDATED_AT``) and sales orders (``ORDER_ID`` =
  the line's id, ``ID`` = the order's id, ``VARIANT_ID, WAREHOUSE, CURRENCY, QUANTITY, PRICE, CREATED_AT,
  REMOVED, UPDATED_AT`` + optional ``REFERENCE, REFERENCE2 …``; a return is a row with a negative quantity).

How the hub uses them (``options["delivery"]``):

- ``"url"`` (default; Starter CSV connector): the planner pulls the hub's files
  (:mod:`integration_hub.planning.feeds`: ``/planning/feeds/<connection>/<warehouse>/products.csv`` and
  ``sales-orders.csv``, token-protected, streamed). :meth:`push_demand` only checks that every line can be
  written (SKU, warehouse, currency) — the hub's feed table *is* the file; ``demand_delivery = "pull"``.
- ``"sftp"`` (Advanced CSV connector): :meth:`push_demand` uploads, in one SFTP session, the warehouses,
  variants and variant-warehouse files and then the sales-order file of the new / changed lines (a
  cancelled line goes with ``REMOVED = true``), each under its subdirectory, written to a temporary name
  and renamed so the planner never reads half a file. paramiko (PyPI) is the SFTP client; the server's
  host key must be pinned (``options["sftp_host_key"]``, ``"<type> <base64>"`` as in ``known_hosts``).

Each demand line's id is the hub's line key ``<order ref>|<sku>|<bundle sku>|sale|return`` (ORDER_ID);
``ID`` is the hub order ref; ``REFERENCE2`` carries the channel. Promotion codes and the bundle a
component came from have no column in the published files and are not sent.

Not confirmed from the documents (assumptions, kept in this module): the Starter CSV sales-orders file's
own column list (the Advanced sales-order columns are used for it too); the Advanced CSV subdirectory
names (``options["sftp_dirs"]``, defaults below); the shape of a variant's ``warehouse`` list — read as
per-warehouse blocks with ``warehouse`` / ``id`` and their own ``replenishment`` / ``oos`` / ``lead_time``;
the ``replenishment_gt`` filter and ``page`` / ``limit`` paging; purchase-order item fields (``sku``,
``replenishment`` ordered, ``received_qty`` / ``received``).

Connection: ``base_url`` = ``https://app.inventory-planner.com`` (sandbox
``http://127.0.0.1:8765/inventory_planner``); secret = API key; ``client_id`` (or ``options["account"]``) =
account id. options: ``delivery`` (url | sftp), ``page_size`` (≤ 1000, default 500), ``warehouses``
(hub warehouse → planner warehouse id, used by the demand feed), ``currency`` (fallback ISO currency),
``sftp_host``, ``sftp_port`` (22), ``sftp_username``, ``sftp_password_env`` (environment variable holding
the password), ``sftp_host_key``, ``sftp_dirs``, ``sftp_timeout``.
"""

from __future__ import annotations

import base64
import csv
import io
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

from . import egress, env_secrets, errors
from .base import Connector, DemandLine, Planner, PlannerStockOrder, PlannerVariant, PlannerWarehouse, Recommendation
from .http import HeaderAuth, HttpClient
from .parsing import parse_iso

API = "/api/v1"
DOCUMENT = (
    "https://help.inventory-planner.com/en/articles/674662-inventory-planner-public-api, "
    "https://help.inventory-planner.com/en/articles/1662591-csv-excel-integration, "
    "https://help.inventory-planner.com/en/articles/10803447-sales-order-data-file-specification"
)
VARIANT_FIELDS = "id,sku,replenishment,oos,lead_time,review_period,warehouse,vendors"

# --- the published file formats ---------------------------------------------------------------------------
SALES_ORDER_COLUMNS = (
    "ORDER_ID",
    "ID",
    "VARIANT_ID",
    "WAREHOUSE",
    "CURRENCY",
    "QUANTITY",
    "PRICE",
    "CREATED_AT",
    "REMOVED",
    "UPDATED_AT",
    "REFERENCE",
    "REFERENCE2",
)
VARIANT_COLUMNS = (
    "VARIANT_ID",
    "SKU",
    "TITLE",
    "BARCODE",
    "PRODUCT_ID",
    "PRICE",
    "CREATED_AT",
    "UPDATED_AT",
    "REMOVED",
    "TYPE",
)
WAREHOUSE_COLUMNS = ("WAREHOUSE_ID", "DISPLAY_NAME", "UPDATED_AT", "REMOVED", "CURRENCY")
VARIANT_WAREHOUSE_COLUMNS = ("VARIANT_ID", "WAREHOUSE_ID", "IN_STOCK", "REMOVED", "UPDATED_AT")
PRODUCT_COLUMNS = (
    "product_id",
    "title",
    "price",
    "SKU",
    "created_at",
    "stock_quantity",
    "barcode",
    "updated_at",
)  # Starter CSV
SFTP_DIRS = {
    "warehouses": "warehouses",
    "variants": "variants",
    "variant_warehouses": "variant_warehouses",
    "sales_orders": "sales_orders",
}  # assumed (not published): configure options["sftp_dirs"] per tenant


def _ntz(dt: datetime | None) -> str:
    """TIMESTAMP_NTZ as the files want it: UTC, no zone, ``YYYY-MM-DD HH:MM:SS``."""
    if dt is None:
        return ""
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _money(cents: int | None) -> str:
    return "" if cents is None else f"{cents / 100:.2f}"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def line_id(line: DemandLine) -> str:
    return line.key or f"{line.order_ref}|{line.sku}|{line.bundle_sku}|{'return' if line.is_return else 'sale'}"


def sales_order_row(line: DemandLine, updated_at: datetime | None = None, *, currency: str = "") -> dict:
    """One sales-order file row. Returns are negative; a line whose quantity fell to 0 (cancelled order) is
    ``REMOVED``."""
    qty = -abs(int(line.quantity)) if line.is_return else int(line.quantity)
    return {
        "ORDER_ID": line_id(line),
        "ID": line.order_ref,
        "VARIANT_ID": line.sku,
        "WAREHOUSE": line.location,
        "CURRENCY": (line.currency or currency).upper(),
        "QUANTITY": qty,
        "PRICE": _money(line.unit_price_cents),
        "CREATED_AT": _ntz(line.ordered_at),
        "REMOVED": _bool(qty == 0),
        "UPDATED_AT": _ntz(updated_at or datetime.now(timezone.utc)),
        "REFERENCE": line.order_ref,
        "REFERENCE2": line.channel,
    }


def variant_row(v: PlannerVariant) -> dict:
    return {
        "VARIANT_ID": v.sku,
        "SKU": v.sku,
        "TITLE": v.title or v.sku,
        "BARCODE": v.barcode,
        "PRODUCT_ID": v.product_id or v.sku,
        "PRICE": _money(v.price_cents),
        "CREATED_AT": _ntz(v.updated_at),
        "UPDATED_AT": _ntz(v.updated_at or datetime.now(timezone.utc)),
        "REMOVED": "false",
        "TYPE": "bundle" if v.is_bundle else "simple",
    }


def product_row(v: PlannerVariant, warehouse: str) -> dict:
    """Starter CSV products file row for one warehouse (lower-case columns as published; ``stock_quantity``
    is required)."""
    return {
        "product_id": v.product_id or v.sku,
        "title": v.title or v.sku,
        "price": _money(v.price_cents) or "0.00",
        "SKU": v.sku,
        "created_at": (v.updated_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d"),
        "stock_quantity": int(v.stock.get(warehouse, 0)),
        "barcode": v.barcode,
        "updated_at": (v.updated_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d"),
    }


def warehouse_row(w: PlannerWarehouse, now: datetime | None = None) -> dict:
    return {
        "WAREHOUSE_ID": w.id,
        "DISPLAY_NAME": w.name or w.id,
        "UPDATED_AT": _ntz(now or datetime.now(timezone.utc)),
        "REMOVED": "false",
        "CURRENCY": (w.currency or "").upper(),
    }


def csv_lines(columns: tuple[str, ...], rows: Iterable[dict]) -> Iterable[str]:
    """The CSV text of ``rows`` (header first), one line at a time: streamable."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    yield buf.getvalue()
    for row in rows:
        buf.seek(0)
        buf.truncate()
        writer.writerow(row)
        yield buf.getvalue()


def csv_text(columns, rows) -> str:
    return "".join(csv_lines(columns, rows))


class _TwoHeaderAuth(HeaderAuth):
    """``Authorization: <key>`` plus ``Account: <account id>``."""

    def __init__(self, key: str, account: str):
        super().__init__("Authorization", key)
        self.account = account

    def apply(self, client, headers):
        headers["Authorization"] = self.value
        headers["Account"] = self.account


class InventoryPlannerConnector(Connector, Planner):
    system_type = "inventory_planner"
    api_document = DOCUMENT
    modelled = False

    def __init__(self, connection, client=None):
        opts = connection.options or {}
        self.page_size = max(1, min(1000, int(opts.get("page_size") or 500)))
        self.delivery = str(opts.get("delivery") or "url").lower()
        if self.delivery not in ("url", "sftp"):
            raise errors.PermanentError(
                f"options.delivery must be 'url' or 'sftp', not {self.delivery!r}", system=self.system_type
            )
        self.demand_delivery = "pull" if self.delivery == "url" else "push"
        self.currency = str(opts.get("currency") or "").upper()
        super().__init__(connection, client)

    def build_client(self):
        c = self.connection
        account = (c.options or {}).get("account") or c.client_id
        return HttpClient.for_connection(c, auth=_TwoHeaderAuth(c.get_secret(), account))

    # --- demand ---------------------------------------------------------------------------------------
    def check_lines(self, lines: list[DemandLine]) -> None:
        """Every line must be writable as a sales-order row (the files refuse rows without these)."""
        bad = [line_id(x) for x in lines if not x.sku or not x.location or not (x.currency or self.currency)]
        if bad:
            raise errors.BadDataError(
                f"{len(bad)} demand line(s) lack a SKU, warehouse or currency, e.g. {bad[:5]}", system=self.system_type
            )

    def push_demand(
        self,
        lines: list[DemandLine],
        variants: list[PlannerVariant] = (),
        warehouses: list[PlannerWarehouse] = (),
        allocations=(),
    ) -> int:
        self.check_lines(lines)
        if self.delivery == "url":
            return len(lines)  # pulled by the planner from the hub's feed files
        if not lines:
            return 0
        now = datetime.now(timezone.utc)
        files = []
        if warehouses:
            files.append(("warehouses", csv_text(WAREHOUSE_COLUMNS, (warehouse_row(w, now) for w in warehouses))))
        if variants:
            files.append(("variants", csv_text(VARIANT_COLUMNS, (variant_row(v) for v in variants))))
            stocked = [(v, w.id) for v in variants for w in warehouses if w.id in v.stock]
            if stocked:
                files.append(
                    (
                        "variant_warehouses",
                        csv_text(
                            VARIANT_WAREHOUSE_COLUMNS,
                            (
                                {
                                    "VARIANT_ID": v.sku,
                                    "WAREHOUSE_ID": wid,
                                    "IN_STOCK": int(v.stock[wid]),
                                    "REMOVED": "false",
                                    "UPDATED_AT": _ntz(now),
                                }
                                for v, wid in stocked
                            ),
                        ),
                    )
                )
        files.append(
            (
                "sales_orders",
                csv_text(SALES_ORDER_COLUMNS, (sales_order_row(x, now, currency=self.currency) for x in lines)),
            )
        )
        self.upload(files, now)
        return len(lines)

    def push_variants(self, variants: list[PlannerVariant]) -> int:
        """New / changed items as a ``variants`` file (issue 17). SFTP delivery: uploaded on its own, before any
        demand names them. URL delivery: nothing to send — the complete ``products.csv`` the planner pulls lists
        every item already. Returns the variants sent."""
        if self.delivery == "url" or not variants:
            return 0
        self.upload(
            [("variants", csv_text(VARIANT_COLUMNS, (variant_row(v) for v in variants)))], datetime.now(timezone.utc)
        )
        return len(variants)

    # --- SFTP (Advanced CSV connector) ----------------------------------------------------------------------
    def _sftp_settings(self) -> dict:
        o = self.connection.options or {}
        missing = [k for k in ("sftp_host", "sftp_username", "sftp_host_key") if not o.get(k)]
        if missing:
            raise errors.PermanentError(f"SFTP delivery needs options {', '.join(missing)}", system=self.system_type)
        password = env_secrets.read(
            str(o.get("sftp_password_env") or ""), "options.sftp_password_env", self.system_type
        )
        return {
            "host": str(o["sftp_host"]),
            "port": int(o.get("sftp_port") or 22),
            "username": str(o["sftp_username"]),
            "password": password,
            "host_key": str(o["sftp_host_key"]),
            "dirs": {**SFTP_DIRS, **(o.get("sftp_dirs") or {})},
            "timeout": float(o.get("sftp_timeout") or self.connection.timeout_seconds or 10),
        }

    @staticmethod
    def _host_key(text: str):
        import paramiko

        parts = text.split()
        if len(parts) < 2:
            raise errors.PermanentError(
                "options.sftp_host_key must be '<key type> <base64 key>'", system="inventory_planner"
            )
        try:
            return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
        except Exception as exc:  # noqa: BLE001 — any unreadable key is a configuration error
            raise errors.PermanentError(
                f"options.sftp_host_key is not a readable public key: {exc}", system="inventory_planner"
            ) from exc

    def upload(self, files: list[tuple[str, str]], now: datetime) -> list[str]:
        """Upload ``(kind, csv text)`` files in order, each to ``<dir of kind>/<kind>-<UTC stamp>-<uuid>.csv``
        (written as ``.part`` and renamed). Returns the remote paths."""
        import paramiko

        s = self._sftp_settings()
        expected = self._host_key(s["host_key"])
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        done = []
        transport = None
        try:
            sock = egress.connect_tcp(s["host"], s["port"], timeout=s["timeout"])  # the outbound guard, as for HTTP
            transport = paramiko.Transport(sock)
            transport.banner_timeout = transport.auth_timeout = s["timeout"]
            transport.start_client(timeout=s["timeout"])
            got = transport.get_remote_server_key()
            if got.get_name() != expected.get_name() or got.asbytes() != expected.asbytes():
                raise errors.PermanentError(
                    f"SFTP host key of {s['host']} does not match options.sftp_host_key", system=self.system_type
                )
            transport.auth_password(s["username"], s["password"])
            sftp = paramiko.SFTPClient.from_transport(transport)
            sftp.get_channel().settimeout(s["timeout"])
            for kind, text in files:
                folder = str(s["dirs"].get(kind) or kind).strip("/")
                name = f"{folder}/{kind}-{stamp}-{uuid.uuid4().hex[:8]}.csv"
                with sftp.open(name + ".part", "wb") as fh:
                    fh.write(text.encode("utf-8"))
                sftp.rename(name + ".part", name)
                done.append(name)
            sftp.close()
        except errors.ConnectorError:
            raise
        except paramiko.AuthenticationException as exc:
            raise errors.PermanentError(f"SFTP login to {s['host']} refused: {exc}", system=self.system_type) from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise errors.RetryableError(
                f"SFTP upload to {s['host']}:{s['port']} failed after {len(done)} file(s): {exc}",
                system=self.system_type,
            ) from exc
        finally:
            if transport is not None:
                transport.close()
        return done

    # --- recommendations (Reports API) --------------------------------------------------------------------
    def _pages(self, path: str, key: str, params: dict) -> Iterable[dict]:
        page = 0
        while True:
            body = self.client.get(path, params={**params, "page": page, "limit": self.page_size}).json()
            rows = body.get(key) if isinstance(body, dict) else None
            if not isinstance(rows, list):
                raise errors.BadDataError(
                    f"Inventory Planner {key} answer has no '{key}' list", body=body, system=self.system_type
                )
            yield from (r for r in rows if isinstance(r, dict))
            meta = body.get("meta") or {}
            page += 1
            if not rows or page * int(meta.get("limit") or self.page_size) >= int(meta.get("total") or 0):
                return

    @staticmethod
    def _qty(value) -> int | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return int(value)

    @staticmethod
    def supplier(variant: dict) -> str:
        """The supplier: the first vendor's ``vendor_id`` (the vendor's name, lower-cased) — not
        ``vendor_name``, which is the vendor's title for the variant."""
        vendors = variant.get("vendors") if isinstance(variant.get("vendors"), list) else []
        first = next((v for v in vendors if isinstance(v, dict)), {})
        return str(first.get("vendor_id") or "")

    def recommendations_from_variant(self, v: dict) -> list[Recommendation]:
        if not v.get("sku"):
            return []
        blocks = (
            [b for b in v.get("warehouse") or [] if isinstance(b, dict)] if isinstance(v.get("warehouse"), list) else []
        )
        supplier = self.supplier(v)
        out = []

        def rec(location: str, qty, oos, lead) -> None:
            q = self._qty(qty)
            if q is None or q <= 0:
                return
            reason = f"forecast sells out in {oos} days; lead time {lead} days" if oos is not None else ""
            out.append(
                Recommendation(
                    sku=str(v["sku"]),
                    location=location,
                    recommended_quantity=q,
                    kind="purchase",
                    supplier=supplier,
                    reason=reason,
                    raw=v,
                )
            )

        per_block = [b for b in blocks if "replenishment" in b]
        if per_block:
            for b in per_block:
                rec(
                    str(b.get("warehouse") or b.get("id") or b.get("warehouse_id") or ""),
                    b.get("replenishment"),
                    b.get("oos", v.get("oos")),
                    b.get("lead_time", v.get("lead_time")),
                )
        else:
            only = blocks[0] if len(blocks) == 1 else {}
            rec(
                str(only.get("warehouse") or only.get("id") or only.get("warehouse_id") or ""),
                v.get("replenishment"),
                v.get("oos"),
                v.get("lead_time"),
            )
        return out

    def recommendations(self) -> list[Recommendation]:
        out = []
        for v in self._pages(f"{API}/variants", "variants", {"replenishment_gt": 0, "fields": VARIANT_FIELDS}):
            out.extend(self.recommendations_from_variant(v))
        return out

    # --- stock orders (Stock Orders API) --------------------------------------------------------------------
    @staticmethod
    def stock_order_from_row(row: dict) -> PlannerStockOrder:
        def when(value):
            try:
                return parse_iso(value) if isinstance(value, str) else None
            except ValueError:
                return None

        lines = []
        for item in row.get("items") or []:
            if not isinstance(item, dict) or not item.get("sku"):
                continue
            ordered = InventoryPlannerConnector._qty(item.get("replenishment")) or 0
            received = InventoryPlannerConnector._qty(item.get("received_qty", item.get("received"))) or 0
            lines.append((str(item["sku"]), ordered, received))
        kind = str(row.get("type") or "po")
        return PlannerStockOrder(
            ref=str(row.get("id") or ""),
            reference=str(row.get("reference") or ""),
            kind=kind if kind in ("po", "transfer", "assembly") else "po",
            status=str(row.get("status") or ""),
            vendor=str(row.get("vendor") or ""),
            warehouse=str(row.get("warehouse") or ""),
            source_warehouse=str(row.get("source_warehouse") or ""),
            expected_at=when(row.get("expected_date")),
            created_at=when(row.get("created_date")),
            lines=lines,
            raw=row,
        )

    def stock_orders(self) -> list[PlannerStockOrder]:
        return [
            self.stock_order_from_row(r)
            for r in self._pages(f"{API}/purchase-orders", "purchase-orders", {})
            if r.get("id")
        ]


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Rows of a CSV file (for tests and the emulator)."""
    return list(csv.DictReader(io.StringIO(text)))
