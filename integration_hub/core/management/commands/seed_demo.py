"""Seed a realistic demo: a few thousand variant SKUs, two storefront channels, three locations, a bundle,
deliberately mismatched and unknown SKUs, role users — into the hub database and into the sandboxes.

The hub database is seeded once (re-run with --reset to start over); the sandboxes keep their state in
memory, so they are re-seeded from the hub's data every time.
"""

from __future__ import annotations

import random
import secrets
from decimal import Decimal

import requests
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from integration_hub.catalog.models import BundleComponent, IdentifierTransform, Item, SkuMapping
from integration_hub.core.models import Channel, Connection, Location
from integration_hub.inventory.models import ChannelStockRule, StockLevel, StockPool
from integration_hub.orders.models import ShippingMethodMap

PASSWORD = "hub-demo"
PRODUCTS = [
    "Merino Crew Jumper",
    "Organic Cotton Tee",
    "Linen Shirt",
    "Selvedge Jeans",
    "Wool Overcoat",
    "Cord Trousers",
    "Rib Beanie",
    "Cashmere Scarf",
    "Canvas Tote",
    "Leather Belt",
    "Quilted Gilet",
    "Rain Jacket",
]
COLOURS = ["Navy", "Black", "Oat", "Forest", "Rust", "Stone", "Charcoal", "Sky", "Ecru", "Burgundy"]
SIZES = ["XS", "S", "M", "L", "XL"]
STYLES = 600  # × 5 sizes = 3,000 variants
MISMATCHED = 20  # storefront lists these without leading zeros and no mapping exists
UNKNOWN = 10  # storefront-only SKUs the master has never heard of

# How each system's sandbox connection is configured (credentials as the emulators expect them).
SYSTEMS = {
    # orders_poll_lag_seconds: the catch-up poll stays 2 s behind "now" so two orders stamped in the same
    # millisecond cannot straddle the cursor (webhooks still capture at once)
    "commercetools": dict(
        client_id="hub-demo",
        secret="hub-demo-secret",
        options={"project_key": "demo", "orders_poll_lag_seconds": 2},
        auth=True,
        rate=50,
    ),
    "sfcc": dict(
        client_id="hub-demo",
        secret="hub-demo-secret",
        options={"site_id": "RefArch", "organization_id": "f_ecom_demo"},
        auth=True,
        rate=40,
    ),
    "wair": dict(client_id="", secret="wair-demo-key", options={}, rate=50),
    # OAuth client credentials + tenant subdomain; goods outs go to warehouse DC1; webhooks identified by Clarus's headers
    "clarus": dict(
        client_id="hub-demo",
        secret="clarus-demo-key",
        rate=50,
        options={
            "subdomain": "demo",
            "account_id": "1",
            "warehouse_id": "DC1",
            "webhook_domain": "https://demo.claruswms.co.uk",
            "webhook_api_domain": "https://clarus-api.com",
            "webhook_automation_ids": ["41", "42", "43"],
        },
    ),
    "archean": dict(client_id="hub-demo", secret="archean-demo-key", options={"tenant": "demo"}, rate=50),
    "inventory_planner": dict(
        client_id="demo-account", secret="ip-demo-key", options={"account": "demo-account", "currency": "GBP"}, rate=10
    ),
    # WAIR's published role: the replenishment engine the hub feeds (items, stock on hand, sales, allocations)
    "wair_replenishment": dict(client_id="hub", secret="wair-demo-password", options={"tenant": "DEMO"}, rate=10),
}
PLANNERS = ("inventory_planner", "wair_replenishment")  # always enabled in the demo


def master_sku(style: int, size: int) -> str:
    return f"00{style:04d}{size:02d}"  # 8 digits, leading zeros, as the ERP stores them


