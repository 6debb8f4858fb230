"""commercetools Import API for bulk stock writes: first syncs and full resyncs (issue 12, part 4).

``POST /{projectKey}/inventories/import-containers/{containerKey}`` takes an ``InventoryImportRequest`` of at most
20 ``InventoryImport`` resources (``key``, ``sku``, ``quantityOnStock``, ``supplyChannel`` by key, ``custom``) and
answers an ``ImportResponse`` (one ``ImportOperationStatus`` per resource: ``processing`` or ``validationFailed``).
Import is asynchronous: each operation ends ``imported``, or ``unresolved`` / ``rejected`` / ``validationFailed`` /
``canceled`` …, read back from ``GET /{projectKey}/import-containers/{key}/import-operations`` (paged, newest first:
one request per 500 operations). Host ``https://import.<region>.commercetools.com`` (reference
``import-openapi.yaml``), scopes ``manage_import_containers`` (the container) and ``manage_products`` (the import).

Used by :meth:`CommercetoolsConnector.set_stock` when ``options["import_api"]`` is on, for the writes that are
absolute anyway and safe to make without a version: entries that do not exist yet (ct refuses orders for them, so
there is no storefront decrement to keep) and entries without the hub's ledger marker (the one absolute write, see
the connector's invariant). The import carries the ledger marker, so every later write is the relative one.
Caveat: an import is applied later and without a version, so for a marker-less entry that already exists a
decrement landing between the hub's read and the import's processing is overwritten (the adoption write's
window, widened by the import's latency); new entries have no decrements to lose. One
container per connection (``options["import_container"]``, default ``integration-hub-inventory-<id>``), reused.
Outcomes become the targets' results: ``imported`` → confirmed; ``validationFailed`` / ``unresolved`` / ``rejected``
→ ``BadDataError`` (the push records a ``bad_payload`` exception per SKU); still ``processing`` after
``options["import_wait_seconds"]`` (default 60) → ``RetryableError`` (the outbox retries; a re-import of a keyed
entry is idempotent).
"""
from __future__ import annotations

import logging
import re
import time

from . import errors
from .base import InventoryResult, InventoryTarget

log = logging.getLogger(__name__)

BATCH = 20  # InventoryImportRequest: at most 20 resources
OPERATIONS_PAGE = 500
TERMINAL = {"imported", "validationFailed", "unresolved", "rejected", "canceled", "partiallyImported", "waitForMasterVariant"}
API_HOST_RX = re.compile(r"^(?P<scheme>https?)://api\.(?P<region>[a-z0-9.-]+)\.commercetools\.com(?:/.*)?$")


