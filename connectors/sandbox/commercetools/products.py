"""Product projections (``/product-projections``, current or staged) and the Products API updates the hub sends
(``setAttribute``, ``changeName``), plus ``set_variant`` (a merchant's change in the Merchant Center).
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
import uuid

from ..server import Response, route
from .base import P, ct_error


class ProductRoutes:
    """Mixed into :class:`connectors.sandbox.commercetools.emulator.CommercetoolsEmulator` (its lock, state and helpers)."""

    def reset_products(self) -> None:
        """(lock held, from :meth:`CommercetoolsEmulator.reset`)"""
        self.products: dict[str, dict] = {}  # the current projection of each product (staged = current …)
        self.staged_products: dict[str, dict] = {}  # … unless it has staged changes: the staged projection here
        self.product_by_key: dict[str, str] = {}
        self.sku_prices: dict[str, int] = {}
        self.sku_product: dict[str, tuple[str, int]] = {}  # sku → (product id, variant id)
        self.products_by_sku: dict[str, list[str]] = {}  # sku → ids of the products with a variant of it
        self.product_ids_sorted: list[str] | None = None  # product ids in id order (built when a query needs it)

    @staticmethod
    def _price_for(sku: str) -> int:
        return 1500 + int(hashlib.sha1(sku.encode()).hexdigest()[:4], 16) % 8500  # 15.00 … 99.99

    def _new_product(
        self, key: str, skus: list[str], name: str | None = None, currency: str = "GBP", published: bool = True
    ) -> dict:
        ts = self._tick()
        pid = str(uuid.uuid4())
        variants = []
        for i, sku in enumerate(skus, start=1):
            cents = self.sku_prices.setdefault(sku, self._price_for(sku))
            variants.append(
                {
                    "id": i,
                    "sku": sku,
                    "key": sku,
                    "prices": [
                        {
                            "id": str(uuid.uuid4()),
                            "value": {
                                "type": "centPrecision",
                                "currencyCode": currency,
                                "centAmount": cents,
                                "fractionDigits": 2,
                            },
                        }
                    ],
                    "attributes": [],
                    "images": [],
                }
            )
            self.sku_product[sku] = (pid, i)
            self.products_by_sku.setdefault(sku, []).append(pid)
        product = {
            "id": pid,
            "version": 1,
            "key": key,
            "productType": {"typeId": "product-type", "id": "apparel"},
            "name": {"en": name or key},
            "slug": {"en": key.lower()},
            "categories": [],
            "masterVariant": variants[0] if variants else {"id": 1, "attributes": [], "prices": [], "images": []},
            "variants": variants[1:],
            "published": bool(published),
            "hasStagedChanges": False,
            "createdAt": ts,
            "lastModifiedAt": ts,
        }
        self.products[pid] = product
        self.product_by_key[key] = pid
        self.product_ids_sorted = None
        return product

    @route("GET", P + r"/product-projections")
    def product_projections(self, req):
        self._auth(req)
        staged = req.q("staged", "false").lower() == "true"  # current projections exist for published products only

        def view(p):
            return self.staged_products.get(p["id"], p) if staged else p

        def by_ids(ids):
            return [
                view(self.products[i]) for i in ids if i in self.products and (staged or self.products[i]["published"])
            ]

        def by_skus(skus):
            return by_ids(dict.fromkeys(pid for sku in skus for pid in self.products_by_sku.get(sku, ())))

        def from_id(
            lower,
        ):  # ids ascending from ``lower``: paging by id (``id > last``, ``sort=id asc``) reads one page
            if self.product_ids_sorted is None:
                self.product_ids_sorted = sorted(self.products)
            ids = self.product_ids_sorted
            for i in range(bisect.bisect_left(ids, lower) if isinstance(lower, str) else 0, len(ids)):
                p = self.products[ids[i]]
                if staged or p["published"]:
                    yield view(p)

        return self._query(
            req,
            lambda: [view(p) for p in self.products.values() if staged or p["published"]],
            default_sort=["createdAt asc"],
            index={"id": by_ids, "masterVariant.sku": by_skus, "variants.sku": by_skus},
            ordered={"id": from_id},
        )

    # Products API update (docs.commercetools.com/api/projects/products#update-product): ``POST /products/{id}`` with
    # ``{version, actions}``; the actions the hub sends are emulated — ``setAttribute`` (``sku`` or ``variantId``,
    # ``name``, ``value``: absent/null removes it) and ``changeName`` (a LocalizedString), each with ``staged``
    # (default true: only the staged projection changes and ``hasStagedChanges`` turns true; false: current and
    # staged). Any other action is refused (InvalidOperation), as are malformed ones (InvalidInput), a stale
    # version is 409 ConcurrentModification; nothing of a refused request is applied.
    PRODUCT_ACTIONS = ("setAttribute", "changeName")

    def _product_variant(self, product: dict, a: dict) -> dict:
        variants = [product["masterVariant"]] + list(product["variants"])
        if a.get("sku") is not None:
            found = next((v for v in variants if v.get("sku") == a["sku"]), None)
            what = f"sku '{a['sku']}'"
        elif isinstance(a.get("variantId"), int):
            found = next((v for v in variants if v.get("id") == a["variantId"]), None)
            what = f"variantId '{a['variantId']}'"
        else:
            raise ct_error(400, "InvalidInput", "Either variantId or sku is required to reference a ProductVariant.")
        if found is None:
            raise ct_error(400, "InvalidOperation", f"The product does not have a variant with {what}.")
        return found

    def _apply_product_action(self, product: dict, a: dict) -> None:
        kind = a["action"]
        if kind == "setAttribute":
            if not isinstance(a.get("name"), str) or not a["name"]:
                raise ct_error(
                    400, "InvalidInput", "Request body does not contain valid JSON: setAttribute.name is required."
                )
            v = self._product_variant(product, a)
            attrs = [x for x in v.get("attributes") or [] if x.get("name") != a["name"]]
            if a.get("value") is not None:
                attrs.append({"name": a["name"], "value": copy.deepcopy(a["value"])})
            v["attributes"] = sorted(attrs, key=lambda x: x["name"])
        elif kind == "changeName":
            name = a.get("name")
            if (
                not isinstance(name, dict)
                or not name
                or not all(isinstance(k, str) and isinstance(val, str) for k, val in name.items())
            ):
                raise ct_error(
                    400,
                    "InvalidInput",
                    "Request body does not contain valid JSON: changeName.name must be a LocalizedString.",
                )
            product["name"] = dict(name)
        else:
            raise ct_error(400, "InvalidOperation", f"Unknown or unsupported update action '{kind}' for products.")

    @route("POST", P + r"/products/(?P<id>[^/=]+)")
    def product_update(self, req):
        self._auth(req)
        data = self._body(req)
        actions = self._actions(data)
        with self.lock:
            product = self.products.get(req.params["id"])
            if product is None:
                raise ct_error(404, "ResourceNotFound", f"The Resource with ID '{req.params['id']}' was not found.")
            self._check_version(product, data, "product")
            current = copy.deepcopy(product)
            staged = copy.deepcopy(self.staged_products.get(product["id"], product))
            for a in actions:
                if a["action"] not in self.PRODUCT_ACTIONS:
                    raise ct_error(
                        400, "InvalidOperation", f"Unknown or unsupported update action '{a['action']}' for products."
                    )
                if "staged" in a and not isinstance(a["staged"], bool):
                    raise ct_error(
                        400,
                        "InvalidInput",
                        f"Request body does not contain valid JSON: {a['action']}.staged must be a boolean.",
                    )
                self._apply_product_action(staged, a)
                if a.get("staged", True) is False:
                    self._apply_product_action(current, a)
            ts = self._tick()
            for p in (current, staged):
                p["version"] = product["version"] + 1
                p["lastModifiedAt"] = ts
            has_staged = json.dumps(
                {k: staged[k] for k in ("name", "masterVariant", "variants")}, sort_keys=True
            ) != json.dumps({k: current[k] for k in ("name", "masterVariant", "variants")}, sort_keys=True)
            current["hasStagedChanges"] = staged["hasStagedChanges"] = has_staged
            product.clear()
            product.update(current)
            if has_staged:
                self.staged_products[product["id"]] = staged
            else:
                self.staged_products.pop(product["id"], None)
            return Response(200, self._product_resource(current, staged))

    @staticmethod
    def _product_resource(current: dict, staged: dict) -> dict:
        """The Product the Products API answers: ``masterData {current, staged, published, hasStagedChanges}``."""

        def data(p):
            return {
                "name": copy.deepcopy(p["name"]),
                "categories": copy.deepcopy(p.get("categories") or []),
                "slug": copy.deepcopy(p.get("slug") or {}),
                "masterVariant": copy.deepcopy(p["masterVariant"]),
                "variants": copy.deepcopy(p["variants"]),
                "searchKeywords": {},
            }

        return {
            "id": current["id"],
            "version": current["version"],
            "key": current.get("key"),
            "productType": copy.deepcopy(current["productType"]),
            "createdAt": current["createdAt"],
            "lastModifiedAt": current["lastModifiedAt"],
            "masterData": {
                "current": data(current),
                "staged": data(staged),
                "published": bool(current["published"]),
                "hasStagedChanges": bool(staged["hasStagedChanges"]),
            },
        }

    @route("GET", P + r"/product-projections/(?P<id>[^/=]+)")
    def product_projection_get(self, req):
        self._auth(req)
        with self.lock:
            p = self.products.get(req.params["id"])
            if not p:
                raise ct_error(404, "ResourceNotFound", f"The Resource with ID '{req.params['id']}' was not found.")
            return Response(200, copy.deepcopy(p))

    def control_set_variant(self, payload: dict) -> dict:
        """Set a variant's attributes (``{"sku", "attributes": {name: value}}``) and/or publish or unpublish its
        product (``"published"``) as a merchant would in the Merchant Center (issue 17 tests)."""
        with self.lock:
            pid, vid = self.sku_product[payload["sku"]]
            product = self.products[pid]
            for v in [product["masterVariant"]] + product["variants"]:
                if v["id"] == vid and "attributes" in payload:
                    v["attributes"] = [{"name": k, "value": val} for k, val in sorted(payload["attributes"].items())]
            if "published" in payload:
                product["published"] = bool(payload["published"])
            product["version"] += 1
            self.staged_products.pop(pid, None)  # edited and published: staged = current
            return {"product": pid, "version": product["version"]}
