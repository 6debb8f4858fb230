"""Custom Types (``/types``) and the custom fields of resources (``setCustomType`` / ``setCustomField``, drafts)."""

from __future__ import annotations

import copy
import re
import uuid

from ..server import Response, route
from .base import P, ct_error


class TypeRoutes:
    """Mixed into :class:`connectors.sandbox.commercetools.emulator.CommercetoolsEmulator` (its lock, state and helpers)."""

    def reset_types(self) -> None:
        """(lock held, from :meth:`CommercetoolsEmulator.reset`)"""
        self.types: dict[str, dict] = {}  # id → Type
        self.type_by_key: dict[str, str] = {}

    def _type_ref(self, ref) -> dict:
        if not isinstance(ref, dict) or ref.get("typeId", "type") != "type" or not (ref.get("id") or ref.get("key")):
            raise ct_error(
                400,
                "InvalidJsonInput",
                "Request body does not contain valid JSON: type must be a TypeResourceIdentifier.",
            )
        tid = ref.get("id") or self.type_by_key.get(ref.get("key"))
        if tid not in self.types:
            ident = ref.get("id") or ref.get("key")
            raise ct_error(
                400,
                "ReferencedResourceNotFound",
                f"The referenced object of type 'type' '{ident}' was not found.",
                typeId="type",
                **({"id": ref["id"]} if ref.get("id") else {"key": ref.get("key")}),
            )
        return self.types[tid]

    def _check_field(self, type_: dict, name, value) -> None:
        defs = {d["name"]: d for d in type_.get("fieldDefinitions") or []}
        if name not in defs:
            raise ct_error(
                400,
                "InvalidField",
                f"The field '{name}' is not defined on type '{type_.get('key')}'.",
                field=name,
                invalidValue=value,
                allowedValues=[],
            )
        kind = (defs[name].get("type") or {}).get("name")
        if value is not None and kind == "Number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ct_error(
                400,
                "InvalidField",
                f"The value '{value}' is not valid for field '{name}' (Number).",
                field=name,
                invalidValue=value,
            )

    def _custom_from_draft(self, draft, resource_type: str) -> dict:
        if not isinstance(draft, dict):
            raise ct_error(
                400, "InvalidJsonInput", "Request body does not contain valid JSON: custom must be a CustomFieldsDraft."
            )
        type_ = self._type_ref(draft.get("type"))
        if resource_type not in type_.get("resourceTypeIds", []):
            raise ct_error(
                400, "InvalidOperation", f"Type '{type_['key']}' is not defined for resource type '{resource_type}'."
            )
        fields = draft.get("fields") or {}
        for name, value in fields.items():
            self._check_field(type_, name, value)
        return {
            "type": {"typeId": "type", "id": type_["id"]},
            "fields": {k: v for k, v in fields.items() if v is not None},
        }

    def _custom_action(self, resource: dict, a: dict) -> None:
        if a["action"] == "setCustomType":
            if a.get("type") is None:
                resource.pop("custom", None)
            else:
                resource["custom"] = self._custom_from_draft(
                    {"type": a["type"], "fields": a.get("fields")}, "inventory-entry"
                )
            return
        custom = resource.get("custom")
        if not custom:
            raise ct_error(400, "InvalidOperation", "The resource has no custom type: use setCustomType first.")
        self._check_field(self.types[custom["type"]["id"]], a.get("name"), a.get("value"))
        if a.get("value") is None:
            custom["fields"].pop(a.get("name"), None)
        else:
            custom["fields"][a["name"]] = a["value"]

    @route("POST", P + r"/types")
    def types_create(self, req):
        self._auth(req)
        data = self._body(req)
        key = data.get("key")
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_-]{2,256}", key):
            raise ct_error(
                400,
                "InvalidJsonInput",
                "Request body does not contain valid JSON: 'key' must be 2-256 of [A-Za-z0-9_-].",
            )
        if (
            not isinstance(data.get("name"), dict)
            or not isinstance(data.get("resourceTypeIds"), list)
            or not data["resourceTypeIds"]
        ):
            raise ct_error(
                400,
                "InvalidJsonInput",
                "Request body does not contain valid JSON: 'name' and 'resourceTypeIds' are required.",
            )
        defs = data.get("fieldDefinitions") or []
        for d in defs:
            if (
                not isinstance(d, dict)
                or not d.get("name")
                or not isinstance(d.get("type"), dict)
                or not isinstance(d.get("required"), bool)
                or not isinstance(d.get("label"), dict)
            ):
                raise ct_error(
                    400,
                    "InvalidJsonInput",
                    "Request body does not contain valid JSON: a FieldDefinition needs type, name, label and required.",
                )
        with self.lock:
            if key in self.type_by_key:
                raise ct_error(
                    400,
                    "DuplicateField",
                    f"A duplicate value '\"{key}\"' exists for field 'key'.",
                    field="key",
                    duplicateValue=key,
                )
            ts = self._tick()
            t = {
                "id": str(uuid.uuid4()),
                "version": 1,
                "key": key,
                "name": data["name"],
                "resourceTypeIds": list(data["resourceTypeIds"]),
                "fieldDefinitions": [{"inputHint": "SingleLine", **d} for d in defs],
                "createdAt": ts,
                "lastModifiedAt": ts,
            }
            if data.get("description"):
                t["description"] = data["description"]
            self.types[t["id"]] = t
            self.type_by_key[key] = t["id"]
            return Response(201, copy.deepcopy(t))

    @route("GET", P + r"/types/key=(?P<key>[^/]+)")
    def type_get_key(self, req):
        self._auth(req)
        with self.lock:
            tid = self.type_by_key.get(req.params["key"])
            if not tid:
                raise ct_error(404, "ResourceNotFound", f"The Resource with key '{req.params['key']}' was not found.")
            return Response(200, copy.deepcopy(self.types[tid]))
