"""Role interfaces every connector implements, and the plain data they exchange with the hub.

The domain (integration_hub.*) talks only to these roles; a connector module translates them to one
system's API. A system may play several roles (Clarus is a warehouse and an inventory master).
Every method raises :mod:`connectors.errors` types on failure, never returns a fake success.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from django.views.decorators.debug import sensitive_variables

from . import signatures


# --- data ----------------------------------------------------------------------------------------
@dataclass
class StockChange:
    """Master → hub: item ``sku`` at ``location`` is now ``quantity`` in ``state`` (absolute)."""

    sku: str
    location: str  # master's location id (Location.external_id)
    quantity: int
    state: str = "available"
    changed_at: datetime | None = None
    ref: str = ""  # master's change id, for logs


@dataclass
class InventoryTarget:
    """Hub → storefront: set ``sku`` on ``channel_ref`` (supply channel key / inventory list id) to
    ``quantity`` (absolute). ``known_version``/``known_ref`` are what the hub last saw, if anything.
    ``as_of`` is when the hub computed ``quantity`` (its stock snapshot): a storefront that subtracts its own
    orders placed after a reset instant (SFCC's allocation ``reset_date``) resets at this instant, so orders
    placed while the figure was on its way are still subtracted. None = now.

    ``ledger``: for storefronts that decrement their own stock when an order is placed (commercetools),
    ``quantity`` plus every unit of this channel's own storefront orders the hub has ever captured for the
    item (a running total that never goes down). Such a storefront applies the *change* of the ledger since
    the figure its entry was last brought to, so its own decrements for orders the hub has not captured yet
    are kept (see :mod:`connectors.commercetools`). ``None``: an absolute write. Other storefronts ignore it."""

    sku: str
    channel_ref: str
    quantity: int
    known_version: int | None = None
    known_ref: str = ""
    as_of: datetime | None = None
    # units of this storefront's own open orders (on this channel, in this SKU) that ``quantity`` has subtracted:
    # filled only for storefronts that hold their own reservations (``Storefront.reserves_own_orders``)
    held: int = 0
    ledger: int | None = None


@dataclass
class InventoryResult:
    sku: str
    channel_ref: str
    quantity: int
    version: int | None = None
    ref: str = ""  # storefront id of the inventory entry / record
    ok: bool = True
    error: Exception | None = None


@dataclass
class StorefrontStock:
    """What the storefront offers (commercetools: ``availableQuantity``, net of its cart reservations) and, for
    ledger-keeping storefronts, the ledger figure its entry was last brought to (``None``: never, or not kept)
    and the units it holds above what the hub left it at (``unexplained_increase``: never its own orders)."""

    sku: str
    channel_ref: str
    quantity: int
    version: int | None = None
    ref: str = ""
    ledger: int | None = None
    unexplained_increase: int = 0


@dataclass
class Address:
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    street: str = ""
    street2: str = ""
    postal_code: str = ""
    city: str = ""
    region: str = ""
    country: str = ""
    phone: str = ""
    email: str = ""


@dataclass
class OrderLineData:
    line_id: str
    sku: str
    quantity: int
    unit_price_cents: int | None = None
    name: str = ""
    custom_fields: dict = field(default_factory=dict)


@dataclass
class StorefrontOrder:
    """An order as the storefront holds it, normalised."""

    external_id: str
    order_number: str
    channel_ref: str  # supply channel / store / site the order belongs to
    lines: list[OrderLineData]
    version: int | None = None
    placed_at: datetime | None = None
    currency: str = ""
    total_cents: int | None = None
    customer_email: str = ""
    shipping_address: Address = field(default_factory=Address)
    billing_address: Address = field(default_factory=Address)
    shipping_method: str = ""
    gift_message: str = ""
    delivery_notes: str = ""
    custom_fields: dict = field(default_factory=dict)
    promotion_codes: list[str] = field(default_factory=list)
    status: str = ""  # storefront order state
    shipment_state: str = ""
    raw: dict = field(default_factory=dict)
    # False: the storefront says the order is not to be fulfilled (not placed yet, failed, not released for
    # export): the hub does not capture it; one it already has still follows cancellations, returns, fulfilments
    capturable: bool = True
    # True: the storefront still waits for the hub's export handshake (Storefront.mark_exported) on this order
    awaiting_export: bool = False


@dataclass
class WarehouseOrderLine:
    line_id: str
    sku: str  # master SKU
    quantity: int
    parent_line_id: str = ""  # set for bundle components
    pickable: bool = True  # False for a bundle's own line: sent for the paperwork, its components are the goods
    unit_price_cents: int | None = None
    custom_fields: dict = field(default_factory=dict)
    warehouse_product_id: str = ""  # the warehouse's own id of the product, where the hub has stored one


@dataclass
class WarehouseProduct:
    """Hub item master → a warehouse that needs products created before orders name them."""

    sku: str
    description: str = ""
    barcode: str = ""


@dataclass
class MasterItem:
    """An item as the SKU master lists it (``master_items``): the raw values, validated by the hub
    (:mod:`integration_hub.catalog.item_validation`) like an imported row."""

    sku: str
    name: str = ""
    parent_sku: str = ""
    attributes: dict = field(default_factory=dict)
    barcode: str = ""
    weight: str = ""
    weight_unit: str = ""
    unit_cost: str = ""
    active: bool = True
    updated_at: datetime | None = None


@dataclass
class WarehouseOrder:
    """What the warehouse needs to fulfil: every field, master SKUs, mapped shipping method."""

    order_ref: str  # hub idempotency key / order reference the warehouse must deduplicate on
    order_number: str
    channel: str
    lines: list[WarehouseOrderLine]
    shipping_address: Address
    shipping_method: str  # warehouse service code
    carrier: str = ""
    billing_address: Address | None = None
    customer_email: str = ""
    gift_message: str = ""
    delivery_notes: str = ""
    custom_fields: dict = field(default_factory=dict)
    placed_at: datetime | None = None
    currency: str = ""
    total_cents: int | None = None


@dataclass
class Acknowledgement:
    order_ref: str
    warehouse_ref: str  # the warehouse's id for the order
    duplicate: bool = False  # the warehouse already had it (idempotent replay)
    received_at: datetime | None = None  # when the warehouse took the order, on its own clock (when it says)
    # where the master allocated the order: master SKU → the master's location id (Location.external_id) of
    # that line's allocation, for masters that say (WAIR's allocations, Clarus's goods-out warehouse); empty
    # when unknown. The hub releases each line's hold on a moved figure at that location (issue 20, item 5).
    allocations: dict[str, str] = field(default_factory=dict)


@dataclass
class Parcel:
    carrier: str
    tracking_number: str
    tracking_url: str = ""
    lines: list[tuple[str, int]] = field(default_factory=list)  # (sku, quantity)


@dataclass
class Dispatch:
    """Warehouse confirmation that an order (or part of it) physically left."""

    order_ref: str
    warehouse_ref: str
    dispatched_at: datetime | None
    parcels: list[Parcel]
    ref: str = ""  # the warehouse's dispatch / fulfilment record id
    complete: bool = True


@dataclass
class Fulfilment:
    """Storefront-side fulfilment (e.g. ship-from-store, click & collect) to report to the master."""

    order_ref: str
    fulfilment_ref: str
    lines: list[tuple[str, int]]
    location: str = ""
    fulfilled_at: datetime | None = None


@dataclass
class StorefrontReturn:
    """Returned (or announced) units of one storefront order line, as the storefront tracks them now.
    ``return_ref`` is the storefront's stable id of the return item (the same item read again is the same
    return; its ``condition`` may move on). ``condition`` is the hub's: ``advised`` (announced, not back
    yet), ``inspection`` (received, not yet judged), ``available`` (back in saleable stock) or ``damaged``."""

    return_ref: str
    order_ref: str  # storefront order id
    line_id: str  # storefront line item id
    quantity: int
    condition: str
    state: str = ""  # the storefront's own state name, for people
    returned_at: datetime | None = None


@dataclass(frozen=True)
class ProductChanged:
    """A storefront message saying a product was published or got a variant (commercetools ``ProductPublished`` /
    ``ProductVariantAdded``): its SKUs are checked against the item master at once. A hint: the SKUs are re-read
    from the storefront before anything is cleared."""

    product_id: str
    reason: str = ""
    skus: tuple = ()


@dataclass(frozen=True)
class OrderChanged:
    """A subscription message saying an order changed in a way the hub mirrors on orders it already has
    (returns booked or moved on, cancelled in the storefront): the order is re-read by id even when the hub
    has it, and goes through the same capture path as the poll (which is idempotent). ``reason`` names the
    message, for logs."""

    external_id: str
    reason: str = ""


@dataclass
class DemandLine:
    order_ref: str
    sku: str
    quantity: int
    channel: str
    location: str = ""
    ordered_at: datetime | None = None
    promotion_codes: list[str] = field(default_factory=list)
    bundle_sku: str = ""
    unit_price_cents: int | None = None
    is_return: bool = False
    currency: str = ""  # the order's ISO currency (the price's)
    key: str = ""  # the hub's stable line key (planning.services.line_key), when the caller has it


@dataclass
class PlannerVariant:
    """Hub item master → planner: one sellable variant (SKU) the demand lines refer to."""

    sku: str
    title: str = ""
    product_id: str = ""  # style / parent (the item's own SKU when it has none)
    barcode: str = ""
    price_cents: int | None = None
    is_bundle: bool = False
    components: list[tuple[str, int]] = field(default_factory=list)  # (component sku, quantity) of a bundle
    stock: dict[str, int] = field(default_factory=dict)  # planner warehouse id → available units, where known
    on_hand: dict[str, int] = field(
        default_factory=dict
    )  # planner warehouse id → units physically there (all states but in transit)
    updated_at: datetime | None = None


@dataclass
class PlannerWarehouse:
    """A planner warehouse the demand lines name (``DemandLine.location``)."""

    id: str
    name: str = ""
    currency: str = ""


@dataclass
class PlannerAllocation:
    """Stock held by an open order of a channel the planner does not manage (a web order not yet dispatched)."""

    id: str  # stable: <order ref>|<sku>
    sku: str
    location: str  # planner warehouse id
    quantity: int
    since: datetime | None = None


@dataclass
class PlannerStockOrder:
    """Planner → hub: a purchase order, transfer or assembly order as the planner holds it."""

    ref: str  # the planner's id
    reference: str = ""
    kind: str = "po"  # po | transfer | assembly
    status: str = ""
    vendor: str = ""
    warehouse: str = ""
    source_warehouse: str = ""
    expected_at: datetime | None = None
    created_at: datetime | None = None
    lines: list[tuple[str, int, int]] = field(default_factory=list)  # (sku, ordered, received)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recommendation:
    sku: str
    location: str
    recommended_quantity: int
    kind: str = "purchase"  # purchase | transfer
    supplier: str = ""
    reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Page:
    """One page of a cursor-based poll; ``cursor`` is what to pass next time (opaque to the hub)."""

    items: list
    cursor: str
    has_more: bool = False


# --- roles ---------------------------------------------------------------------------------------
class Connector(abc.ABC):
    """Built from a :class:`integration_hub.core.models.Connection`; owns one HttpClient."""

    system_type: str = ""
    #: the vendor's published document this connector follows (URL), "" when none was found
    api_document: str = ""
    #: True when the wire shape is an assumption (no published API): the admin and README say so
    modelled: bool = False

    def __init__(self, connection, client=None):
        self.connection = connection
        self.client = client or self.build_client()

    @abc.abstractmethod
    def build_client(self): ...

    @sensitive_variables("secret")
    def verify_webhook(self, body: bytes, headers: dict) -> bool:
        """True if an inbound webhook carries a valid ``X-Hub-Signature`` for this connection that was never
        accepted before (a True answer consumes it: a replay answers False). A connection without a webhook
        secret refuses everything. Never raises on any header or body."""
        secret = signatures.webhook_secret(self.connection)
        return signatures.verify_hmac(secret, body, headers, connection=self.connection)


class InventoryMaster(abc.ABC):
    @abc.abstractmethod
    def stock_changes(self, cursor: str) -> Page:
        """StockChange items changed since ``cursor`` ('' = from the beginning)."""

    def parse_stock_webhook(self, payload: dict) -> list[StockChange]:
        raise NotImplementedError

    def stock_snapshot(self, skus: Iterable[str] | None = None) -> Iterable[StockChange]:
        """Full quantities (for drift checks); connectors page through internally."""
        raise NotImplementedError


class Storefront(abc.ABC):
    # True: the storefront keeps its own reservation for every order placed on it until it ships (SFCC on
    # Omnichannel Inventory); the push engine then tells it, per target, how much of the hub's figure is those
    # orders (InventoryTarget.held), so that the same order is not subtracted twice
    reserves_own_orders: bool = False

    @abc.abstractmethod
    def set_stock(self, targets: list[InventoryTarget]) -> list[InventoryResult]:
        """Set absolute quantities. Handles version conflicts by re-reading; per-item failures are
        returned in results (``ok=False``), whole-call failures raise."""

    def push_full(self, targets: list[InventoryTarget]) -> list[InventoryResult]:
        """A full load: every pushable SKU of one or more channels at once (a channel's first sync, a full
        resync — :mod:`integration_hub.inventory.full_load`), where the deltas of the everyday drain come through
        :meth:`set_stock`. Storefronts with a bulk path (SFCC OCI: the Impex file import) override it; the default
        is the delta path. Same contract as :meth:`set_stock`: per-item failures in the results, whole-call
        failures raise."""
        return self.set_stock(targets)

    @abc.abstractmethod
    def get_stock(self, skus: list[str], channel_ref: str) -> list[StorefrontStock]: ...

    @abc.abstractmethod
    def orders_since(self, cursor: str, limit: int = 100) -> Page:
        """StorefrontOrder items created/modified since ``cursor``: ``items`` is a
        :class:`connectors.parsing.ParsedBatch` whose ``rejected`` rows are the orders that could not be read
        (the hub files them; the cursor still moves past them)."""

    def parse_order_webhook(self, payload: dict) -> list[str | OrderChanged]:
        """The hints a subscription message carries: order ids to fetch when the hub does not have them, and
        :class:`OrderChanged` for orders to re-read even when it does. Never an order itself: whatever a
        message says about an order is only a hint, the order is always read from the storefront's API
        (:mod:`integration_hub.orders.notifications`)."""
        raise NotImplementedError

    @abc.abstractmethod
    def get_order(self, external_id: str) -> StorefrontOrder: ...

    @abc.abstractmethod
    def mark_shipped(
        self, external_id: str, parcels: list[Parcel], known_version: int | None = None, known_order: dict | None = None
    ) -> int | None:
        """Set the order shipped with tracking; version/409 safe. Returns the new version. ``known_order``: the
        storefront's order as the hub captured it; a connector whose writes are version-checked may build its update
        from it when its version is ``known_version`` instead of reading the order first (a stale snapshot is refused
        by the version check, and the connector then reads and recomputes)."""

    def mark_exported(self, external_id: str, ok: bool) -> None:
        """Export handshake: the warehouse acknowledged the order (``ok``) or the hub gave up on it (not ``ok``).
        Storefronts that gate fulfilment on an export status (SFCC ``export_status`` exported / failed) record
        it; the default does nothing. Idempotent; raises :mod:`connectors.errors` types on failure."""

    def list_skus(self) -> Iterable[str]:
        """Every variant SKU the storefront sells (catalogue audit)."""
        raise NotImplementedError

    def storefront_returns(self, order: StorefrontOrder):
        """The returns an order (as read by :meth:`orders_since` / :meth:`get_order`) carries now:
        a :class:`connectors.parsing.ParsedBatch` of :class:`StorefrontReturn`, whose ``rejected`` rows are
        the return entries that cannot be read. Storefronts without returns on the order raise
        NotImplementedError."""
        raise NotImplementedError


class Warehouse(abc.ABC):
    @abc.abstractmethod
    def send_order(self, order: WarehouseOrder) -> Acknowledgement:
        """Transmit; must be idempotent on ``order.order_ref``. Raises if not positively acknowledged."""

    @abc.abstractmethod
    def dispatches_since(self, cursor: str, limit: int | None = None) -> Page:
        """Dispatch items confirmed since ``cursor``: at most ``limit`` where the API pages (None: the connector's
        page size)."""

    def parse_dispatch_webhook(self, payload: dict) -> list[Dispatch]:
        raise NotImplementedError

    def order_status(self, order_ref: str) -> str | None:
        """The warehouse's status for an order, or None if it does not have it (orphan check)."""
        raise NotImplementedError

    def cancel_order(self, order_ref: str) -> str:
        """Ask the warehouse to cancel an order it holds → its status once cancelled. Raises
        :class:`errors.NotFoundError` if it does not have the order and a :class:`errors.PermanentError`
        when it refuses (e.g. already picked or dispatched)."""
        raise NotImplementedError

    def dispatches_for(self, order_ref: str) -> list[Dispatch]:
        """The dispatch confirmations the warehouse holds for one order (a lost confirmation found by
        the missing-dispatch check); [] when none. NotFoundError if it does not have the order."""
        raise NotImplementedError

    def send_fulfilment(self, fulfilment: Fulfilment) -> str:
        """Report a storefront-side fulfilment; returns the master's acknowledgement id."""
        raise NotImplementedError

    def sync_products(self, products: list[WarehouseProduct]) -> dict[str, str]:
        """Make sure the warehouse has these products → ``{sku: the warehouse's product id}``. Warehouses
        whose orders name products by SKU raise NotImplementedError."""
        raise NotImplementedError


class Planner(abc.ABC):
    #: "push" — :meth:`push_demand` transmits the lines; "pull" — the planner fetches the hub's demand files
    #: itself, so :meth:`push_demand` only checks the lines can be written and the hub's feed table is the file
    demand_delivery: str = "push"
    #: True when the planner takes the open orders' allocations (:class:`PlannerAllocation`) with the demand
    uses_allocations: bool = False
    #: True when the planner wants every variant with its stock in every warehouse, and an upload on every
    #: run (stock moves without new demand) — not only the variants the new lines name
    full_reference_data: bool = False

    @abc.abstractmethod
    def push_demand(
        self,
        lines: list[DemandLine],
        variants: list[PlannerVariant] = (),
        warehouses: list[PlannerWarehouse] = (),
        allocations: list[PlannerAllocation] = (),
    ) -> int:
        """Deliver new / changed demand lines (with the variants and warehouses they name, which planners
        that need reference data first get before the lines, and — when :attr:`uses_allocations` — every
        open allocation). Returns how many lines were delivered."""

    @abc.abstractmethod
    def recommendations(self) -> list[Recommendation]: ...

    def stock_orders(self) -> list[PlannerStockOrder]:
        """Open purchase orders / transfers the planner holds."""
        raise NotImplementedError