class Command(BaseCommand):
    help = "Seed demo data into the hub and the sandbox systems."

    def add_arguments(self, parser):
        parser.add_argument("--storefront", default="commercetools", choices=["commercetools", "sfcc"])
        parser.add_argument("--master", default="clarus", choices=["wair", "clarus", "archean"])
        parser.add_argument("--hub-url", default="http://127.0.0.1:8000", help="where the sandboxes send webhooks")
        parser.add_argument("--sandbox-url", default=None)
        parser.add_argument("--reset", action="store_true", help="delete the hub's demo data first")
        parser.add_argument("--no-sandbox", action="store_true", help="seed the hub database only")

    def handle(self, *args, storefront, master, hub_url, sandbox_url, reset, no_sandbox, **opts):
        self.sandbox = (sandbox_url or settings.HUB["SANDBOX_URL"]).rstrip("/")
        rng = random.Random(42)
        if reset:
            self.reset()
        with transaction.atomic():
            self.users()
            conns = self.connections(storefront, master)
            seeded = Item.objects.exists()
            if not seeded:
                self.hub_data(conns[storefront], conns[master], rng)
            else:  # another pair chosen on an existing database: the same channels and locations move over
                Channel.objects.exclude(connection=conns[storefront]).update(connection=conns[storefront])
                Channel.objects.exclude(warehouse=conns[master]).update(warehouse=conns[master])
                Location.objects.exclude(connection=conns[master]).update(connection=conns[master])
        self.stdout.write(
            f"hub: {Item.objects.count()} items, {SkuMapping.objects.count()} mappings, "
            f"{StockLevel.objects.count()} stock rows" + (" (already seeded)" if seeded else "")
        )
        if not no_sandbox:
            self.sandboxes(conns[storefront], conns[master], hub_url)
            self.first_sync(conns[storefront])

    # --- hub ---------------------------------------------------------------------------------------
    def reset(self):
        from integration_hub.orders.models import Order

        Order.objects.all().delete()
        StockLevel.objects.all().delete()
        BundleComponent.objects.all().delete()
        SkuMapping.objects.all().delete()
        IdentifierTransform.objects.all().delete()
        ShippingMethodMap.objects.all().delete()
        Item.objects.all().delete()
        ChannelStockRule.objects.all().delete()
        StockPool.objects.all().delete()
        Channel.objects.all().delete()
        Location.objects.all().delete()

    def users(self):
        for role in ("admin", "ops", "cx", "finance"):
            user, created = User.objects.get_or_create(username=role, defaults={"email": f"{role}@example.com"})
            if created:
                user.set_password(PASSWORD)
            user.is_staff = role == "admin"
            user.save()
            user.groups.add(Group.objects.get(name=role))

    def connections(self, storefront, master):
        out = {}
        for system, cfg in SYSTEMS.items():
            conn, _ = Connection.objects.get_or_create(
                name=system.replace("_", "-"),
                defaults=dict(
                    system_type=system,
                    base_url=f"{self.sandbox}/{system}",
                    auth_url=f"{self.sandbox}/{system}" if cfg.get("auth") else "",
                    client_id=cfg["client_id"],
                    options=cfg["options"],
                    rate_limit_per_second=cfg["rate"],
                    rate_limit_burst=max(1, int(cfg["rate"])),
                    timeout_seconds=10,
                ),
            )
            conn.enabled = system in (storefront, master, *PLANNERS)
            if not conn.secret_encrypted and not conn.secret_env:
                conn.set_secret(cfg["secret"])
            if not conn.webhook_secret_encrypted and not conn.webhook_secret_env:
                conn.set_webhook_secret(
                    secrets.token_urlsafe(32)
                )  # random, one per connection (the sandbox is told it)
            conn.save()
            out[system] = conn
        return out

    def hub_data(self, storefront, master, rng):
        dc1 = Location.objects.create(code="dc-north", name="DC North (UK)", connection=master, external_id="DC1")
        dc2 = Location.objects.create(code="dc-south", name="DC South (UK)", connection=master, external_id="DC2")
        eu1 = Location.objects.create(code="dc-eu", name="DC Rotterdam (EU)", connection=master, external_id="EU1")
        uk = Channel.objects.create(
            key="uk-web", name="UK web store", connection=storefront, external_id="uk-web", warehouse=master
        )
        eu = Channel.objects.create(
            key="eu-web", name="EU web store", connection=storefront, external_id="eu-web", warehouse=master
        )
        pool = StockPool.objects.create(code="uk-pool", name="UK shared pool")
        pool.locations.set([dc1, dc2])
        ChannelStockRule.objects.create(channel=uk, mode=ChannelStockRule.Mode.SHARED, pool=pool, safety_buffer=2)
        eu_rule = ChannelStockRule.objects.create(channel=eu, mode=ChannelStockRule.Mode.SEGREGATED, safety_buffer=1)
        eu_rule.locations.set([eu1])
        IdentifierTransform.objects.create(
            name="as mastered (8 digits, leading zeros)", connection=storefront, pad_to_length=8
        )

        items = []
        for style in range(1, STYLES + 1):
            product, colour = PRODUCTS[style % len(PRODUCTS)], COLOURS[style % len(COLOURS)]
            cost = Decimal(rng.randint(500, 6000)) / 100
            for size in range(1, len(SIZES) + 1):
                items.append(
                    Item(
                        sku=master_sku(style, size),
                        name=f"{product} — {colour} / {SIZES[size - 1]}",
                        parent_sku=f"ST{style:04d}",
                        attributes={"size": SIZES[size - 1], "colour": colour},
                        unit_cost=cost,
                    )
                )
        kit = Item(
            sku="GIFTSET-01",
            name="Winter gift set (beanie, scarf, 2 pairs of socks)",
            is_bundle=True,
            unit_cost=Decimal("31.50"),
        )
        Item.objects.bulk_create(items + [kit], batch_size=1000)
        items = list(Item.objects.filter(is_bundle=False).order_by("sku"))
        kit = Item.objects.get(sku="GIFTSET-01")
        BundleComponent.objects.bulk_create(
            [
                BundleComponent(bundle=kit, component=items[7], quantity=1),
                BundleComponent(bundle=kit, component=items[12], quantity=1),
                BundleComponent(bundle=kit, component=items[21], quantity=2),
            ]
        )
        mismatched = {it.pk for it in rng.sample(items, MISMATCHED)}
        SkuMapping.objects.bulk_create(
            [SkuMapping(item=it, channel=None, storefront_sku=it.sku) for it in items if it.pk not in mismatched]
            + [SkuMapping(item=kit, channel=None, storefront_sku=kit.sku)],
            batch_size=1000,
        )
        levels = []
        for it in items:
            for loc, base in ((dc1, 30), (dc2, 15), (eu1, 10)):
                levels.append(StockLevel(item=it, location=loc, state="available", quantity=rng.randint(0, base)))
                if rng.random() < 0.1:
                    levels.append(
                        StockLevel(
                            item=it,
                            location=loc,
                            state=rng.choice(["inspection", "damaged", "in_transit"]),
                            quantity=rng.randint(1, 5),
                        )
                    )
        StockLevel.objects.bulk_create(levels, batch_size=2000)
        ShippingMethodMap.objects.bulk_create(
            [
                ShippingMethodMap(storefront_method="standard", warehouse_method="STD", carrier="Royal Mail"),
                ShippingMethodMap(storefront_method="express", warehouse_method="EXP24", carrier="DPD"),
                ShippingMethodMap(storefront_method="next-day", warehouse_method="ND", carrier="DHL"),
            ]
        )

    # --- sandboxes ---------------------------------------------------------------------------------
    def control(self, prefix, action, payload):
        try:
            resp = requests.post(f"{self.sandbox}/_sandbox/{prefix}/{action}", json=payload, timeout=120)
        except requests.RequestException as exc:
            raise CommandError(f"sandbox not reachable at {self.sandbox}: {exc}") from exc
        if resp.status_code >= 400:
            raise CommandError(f"sandbox {prefix}/{action} failed ({resp.status_code}): {resp.text[:300]}")
        return resp.json()

    def sandboxes(self, storefront, master, hub_url):
        hub_url = hub_url.rstrip("/")
        sf, ms = storefront.system_type, master.system_type
        locations = list(Location.objects.filter(connection=master))
        self.control(ms, "seed_locations", {"locations": [{"id": l.external_id, "name": l.name} for l in locations]})
        rows = [
            {"sku": sku, "location": loc, "state": state, "quantity": qty}
            for sku, loc, state, qty in StockLevel.objects.filter(location__connection=master)
            .values_list("item__sku", "location__external_id", "state", "quantity")
            .iterator(chunk_size=5000)
        ]
        self.control(ms, "seed_stock", {"rows": rows})
        self.control(
            ms,
            "configure_webhooks",
            {
                "stock_url": f"{hub_url}/hooks/stock/{master.name}/",
                "dispatch_url": f"{hub_url}/hooks/dispatch/{master.name}/",
                "secret": master.get_webhook_secret(),
            },
        )
        storefront_skus = list(SkuMapping.objects.values_list("storefront_sku", flat=True))
        mapped = set(SkuMapping.objects.values_list("item_id", flat=True))
        storefront_skus += [s.lstrip("0") for s in Item.objects.exclude(pk__in=mapped).values_list("sku", flat=True)]
        storefront_skus += [f"DISC-{i:03d}" for i in range(1, UNKNOWN + 1)]
        products: dict[str, list[str]] = {}
        for sku in storefront_skus:
            products.setdefault(f"P-{sku.lstrip('0')[:-2] or sku}", []).append(sku)
        channels = list(Channel.objects.filter(connection=storefront).values_list("external_id", flat=True))
        self.control(
            sf,
            "seed_catalog",
            {
                "channels": channels,
                "skus": storefront_skus,
                "quantity": 0,
                "products": [{"key": k, "skus": v} for k, v in products.items()],
            },
        )
        self.control(
            sf,
            "configure_webhooks",
            {"order_url": f"{hub_url}/hooks/orders/{storefront.name}/", "secret": storefront.get_webhook_secret()},
        )
        self.stdout.write(
            f"sandbox: {len(rows)} stock rows in {ms}, {len(storefront_skus)} SKUs × {len(channels)} channels in {sf}"
        )

    def first_sync(self, storefront):
        """Queue a full push (outbox rows; the worker drains them) and audit the catalogue once."""
        try:
            from integration_hub.inventory import outbox
            from integration_hub.inventory.models import PendingPush
        except ImportError:
            return
        item_ids = list(Item.objects.values_list("pk", flat=True))
        with transaction.atomic():
            queued = outbox.enqueue(item_ids, priority=PendingPush.Priority.SWEEP, reason="initial full sync")
        self.stdout.write(f"queued {queued} stock pushes for the first sync")
        try:
            from integration_hub.catalog import audit as catalogue_audit
        except ImportError:
            return
        for channel in Channel.objects.filter(connection=storefront):
            result = catalogue_audit.audit_channel(channel) if hasattr(catalogue_audit, "audit_channel") else None
            if result is not None:
                self.stdout.write(
                    f"catalogue audit {channel.key}: {getattr(result, 'storefront_skus', 0)} storefront SKUs, "
                    f"{getattr(result, 'mapped', 0)} mapped, {getattr(result, 'mismatches', 0)} mismatches, "
                    f"{getattr(result, 'unknown', 0)} unknown"
                )
