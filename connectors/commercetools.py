"""commercetools Composable Commerce as a Storefront.

Modelled on the published HTTP API (see :mod:`connectors.sandbox.commercetools` for the emulated surface):

- auth: OAuth 2.0 client credentials against ``<auth_url>/oauth/token`` (HTTP Basic client auth); a blank
  ``auth_url`` is derived from the API host (``api.<region>`` → ``auth.<region>.commercetools.com``). Scopes: the
  least the calls need (``LEAST_SCOPES``), never ``manage_project``, unless ``options["scopes"]`` says otherwise;
  tokens cached by the client layer.
- stock: one InventoryEntry per (SKU, supply channel), created with a ``key`` (:meth:`entry_key`). ``set_stock``
  reads the entries of up to 100 SKUs of one channel with one query (``where=supplyChannel(id="…") and sku in
  (…)``), creates the missing ones and updates the others at their version. Writes of a batch run on
  ``options["write_concurrency"]`` threads (default 4) under the connection's shared rate limit. A SKU that has no
  entry and is not a variant of any product is refused (``NotFoundError``: unknown SKU), unless
  ``options["require_product"]`` is false.

  **Invariant.** ct takes an order's units off the entry itself (InventoryMode TrackOnly / ReserveOnOrder; since
  the 2026-01-19 release "it can now take up to 10 seconds for changes to be reflected in the availableQuantity
  and quantityOnStock fields", docs.commercetools.com/api/releases/2026-01-19-inventory-update-processing-with-
  eventual-consistency). So an entry must show, once ct's own pending decrements have landed::

      quantityOnStock = master available − safety buffers − hub reservations − ct orders the hub has not captured

  (= ATS − uncaptured; ``availableQuantity`` is lower still by ct's cart Reservations). An absolute write cannot
  keep that: it erases every decrement the hub has not captured, and re-posting it after a 409 erases the one
  that caused the 409 (the oversell of issue 12). Instead each target carries a *ledger* L = ATS + K, K = every
  unit the hub has ever captured in the channel's own orders on lines of this SKU — the units ct took off this
  entry (:func:`integration_hub.inventory.ats.captured_units`; a bundle line counts for the bundle's SKU).
  The entry's quantity is then ``Q0 + ΣΔL − Σ(ct decrements)``, and ``ΔL = ΔATS + ΔK``: capturing an order
  lowers ATS and raises K by its quantity (ΔL = 0: ct's decrement is not made twice, whether it has landed or
  not); a master change, buffer change, other channels' reservations and a cancellation (ct puts nothing back)
  move ATS only. Summed: ``Q = ATS − (orders placed − orders captured)``, the invariant. Every write is therefore
  the *change* of L since the entry's marker — custom fields ``hubLedger`` (the L it was brought to) and
  ``hubOnStock`` (its quantityOnStock right after) on the Type ``integration-hub-inventory`` — sent as
  ``addQuantity`` / ``removeQuantity`` + the new marker in one update at the version just read
  (:meth:`stock_actions`):

  * 409 (a decrement, another worker, or our own earlier attempt): re-read, recompute from the fresh marker;
  * a lost answer: the client re-sends at the old version → 409 → the re-read shows our marker → done, never
    applied twice; a write that failed outright is recomputed by the next push the same way;
  * skip-if-equal: the marker is L and the entry holds nothing above ``hubOnStock``;
  * withdraw: L = 0 + K (the entry ends at 0 less ct's uncaptured orders);
  * resync / drift repair: units above ``hubOnStock`` cannot be ct's own orders (they only take stock away), so
    they are taken out relatively (:meth:`unexplained_increase`); a figure below is ct's own and kept.

  The one absolute write is the first on an entry that has no marker (it may drop a decrement of an order not
  captured at that moment; ct refuses orders for SKUs without an entry, so entries the hub creates start right).
  ``options["orders_decrement_stock"] = false`` (orders with InventoryMode None) makes every write absolute.

  Full loads (first sync / full resync) go through :meth:`push_full`: the Import API for pairs the hub never
  confirmed (20 per request, no read; asynchronous outcomes, :mod:`.commercetools_import`), this versioned path
  for the rest. ``set_stock`` (the hot deltas) never imports.
- orders: polled with ``where=lastModifiedAt > T or (lastModifiedAt = T and id > I)``, ``sort=lastModifiedAt
  asc, id asc``; the cursor is ``"<lastModifiedAt>|<id>"`` (``options["orders_start"]``, an ISO instant, bounds
  the very first poll; ``options["orders_poll_lag_seconds"]`` keeps the newest seconds for the next poll so
  two orders stamped in the same millisecond cannot straddle the cursor). Orders modified after they were
  seen come back (the hub deduplicates on id). Pushed by a Subscription through a relay — ct has no HTTP
  Destination: GoogleCloudPubSub or SQS from ``options["relay"]`` (:meth:`ensure_order_subscription`,
  :mod:`integration_hub.orders.relays`); each Message only names orders (:meth:`order_hints`), which are then read
  from the API. :meth:`parse_order_webhook` / :meth:`verify_webhook` serve the bare-message path.
- master data fixes (issue 17, "take the master's value"): Products API ``POST /<projectKey>/products/<id>``
  (docs.commercetools.com/api/projects/products#update-product) with the product's ``version`` and
  ``setAttribute`` (``sku``, ``name``, ``value``, ``staged: false``) or ``changeName`` (LocalizedString); a 409 re-reads
  the product and retries once (:meth:`CommercetoolsConnector.set_product_field`).
- returns: ``returnInfo[].items[]`` (LineItemReturnItem) of the polled orders — adding a return or changing
  its ``shipmentState`` bumps ``lastModifiedAt``, so the order poll brings it back (:meth:`storefront_returns`);
  the subscription's ``ReturnInfoAdded`` / ``ReturnInfoSet`` / ``OrderReturnShipmentStateChanged`` Messages
  bring it sooner.
- fulfilment: ``addDelivery`` (parcels with ``trackingData {trackingId, carrier}``) and
  ``changeShipmentState: Shipped`` in one versioned update; idempotent by tracking number.

Channel mapping: ``InventoryTarget.channel_ref`` is the supply channel *key* (``Channel.external_id``),
resolved to its id once per connector. ``StorefrontOrder.channel_ref`` is the key of the supply channel of
the order's line items, else the order's store key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Iterable, Iterator

from django.views.decorators.debug import sensitive_variables

from . import env_secrets, errors, signatures
from .base import (
    Address,
    Connector,
    Fulfilment,
    InventoryResult,
    InventoryTarget,
    OrderChanged,
    OrderLineData,
    Page,
    Parcel,
    ProductChanged,
    Storefront,
    StorefrontOrder,
    StorefrontReturn,
    StorefrontStock,
)
from .http import HttpClient, OAuthClientCredentials
from .parsing import ParsedBatch

log = logging.getLogger(__name__)

CHUNK = 100  # SKUs per inventory query (keeps the URL well under ct's limits)
CATALOGUE_TTL = 600.0  # seconds a full load's catalogue check is reused (rounds of one load, its other channels)
PAGE_LIMIT = 500  # ct's maximum page size
LEDGER_TYPE_KEY = "integration-hub-inventory"  # custom Type holding the ledger marker on inventory entries
LEDGER_FIELD = "hubLedger"  # the ledger figure the hub last brought the entry to
ON_STOCK_FIELD = "hubOnStock"  # the entry's quantityOnStock right after that write
KEY_RX = re.compile(r"[A-Za-z0-9_-]+")
API_HOST_RX = re.compile(r"^(?P<scheme>https?)://api\.(?P<region>[a-z0-9.-]+)\.commercetools\.com(?:/.*)?$")
# what each call needs (API reference, per-endpoint OAuth scopes): inventory read/write and channel / product
# lookups (manage_products), orders read + shipped update + shipping-method lookups (manage_orders), discount
# code lookups, the order Subscription, the ledger's custom Type, ping (GET /{projectKey})
LEAST_SCOPES = (
    "manage_products",
    "manage_orders",
    "view_discount_codes",
    "manage_subscriptions",
    "manage_types",
    "view_project_settings",
    "manage_import_containers",
)  # the last: full loads (Import API)
CONFLICT_RETRIES = 8  # hot SKUs in a sale: every TrackOnly order bumps the entry's version
HUB_DELIVERY_PREFIX = "hub-"  # deliveryKey of deliveries the hub adds; any other delivery was made storefront-side
STREET_NUMBER_FIRST = {"GB", "IE", "US", "CA", "AU", "NZ", "FR", "ZA"}
# ReturnShipmentState → the hub's return condition. Advised: announced, not back yet; Returned: received, not
# judged yet; BackInStock: restocked, saleable; Unusable: damaged / written off. Only BackInStock offsets demand.
RETURN_CONDITIONS = {"Advised": "advised", "Returned": "inspection", "BackInStock": "available", "Unusable": "damaged"}
# Order Messages after which the hub re-reads an order it already has (state, not events: the message only says
# when). Returns: ReturnInfoAdded (addReturnInfo), ReturnInfoSet (setReturnInfo), OrderReturnShipmentStateChanged
# (setReturnShipmentState) — the names in ct's Messages reference; "OrderReturnInfoAdded" is accepted too, as some
# integrations spell it, though ct's reference does not list it. OrderStateChanged only when it says Cancelled.
RETURN_MESSAGES = frozenset(
    {"ReturnInfoAdded", "OrderReturnInfoAdded", "ReturnInfoSet", "OrderReturnShipmentStateChanged"}
)
SUBSCRIBED_MESSAGES = [
    "OrderCreated",
    "OrderStateChanged",
    "ReturnInfoAdded",
    "ReturnInfoSet",
    "OrderReturnShipmentStateChanged",
]
# Product Messages after which the hub checks the product's SKUs at once (issue 17) instead of waiting for the
# nightly catalogue audit; subscribed with options["subscribe_product_messages"] (ct Messages reference:
# ProductPublished carries the productProjection, ProductVariantAdded the variant)
PRODUCT_MESSAGES = ["ProductPublished", "ProductVariantAdded"]


_ID_RX = re.compile(
    r"[A-Za-z0-9_-]{1,256}"
)  # ct ids are UUIDs; keys use [A-Za-z0-9_-]: nothing that can leave the URL path


def _order_id(value) -> bool:
    """Whether ``value`` can be an order id named by a message (it becomes part of a request path)."""
    return isinstance(value, str) and _ID_RX.fullmatch(value) is not None


def q(value: str) -> str:
    """A Query Predicate string literal."""
    return json.dumps(str(value), ensure_ascii=False)


def q_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(q(v) for v in values) + ")"


def _parse_dt(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _localized(value) -> str:
    if isinstance(value, dict):
        return value.get("en") or value.get("en-GB") or next(iter(value.values()), "") or ""
    return value or ""


class CommercetoolsConnector(Connector, Storefront):
    system_type = "commercetools"

    def __init__(self, connection, client: HttpClient | None = None):
        options = connection.options or {}
        self.project_key = options.get("project_key") or ""
        if not self.project_key:
            raise errors.ConfigurationError(
                f"connection {connection.name}: options.project_key is required for commercetools"
            )
        self.require_product = options.get("require_product", True)
        self.gift_field = options.get("gift_message_field", "giftMessage")
        self.notes_field = options.get("delivery_notes_field", "deliveryNotes")
        self.orders_start = options.get("orders_start", "")  # ISO instant the first order poll starts from
        self.orders_lag = float(options.get("orders_poll_lag_seconds", 0))  # production: 2-5 s (see orders_since)
        # ct has no bulk inventory update: writes of one batch go out on a few threads (the client's shared
        # rate limiter still caps the request rate)
        self.write_concurrency = max(1, int(options.get("write_concurrency", 4)))
        # orders placed with inventoryMode TrackOnly / ReserveOnOrder decrement the entries themselves: stock writes
        # then go through the ledger (relative, see stock_actions); false only for projects ordering with mode None
        self.orders_decrement_stock = bool(options.get("orders_decrement_stock", True))
        self.ledger_type_key = options.get("ledger_type_key") or LEDGER_TYPE_KEY
        self.ledger_field = options.get("ledger_field") or LEDGER_FIELD
        self.on_stock_field = options.get("ledger_on_stock_field") or ON_STOCK_FIELD
        self._ledger_type_ready = False
        # the Import API for full loads (push_full, connectors.commercetools_import): on unless switched off
        self.import_api = bool(options.get("import_api", True))
        self.import_min = max(1, int(options.get("import_min", 20)))  # smaller full loads go through set_stock
        self._importer = None
        self._catalogue: dict = {"since": float("-inf")}  # full loads' catalogue check (_catalogue_members)
        self._lock = threading.Lock()
        # master data audit (issue 17): variant attributes holding the barcode and the weight (in grams)
        self.barcode_attribute = str(options.get("barcode_attribute") or "gtin")
        self.weight_attribute = str(options.get("weight_attribute") or "weight")
        self.subscribe_product_messages = bool(options.get("subscribe_product_messages", False))
        self._channel_id_by_key: dict[str, str] = {}
        self._channel_key_by_id: dict[str, str] = {}
        self._shipping_key_by_id: dict[str, str] = {}
        self._discount_code_by_id: dict[str, str] = {}
        super().__init__(connection, client)

    # --- client ----------------------------------------------------------------------------------
    @staticmethod
    def token_root(connection) -> str:
        """The auth host: ``auth_url`` when set, else derived from the API host (``https://api.<region>.commercetools
        .com`` → ``https://auth.<region>.commercetools.com``, where ct's tokens come from); any other API root
        (the sandbox) serves tokens itself."""
        root = (connection.auth_url or "").rstrip("/")
        if not root:
            base = (connection.base_url or "").rstrip("/")
            m = API_HOST_RX.match(base)
            root = f"{m.group('scheme')}://auth.{m.group('region')}.commercetools.com" if m else base
        if root.endswith("/oauth/token"):
            root = root[: -len("/oauth/token")]
        return root

    @staticmethod
    def default_scopes(project_key: str) -> str:
        """The least scopes the connector's calls need (per-endpoint scopes of the API reference), never
        ``manage_project``."""
        return " ".join(f"{s}:{project_key}" for s in LEAST_SCOPES)

    @classmethod
    def auth_for(cls, connection) -> OAuthClientCredentials:
        options = connection.options or {}
        root = cls.token_root(connection)
        scope = options.get("scopes") or cls.default_scopes(options.get("project_key", ""))
        if (
            not options.get("scopes") and options.get("import_api", True) is False
        ):  # no full loads through the Import API
            scope = " ".join(s for s in scope.split() if not s.startswith("manage_import_containers:"))
        if isinstance(scope, (list, tuple)):
            scope = " ".join(scope)
        return OAuthClientCredentials(
            token_url=f"{root}/oauth/token",
            client_id=connection.client_id,
            client_secret=connection.get_secret(),
            scope=scope,
        )

    def build_client(self, **kw) -> HttpClient:
        return HttpClient.for_connection(self.connection, auth=self.auth_for(self.connection), **kw)

    def _get(self, path: str, **kw):
        """Reads are safe to repeat; a 409 on a read is never a version conflict (proxies, injected faults)."""
        return self.client.get(path, retry_conflicts=True, **kw)

    def ping(self) -> dict:
        """Credentials, scope and project key check (``GET /<projectKey>``): the project, or a ConnectorError."""
        return self._get(f"/{self.project_key}").json()

    def path(self, tail: str) -> str:
        return f"/{self.project_key}/{tail.lstrip('/')}"

    def _query(
        self,
        resource: str,
        where: str | list[str] | None = None,
        *,
        sort: list[str] | None = None,
        limit: int = PAGE_LIMIT,
        offset: int = 0,
        expand: list[str] | None = None,
        total: bool = False,
        extra: dict | None = None,
    ) -> dict:
        params: dict = {"limit": limit, "withTotal": "true" if total else "false", **(extra or {})}
        if offset:
            params["offset"] = offset
        if where:
            params["where"] = where
        if sort:
            params["sort"] = sort
        if expand:
            params["expand"] = expand
        body = self._get(self.path(resource), params=params).json()
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise errors.BadDataError(f"commercetools {resource} query answered an unexpected body: {str(body)[:200]}")
        return body

    def _query_all(
        self, resource: str, where: str | None = None, expand: list[str] | None = None, extra: dict | None = None
    ) -> Iterator[dict]:
        """Every match, paged by id (ct's recommended way past the 10,000 offset limit)."""
        last = None
        while True:
            clauses = [where] if where else []
            if last:
                clauses.append(f"id > {q(last)}")
            page = self._query(resource, clauses or None, sort=["id asc"], expand=expand, extra=extra)
            results = page["results"]
            yield from results
            if len(results) < PAGE_LIMIT:
                return
            last = results[-1]["id"]

    # --- reference caches ---------------------------------------------------------------------------
    def _resolve(self, resource: str, field: str, wanted: set[str], cache: dict, value_of) -> None:
        missing = sorted(v for v in wanted if v and v not in cache)
        for i in range(0, len(missing), CHUNK):
            chunk = missing[i : i + CHUNK]
            for obj in self._query(resource, f"{field} in {q_list(chunk)}")["results"]:
                with self._lock:
                    cache[obj[field]] = value_of(obj)

    def channel_ids(self, keys: Iterable[str]) -> dict[str, str]:
        """Supply channel key → id (cached)."""
        keys = set(keys)

        def remember(obj):
            self._channel_key_by_id[obj["id"]] = obj.get("key", "")
            return obj["id"]

        self._resolve("channels", "key", keys, self._channel_id_by_key, remember)
        return {k: self._channel_id_by_key[k] for k in keys if k in self._channel_id_by_key}

    def channel_keys(self, ids: Iterable[str]) -> dict[str, str]:
        ids = set(ids)

        def remember(obj):
            if obj.get("key"):
                self._channel_id_by_key[obj["key"]] = obj["id"]
            return obj.get("key", "")

        self._resolve("channels", "id", ids, self._channel_key_by_id, remember)
        return {i: self._channel_key_by_id[i] for i in ids if i in self._channel_key_by_id}

    # --- stock ---------------------------------------------------------------------------------------
    def _entries(self, channel_id: str, skus: list[str]) -> dict[str, dict]:
        where = f"supplyChannel(id={q(channel_id)}) and sku in {q_list(skus)}"
        return {e["sku"]: e for e in self._query("inventory", where)["results"]}

    def _skus_in_catalogue(self, skus: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(skus), CHUNK):
            chunk = skus[i : i + CHUNK]
            lst = q_list(chunk)
            where = f"masterVariant(sku in {lst}) or variants(sku in {lst})"
            # staged: a product being prepared for launch (not yet published) may already hold stock
            for p in self._query_all("product-projections", where, extra={"staged": "true"}):
                for v in [p.get("masterVariant") or {}] + list(p.get("variants") or []):
                    if v.get("sku") in chunk:
                        found.add(v["sku"])
        return found

    def _ok(self, t: InventoryTarget, entry: dict) -> InventoryResult:
        """A confirmed target. A ledger write confirms the hub's figure ``t.quantity`` (the entry shows it net of
        the storefront's own orders the hub has not captured yet); an absolute write the entry's quantity."""
        quantity = t.quantity if self._ledger_of(t) is not None else int(entry["quantityOnStock"])
        return InventoryResult(t.sku, t.channel_ref, quantity, version=entry.get("version"), ref=entry["id"])

    @property
    def importer(self):
        if self._importer is None:
            from .commercetools_import import InventoryImporter

            self._importer = InventoryImporter(self)
        return self._importer

    def _ledger_of(self, t: InventoryTarget) -> int | None:
        return t.ledger if self.orders_decrement_stock else None

    def _field(self, entry: dict, name: str) -> int | None:
        value = ((entry.get("custom") or {}).get("fields") or {}).get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return int(value)

    def marker(self, entry: dict) -> tuple[int, int] | None:
        """(ledger, quantityOnStock) the hub last brought the entry to (custom fields ``ledger_field`` and
        ``on_stock_field``), or None when the hub never wrote it through the ledger."""
        ledger, on_stock = self._field(entry, self.ledger_field), self._field(entry, self.on_stock_field)
        return None if ledger is None or on_stock is None else (ledger, on_stock)

    def ensure_ledger_type(self) -> None:
        """The custom Type (resource ``inventory-entry``, two Number fields) that holds the ledger marker; created
        once if the project lacks it (scope ``manage_types``). Cached per connector."""
        if self._ledger_type_ready:
            return
        try:
            self._get(self.path(f"types/key={self.ledger_type_key}"))
        except errors.NotFoundError:
            field = {"type": {"name": "Number"}, "required": False, "inputHint": "SingleLine"}
            draft = {
                "key": self.ledger_type_key,
                "name": {"en": "Integration Hub inventory"},
                "description": {"en": "Where the Integration Hub last brought this entry (do not edit)"},
                "resourceTypeIds": ["inventory-entry"],
                "fieldDefinitions": [
                    {**field, "name": self.ledger_field, "label": {"en": "Hub ledger"}},
                    {**field, "name": self.on_stock_field, "label": {"en": "Hub quantityOnStock"}},
                ],
            }
            try:
                self.client.post(self.path("types"), json=draft)
            except errors.BadDataError as exc:
                if "DuplicateField" not in json.dumps(exc.body, default=str):
                    raise  # another worker created it meanwhile: fine
        self._ledger_type_ready = True

    def _marker_actions(self, entry: dict, ledger: int, on_stock: int) -> list[dict]:
        fields = {self.ledger_field: ledger, self.on_stock_field: on_stock}
        if entry.get("custom"):
            # an entry with a custom type already: set the fields on it (a type without them answers InvalidField
            # — add the two Number fields to that type, see the README)
            return [{"action": "setCustomField", "name": k, "value": v} for k, v in fields.items()]
        self.ensure_ledger_type()
        return [{"action": "setCustomType", "type": {"typeId": "type", "key": self.ledger_type_key}, "fields": fields}]

    def unexplained_increase(self, entry: dict) -> int:
        """Units the entry holds above what the hub last left it at: never the storefront's own orders (they only
        take stock away; ct does not put a cancelled order's units back), so a Merchant Center edit or another
        integration — the hub takes it back out. 0 for an entry without a marker."""
        mark = self.marker(entry)
        return max(0, int(entry.get("quantityOnStock") or 0) - mark[1]) if mark else 0

    def stock_actions(self, t: InventoryTarget, entry: dict) -> list[dict]:
        """The update actions that bring ``entry`` to ``t``; [] when it already is.

        Ledger write (``t.ledger``, orders decrement the entry themselves): ``addQuantity`` / ``removeQuantity`` of
        the ledger's change since the entry's marker, less any :meth:`unexplained_increase`, plus the new marker
        (ledger, resulting quantityOnStock), in one update at the entry's version. The storefront's own decrements
        are never overwritten: a relative change lands on top of them, and a decrement that lands between our read
        and our write moves the version, so the write is refused (409) and recomputed from a fresh read. An entry
        without a marker (made elsewhere, or written before this scheme) is set absolutely once, with the marker —
        the one write that can drop a decrement (of an order the hub had not captured at that moment).
        Absolute write (no ledger, or ``orders_decrement_stock`` off): ``changeQuantity``."""
        ledger = self._ledger_of(t)
        on_stock = int(entry.get("quantityOnStock") or 0)
        if ledger is None:
            return (
                []
                if entry.get("quantityOnStock") == t.quantity
                else [{"action": "changeQuantity", "quantity": t.quantity}]
            )
        mark = self.marker(entry)
        if mark is None:
            actions = (
                []
                if entry.get("quantityOnStock") == t.quantity
                else [{"action": "changeQuantity", "quantity": t.quantity}]
            )
            return actions + self._marker_actions(entry, ledger, t.quantity)
        delta = (ledger - mark[0]) - self.unexplained_increase(entry)
        if delta == 0 and ledger == mark[0] and on_stock <= mark[1]:
            return []
        actions = []
        if delta:
            actions.append(
                {"action": "addQuantity", "quantity": delta}
                if delta > 0
                else {"action": "removeQuantity", "quantity": -delta}
            )
        return actions + self._marker_actions(entry, ledger, on_stock + delta)

    @staticmethod
    def entry_key(sku: str, channel_key: str) -> str:
        """InventoryEntry ``key`` (2-256 of ``[A-Za-z0-9_-]``, what the Import API addresses entries by): readable
        ``<channel key>--<sku>`` when that fits, else a hash of both."""
        raw = f"{channel_key}--{sku}"
        if 2 <= len(raw) <= 256 and KEY_RX.fullmatch(raw):
            return raw
        return "hub-" + hashlib.sha256(f"{channel_key}\x00{sku}".encode()).hexdigest()[:40]

    def _write_entry(self, t: InventoryTarget, channel_id: str, entry: dict | None) -> InventoryResult:
        """Create or update one entry. Every retry starts from a fresh read (never re-posts a figure computed from
        a stale one): after a 409 — an order's decrement, another worker, or our own earlier attempt whose answer
        was lost and which the client re-sent — the entry is read again and :meth:`stock_actions` recomputed, so a
        write that landed is seen by its marker and not applied twice."""
        ledger = self._ledger_of(t)
        for _ in range(CONFLICT_RETRIES):
            if entry is None:
                draft = {
                    "key": self.entry_key(t.sku, t.channel_ref),
                    "sku": t.sku,
                    "supplyChannel": {"typeId": "channel", "id": channel_id},
                    "quantityOnStock": t.quantity,
                }
                if ledger is not None:
                    self.ensure_ledger_type()
                    draft["custom"] = {
                        "type": {"typeId": "type", "key": self.ledger_type_key},
                        "fields": {self.ledger_field: ledger, self.on_stock_field: t.quantity},
                    }
                try:
                    return self._ok(t, self.client.post(self.path("inventory"), json=draft).json())
                except errors.BadDataError as exc:
                    if "DuplicateField" not in json.dumps(exc.body, default=str):
                        raise
                    entry = self._entries(channel_id, [t.sku]).get(
                        t.sku
                    )  # another worker (or our lost answer) created it
                    if entry is None:
                        raise
                    continue
            actions = self.stock_actions(t, entry)
            if not actions:
                return self._ok(t, entry)  # already right: nothing to change
            update = {"version": entry["version"], "actions": actions}
            try:
                return self._ok(t, self.client.post(self.path(f"inventory/{entry['id']}"), json=update).json())
            except errors.ConflictError:
                entry = self._get(self.path(f"inventory/{entry['id']}")).json()
            except errors.NotFoundError:
                entry = None  # deleted meanwhile: create it again
        raise errors.ConflictError(
            f"inventory entry for {t.sku} on {t.channel_ref} still conflicting after {CONFLICT_RETRIES} attempts",
            system=self.system_type,
        )

    def set_stock(self, targets: list[InventoryTarget]) -> list[InventoryResult]:
        latest: OrderedDict[tuple[str, str], InventoryTarget] = OrderedDict()
        for t in targets:  # absolute targets: the last one for a pair wins
            latest.pop((t.sku, t.channel_ref), None)
            latest[(t.sku, t.channel_ref)] = t
        by_channel: dict[str, list[InventoryTarget]] = defaultdict(list)
        for t in latest.values():
            by_channel[t.channel_ref].append(t)
        ids = self.channel_ids(by_channel)
        results: dict[tuple[str, str], InventoryResult] = {}
        state: dict[str, errors.ConnectorError | None] = {"abort": None}

        def fail(t: InventoryTarget, exc: Exception):
            results[(t.sku, t.channel_ref)] = InventoryResult(t.sku, t.channel_ref, t.quantity, ok=False, error=exc)

        def write(t: InventoryTarget, channel_id: str, entry: dict | None):
            if state["abort"] is not None:  # the system is down / refusing us: don't hammer it item by item
                fail(t, state["abort"])
                return
            try:
                results[(t.sku, t.channel_ref)] = self._write_entry(t, channel_id, entry)
            except errors.ConnectorError as exc:
                fail(t, exc)
                if isinstance(exc, errors.RetryableError) or (
                    isinstance(exc, errors.PermanentError) and exc.status in (401, 403)
                ):
                    state["abort"] = exc
            except (ValueError, KeyError, TypeError) as exc:  # an unreadable answer: report it, keep the batch going
                fail(
                    t,
                    errors.RetryableError(
                        f"commercetools answered an unreadable inventory entry for {t.sku}: "
                        f"{type(exc).__name__}: {exc}",
                        system=self.system_type,
                    ),
                )

        pool = (
            ThreadPoolExecutor(self.write_concurrency, thread_name_prefix="ct-write")
            if self.write_concurrency > 1
            else None
        )
        try:
            for channel_ref, group in by_channel.items():
                channel_id = ids.get(channel_ref)
                if channel_id is None:
                    exc = errors.PermanentError(
                        f"commercetools project {self.project_key} has no supply channel with key "
                        f"{channel_ref!r} (check Channel.external_id)",
                        system=self.system_type,
                    )
                    for t in group:
                        fail(t, exc)
                    continue
                for i in range(0, len(group), CHUNK):
                    chunk = group[i : i + CHUNK]
                    if state["abort"] is None:
                        try:
                            entries = self._entries(channel_id, [t.sku for t in chunk])
                            missing = [t.sku for t in chunk if t.sku not in entries]
                            known = (
                                self._skus_in_catalogue(missing) if missing and self.require_product else set(missing)
                            )
                        except errors.ConnectorError as exc:
                            state["abort"] = exc
                    writes = []
                    for t in chunk:
                        if state["abort"] is not None:
                            fail(t, state["abort"])
                        elif t.sku not in entries and t.sku not in known:
                            fail(
                                t,
                                errors.NotFoundError(
                                    f"SKU {t.sku!r} is not a product variant in commercetools project "
                                    f"{self.project_key}",
                                    system=self.system_type,
                                ),
                            )
                        elif t.sku in entries and not self.stock_actions(t, entries[t.sku]):
                            results[(t.sku, t.channel_ref)] = self._ok(t, entries[t.sku])  # already right: no write
                        else:
                            writes.append(t)
                    if pool is not None and len(writes) > 1:
                        list(pool.map(lambda t: write(t, channel_id, entries.get(t.sku)), writes))
                    else:
                        for t in writes:
                            write(t, channel_id, entries.get(t.sku))
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return [results[(t.sku, t.channel_ref)] for t in latest.values()]

    def push_full(self, targets: list[InventoryTarget]) -> list[InventoryResult]:
        """A full load (first sync / full resync, :mod:`integration_hub.inventory.full_load`) through the Import API
        (:mod:`.commercetools_import`), where the everyday deltas go through :meth:`set_stock`.

        Which targets are imported. The Import API sets ``quantityOnStock`` absolutely, later and without a version,
        so it may only take writes that are absolute anyway and have no storefront decrement to keep:

        * pairs the hub has never confirmed an entry for (``known_ref`` empty: a first sync). They are imported
          **without any read** — the import upserts by ``key`` (:meth:`entry_key`) — with the hub's ledger marker,
          so every later write is the relative one. Such an entry either does not exist (ct takes no order for it,
          nothing to lose) or was made outside the hub without a marker (the delta path's one absolute write too);
        * every other pair — the hub confirmed an entry, which has a marker and may carry ct's own decrements of
          orders the hub has not captured — goes through :meth:`set_stock`: one read per 100 SKUs, no write where
          the entry is already right (a resync of a channel in step writes little), versioned relative writes
          where not. A blind absolute import there would erase those decrements (issue 12, part 2).

        Requests for a first sync of R rows over S distinct SKUs: ⌈R/20⌉ imports + the catalogue check
        (``require_product``, :meth:`_catalogue_members`: at most 2 × min(⌈S/100⌉ variant queries, ⌈P/500⌉ pages of
        the catalogue's P products) + 1 to count them) + 1 channel lookup + the outcome polls (one request each while
        the load runs, a handful at the end). The delta path costs R writes + ⌈R/100⌉ reads + ⌈S/100⌉ catalogue
        queries per channel: ≈ 20× more (1M rows over 2 channels, 500k products: ≈ 1,015,000 vs ≈ 52,000).

        Accepted imports come back as ``errors.ImportPending`` results (their outcome is read later by the hub,
        :meth:`import_snapshot`); refused ones as ``BadDataError``; unknown SKUs / channels as for :meth:`set_stock`.
        Loads smaller than ``options["import_min"]`` (default 20), or ``options["import_api"]`` false: set_stock."""
        latest: OrderedDict[tuple[str, str], InventoryTarget] = OrderedDict()
        for t in targets:
            latest.pop((t.sku, t.channel_ref), None)
            latest[(t.sku, t.channel_ref)] = t
        fresh = [t for t in latest.values() if not t.known_ref and t.known_version is None]
        if not self.import_api or len(fresh) < self.import_min:
            return self.set_stock(list(latest.values()))
        results: dict[tuple[str, str], InventoryResult] = {}
        ids = self.channel_ids({t.channel_ref for t in fresh})
        known_skus = (
            self._catalogue_members(sorted({t.sku for t in fresh if t.channel_ref in ids}))
            if self.require_product
            else None
        )
        imports = []
        for t in fresh:
            if t.channel_ref not in ids:
                results[(t.sku, t.channel_ref)] = InventoryResult(
                    t.sku,
                    t.channel_ref,
                    t.quantity,
                    ok=False,
                    error=errors.PermanentError(
                        f"commercetools project {self.project_key} has no supply channel with key {t.channel_ref!r} "
                        f"(check Channel.external_id)",
                        system=self.system_type,
                    ),
                )
            elif known_skus is not None and t.sku not in known_skus:
                results[(t.sku, t.channel_ref)] = InventoryResult(
                    t.sku,
                    t.channel_ref,
                    t.quantity,
                    ok=False,
                    error=errors.NotFoundError(
                        f"SKU {t.sku!r} is not a product variant in commercetools project {self.project_key}",
                        system=self.system_type,
                    ),
                )
            else:
                imports.append(t)
        for t, res in zip(imports, self.importer.submit(imports)):
            results[(t.sku, t.channel_ref)] = res
        rest = [t for key, t in latest.items() if key not in results]
        for t, res in zip(rest, self.set_stock(rest) if rest else []):
            results[(t.sku, t.channel_ref)] = res
        return [results[key] for key in latest]

    def _catalogue_members(self, skus: list[str]) -> set[str]:
        """Which of ``skus`` are product variants (staged included), for a full load sent in rounds
        (``full_load.MAX_ROWS``), over one ``CATALOGUE_TTL`` window per connector:

        * SKUs already found in the window cost nothing (the second channel of a load, the next rounds);
        * the others are queried 100 at a time until those queries would add up to a scan of the whole catalogue
          (⌈P/500⌉ pages; P counted once per window) — then the catalogue is scanned once and every SKU known
          (rent-or-buy: never more than twice the cheaper of the two for the whole load, without knowing its size);
        * after a scan, SKUs it did not see are still queried (a product created since)."""
        now = time.monotonic()
        cat = self._catalogue
        if now - cat["since"] > CATALOGUE_TTL:
            cat.update(since=now, known=set(), spent=0, products=None, scanned=False)
        missing = sorted(set(skus) - cat["known"])
        if missing and not cat["scanned"] and len(missing) > CHUNK:
            if cat["products"] is None:
                cat["products"] = int(
                    self._query("product-projections", limit=1, total=True, extra={"staged": "true"}).get("total") or 0
                )
            pages = -(-cat["products"] // PAGE_LIMIT)
            if cat["spent"] + -(-len(missing) // CHUNK) >= pages:
                found = set()
                for p in self._query_all("product-projections", extra={"staged": "true"}):
                    for v in [p.get("masterVariant") or {}] + list(p.get("variants") or []):
                        if v.get("sku"):
                            found.add(v["sku"])
                cat["known"] |= found
                cat["scanned"] = True
                missing = sorted(set(missing) - found)
        if missing:
            found = self._skus_in_catalogue(missing)
            cat["spent"] += -(-len(missing) // CHUNK)
            cat["known"] |= found
        return set(skus) & cat["known"]

    def import_snapshot(self, since: datetime):
        """The Import API's outcomes of targets submitted since ``since``
        (:meth:`connectors.commercetools_import.InventoryImporter.snapshot`); ``.outcome(key, attempted_at)``."""
        return self.importer.snapshot(since)

    def import_key(self, sku: str, channel_ref: str) -> str:
        """The key an imported target's operation is reported under (its entry key)."""
        return self.entry_key(sku, channel_ref)

    def import_failure(self, sku: str, channel_ref: str, op: dict) -> errors.BadDataError:
        from .commercetools_import import failure_error

        return failure_error(
            sku, channel_ref, op.get("state", "?"), op.get("errors") or op.get("unresolvedReferences"), self.system_type
        )

    def get_stock(self, skus: list[str], channel_ref: str) -> list[StorefrontStock]:
        channel_id = self.channel_ids([channel_ref]).get(channel_ref)
        if channel_id is None:
            raise errors.NotFoundError(
                f"commercetools project {self.project_key} has no supply channel {channel_ref!r}",
                system=self.system_type,
            )
        out = []
        skus = list(dict.fromkeys(skus))
        for i in range(0, len(skus), CHUNK):
            for sku, e in self._entries(channel_id, skus[i : i + CHUNK]).items():
                # what the storefront offers: availableQuantity (quantityOnStock less its cart reservations)
                offered = e.get("availableQuantity", e["quantityOnStock"])
                mark = self.marker(e) if self.orders_decrement_stock else None
                out.append(
                    StorefrontStock(
                        sku,
                        channel_ref,
                        int(offered),
                        version=e.get("version"),
                        ref=e["id"],
                        ledger=mark[0] if mark else None,
                        unexplained_increase=self.unexplained_increase(e) if mark else 0,
                    )
                )
        return out

    def _projections_with(self, skus: list[str], staged: bool = False) -> Iterator[tuple[dict, dict]]:
        """(product projection, variant) for each of ``skus`` the (current, or staged) catalogue has."""
        for i in range(0, len(skus), CHUNK):
            chunk = set(skus[i : i + CHUNK])
            lst = q_list(sorted(chunk))
            for p in self._query_all(
                "product-projections",
                f"masterVariant(sku in {lst}) or variants(sku in {lst})",
                extra={"staged": "true" if staged else "false"},
            ):
                for v in [p.get("masterVariant") or {}] + list(p.get("variants") or []):
                    if v.get("sku") in chunk:
                        yield p, v

    def skus_on_sale(self, skus: Iterable[str]) -> set[str]:
        """Which of ``skus`` are on the storefront: in a *current* (published) product projection."""
        return {v["sku"] for _, v in self._projections_with(sorted(set(skus)))}

    def catalogue_records(self, skus: Iterable[str]) -> dict[str, dict]:
        """{sku: {"name", "barcode", "weight_g"}} of the published variants (master data audit): the product's name,
        and the variant attributes ``options.barcode_attribute`` / ``options.weight_attribute`` (grams) where set."""
        out = {}
        for p, v in self._projections_with(sorted(set(skus))):
            attrs = {a.get("name"): a.get("value") for a in v.get("attributes") or [] if isinstance(a, dict)}
            rec = {"name": _localized(p.get("name"))}
            if attrs.get(self.barcode_attribute) not in (None, ""):
                rec["barcode"] = str(attrs[self.barcode_attribute])
            weight = attrs.get(self.weight_attribute)
            if isinstance(weight, (int, float)) and not isinstance(weight, bool):
                rec["weight_g"] = weight
            out[v["sku"]] = rec
        return out

    # --- master data fixes (issue 17: "take the master's value" on a master_data_drift exception) ----------------
    WRITABLE_FIELDS = ("barcode", "weight", "name")

    def _product_of(self, sku: str) -> dict:
        """The staged product projection holding ``sku`` (its ``version`` is the Product's version)."""
        for p, _ in self._projections_with([sku], staged=True):
            return p
        raise errors.NotFoundError(
            f"SKU {sku!r} is not a product variant in commercetools project {self.project_key}", system=self.system_type
        )

    def product_field_actions(self, product: dict, sku: str, field: str, value) -> list[dict]:
        """Product update actions writing one audited field (``staged: false``: the current projection — what the
        storefront shows and the drift audit reads — changes at once, as well as the staged one):
        ``setAttribute`` by ``sku`` for the barcode / weight attributes (``options.barcode_attribute`` /
        ``options.weight_attribute``, weight in grams), ``changeName`` (a LocalizedString: the locale the hub
        reads — ``en``, ``en-GB`` or the first — gets the value, the others are kept)."""
        if field == "barcode":
            return [
                {
                    "action": "setAttribute",
                    "sku": sku,
                    "name": self.barcode_attribute,
                    "value": str(value),
                    "staged": False,
                }
            ]
        if field == "weight":
            return [
                {"action": "setAttribute", "sku": sku, "name": self.weight_attribute, "value": value, "staged": False}
            ]
        if field == "name":
            name = dict(product.get("name") or {}) if isinstance(product.get("name"), dict) else {}
            locale = next((k for k in ("en", "en-GB") if k in name), next(iter(name), "en"))
            name[locale] = str(value)
            return [{"action": "changeName", "name": name, "staged": False}]
        raise errors.BadDataError(
            f"commercetools: the hub does not write the product field {field!r}", system=self.system_type
        )

    def set_product_field(self, sku: str, field: str, value) -> int | None:
        """Write one field of the variant ``sku`` (Products API ``POST /{projectKey}/products/{id}`` with the product's
        version); a 409 (the product changed since it was read) re-reads it and tries once more. Returns the new
        version."""
        product = self._product_of(sku)
        for attempt in range(2):
            body = {"version": product["version"], "actions": self.product_field_actions(product, sku, field, value)}
            try:
                return self.client.post(self.path(f"products/{product['id']}"), json=body).json().get("version")
            except errors.ConflictError:
                if attempt:
                    raise
                product = self._product_of(sku)
        return None

    def list_skus(self) -> Iterator[str]:
        for p in self._query_all("product-projections"):
            for v in [p.get("masterVariant") or {}] + list(p.get("variants") or []):
                if v.get("sku"):
                    yield v["sku"]

    # --- orders --------------------------------------------------------------------------------------
    @staticmethod
    def _address(a: dict | None, email: str = "") -> Address:
        a = a or {}
        name, number = a.get("streetName", "") or "", a.get("streetNumber", "") or ""
        if a.get("country") in STREET_NUMBER_FIRST:
            street = f"{number} {name}".strip()
        else:
            street = f"{name} {number}".strip()
        street2 = ", ".join(x for x in (a.get("additionalStreetInfo"), a.get("building"), a.get("apartment")) if x)
        return Address(
            first_name=a.get("firstName", "") or "",
            last_name=a.get("lastName", "") or "",
            company=a.get("company", "") or "",
            street=street,
            street2=street2,
            postal_code=a.get("postalCode", "") or "",
            city=a.get("city", "") or "",
            region=a.get("region", "") or a.get("state", "") or "",
            country=a.get("country", "") or "",
            phone=a.get("phone", "") or a.get("mobile", "") or "",
            email=a.get("email", "") or email,
        )

    def _prime(self, orders: list[dict]) -> None:
        """Resolve every channel / shipping method / discount code id the orders reference (one query each)."""
        channel_ids, sm_ids, dc_ids = set(), set(), set()
        for o in orders:
            for li in o.get("lineItems") or []:
                ref = li.get("supplyChannel") or {}
                if ref.get("obj", {}).get("key"):
                    self._channel_key_by_id[ref["id"]] = ref["obj"]["key"]
                elif ref.get("id"):
                    channel_ids.add(ref["id"])
            for _, info in self.shipping_infos(o):
                ref = info.get("shippingMethod") or {}
                if ref.get("obj"):
                    self._shipping_key_by_id[ref["id"]] = ref["obj"].get("key") or ""
                elif ref.get("id"):
                    sm_ids.add(ref["id"])
            for dc in o.get("discountCodes") or []:
                ref = dc.get("discountCode") or {}
                if ref.get("obj", {}).get("code"):
                    self._discount_code_by_id[ref["id"]] = ref["obj"]["code"]
                elif ref.get("id"):
                    dc_ids.add(ref["id"])
        if channel_ids:
            self.channel_keys(channel_ids)
        if sm_ids:
            self._resolve("shipping-methods", "id", sm_ids, self._shipping_key_by_id, lambda o: o.get("key") or "")
        if dc_ids:
            self._resolve("discount-codes", "id", dc_ids, self._discount_code_by_id, lambda o: o.get("code") or "")

    def to_order(self, o: dict) -> StorefrontOrder:
        """A ct Order → StorefrontOrder. Call :meth:`_prime` first for the referenced ids."""
        try:
            lines = []
            channel_ref = ""
            for li in o.get("lineItems") or []:
                price = (li.get("price") or {}).get("value") or {}
                sku = (li.get("variant") or {}).get("sku") or ""
                lines.append(
                    OrderLineData(
                        line_id=li["id"],
                        sku=sku,
                        quantity=int(li["quantity"]),
                        unit_price_cents=price.get("centAmount"),
                        name=_localized(li.get("name")),
                        custom_fields=dict((li.get("custom") or {}).get("fields") or {}),
                    )
                )
                ch_id = (li.get("supplyChannel") or {}).get("id")
                if ch_id and not channel_ref:
                    channel_ref = self._channel_key_by_id.get(ch_id, "")
            for cli in o.get("customLineItems") or []:  # fees, gift wrap: no SKU to fulfil
                log.debug("order %s: custom line item %s ignored", o.get("id"), cli.get("slug"))
            if not channel_ref:
                channel_ref = (o.get("store") or {}).get("key", "")
            total = o.get("totalPrice") or {}
            infos = self.shipping_infos(o)
            shipping = infos[0][1] if infos else {}  # Multiple mode: the first Shipping's method
            sm_ref = shipping.get("shippingMethod") or {}
            shipping_method = (
                (sm_ref.get("obj") or {}).get("key")
                or self._shipping_key_by_id.get(sm_ref.get("id", ""), "")
                or shipping.get("shippingMethodName", "")
            )
            fields = dict((o.get("custom") or {}).get("fields") or {})
            gift = fields.pop(self.gift_field, "") or ""
            notes = fields.pop(self.notes_field, "") or ""
            codes = []
            for dc in o.get("discountCodes") or []:
                ref = dc.get("discountCode") or {}
                codes.append(
                    (ref.get("obj") or {}).get("code")
                    or self._discount_code_by_id.get(ref.get("id", ""))
                    or ref.get("id", "")
                )
            email = o.get("customerEmail") or (o.get("shippingAddress") or {}).get("email") or ""
            return StorefrontOrder(
                external_id=o["id"],
                order_number=o.get("orderNumber") or o["id"],
                channel_ref=channel_ref,
                lines=lines,
                version=o.get("version"),
                placed_at=_parse_dt(o.get("createdAt")),
                currency=total.get("currencyCode", ""),
                total_cents=total.get("centAmount"),
                customer_email=email,
                shipping_address=self._address(o.get("shippingAddress"), email),
                billing_address=self._address(o.get("billingAddress") or o.get("shippingAddress"), email),
                shipping_method=shipping_method,
                gift_message=str(gift),
                delivery_notes=str(notes),
                custom_fields=fields,
                promotion_codes=[c for c in codes if c],
                status=o.get("orderState", ""),
                shipment_state=o.get("shipmentState") or "",
                raw=o,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise errors.BadDataError(
                f"commercetools order {o.get('id') if isinstance(o, dict) else o!r} is malformed: "
                f"{type(exc).__name__}: {exc}",
                system=self.system_type,
                body=o,
            ) from exc

    def orders_since(self, cursor: str, limit: int = 100) -> Page:
        """Orders modified after ``cursor``, oldest first: ``items`` is a :class:`ParsedBatch`. An order that cannot
        be read is a ``rejected`` row (it must not stall every order behind it; the hub records it as a
        ``bad_payload`` exception)."""
        limit = max(1, min(int(limit), PAGE_LIMIT))
        if not cursor and self.orders_start:
            cursor = self.orders_start  # don't page through years of history on the first poll
        clauses = []
        if cursor:
            ts, _, oid = cursor.partition("|")
            where = f"lastModifiedAt > {q(ts)}"
            if oid:
                where = f"{where} or (lastModifiedAt = {q(ts)} and id > {q(oid)})"
            clauses.append(where)
        if self.orders_lag:
            # leave the last few seconds for the next poll: an order written in the same millisecond as the
            # cursor's but with a smaller id would otherwise be skipped for good
            upto = datetime.now(dt_timezone.utc) - timedelta(seconds=self.orders_lag)
            clauses.append(
                f"lastModifiedAt <= {q(upto.strftime('%Y-%m-%dT%H:%M:%S.') + f'{upto.microsecond // 1000:03d}Z')}"
            )
        body = self._query("orders", clauses or None, sort=["lastModifiedAt asc", "id asc"], limit=limit)
        raw = body["results"]
        self._prime(raw)
        orders = ParsedBatch()
        for o in raw:
            try:
                orders.append(self.to_order(o))
            except errors.BadDataError as exc:
                if not isinstance(o, dict) or not o.get("id"):
                    raise
                # One malformed order must not stall the stream: it becomes a rejected row (a bad_payload
                # record in the hub) and the poll moves past it. Any later change in ct bumps lastModifiedAt, so
                # a fixed order comes back through this same poll.
                log.error("commercetools order %s unreadable, skipped: %s", o.get("id"), exc)
                orders.reject(o["id"], "order", str(exc), raw=o, name=str(o.get("orderNumber") or ""))
        next_cursor = f"{raw[-1]['lastModifiedAt']}|{raw[-1]['id']}" if raw else cursor
        return Page(items=orders, cursor=next_cursor, has_more=len(raw) >= limit)

    def get_order(self, external_id: str) -> StorefrontOrder:
        o = self._get(self.path(f"orders/{external_id}")).json()
        self._prime([o])
        return self.to_order(o)

    @sensitive_variables("secret")
    def verify_webhook(self, body: bytes, headers: dict) -> bool:
        """ct HTTP destinations authenticate with a static ``Authorization`` header (AuthorizationHeader,
        https://docs.commercetools.com/api/projects/subscriptions#authorizationheader). It covers neither
        body nor time, so what such a message says is only ever a hint (:meth:`parse_order_webhook`)."""
        secret = signatures.webhook_secret(self.connection)
        if not secret:
            return False
        # the header value is whatever was configured on the destination: the bare secret or "Bearer <secret>"
        return signatures.verify_static_header(secret, headers, "Authorization") or signatures.verify_static_header(
            f"Bearer {secret}", headers, "Authorization"
        )

    def parse_order_webhook(self, payload) -> list:
        """Subscription Messages → hints, never orders (the static header authenticates no content, so an
        order carried in a message is not trusted; :mod:`integration_hub.orders.notifications` re-reads it):

        - ``OrderCreated`` and other order Messages / change notifications → [order id] to fetch when the hub
          does not have it (the Message's ``resource.id``, else the embedded ``order.id``);
        - a return Message (``RETURN_MESSAGES``) or an ``OrderStateChanged`` to ``Cancelled`` →
          [:class:`OrderChanged`] (re-read even when the hub has the order);
        - ``ProductPublished`` / ``ProductVariantAdded`` → [:class:`ProductChanged`] naming the SKUs (checked at once
          against the item master, :func:`integration_hub.catalog.item_outbox.check_storefront_skus`);
        - Messages about other resources → [] (debug log). A payload list may mix them."""
        messages = payload if isinstance(payload, list) else [payload]
        out: list = []
        for m in messages:
            if not isinstance(m, dict) or "notificationType" not in m:
                raise errors.BadDataError(
                    f"not a commercetools subscription payload: {str(m)[:200]}", system=self.system_type, body=m
                )
            resource = m.get("resource") or {}
            if not isinstance(resource, dict):
                raise errors.BadDataError(
                    "subscription message with a malformed resource", system=self.system_type, body=m
                )
            if m["notificationType"] == "Message" and m.get("type") == "OrderCreated":
                out.append(self._created_order_id(m, resource))
            elif m["notificationType"] == "Message" and (
                m.get("type") in RETURN_MESSAGES
                or (m.get("type") == "OrderStateChanged" and m.get("orderState") == "Cancelled")
            ):
                if resource.get("typeId") != "order" or not _order_id(resource.get("id")):
                    raise errors.BadDataError(
                        f"{m['type']} message without an order resource", system=self.system_type, body=m
                    )
                out.append(OrderChanged(resource["id"], m["type"]))
            elif m["notificationType"] == "Message" and m.get("type") in PRODUCT_MESSAGES:
                if resource.get("typeId") != "product" or not _order_id(resource.get("id")):
                    raise errors.BadDataError(
                        f"{m['type']} message without a product resource", system=self.system_type, body=m
                    )
                out.append(ProductChanged(resource["id"], m["type"], tuple(self._message_skus(m))))
            elif resource.get("typeId") == "order" and resource.get("id"):
                if not _order_id(resource["id"]):
                    raise errors.BadDataError(
                        "order message with a malformed order id", system=self.system_type, body=m
                    )
                out.append(resource["id"])
            elif m["notificationType"] not in ("Message", "ResourceCreated", "ResourceUpdated", "ResourceDeleted"):
                raise errors.BadDataError(
                    f"unknown notificationType {m['notificationType']!r}", system=self.system_type, body=m
                )
            else:
                log.debug(
                    "commercetools %s %s about %s ignored",
                    m["notificationType"],
                    m.get("type", ""),
                    resource.get("typeId"),
                )
        return out

    @staticmethod
    def _message_skus(m: dict) -> list[str]:
        """The SKUs a product Message names (a hint: the hub re-reads them): ProductVariantAdded's ``variant``,
        ProductPublished's ``productProjection`` variants."""
        variants = [m.get("variant")] if isinstance(m.get("variant"), dict) else []
        proj = m.get("productProjection")
        if isinstance(proj, dict):
            variants += [proj.get("masterVariant")] + list(proj.get("variants") or [])
        return list(
            dict.fromkeys(
                v["sku"] for v in variants if isinstance(v, dict) and isinstance(v.get("sku"), str) and v["sku"]
            )
        )

    def _created_order_id(self, m: dict, resource: dict) -> str:
        order = m.get("order")
        embedded = order.get("id") if isinstance(order, dict) else None
        named = resource.get("id") if resource.get("typeId") == "order" else None
        if named and embedded and named != embedded:
            raise errors.BadDataError(
                "OrderCreated message whose resource and order ids differ", system=self.system_type, body=m
            )
        oid = named or embedded
        if not _order_id(oid):
            raise errors.BadDataError("OrderCreated message without a usable order id", system=self.system_type, body=m)
        return oid

    @staticmethod
    def order_hints(payload) -> tuple[list[str], list[str]]:
        """A relayed Subscription payload (one Message or change notification, or a list) → (order ids to fetch
        when the hub does not have them, order ids to re-read even when it does). Only ids are taken: the order
        itself is always read from the API (a relayed body is a hint, never the order). ``RETURN_MESSAGES`` and
        ``OrderStateChanged`` (a cancellation, among others) are re-reads; any other order Message or change
        notification names an order; payloads about other resources give nothing. Not a ct payload →
        BadDataError. A duplicate or late message only re-reads the order's current state."""
        messages = payload if isinstance(payload, list) else [payload]
        ids: list[str] = []
        changed: list[str] = []
        for m in messages:
            if not isinstance(m, dict) or m.get("notificationType") not in (
                "Message",
                "ResourceCreated",
                "ResourceUpdated",
                "ResourceDeleted",
            ):
                raise errors.BadDataError(f"not a commercetools subscription payload: {str(m)[:200]}", body=m)
            resource = m.get("resource") or {}
            if resource.get("typeId") != "order":
                continue
            oid = resource.get("id")
            if not _order_id(oid):  # ids become part of a request path: plain id characters only
                raise errors.BadDataError(f"{m.get('type') or m['notificationType']} without a usable order id", body=m)
            if m["notificationType"] == "ResourceDeleted":
                continue
            if m.get("type") in RETURN_MESSAGES or m.get("type") == "OrderStateChanged":
                changed.append(oid)
            else:
                ids.append(oid)
        changed = list(dict.fromkeys(changed))
        return [i for i in dict.fromkeys(ids) if i not in changed], changed

    def subscription_destination(self) -> dict:
        """The Destination (API reference: GoogleCloudPubSubDestination / SqsDestination) from
        ``options["relay"]``: ``{"type": "GoogleCloudPubSub", "projectId", "topic"}`` or ``{"type": "SQS",
        "queueUrl", "region", "authenticationMode": "IAM"}`` (``Credentials`` mode: ``accessKey`` and the secret in
        the environment variable ``accessSecret_env``). Only the reference's fields are written."""
        relay = (self.connection.options or {}).get("relay") or {}
        kind = relay.get("type")
        if kind == "GoogleCloudPubSub":
            if not relay.get("projectId") or not relay.get("topic"):
                raise errors.PermanentError(
                    "options.relay needs projectId and topic for GoogleCloudPubSub", system=self.system_type
                )
            return {"type": "GoogleCloudPubSub", "projectId": relay["projectId"], "topic": relay["topic"]}
        if kind == "SQS":
            if not relay.get("queueUrl") or not relay.get("region"):
                raise errors.PermanentError("options.relay needs queueUrl and region for SQS", system=self.system_type)
            dest = {
                "type": "SQS",
                "queueUrl": relay["queueUrl"],
                "region": relay["region"],
                "authenticationMode": relay.get("authenticationMode") or "IAM",
            }
            if dest["authenticationMode"] == "Credentials":
                secret = env_secrets.read(
                    str(relay.get("accessSecret_env") or ""), "options.relay.accessSecret_env", self.system_type
                )
                if not relay.get("accessKey") or not secret:
                    raise errors.PermanentError(
                        "SQS Credentials mode needs options.relay.accessKey and the secret in the "
                        "environment variable named by accessSecret_env",
                        system=self.system_type,
                    )
                dest.update(accessKey=relay["accessKey"], accessSecret=secret)
            return dest
        raise errors.PermanentError(
            f"connection {self.connection.name}: options.relay.type must be GoogleCloudPubSub or SQS "
            f"(commercetools Subscriptions have no HTTP destination)",
            system=self.system_type,
        )

    def ensure_order_subscription(self, destination: dict | None = None, key: str = "integration-hub-orders") -> dict:
        """Create or repoint the Subscription that relays the order Messages the hub reads (``SUBSCRIBED_MESSAGES``)
        to ``destination`` (default :meth:`subscription_destination`), ``format`` Platform. Idempotent: nothing is
        written when the Subscription already says exactly that; a changed destination or message list is one
        update (``changeDestination`` / ``setMessages``); a different format (no update action exists for it) is a
        delete and re-create. Returns the Subscription."""
        destination = destination or self.subscription_destination()
        messages = [{"resourceTypeId": "order", "types": list(SUBSCRIBED_MESSAGES)}]
        if self.subscribe_product_messages:
            messages.append({"resourceTypeId": "product", "types": list(PRODUCT_MESSAGES)})
        fmt = {"type": "Platform"}
        draft = {"key": key, "destination": destination, "messages": messages, "format": fmt}
        for _ in range(CONFLICT_RETRIES):
            try:
                current = self._get(self.path(f"subscriptions/key={key}")).json()
            except errors.NotFoundError:
                return self.client.post(self.path("subscriptions"), json=draft).json()
            if (current.get("format") or {"type": "Platform"}).get("type") != "Platform":
                self.client.delete(self.path(f"subscriptions/key={key}"), params={"version": current["version"]})
                continue
            actions = []
            shown = {k: v for k, v in (current.get("destination") or {}).items() if k != "accessSecret"}
            if shown != {k: v for k, v in destination.items() if k != "accessSecret"} or "accessSecret" in destination:
                actions.append({"action": "changeDestination", "destination": destination})
            have = [
                {"resourceTypeId": m.get("resourceTypeId"), "types": sorted(m.get("types") or [])}
                for m in current.get("messages") or []
            ]
            if have != [{"resourceTypeId": m["resourceTypeId"], "types": sorted(m["types"])} for m in messages]:
                actions.append({"action": "setMessages", "messages": messages})
            if not actions:
                return current
            try:
                return self.client.post(
                    self.path(f"subscriptions/key={key}"), json={"version": current["version"], "actions": actions}
                ).json()
            except errors.ConflictError:
                continue
        raise errors.ConflictError(
            f"subscription {key} still conflicting after {CONFLICT_RETRIES} attempts", system=self.system_type
        )

    # --- fulfilment --------------------------------------------------------------------------------
    @staticmethod
    def _delivery_items(order: dict, parcel: Parcel | None, remaining: dict[str, int]) -> list[dict]:
        """Allocate (sku, qty) parcel lines to the order's line items; unknown SKUs are ignored."""
        items = []
        by_sku: dict[str, list[dict]] = defaultdict(list)
        for li in order.get("lineItems") or []:
            by_sku[(li.get("variant") or {}).get("sku")].append(li)
        for sku, qty in parcel.lines if parcel else []:
            for li in by_sku.get(sku, []):
                take = min(qty, remaining.get(li["id"], 0))
                if take > 0:
                    items.append({"id": li["id"], "quantity": take})
                    remaining[li["id"]] -= take
                    qty -= take
                if qty <= 0:
                    break
        return items

    @staticmethod
    def shipping_infos(order: dict) -> list[tuple[str | None, dict]]:
        """(shippingKey, ShippingInfo) of the order: ShippingMode Single has one top-level ``shippingInfo`` (key
        None); Multiple keeps one per ``shipping[]`` entry."""
        if order.get("shippingMode") == "Multiple":
            return [
                (sh.get("shippingKey"), sh.get("shippingInfo") or {})
                for sh in order.get("shipping") or []
                if isinstance(sh, dict)
            ]
        return [(None, order.get("shippingInfo") or {})]

    @classmethod
    def deliveries(cls, order: dict) -> list[dict]:
        return [d for _, info in cls.shipping_infos(order) for d in info.get("deliveries") or [] if isinstance(d, dict)]

    @staticmethod
    def _line_shipping_key(order: dict, keys: list[str]) -> dict[str, str]:
        """Line item id → the shippingKey it goes out under (Multiple mode: its shippingDetails target, else the
        first Shipping's key)."""
        out = {}
        for li in order.get("lineItems") or []:
            targets = (li.get("shippingDetails") or {}).get("targets") or []
            wanted = next(
                (
                    t.get("shippingMethodKey") or t.get("addressKey")
                    for t in targets
                    if (t.get("shippingMethodKey") or t.get("addressKey")) in keys
                ),
                None,
            )
            out[li.get("id")] = wanted or keys[0]
        return out

    def shipped_actions(self, order: dict, parcels: list[Parcel]) -> list[dict]:
        """Update actions that make ``order`` shipped with ``parcels``; [] when it already is. In ShippingMode
        Multiple every ``addDelivery`` names the ``shippingKey`` of the Shipping its items go out under (one
        delivery per Shipping the parcels touch). A ``Canceled`` shipment state is never turned into Shipped
        (the parcels are still recorded as a delivery)."""
        deliveries = self.deliveries(order)
        existing = {(p.get("trackingData") or {}).get("trackingId") for d in deliveries for p in d.get("parcels") or []}
        new = [p for p in parcels if not p.tracking_number or p.tracking_number not in existing]
        if parcels and all(not p.tracking_number for p in parcels) and existing - {None}:
            new = []  # untracked parcels, and the order already has a delivery: don't duplicate it
        actions = []
        if new:
            multiple = order.get("shippingMode") == "Multiple"
            keys = [k for k, _ in self.shipping_infos(order) if k] if multiple else []
            if multiple and not keys:
                raise errors.BadDataError(
                    f"order {order.get('id')} has ShippingMode Multiple but no shipping[] entry",
                    system=self.system_type,
                    body=order,
                )
            key_of_line = self._line_shipping_key(order, keys) if multiple else {}
            remaining = {li["id"]: int(li["quantity"]) for li in order.get("lineItems") or []}
            groups: OrderedDict[str | None, tuple[list, list]] = OrderedDict()  # shippingKey -> (parcel drafts, items)
            for p in new:
                items = self._delivery_items(order, p, remaining)
                draft = {"items": items}
                if p.tracking_number or p.carrier:
                    draft["trackingData"] = {
                        k: v
                        for k, v in (("trackingId", p.tracking_number), ("carrier", p.carrier), ("provider", p.carrier))
                        if v
                    }
                key = (key_of_line.get(items[0]["id"]) if items else keys[0]) if multiple else None
                drafts, group_items = groups.setdefault(key, ([], []))
                drafts.append(draft)
                group_items += items
            tag = hashlib.sha1("|".join(sorted(p.tracking_number or "" for p in new)).encode()).hexdigest()[:16]
            existing_keys = {d.get("key") for d in deliveries}
            for n, (shipping_key, (drafts, items)) in enumerate(groups.items()):
                if not items:  # parcels without line detail ship the whole order (its lines of this Shipping)
                    items = [
                        {"id": li["id"], "quantity": int(li["quantity"])}
                        for li in order.get("lineItems") or []
                        if not multiple or key_of_line.get(li["id"]) == shipping_key
                    ]
                merged: dict[str, int] = defaultdict(int)
                for it in items:
                    merged[it["id"]] += it["quantity"]
                key = f"{HUB_DELIVERY_PREFIX}{tag}" + (f"-{n}" if n else "")
                while key in existing_keys:  # untracked parcels shipped twice on purpose: keys must stay unique
                    key = f"{key}-{len(existing_keys)}"
                existing_keys.add(key)
                action = {
                    "action": "addDelivery",
                    "deliveryKey": key,
                    "items": [{"id": k, "quantity": v} for k, v in merged.items()],
                    "parcels": drafts,
                }
                if shipping_key is not None:
                    action["shippingKey"] = shipping_key
                actions.append(action)
        state = order.get("shipmentState")
        if state == "Canceled":
            log.warning("commercetools order %s: shipment state Canceled, not changed to Shipped", order.get("id"))
        elif state not in ("Shipped", "Delivered"):
            actions.append({"action": "changeShipmentState", "shipmentState": "Shipped"})
        return actions

    def storefront_fulfilments(self, order: StorefrontOrder | dict) -> list[Fulfilment]:
        """Deliveries made on the storefront side (ship-from-store, click & collect, Merchant Center) — every
        delivery the hub did not add — as Fulfilments to report to the master. ``fulfilment_ref`` is the
        delivery id, stable across polls."""
        raw = order.raw if isinstance(order, StorefrontOrder) else order
        if not isinstance(raw, dict):
            raise errors.BadDataError("storefront_fulfilments needs a commercetools order", system=self.system_type)
        sku_of = {li.get("id"): (li.get("variant") or {}).get("sku") or "" for li in raw.get("lineItems") or []}
        location = order.channel_ref if isinstance(order, StorefrontOrder) else (raw.get("store") or {}).get("key", "")
        out = []
        for d in self.deliveries(raw):
            if (d.get("key") or "").startswith(HUB_DELIVERY_PREFIX):
                continue
            lines = [(sku_of.get(i.get("id"), ""), int(i.get("quantity") or 0)) for i in d.get("items") or []]
            out.append(
                Fulfilment(
                    order_ref=raw.get("id", ""),
                    fulfilment_ref=d.get("id", ""),
                    lines=[(s, q) for s, q in lines if s and q > 0],
                    location=location,
                    fulfilled_at=_parse_dt(d.get("createdAt")),
                )
            )
        return out

    def storefront_returns(self, order: StorefrontOrder | dict) -> ParsedBatch:
        """The order's ``returnInfo`` as :class:`StorefrontReturn` rows, one per LineItemReturnItem (its id is
        the return's stable ref; ``shipmentState`` gives the condition, see ``RETURN_CONDITIONS``;
        ``returnDate`` of its ReturnInfo, else the item's ``createdAt``, is when it came back). Return items
        of custom line items (fees, gift wrap) carry no SKU and are skipped. An entry that cannot be read
        (not an object, no id, a quantity that is not a positive whole number, a line item the order does
        not have, an unknown shipmentState) is a ``rejected`` row naming the field; the others still count."""
        raw = order.raw if isinstance(order, StorefrontOrder) else order
        if not isinstance(raw, dict):
            raise errors.BadDataError("storefront_returns needs a commercetools order", system=self.system_type)
        infos = raw.get("returnInfo")
        out = ParsedBatch()  # the good rows, and .rejected
        if infos in (None, []):
            return out
        order_id = str(raw.get("id", ""))

        reject = out.reject

        if not isinstance(infos, list):
            reject(f"{order_id}/returnInfo", "returnInfo", f"returnInfo is not a list: {str(infos)[:100]}", infos)
            return out
        lines = {li.get("id") for li in raw.get("lineItems") or [] if isinstance(li, dict)}
        for n, info in enumerate(infos):
            items = info.get("items") if isinstance(info, dict) else None
            if not isinstance(items, list):
                reject(
                    f"{order_id}/returnInfo[{n}]", f"returnInfo[{n}].items", "a ReturnInfo without an items list", info
                )
                continue
            returned_at = _parse_dt(info.get("returnDate"))
            for i, item in enumerate(items):
                where = f"returnInfo[{n}].items[{i}]"
                if not isinstance(item, dict):
                    reject(f"{order_id}/{where}", where, "a return item is not an object", item)
                    continue
                if item.get("type") == "CustomLineItemReturnItem" or (
                    item.get("customLineItemId") and not item.get("lineItemId")
                ):
                    continue
                ref = item.get("id")
                qty = item.get("quantity")
                state = item.get("shipmentState")
                problem = (
                    ("id", "the return item has no id")
                    if not isinstance(ref, str) or not ref
                    else ("quantity", f"quantity {qty!r} is not a positive whole number")
                    if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0
                    else ("lineItemId", f"lineItemId {item.get('lineItemId')!r} is not a line item of the order")
                    if item.get("lineItemId") not in lines
                    else ("shipmentState", f"shipmentState {state!r} is not one of {', '.join(RETURN_CONDITIONS)}")
                    if state not in RETURN_CONDITIONS
                    else None
                )
                if problem:
                    reject(
                        f"{order_id}/{ref if isinstance(ref, str) and ref else where}",
                        f"{where}.{problem[0]}",
                        problem[1],
                        item,
                    )
                    continue
                out.append(
                    StorefrontReturn(
                        return_ref=ref,
                        order_ref=order_id,
                        line_id=item["lineItemId"],
                        quantity=qty,
                        condition=RETURN_CONDITIONS[state],
                        state=state,
                        returned_at=returned_at or _parse_dt(item.get("createdAt")),
                    )
                )
        return out

    def mark_shipped(
        self, external_id: str, parcels: list[Parcel], known_version: int | None = None, known_order: dict | None = None
    ) -> int | None:
        """One versioned update: ``addDelivery`` with the parcels whose tracking numbers the order does not carry
        yet (parcel lines are matched to line items by SKU; parcels without matching lines ship the whole
        order) and ``changeShipmentState: Shipped`` unless already Shipped/Delivered. A replay changes nothing.
        On 409 the order is re-read and the actions recomputed (our earlier attempt may have landed).

        ``known_order`` at ``known_version`` (the order as captured): the update is built from it and sent at that
        version without a read — one request per shipped order. Any change since (ct's own, a payment update, our
        earlier attempt that landed) moved the version, so ct answers 409 ConcurrentModification and the order is
        read and the actions recomputed as above: the snapshot can never make a stale or duplicate delivery."""
        if (
            isinstance(known_order, dict)
            and known_version is not None
            and known_order.get("version") == known_version
            and known_order.get("id") == external_id
            and isinstance(known_order.get("lineItems"), list)
        ):
            order = known_order
        else:
            order = self._get(self.path(f"orders/{external_id}")).json()
        for _ in range(CONFLICT_RETRIES):
            actions = self.shipped_actions(order, parcels)
            if not actions:
                return order.get("version")
            try:
                order = self.client.post(
                    self.path(f"orders/{external_id}"), json={"version": order["version"], "actions": actions}
                ).json()
                return order.get("version")
            except errors.ConflictError:
                # Someone else changed the order (possibly our own earlier attempt landed): re-read and recompute.
                order = self._get(self.path(f"orders/{external_id}")).json()
        raise errors.ConflictError(
            f"order {external_id} still conflicting after {CONFLICT_RETRIES} attempts", system=self.system_type
        )
