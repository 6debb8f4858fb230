"""Orders (``/orders``: shipment / order state, deliveries and parcels, returns, ``expand``), shipping methods and
discount codes, and the storefront-side controls (``create_orders``, ``store_fulfil``, ``add_return``, ``return_state``).
"""

from __future__ import annotations

import copy
import time
import uuid

from ..server import Request, Response, route
from .base import P, ct_error, now_iso, parse_dt

SHIPMENT_STATES = {"Shipped", "Delivered", "Ready", "Pending", "Delayed", "Partial", "Backorder", "Canceled"}
ORDER_STATES = {"Open", "Confirmed", "Complete", "Cancelled"}
RETURN_SHIPMENT_STATES = {"Advised", "Returned", "BackInStock", "Unusable"}
RETURN_PAYMENT_STATES = {"NonRefundable", "Initial", "Refunded", "NotRefunded"}


class OrderRoutes:
    """Mixed into :class:`connectors.sandbox.commercetools.emulator.CommercetoolsEmulator` (its lock, state and helpers)."""

    def reset_orders(self) -> None:
        """(lock held, from :meth:`CommercetoolsEmulator.reset`)"""
        self.shipping_methods: dict[str, dict] = {}
        self.shipping_method_by_key: dict[str, str] = {}
        self.discount_codes: dict[str, dict] = {}  # code → DiscountCode
        self.orders: dict[str, dict] = {}
        self.order_by_number: dict[str, str] = {}
        self.order_seq = 100000
        self.message_seq: dict[str, int] = {}

    def _shipping_method(self, key: str) -> dict:
        sid = self.shipping_method_by_key.get(key)
        if sid:
            return self.shipping_methods[sid]
        ts = self._tick()
        sm = {
            "id": str(uuid.uuid4()),
            "version": 1,
            "key": key,
            "name": key.replace("-", " ").title(),
            "localizedName": {"en": key.replace("-", " ").title()},
            "isDefault": False,
            "zoneRates": [],
            "createdAt": ts,
            "lastModifiedAt": ts,
        }
        self.shipping_methods[sm["id"]] = sm
        self.shipping_method_by_key[key] = sm["id"]
        return sm

    def _discount_code(self, code: str) -> dict:
        dc = self.discount_codes.get(code)
        if dc is None:
            ts = self._tick()
            dc = {
                "id": str(uuid.uuid4()),
                "version": 1,
                "code": code,
                "isActive": True,
                "cartDiscounts": [],
                "groups": [],
                "references": [],
                "createdAt": ts,
                "lastModifiedAt": ts,
            }
            self.discount_codes[code] = dc
        return dc

    @route("GET", P + r"/shipping-methods")
    def shipping_methods_query(self, req):
        self._auth(req)
        return self._query(req, lambda: self.shipping_methods.values(), default_sort=["createdAt asc"])

    @route("GET", P + r"/discount-codes")
    def discount_codes_query(self, req):
        self._auth(req)
        return self._query(req, lambda: self.discount_codes.values(), default_sort=["createdAt asc"])

    def _expand(self, order: dict, req: Request) -> dict:
        expand = set(req.query.get("expand", []))
        if "discountCodes[*].discountCode" in expand:
            by_id = {d["id"]: d for d in self.discount_codes.values()}
            for dc in order.get("discountCodes", []):
                ref = dc.get("discountCode") or {}
                if ref.get("id") in by_id:
                    ref["obj"] = copy.deepcopy(by_id[ref["id"]])
        if "shippingInfo.shippingMethod" in expand:
            ref = (order.get("shippingInfo") or {}).get("shippingMethod")
            if ref and ref.get("id") in self.shipping_methods:
                ref["obj"] = copy.deepcopy(self.shipping_methods[ref["id"]])
        if "shipping[*].shippingInfo.shippingMethod" in expand:
            for sh in order.get("shipping") or []:
                ref = (sh.get("shippingInfo") or {}).get("shippingMethod")
                if ref and ref.get("id") in self.shipping_methods:
                    ref["obj"] = copy.deepcopy(self.shipping_methods[ref["id"]])
        if "lineItems[*].supplyChannel" in expand:
            for li in order.get("lineItems", []):
                ref = li.get("supplyChannel")
                if ref and ref.get("id") in self.channels:
                    ref["obj"] = copy.deepcopy(self.channels[ref["id"]])
        return order

    @staticmethod
    def _address(a: dict | None, email: str = "") -> dict | None:
        if not a:
            return None
        if not isinstance(a, dict):
            raise ct_error(400, "InvalidJsonInput", "address must be an object")
        out = {
            "firstName": a.get("firstName", a.get("first_name", "")),
            "lastName": a.get("lastName", a.get("last_name", "")),
            "company": a.get("company", ""),
            "streetName": a.get("streetName", a.get("street", "")),
            "streetNumber": a.get("streetNumber", ""),
            "additionalStreetInfo": a.get("additionalStreetInfo", a.get("street2", "")),
            "postalCode": a.get("postalCode", a.get("postal_code", "")),
            "city": a.get("city", ""),
            "region": a.get("region", ""),
            "country": a.get("country", "GB"),
            "phone": a.get("phone", ""),
            "email": a.get("email", email),
        }
        return {k: v for k, v in out.items() if v not in ("", None)}

    def _build_order(self, spec: dict) -> dict:
        channel_key = spec.get("channel")
        channel_id = None
        if channel_key:
            channel_id = self.channel_by_key.get(channel_key) or self._new_channel(channel_key)["id"]
        lines = spec.get("lines") or []
        if not lines:
            raise ct_error(400, "InvalidInput", "an order needs at least one line")
        currency = spec.get("currency", "GBP")
        ts = spec.get("created_at") or self._tick()
        if spec.get("created_at"):
            dt = parse_dt(spec["created_at"])
            if dt is None:
                raise ct_error(400, "InvalidInput", f"created_at is not an ISO datetime: {spec['created_at']!r}")
            ts = now_iso(dt)
        if spec.get("order_number"):
            number = str(spec["order_number"])
        else:
            self.order_seq += 1
            number = f"CT{self.order_seq}"
        if number in self.order_by_number:
            raise ct_error(
                400,
                "DuplicateField",
                f"A duplicate value '\"{number}\"' exists for field 'orderNumber'.",
                field="orderNumber",
                duplicateValue=number,
            )
        money = lambda cents: {  # noqa: E731
            "type": "centPrecision",
            "currencyCode": currency,
            "centAmount": int(cents),
            "fractionDigits": 2,
        }  # noqa: E731
        line_items, total = [], 0
        for ln in lines:
            sku, qty = ln.get("sku"), ln.get("quantity", 1)
            if not sku or not isinstance(qty, int) or qty < 1:
                raise ct_error(400, "InvalidInput", f"bad order line {ln!r}")
            cents = int(ln.get("price", self.sku_prices.get(sku) or self._price_for(sku)))
            pid, vid = self.sku_product.get(sku, (None, 1))
            pname = self.products[pid]["name"]["en"] if pid else sku
            li = {
                "id": str(uuid.uuid4()),
                "productId": pid or str(uuid.uuid5(uuid.NAMESPACE_URL, "ct-product/" + sku)),
                "productKey": self.products[pid]["key"] if pid else None,
                "name": {"en": ln.get("name") or pname},
                "productType": {"typeId": "product-type", "id": "apparel"},
                "variant": {"id": vid, "sku": sku, "prices": [], "attributes": [], "images": []},
                "price": {"id": str(uuid.uuid4()), "value": money(cents)},
                "quantity": qty,
                "totalPrice": money(cents * qty),
                "discountedPricePerQuantity": [],
                "taxedPricePortions": [],
                "state": [{"quantity": qty, "state": {"typeId": "state", "id": "initial"}}],
                "priceMode": "Platform",
                "lineItemMode": "Standard",
                "inventoryMode": "TrackOnly",
            }
            if li["productKey"] is None:
                del li["productKey"]
            if channel_id:
                li["supplyChannel"] = {"typeId": "channel", "id": channel_id}
                li["distributionChannel"] = {"typeId": "channel", "id": channel_id}
            if ln.get("custom_fields"):
                li["custom"] = {
                    "type": {"typeId": "type", "id": "line-item-fields"},
                    "fields": dict(ln["custom_fields"]),
                }
            line_items.append(li)
            total += cents * qty
        shipping_cents = int(spec.get("shipping_price", 395))
        total += shipping_cents
        sm_key = spec.get("shipping_method") or "standard"
        sm = self._shipping_method(sm_key)
        email = spec.get("email") or f"customer{self.order_seq}@example.com"
        address = self._address(spec.get("address"), email) or {
            "firstName": "Alex",
            "lastName": "Morgan",
            "streetName": "High Street",
            "streetNumber": "12",
            "postalCode": "SW1A 1AA",
            "city": "London",
            "country": "GB",
            "email": email,
        }
        fields = dict(spec.get("custom_fields") or {})
        if spec.get("gift_message"):
            fields["giftMessage"] = spec["gift_message"]
        if spec.get("delivery_notes"):
            fields["deliveryNotes"] = spec["delivery_notes"]
        order = {
            "id": spec.get("id") or str(uuid.uuid4()),
            "version": 1,
            "orderNumber": number,
            "customerEmail": email,
            "createdAt": ts,
            "lastModifiedAt": ts,
            "completedAt": None,
            "origin": "Customer",
            "lineItems": line_items,
            "customLineItems": [],
            "totalPrice": money(total),
            "taxedPrice": {"totalNet": money(round(total / 1.2)), "totalGross": money(total), "taxPortions": []},
            "shippingAddress": address,
            "billingAddress": self._address(spec.get("billing_address"), email) or copy.deepcopy(address),
            "shippingMode": "Single",
            "shippingInfo": {
                "shippingMethodName": sm["name"],
                "price": money(shipping_cents),
                "shippingRate": {"price": money(shipping_cents), "tiers": []},
                "shippingMethod": {"typeId": "shipping-method", "id": sm["id"]},
                "shippingMethodState": "MatchesCart",
                "deliveries": [],
            },
            "discountCodes": [
                {
                    "discountCode": {"typeId": "discount-code", "id": self._discount_code(c)["id"]},
                    "state": "MatchesCart",
                }
                for c in spec.get("discount_codes") or []
            ],
            "orderState": "Open",
            "shipmentState": "Pending",
            "paymentState": "Paid",
            "inventoryMode": "TrackOnly",
            "taxMode": "Platform",
            "taxRoundingMode": "HalfEven",
            "refusedGifts": [],
            "syncInfo": [],
            "returnInfo": [],
            "itemShippingAddresses": [],
        }
        del order["completedAt"]
        if spec.get("shipping_mode") == "Multiple":
            # ShippingMode Multiple: no top-level shippingInfo; each Shipping {shippingKey, shippingInfo,
            # shippingAddress} holds its own deliveries, and line items say where they go (shippingDetails)
            key = spec.get("shipping_key") or sm_key
            order["shippingMode"] = "Multiple"
            order["shipping"] = [
                {
                    "shippingKey": key,
                    "shippingInfo": order.pop("shippingInfo"),
                    "shippingAddress": copy.deepcopy(address),
                }
            ]
            for li in line_items:
                li["shippingDetails"] = {
                    "targets": [{"addressKey": key, "quantity": li["quantity"], "shippingMethodKey": key}],
                    "valid": True,
                }
        if channel_key:
            order["store"] = {"typeId": "store", "key": channel_key}
        if fields:
            order["custom"] = {
                "type": {"typeId": "type", "id": "order-fields", "key": "order-fields"},
                "fields": fields,
            }
        if order["id"] in self.orders:
            raise ct_error(
                400, "DuplicateField", f"order id {order['id']} exists", field="id", duplicateValue=order["id"]
            )
        return order

    def _track_inventory(self, order: dict) -> None:
        """inventoryMode TrackOnly: ordered quantities leave the supply channel's entry (may go negative).
        With ``decrement_delay`` > 0 the decrement is queued and lands that many seconds later (ct since
        2026-01-19: order-driven inventory updates are eventually consistent, up to ~10 s); until then the
        entry still shows the old figure and its version does not move."""
        for li in order["lineItems"]:
            ch = (li.get("supplyChannel") or {}).get("id")
            eid = self.inventory_index.get((li["variant"]["sku"], ch))
            if eid and self.decrement_delay > 0:
                self.pending_decrements.append(
                    {
                        "due": time.monotonic() + self.decrement_delay,
                        "entry": eid,
                        "quantity": li["quantity"],
                        "order": order["id"],
                    }
                )
            elif eid:
                entry = self.inventory[eid]
                self._set_entry_quantity(entry, entry["quantityOnStock"] - li["quantity"])
            else:
                li["inventoryMode"] = "None"

    def _order(self, req) -> dict:
        if req.params.get("number") is not None:
            oid = self.order_by_number.get(req.params["number"])
            label = f"orderNumber '{req.params['number']}'"
        else:
            oid, label = req.params["id"], f"ID '{req.params['id']}'"
        order = self.orders.get(oid or "")
        if not order:
            raise ct_error(404, "ResourceNotFound", f"The Resource with {label} was not found.")
        return order

    @route("GET", P + r"/orders")
    def orders_query(self, req):
        self._auth(req)
        return self._query(
            req,
            lambda: self.orders.values(),
            default_sort=["createdAt asc"],
            transform=self._expand,
            index={
                "id": lambda ids: [self.orders[i] for i in ids if i in self.orders],
                "orderNumber": lambda ns: [
                    self.orders[self.order_by_number[n]] for n in ns if n in self.order_by_number
                ],
            },
        )

    @route("GET", P + r"/orders/(?P<id>[^/=]+)")
    @route("GET", P + r"/orders/order-number=(?P<number>[^/]+)")
    def order_get(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, self._expand(copy.deepcopy(self._order(req)), req))

    @route("POST", P + r"/orders/(?P<id>[^/=]+)")
    @route("POST", P + r"/orders/order-number=(?P<number>[^/]+)")
    def order_update(self, req):
        self._auth(req)
        data = self._body(req)
        actions = self._actions(data)
        with self.lock:
            order = self._order(req)
            self._check_version(order, data, "order")
            new = copy.deepcopy(order)
            line_ids = {li["id"]: li["quantity"] for li in new["lineItems"]}
            set_return_info = False
            for a in actions:
                kind = a["action"]
                if kind == "changeShipmentState":
                    state = a.get("shipmentState")
                    if state not in SHIPMENT_STATES:
                        raise ct_error(400, "InvalidInput", f"Invalid shipmentState {state!r}")
                    new["shipmentState"] = state
                elif kind == "changeOrderState":
                    state = a.get("orderState")
                    if state not in ORDER_STATES:
                        raise ct_error(400, "InvalidInput", f"Invalid orderState {state!r}")
                    new["orderState"] = state
                    if state == "Complete":
                        new["completedAt"] = self._tick()
                elif kind == "changePaymentState":
                    new["paymentState"] = a.get("paymentState")
                elif kind == "addDelivery":
                    if a.get("deliveryKey") and any(
                        d.get("key") == a["deliveryKey"] for d in self._all_deliveries(new)
                    ):
                        raise ct_error(
                            400,
                            "DuplicateField",
                            f"A duplicate value '\"{a['deliveryKey']}\"' exists for field 'key'.",
                            field="key",
                            duplicateValue=a["deliveryKey"],
                        )
                    self._deliveries_for(new, a.get("shippingKey")).append(self._delivery(a, line_ids))
                elif kind == "addParcelToDelivery":
                    delivery = next(
                        (
                            d
                            for d in self._all_deliveries(new)
                            if d["id"] == a.get("deliveryId")
                            or (a.get("deliveryKey") and d.get("key") == a.get("deliveryKey"))
                        ),
                        None,
                    )
                    if delivery is None:
                        raise ct_error(
                            400,
                            "InvalidOperation",
                            f"No delivery {a.get('deliveryId') or a.get('deliveryKey')!r} on this order.",
                        )
                    delivery["parcels"].append(self._parcel(a, line_ids))
                elif kind == "addReturnInfo":
                    new.setdefault("returnInfo", []).append(self._return_info(new, a))
                elif kind == "setReturnInfo":  # replaces every ReturnInfo (ReturnInfoDrafts in items)
                    drafts = a.get("items") or []
                    new["returnInfo"] = []
                    for draft in drafts:
                        new["returnInfo"].append(self._return_info(new, draft if isinstance(draft, dict) else {}))
                    set_return_info = True
                elif kind in ("setReturnShipmentState", "setReturnPaymentState"):
                    item = self._return_item(new, a)
                    field, allowed = (
                        ("shipmentState", RETURN_SHIPMENT_STATES)
                        if kind == "setReturnShipmentState"
                        else ("paymentState", RETURN_PAYMENT_STATES)
                    )
                    if a.get(field) not in allowed:
                        raise ct_error(400, "InvalidInput", f"Invalid {field} {a.get(field)!r}")
                    item[field] = a[field]
                    item["lastModifiedAt"] = self._tick()
                elif kind == "setCustomField":
                    custom = new.setdefault("custom", {"type": {"typeId": "type", "id": "order-fields"}, "fields": {}})
                    if a.get("value") is None:
                        custom["fields"].pop(a.get("name"), None)
                    else:
                        custom["fields"][a.get("name")] = a["value"]
                else:
                    raise ct_error(
                        400, "InvalidOperation", f"Unknown or unsupported update action '{kind}' for orders."
                    )
            new["version"] = order["version"] + 1
            new["lastModifiedAt"] = self._tick()
            old_state = order.get("orderState")
            before_returns = {
                it["id"]: it.get("shipmentState")
                for info in order.get("returnInfo") or []
                for it in info.get("items") or []
            }
            order.clear()
            order.update(new)
            self._emit_update_messages(
                order, req.params.get("project") or "demo", old_state, before_returns, set_return_info
            )
            return Response(200, self._expand(copy.deepcopy(order), req))

    def _items(self, items, line_ids: dict) -> list[dict]:
        out = []
        for it in items or []:
            if not isinstance(it, dict) or it.get("id") not in line_ids:
                raise ct_error(
                    400, "InvalidOperation", f"Delivery item {it!r} does not reference a line item of this order."
                )
            q = it.get("quantity")
            if not isinstance(q, int) or q < 1 or q > line_ids[it["id"]]:
                raise ct_error(
                    400, "InvalidOperation", f"Delivery item quantity {q!r} is not between 1 and the ordered quantity."
                )
            out.append({"id": it["id"], "quantity": q})
        return out

    def _parcel(self, p: dict, line_ids: dict) -> dict:
        parcel = {"id": str(uuid.uuid4()), "createdAt": self._tick(), "items": self._items(p.get("items"), line_ids)}
        td = p.get("trackingData")
        if td is not None:
            if not isinstance(td, dict):
                raise ct_error(400, "InvalidJsonInput", "trackingData must be an object")
            parcel["trackingData"] = {
                k: td[k] for k in ("trackingId", "carrier", "provider", "providerTransaction", "isReturn") if k in td
            }
        if p.get("key"):
            parcel["key"] = p["key"]
        if p.get("measurements"):
            parcel["measurements"] = p["measurements"]
        return parcel

    @staticmethod
    def _all_deliveries(order: dict) -> list[dict]:
        if order.get("shippingMode") == "Multiple":
            return [
                d for sh in order.get("shipping") or [] for d in (sh.get("shippingInfo") or {}).get("deliveries") or []
            ]
        return list((order.get("shippingInfo") or {}).get("deliveries") or [])

    @staticmethod
    def _deliveries_for(order: dict, shipping_key) -> list:
        """The deliveries list an ``addDelivery`` appends to: Single mode refuses a ``shippingKey``; Multiple mode
        needs one naming a Shipping of the order."""
        if order.get("shippingMode") != "Multiple":
            if shipping_key is not None:
                raise ct_error(
                    400, "InvalidOperation", "shippingKey can only be set on Orders with ShippingMode 'Multiple'."
                )
            return order["shippingInfo"]["deliveries"]
        if not shipping_key:
            raise ct_error(400, "InvalidOperation", "shippingKey is required for Orders with ShippingMode 'Multiple'.")
        for sh in order.get("shipping") or []:
            if sh.get("shippingKey") == shipping_key:
                return sh["shippingInfo"].setdefault("deliveries", [])
        raise ct_error(400, "InvalidOperation", f"The order has no Shipping with shippingKey '{shipping_key}'.")

    def _delivery(self, a: dict, line_ids: dict) -> dict:
        d = {
            "id": str(uuid.uuid4()),
            "createdAt": self._tick(),
            "items": self._items(a.get("items"), line_ids),
            "parcels": [self._parcel(p, line_ids) for p in a.get("parcels") or []],
        }
        if a.get("deliveryKey"):
            d["key"] = a["deliveryKey"]
        if a.get("address"):
            d["address"] = a["address"]
        return d

    def _return_info(self, order: dict, a: dict) -> dict:
        """``addReturnInfo``: ReturnItemDrafts {quantity, lineItemId | customLineItemId, shipmentState, comment,
        key} → a ReturnInfo with LineItemReturnItems (paymentState Initial). A line item cannot have more units
        returned than were ordered."""
        drafts = a.get("items")
        if not isinstance(drafts, list) or not drafts:
            raise ct_error(400, "InvalidInput", "addReturnInfo needs at least one return item")
        ordered = {li["id"]: li["quantity"] for li in order["lineItems"]}
        returned: dict[str, int] = {}
        for info in order.get("returnInfo") or []:
            for it in info.get("items") or []:
                if it.get("lineItemId"):
                    returned[it["lineItemId"]] = returned.get(it["lineItemId"], 0) + int(it.get("quantity") or 0)
        items = []
        for d in drafts:
            if not isinstance(d, dict):
                raise ct_error(400, "InvalidJsonInput", "a return item draft must be an object")
            line, qty, state = d.get("lineItemId"), d.get("quantity"), d.get("shipmentState")
            if line not in ordered:
                raise ct_error(
                    400, "InvalidOperation", f"Return item draft {d!r} does not reference a line item of this order."
                )
            if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
                raise ct_error(400, "InvalidInput", f"Return item quantity {qty!r} must be a positive integer.")
            if state not in RETURN_SHIPMENT_STATES:
                raise ct_error(400, "InvalidInput", f"Invalid shipmentState {state!r}")
            returned[line] = returned.get(line, 0) + qty
            if returned[line] > ordered[line]:
                raise ct_error(
                    400,
                    "InvalidOperation",
                    f"Line item {line} has {ordered[line]} units; {returned[line]} would be returned.",
                )
            ts = self._tick()
            item = {
                "type": "LineItemReturnItem",
                "id": str(uuid.uuid4()),
                "quantity": qty,
                "lineItemId": line,
                "shipmentState": state,
                "paymentState": "Initial",
                "createdAt": ts,
                "lastModifiedAt": ts,
            }
            for k in ("key", "comment"):
                if d.get(k):
                    item[k] = d[k]
            items.append(item)
        info = {"items": items}
        if a.get("returnTrackingId"):
            info["returnTrackingId"] = a["returnTrackingId"]
        if a.get("returnDate"):
            if parse_dt(a["returnDate"]) is None:
                raise ct_error(400, "InvalidInput", f"returnDate is not an ISO datetime: {a['returnDate']!r}")
            info["returnDate"] = a["returnDate"]
        return info

    @staticmethod
    def _return_item(order: dict, a: dict) -> dict:
        for info in order.get("returnInfo") or []:
            for it in info.get("items") or []:
                if (a.get("returnItemId") and it.get("id") == a["returnItemId"]) or (
                    a.get("returnItemKey") and it.get("key") == a["returnItemKey"]
                ):
                    return it
        raise ct_error(
            400,
            "InvalidOperation",
            f"No return item {a.get('returnItemId') or a.get('returnItemKey')!r} on this order.",
        )

    def control_create_orders(self, payload: dict) -> dict:
        specs = payload.get("orders") or []
        project = payload.get("project_key") or (sorted(self.allowed_projects)[0] if self.allowed_projects else "demo")
        with self.lock:
            built = [self._build_order(s) for s in specs]  # validate everything before storing anything
            numbers = [o["orderNumber"] for o in built]
            if len(set(numbers)) != len(numbers):
                raise ct_error(400, "DuplicateField", "duplicate orderNumber in the batch", field="orderNumber")
            messages = []
            for order in built:
                self.orders[order["id"]] = order
                self.order_by_number[order["orderNumber"]] = order["id"]
                if not payload.get("no_inventory_tracking"):
                    self._track_inventory(order)
                messages.append(self._message(order, project))
            self._enqueue(messages)
            return {"ids": [o["id"] for o in built], "order_numbers": numbers}

    def control_store_fulfil(self, payload: dict) -> dict:
        """A storefront-side fulfilment (store staff / Merchant Center adds a delivery): {"order": id or
        orderNumber, "lines": [[sku, qty]] (default: everything), "tracking": "...", "carrier": "..."}."""
        with self.lock:
            ref = str(payload.get("order", ""))
            order = self.orders.get(ref) or self.orders.get(self.order_by_number.get(ref, ""))
            if order is None:
                raise ct_error(404, "ResourceNotFound", f"no order {ref!r}")
            by_sku = {li["variant"]["sku"]: li for li in order["lineItems"]}
            wanted = payload.get("lines") or [[li["variant"]["sku"], li["quantity"]] for li in order["lineItems"]]
            items = []
            for sku, qty in wanted:
                if sku not in by_sku:
                    raise ct_error(400, "InvalidOperation", f"order {ref} has no line for {sku!r}")
                items.append({"id": by_sku[sku]["id"], "quantity": int(qty)})
            parcel = {"items": items}
            if payload.get("tracking"):
                parcel["trackingData"] = {"trackingId": payload["tracking"], "carrier": payload.get("carrier", "")}
            delivery = self._delivery(
                {"items": items, "parcels": [parcel], "deliveryKey": f"store-{uuid.uuid4().hex[:12]}"},
                {li["id"]: li["quantity"] for li in order["lineItems"]},
            )
            key = order["shipping"][0]["shippingKey"] if order.get("shippingMode") == "Multiple" else None
            self._deliveries_for(order, key).append(delivery)
            order["version"] += 1
            order["lastModifiedAt"] = self._tick()
            return {"delivery_id": delivery["id"], "version": order["version"]}

    def _control_order(self, payload: dict) -> dict:
        ref = str(payload.get("order", ""))
        order = self.orders.get(ref) or self.orders.get(self.order_by_number.get(ref, ""))
        if order is None:
            raise ct_error(404, "ResourceNotFound", f"no order {ref!r}")
        return order

    def control_add_return(self, payload: dict) -> dict:
        """A return booked storefront-side (Merchant Center / returns app), as ``addReturnInfo`` would:
        {"order": id or orderNumber, "items": [{"sku" or "line_item_id", "quantity", "state": "Advised"}],
        "tracking": "...", "return_date": ISO}. Bumps version and lastModifiedAt → {"return_item_ids", "version"}."""
        with self.lock:
            order = self._control_order(payload)
            by_sku = {li["variant"]["sku"]: li["id"] for li in order["lineItems"]}
            drafts = []
            for it in payload.get("items") or []:
                line = it.get("line_item_id") or by_sku.get(it.get("sku"))
                if line is None:
                    raise ct_error(
                        400, "InvalidOperation", f"order {payload.get('order')} has no line for {it.get('sku')!r}"
                    )
                drafts.append(
                    {
                        "lineItemId": line,
                        "quantity": it.get("quantity", 1),
                        "shipmentState": it.get("state", "Advised"),
                        **({"comment": it["comment"]} if it.get("comment") else {}),
                    }
                )
            info = self._return_info(
                order,
                {
                    "items": drafts,
                    "returnTrackingId": payload.get("tracking"),
                    "returnDate": payload.get("return_date"),
                },
            )
            order.setdefault("returnInfo", []).append(info)
            order["version"] += 1
            order["lastModifiedAt"] = self._tick()
            self._enqueue(
                [self._message(order, payload.get("project_key") or "demo", "ReturnInfoAdded", returnInfo=info)]
            )
            return {"return_item_ids": [i["id"] for i in info["items"]], "version": order["version"]}

    def control_return_state(self, payload: dict) -> dict:
        """A return item moves on storefront-side (``setReturnShipmentState``): {"order", "return_item_id",
        "state": "Returned" | "BackInStock" | "Unusable" | "Advised"} → {"version"}."""
        with self.lock:
            order = self._control_order(payload)
            item = self._return_item(order, {"returnItemId": payload.get("return_item_id")})
            if payload.get("state") not in RETURN_SHIPMENT_STATES:
                raise ct_error(400, "InvalidInput", f"Invalid shipmentState {payload.get('state')!r}")
            item["shipmentState"] = payload["state"]
            item["lastModifiedAt"] = self._tick()
            order["version"] += 1
            order["lastModifiedAt"] = item["lastModifiedAt"]
            self._enqueue(
                [
                    self._message(
                        order,
                        payload.get("project_key") or "demo",
                        "OrderReturnShipmentStateChanged",
                        returnItemId=item["id"],
                        returnShipmentState=item["shipmentState"],
                    )
                ]
            )
            return {"version": order["version"]}
