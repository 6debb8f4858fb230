"""Supply channels (``/channels``) and InventoryEntry (``/inventory``: sku + supplyChannel unique, ``changeQuantity`` /
``addQuantity`` / ``removeQuantity``, custom fields), order decrements that land ``decrement_delay`` seconds late, and
the inventory test switches (``set_inventory``, ``inventory_settings``, ``land_decrements``, ``reserve``).
"""

from __future__ import annotations

import copy
import time
import uuid

from ..server import HttpError, Response, route
from .base import P, ct_error


class InventoryRoutes:
    """Mixed into :class:`connectors.sandbox.commercetools.emulator.CommercetoolsEmulator` (its lock, state and helpers)."""

    def reset_inventory(self) -> None:
        """(lock held, from :meth:`CommercetoolsEmulator.reset`)"""
        self.channels: dict[str, dict] = {}
        self.channel_by_key: dict[str, str] = {}
        self.inventory: dict[str, dict] = {}
        self.inventory_index: dict[tuple[str, str | None], str] = {}  # (sku, channel id) → entry id
        self.inventory_by_key: dict[str, str] = {}
        self.inventory_by_sku: dict[str, set[str]] = {}
        # order-driven inventory updates are eventually consistent in ct (release 2026-01-19: up to ~10 s):
        # an order's decrement is queued and lands ``decrement_delay`` seconds later (0 = at once)
        self.decrement_delay = 0.0
        self.pending_decrements: list[dict] = []  # {"due", "entry", "quantity", "order"} oldest first
        self.land_on_write = (
            0  # test switch: land one pending decrement just before each of the next N inventory updates
        )
        self.lose_inventory_responses = 0  # test switch: apply the next N inventory updates, then answer 502

    def _new_channel(self, key: str, name: str | None = None, roles=None) -> dict:
        ts = self._tick()
        ch = {
            "id": str(uuid.uuid4()),
            "version": 1,
            "key": key,
            "roles": roles or ["InventorySupply"],
            "name": {"en": name or key},
            "createdAt": ts,
            "lastModifiedAt": ts,
        }
        self.channels[ch["id"]] = ch
        self.channel_by_key[key] = ch["id"]
        return ch

    @route("GET", P + r"/channels")
    def channels_query(self, req):
        self._auth(req)
        return self._query(
            req,
            lambda: self.channels.values(),
            default_sort=["createdAt asc"],
            index={
                "id": lambda ids: [self.channels[i] for i in ids if i in self.channels],
                "key": lambda keys: [self.channels[self.channel_by_key[k]] for k in keys if k in self.channel_by_key],
            },
        )

    @route("POST", P + r"/channels")
    def channels_create(self, req):
        self._auth(req)
        data = self._body(req)
        key = data.get("key")
        if not key:
            raise ct_error(
                400, "InvalidJsonInput", "Request body does not contain valid JSON: missing required field 'key'."
            )
        with self.lock:
            if key in self.channel_by_key:
                raise ct_error(
                    400,
                    "DuplicateField",
                    f"A duplicate value '\"{key}\"' exists for field 'key'.",
                    field="key",
                    duplicateValue=key,
                )
            name = data.get("name", {}).get("en") if isinstance(data.get("name"), dict) else None
            return Response(201, copy.deepcopy(self._new_channel(key, name, data.get("roles"))))

    def _channel(self, id_or_key: str, by_key: bool) -> dict:
        cid = self.channel_by_key.get(id_or_key) if by_key else id_or_key
        ch = self.channels.get(cid or "")
        if not ch:
            raise ct_error(
                404, "ResourceNotFound", f"The Resource with {'key' if by_key else 'ID'} '{id_or_key}' was not found."
            )
        return ch

    @route("GET", P + r"/channels/(?P<id>[^/=]+)")
    def channel_get(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, copy.deepcopy(self._channel(req.params["id"], False)))

    @route("GET", P + r"/channels/key=(?P<key>[^/]+)")
    def channel_get_key(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, copy.deepcopy(self._channel(req.params["key"], True)))

    def _resolve_channel_ref(self, ref) -> str | None:
        if ref is None:
            return None
        if not isinstance(ref, dict) or ref.get("typeId", "channel") != "channel":
            raise ct_error(400, "InvalidJsonInput", "supplyChannel must be a ResourceIdentifier to a channel.")
        if ref.get("id"):
            if ref["id"] not in self.channels:
                raise ct_error(
                    400,
                    "ReferencedResourceNotFound",
                    f"The referenced object of type 'channel' with identifier '{ref['id']}' was not found.",
                    typeId="channel",
                    id=ref["id"],
                )
            return ref["id"]
        if ref.get("key"):
            cid = self.channel_by_key.get(ref["key"])
            if not cid:
                raise ct_error(
                    400,
                    "ReferencedResourceNotFound",
                    f"The referenced object of type 'channel' with key '{ref['key']}' was not found.",
                    typeId="channel",
                    key=ref["key"],
                )
            return cid
        raise ct_error(400, "InvalidJsonInput", "supplyChannel needs an id or a key.")

    def _new_entry(
        self, sku: str, channel_id: str | None, quantity: int, key: str | None = None, extra: dict | None = None
    ) -> dict:
        ts = self._tick()
        entry = {
            "id": str(uuid.uuid4()),
            "version": 1,
            "sku": sku,
            "quantityOnStock": quantity,
            "availableQuantity": quantity,
            "reserved": 0,
            "createdAt": ts,
            "lastModifiedAt": ts,
        }
        if key:
            entry["key"] = key
        if channel_id:
            entry["supplyChannel"] = {"typeId": "channel", "id": channel_id}
        for k in ("restockableInDays", "expectedDelivery", "minCartQuantity", "maxCartQuantity"):
            if extra and k in extra:
                entry[k] = extra[k]
        if extra and extra.get("custom") is not None:
            entry["custom"] = self._custom_from_draft(extra["custom"], "inventory-entry")
        self.inventory[entry["id"]] = entry
        self.inventory_index[(sku, channel_id)] = entry["id"]
        self.inventory_by_sku.setdefault(sku, set()).add(entry["id"])
        if key:
            self.inventory_by_key[key] = entry["id"]
        return entry

    def _set_entry_quantity(self, entry: dict, quantity: int) -> None:
        entry["quantityOnStock"] = quantity
        entry["availableQuantity"] = quantity - entry.get("reserved", 0)
        entry["version"] += 1
        entry["lastModifiedAt"] = self._tick()

    def _land_due(self, force: int = 0) -> int:
        """Apply queued order decrements that are due (and the ``force`` oldest ones regardless). Lock held."""
        now = time.monotonic()
        landed = 0
        while self.pending_decrements and (landed < force or self.pending_decrements[0]["due"] <= now):
            d = self.pending_decrements.pop(0)
            entry = self.inventory.get(d["entry"])
            if entry is not None:  # an entry deleted meanwhile takes nothing
                self._set_entry_quantity(entry, entry["quantityOnStock"] - d["quantity"])
            landed += 1
        return landed

    @staticmethod
    def _public_entry(entry: dict, req=None) -> dict:
        entry.pop("reserved", None)
        return entry

    @route("GET", P + r"/inventory")
    def inventory_query(self, req):
        self._auth(req)
        with self.lock:
            self._land_due()
        return self._query(
            req,
            lambda: self.inventory.values(),
            default_sort=["createdAt asc"],
            transform=self._public_entry,
            index={
                "id": lambda ids: [self.inventory[i] for i in ids if i in self.inventory],
                "sku": lambda skus: [self.inventory[i] for sku in skus for i in self.inventory_by_sku.get(sku, ())],
            },
        )

    @route("POST", P + r"/inventory")
    def inventory_create(self, req):
        self._auth(req)
        data = self._body(req)
        sku, qty = data.get("sku"), data.get("quantityOnStock")
        if not isinstance(sku, str) or not sku:
            raise ct_error(
                400, "InvalidJsonInput", "Request body does not contain valid JSON: missing required field 'sku'."
            )
        if not isinstance(qty, int) or isinstance(qty, bool):
            raise ct_error(
                400,
                "InvalidJsonInput",
                "Request body does not contain valid JSON: 'quantityOnStock' must be an integer.",
            )
        with self.lock:
            channel_id = self._resolve_channel_ref(data.get("supplyChannel"))
            if (sku, channel_id) in self.inventory_index:
                msg = (
                    f"An inventory entry for SKU '{sku}' and supply channel '{channel_id}' already exists."
                    if channel_id
                    else f"An inventory entry for SKU '{sku}' without supply channel already exists."
                )
                raise ct_error(
                    400,
                    "DuplicateField",
                    msg,
                    field="sku",
                    duplicateValue=sku,
                    conflictingResource={"typeId": "inventory-entry", "id": self.inventory_index[(sku, channel_id)]},
                )
            key = data.get("key")
            if key and key in self.inventory_by_key:
                raise ct_error(
                    400,
                    "DuplicateField",
                    f"A duplicate value '\"{key}\"' exists for field 'key'.",
                    field="key",
                    duplicateValue=key,
                )
            entry = self._new_entry(sku, channel_id, qty, key, data)
            return Response(201, self._public_entry(copy.deepcopy(entry)))

    def _entry(self, req) -> dict:
        by_key = "key" in req.params and req.params.get("key") is not None
        ident = req.params["key"] if by_key else req.params["id"]
        eid = self.inventory_by_key.get(ident) if by_key else ident
        entry = self.inventory.get(eid or "")
        if not entry:
            raise ct_error(
                404, "ResourceNotFound", f"The Resource with {'key' if by_key else 'ID'} '{ident}' was not found."
            )
        return entry

    @route("GET", P + r"/inventory/(?P<id>[^/=]+)")
    @route("GET", P + r"/inventory/key=(?P<key>[^/]+)")
    def inventory_get(self, req):
        self._auth(req)
        with self.lock:
            self._land_due()
            return Response(200, self._public_entry(copy.deepcopy(self._entry(req))))

    @route("POST", P + r"/inventory/(?P<id>[^/=]+)")
    @route("POST", P + r"/inventory/key=(?P<key>[^/]+)")
    def inventory_update(self, req):
        self._auth(req)
        data = self._body(req)
        actions = self._actions(data)
        with self.lock:
            self._land_due()
            entry = self._entry(req)
            if self.land_on_write > 0 and self.pending_decrements:
                self.land_on_write -= 1
                self._land_due(force=1)  # an order's decrement lands between the client's read and its write
            self._check_version(entry, data, "inventory-entry")
            new = copy.deepcopy(entry)
            for a in actions:
                kind = a["action"]
                if kind in ("setCustomType", "setCustomField"):
                    self._custom_action(new, a)
                    continue
                if kind in ("changeQuantity", "addQuantity", "removeQuantity"):
                    q = a.get("quantity")
                    if not isinstance(q, int) or isinstance(q, bool):
                        raise ct_error(
                            400,
                            "InvalidJsonInput",
                            f"Request body does not contain valid JSON: {kind}.quantity must be an integer.",
                        )
                    if kind == "changeQuantity":
                        target = q
                    elif kind == "addQuantity":
                        target = new["quantityOnStock"] + q
                    else:
                        target = new["quantityOnStock"] - q
                    new["quantityOnStock"] = target
                    new["availableQuantity"] = target - new.get("reserved", 0)
                elif kind in ("setRestockableInDays", "setExpectedDelivery"):
                    field = "restockableInDays" if kind == "setRestockableInDays" else "expectedDelivery"
                    if a.get(field) is None:
                        new.pop(field, None)
                    else:
                        new[field] = a[field]
                else:
                    raise ct_error(400, "InvalidOperation", f"Unknown update action '{kind}' for inventory entries.")
            new["version"] = entry["version"] + 1
            new["lastModifiedAt"] = self._tick()
            entry.clear()
            entry.update(new)
            if self.lose_inventory_responses > 0:  # applied, but the answer never reaches the client
                self.lose_inventory_responses -= 1
                raise HttpError(
                    502, {"statusCode": 502, "message": "Bad Gateway (injected: update applied, response lost)"}
                )
            return Response(200, self._public_entry(copy.deepcopy(entry)))

    @route("DELETE", P + r"/inventory/(?P<id>[^/=]+)")
    def inventory_delete(self, req):
        self._auth(req)
        version = self._version_param(req)
        with self.lock:
            entry = self._entry(req)
            self._check_version(entry, {"version": version}, "inventory-entry")
            del self.inventory[entry["id"]]
            ch = (entry.get("supplyChannel") or {}).get("id")
            self.inventory_index.pop((entry["sku"], ch), None)
            self.inventory_by_sku.get(entry["sku"], set()).discard(entry["id"])
            if entry.get("key"):
                self.inventory_by_key.pop(entry["key"], None)
            return Response(200, self._public_entry(copy.deepcopy(entry)))

    def control_set_inventory(self, payload: dict) -> dict:
        """Storefront-side quantity changes (merchant edits, other integrations): {"rows": [{"channel", "sku",
        "quantity"}]} or one row inline. Bumps versions; creates missing entries."""
        rows = payload.get("rows") or ([payload] if payload.get("sku") else [])
        out = {}
        with self.lock:
            for r in rows:
                key = r.get("channel")
                cid = None
                if key:
                    cid = self.channel_by_key.get(key) or self._new_channel(key)["id"]
                eid = self.inventory_index.get((r["sku"], cid))
                if eid:
                    entry = self.inventory[eid]
                    self._set_entry_quantity(entry, int(r["quantity"]))
                else:
                    entry = self._new_entry(r["sku"], cid, int(r["quantity"]))
                out[f"{key}/{r['sku']}"] = entry["version"]
        return {"versions": out}

    def control_inventory_settings(self, payload: dict) -> dict:
        """Switches of the inventory model: ``decrement_delay`` (seconds an order's decrement takes to land),
        ``land_on_write`` (land one pending decrement right before each of the next N inventory updates: the
        writer's version is stale, a real 409), ``lose_inventory_responses`` (apply the next N inventory updates
        but answer 502, as a response lost on the way back)."""
        with self.lock:
            for name, cast in (("decrement_delay", float), ("land_on_write", int), ("lose_inventory_responses", int)):
                if name in payload:
                    setattr(self, name, cast(payload[name]))
            return {
                "decrement_delay": self.decrement_delay,
                "land_on_write": self.land_on_write,
                "lose_inventory_responses": self.lose_inventory_responses,
                "pending": len(self.pending_decrements),
            }

    def control_land_decrements(self, payload: dict) -> dict:
        """Land the ``count`` oldest pending order decrements now (all when ``count`` is absent)."""
        with self.lock:
            count = int(payload.get("count", len(self.pending_decrements)))
            return {"landed": self._land_due(force=count), "pending": len(self.pending_decrements)}

    def control_reserve(self, payload: dict) -> dict:
        """Cart reservations on an entry (ct Reservations: ``availableQuantity`` drops, ``quantityOnStock`` does
        not): {"channel", "sku", "quantity"} sets the entry's reserved total."""
        with self.lock:
            cid = self.channel_by_key.get(payload.get("channel") or "")
            eid = self.inventory_index.get((payload.get("sku"), cid))
            if not eid:
                raise HttpError(404, {"message": "no such inventory entry"})
            entry = self.inventory[eid]
            entry["reserved"] = int(payload.get("quantity") or 0)
            self._set_entry_quantity(entry, entry["quantityOnStock"])
            return {"availableQuantity": entry["availableQuantity"], "quantityOnStock": entry["quantityOnStock"]}