class InventoryImporter:
    def __init__(self, connector):
        self.ct = connector
        options = connector.connection.options or {}
        self.container = options.get("import_container") or f"integration-hub-inventory-{connector.connection.pk}"
        self.wait_seconds = float(options.get("import_wait_seconds", 60))
        self.poll_interval = float(options.get("import_poll_seconds", 1.0))
        self._container_ready = False
        self.root = self.import_root(connector.connection)

    @staticmethod
    def import_root(connection) -> str:
        """``options["import_url"]``, else ``import.<region>`` from the API host, else the API root (the sandbox)."""
        explicit = ((connection.options or {}).get("import_url") or "").rstrip("/")
        if explicit:
            return explicit
        base = (connection.base_url or "").rstrip("/")
        m = API_HOST_RX.match(base)
        return f"{m.group('scheme')}://import.{m.group('region')}.commercetools.com" if m else base

    def url(self, tail: str) -> str:
        return f"{self.root}/{self.ct.project_key}/{tail.lstrip('/')}"

    def ensure_container(self) -> None:
        if self._container_ready:
            return
        try:
            self.ct._get(self.url(f"import-containers/{self.container}"))
        except errors.NotFoundError:
            try:
                self.ct.client.post(self.url("import-containers"), json={"key": self.container, "resourceType": "inventory"})
            except errors.BadDataError as exc:
                if "Duplicate" not in str(exc.body):
                    raise
        self._container_ready = True

    def resource(self, t: InventoryTarget) -> dict:
        res = {"key": self.ct.entry_key(t.sku, t.channel_ref), "sku": t.sku, "quantityOnStock": t.quantity,
               "supplyChannel": {"typeId": "channel", "key": t.channel_ref}}
        ledger = self.ct._ledger_of(t)
        if ledger is not None:
            res["custom"] = {"type": {"typeId": "type", "key": self.ct.ledger_type_key},
                             "fields": {self.ct.ledger_field: {"type": "Number", "value": ledger},
                                        self.ct.on_stock_field: {"type": "Number", "value": t.quantity}}}
        return res

    def write(self, targets: list[InventoryTarget]) -> list[InventoryResult]:
        """Import ``targets`` and wait for their outcomes; one result per target, in order."""
        if not targets:
            return []
        self.ensure_container()
        if any(self.ct._ledger_of(t) is not None for t in targets):
            self.ct.ensure_ledger_type()
        results: dict[int, InventoryResult] = {}
        pending: dict[str, int] = {}  # operation id -> target index
        for start in range(0, len(targets), BATCH):
            chunk = targets[start:start + BATCH]
            body = {"type": "inventory", "resources": [self.resource(t) for t in chunk]}
            answer = self.ct.client.post(self.url(f"inventories/import-containers/{self.container}"), json=body).json()
            statuses = answer.get("operationStatus") if isinstance(answer, dict) else None
            if not isinstance(statuses, list) or len(statuses) != len(chunk):
                raise errors.BadDataError(f"commercetools Import API answered an unexpected body: {str(answer)[:200]}",
                                          system=self.ct.system_type, body=answer)
            for n, status in enumerate(statuses):
                i = start + n
                if status.get("state") == "validationFailed" or not status.get("operationId"):
                    results[i] = self._failed(targets[i], "validationFailed", status.get("errors"))
                else:
                    pending[status["operationId"]] = i
        deadline = time.monotonic() + self.wait_seconds
        while pending:
            for op in self._operations(set(pending)):
                i = pending.pop(op["id"])
                t = targets[i]
                if op["state"] == "imported":
                    results[i] = InventoryResult(t.sku, t.channel_ref, t.quantity, version=op.get("resourceVersion"), ref="")
                else:
                    results[i] = self._failed(t, op["state"], op.get("errors") or op.get("unresolvedReferences"))
            if not pending:
                break
            if time.monotonic() >= deadline:
                for i in pending.values():
                    t = targets[i]
                    results[i] = InventoryResult(t.sku, t.channel_ref, t.quantity, ok=False, error=errors.RetryableError(
                        f"import of {t.sku} on {t.channel_ref} still processing after {self.wait_seconds:.0f}s",
                        system=self.ct.system_type))
                break
            time.sleep(self.poll_interval)
        return [results[i] for i in range(len(targets))]

    def _operations(self, wanted: set[str]) -> list[dict]:
        """The terminal operations among ``wanted``: the container's operations newest first, page by page, until
        every wanted one has been seen."""
        found, offset = [], 0
        unseen = set(wanted)
        while unseen:
            page = self.ct._get(self.url(f"import-containers/{self.container}/import-operations"),
                                params={"limit": OPERATIONS_PAGE, "offset": offset, "sort": "createdAt desc"}).json()
            ops = page.get("results") or []
            for op in ops:
                if op.get("id") in unseen:
                    unseen.discard(op["id"])
                    if op.get("state") in TERMINAL:
                        found.append(op)
            if len(ops) < OPERATIONS_PAGE:
                break
            offset += OPERATIONS_PAGE
        return found

    def _failed(self, t: InventoryTarget, state: str, detail) -> InventoryResult:
        return InventoryResult(t.sku, t.channel_ref, t.quantity, ok=False, error=errors.BadDataError(
            f"commercetools import of {t.sku} on {t.channel_ref} ended {state}: {str(detail)[:300]}",
            system=self.ct.system_type, body=detail))
