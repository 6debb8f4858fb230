"""commercetools Import API for full loads: a channel's first sync and full resyncs (issue 12, part 4).

Reference: commercetools-api-reference ``api-specs/import`` (``api.raml``, ``types/inventory-import.raml``,
``import-request.raml``, ``import-operation.raml``, ``import-summary.raml``, ``common.raml`` ProcessingState) and
docs.commercetools.com/import-export (Import API overview, "Import Operations"). Host
``https://import.<region>.commercetools.com``; scope ``manage_import_containers`` (containers, operations) and
``manage_products`` (the inventory import itself).

- **submit** (:meth:`InventoryImporter.submit`): ``POST /{projectKey}/inventories/import-containers/{containerKey}``
  with an ``InventoryImportRequest`` ``{"type": "inventory", "resources": [...]}`` of at most 20 ``InventoryImport``
  (``key`` — the entry key, :meth:`CommercetoolsConnector.entry_key` —, ``sku``, ``quantityOnStock``,
  ``supplyChannel`` as a ``ChannelKeyReference`` ``{"typeId": "channel", "key"}``, ``custom`` with the hub's ledger
  marker). The answer (``ImportResponse``) has one ``ImportOperationStatus`` per resource: ``processing`` (accepted,
  outcome later) or ``validationFailed`` (refused at once → that target's ``BadDataError``, a ``bad_payload``
  exception through the push engine). Accepted targets come back as ``errors.ImportPending`` results: the push
  engine keeps their outbox rows, deferred by ``options["import_settle_seconds"]`` (default 900), and the hub's
  outcome step reads them later — no request waits for an import.
- **container**: one per connection (``options["import_container"]``, default ``integration-hub-inventory-<id>``),
  created once if missing (``POST /{projectKey}/import-containers`` ``{"key", "resourceType": "inventory"}``) and
  reused for every load; ct deletes operations 48 h after creation, the container stays.
- **outcomes** (:meth:`InventoryImporter.snapshot`, run by the Celery task ``inventory.settle_imports``):
  ``GET /{projectKey}/import-containers/{key}/import-operations`` takes ``state``, ``limit`` ≤ 500 and ``offset`` ≤
  10,000, so the operations of a 1M-row load cannot be paged one by one. The outcome is read by exception instead:
  ``state=processing&limit=0`` (its ``total``; one request per poll while a load runs), then, once at most 10,000
  are processing, their ``resourceKey`` s, and the operations in each failure state (``validationFailed``,
  ``unresolved``, ``rejected``, ``canceled``, ``partiallyImported``) newest first, back to the oldest pending
  submission. A pending target whose key is neither processing nor failed is ``imported``. (The cheaper
  ``import-summaries`` counts are not used to decide: the reference calls them eventually consistent, so a summary
  read just after a submission may not count it yet.) A failure state with
  more than 10,500 operations since then cannot be read in full: targets not seen in it stay unknown (their rows
  are retried through the delta path after the deferral, never confirmed blindly). So a confirmed load of R rows
  costs ⌈R/20⌉ submissions + one request per poll + a handful at the end (+ failures/500).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import errors
from .base import InventoryResult, InventoryTarget

log = logging.getLogger(__name__)

BATCH = 20  # InventoryImportRequest: at most 20 resources
PAGE = 500  # ImportOperationPagedResponse: limit ≤ 500
MAX_OFFSET = 10_000  # … and offset ≤ 10,000
FAILED_STATES = ("validationFailed", "unresolved", "rejected", "canceled", "partiallyImported")
EXPIRY = timedelta(hours=47)  # operations are deleted 48 h after creation: older pending targets are not inferred
CLOCK_SKEW = timedelta(minutes=2)  # hub clock vs ct's createdAt
API_HOST_RX = re.compile(r"^(?P<scheme>https?)://api\.(?P<region>[a-z0-9.-]+)\.commercetools\.com(?:/.*)?$")


def _ts(value) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class ImportSnapshot:
    """What the container says about the operations of pending targets, read once per outcome poll."""

    processing_total: int = 0
    processing: set[str] | None = None  # resourceKeys still processing; None: too many to list (nothing is settled)
    failed: dict[str, dict] = field(default_factory=dict)  # resourceKey -> newest failed operation since ``since``
    truncated: bool = False  # some failure state had more operations than the API lets us page
    since: datetime | None = None
    requests: int = 0

    def outcome(self, key: str, attempted_at: datetime) -> tuple[str, dict | None]:
        """``processing`` | ``imported`` | ``failed`` (with its operation) | ``unknown`` for the target with entry
        ``key`` submitted at ``attempted_at`` (the hub's write-ahead instant, just before the submission)."""
        if self.processing is None or key in self.processing:
            return "processing", None
        op = self.failed.get(key)
        if op is not None:
            created = _ts(op.get("createdAt"))
            if created is None or created >= attempted_at - CLOCK_SKEW:
                return "failed", op
        if self.truncated or (self.since and attempted_at < self.since) or attempted_at < _now() - EXPIRY:
            return "unknown", None
        return "imported", None


def _now() -> datetime:
    from datetime import timezone

    return datetime.now(timezone.utc)


class InventoryImporter:
    def __init__(self, connector):
        self.ct = connector
        options = connector.connection.options or {}
        self.container = options.get("import_container") or f"integration-hub-inventory-{connector.connection.pk}"
        self.settle_seconds = float(options.get("import_settle_seconds", 900))
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
        """The connection's container, created once if the project lacks it (another worker creating it at the same
        moment is fine). Cached per connector."""
        if self._container_ready:
            return
        try:
            self.ct._get(self.url(f"import-containers/{self.container}"))
        except errors.NotFoundError:
            try:
                self.ct.client.post(
                    self.url("import-containers"), json={"key": self.container, "resourceType": "inventory"}
                )
            except errors.BadDataError as exc:
                if "DuplicateField" not in str(exc.body):
                    raise
        self._container_ready = True

    def resource(self, t: InventoryTarget) -> dict:
        """The InventoryImport of ``t``: keyed like the entries the delta path creates, the supply channel by key,
        and the hub's ledger marker (so every later delta write is the relative one)."""
        res = {
            "key": self.ct.entry_key(t.sku, t.channel_ref),
            "sku": t.sku,
            "quantityOnStock": int(t.quantity),
            "supplyChannel": {"typeId": "channel", "key": t.channel_ref},
        }
        ledger = self.ct._ledger_of(t)
        if ledger is not None:
            res["custom"] = {
                "type": {"typeId": "type", "key": self.ct.ledger_type_key},
                "fields": {
                    self.ct.ledger_field: {"type": "Number", "value": ledger},
                    self.ct.on_stock_field: {"type": "Number", "value": int(t.quantity)},
                },
            }
        return res

    @staticmethod
    def batches(items: list, size: int = BATCH) -> list[list]:
        return [items[i : i + size] for i in range(0, len(items), size)]

    def submit(self, targets: list[InventoryTarget]) -> list[InventoryResult]:
        """Send ``targets`` in requests of 20; one result per target, in order: ``ImportPending`` (accepted),
        ``BadDataError`` (validationFailed at once), or the error of a request that failed after the client's
        retries (``RetryableError`` → the outbox retries; a re-import of a keyed entry is idempotent). A failure
        of the very first request raises (the whole call failed, nothing was sent)."""
        if not targets:
            return []
        self.ensure_container()
        if any(self.ct._ledger_of(t) is not None for t in targets):
            self.ct.ensure_ledger_type()
        results: list[InventoryResult] = []
        for chunk in self.batches(targets):
            body = {"type": "inventory", "resources": [self.resource(t) for t in chunk]}
            try:
                answer = self.ct.client.post(
                    self.url(f"inventories/import-containers/{self.container}"), json=body
                ).json()
                statuses = answer.get("operationStatus") if isinstance(answer, dict) else None
                if not isinstance(statuses, list) or len(statuses) != len(chunk):
                    raise errors.RetryableError(
                        f"commercetools Import API answered an unexpected body: {str(answer)[:200]}",
                        system=self.ct.system_type,
                        body=answer,
                    )
            except errors.ConnectorError as exc:
                if not results:
                    raise
                results += [InventoryResult(t.sku, t.channel_ref, t.quantity, ok=False, error=exc) for t in chunk]
                continue
            for t, status in zip(chunk, statuses):
                status = status if isinstance(status, dict) else {}
                if status.get("state") == "processing" and status.get("operationId"):
                    results.append(
                        InventoryResult(
                            t.sku,
                            t.channel_ref,
                            t.quantity,
                            ok=False,
                            error=errors.ImportPending(
                                f"import of {t.sku} on {t.channel_ref} accepted (operation {status['operationId']}); outcome pending",
                                system=self.ct.system_type,
                                retry_after=self.settle_seconds,
                            ),
                        )
                    )
                else:
                    results.append(self.failed(t, status.get("state") or "validationFailed", status.get("errors")))
        return results

    def _page(self, params: dict, snap: ImportSnapshot) -> dict:
        snap.requests += 1
        body = self.ct._get(self.url(f"import-containers/{self.container}/import-operations"), params=params).json()
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise errors.RetryableError(
                f"commercetools import-operations answered an unexpected body: {str(body)[:200]}",
                system=self.ct.system_type,
                body=body,
            )
        return body

    def snapshot(self, since: datetime) -> ImportSnapshot:
        """Read the container's outcomes for targets submitted at or after ``since`` (see the module docstring)."""
        self.ensure_container()
        snap = ImportSnapshot(since=since - CLOCK_SKEW)
        head = self._page({"state": "processing", "limit": 0}, snap)
        snap.processing_total = int(head.get("total") or 0)
        if snap.processing_total > MAX_OFFSET:
            return snap  # a big load still running: one request per poll until it is nearly done
        keys: set[str] = set()
        offset = 0
        while offset < snap.processing_total and offset <= MAX_OFFSET:
            page = self._page({"state": "processing", "limit": PAGE, "offset": offset}, snap)["results"]
            keys.update(str(op.get("resourceKey")) for op in page)
            if len(page) < PAGE:
                break
            offset += PAGE
        snap.processing = keys
        for state in FAILED_STATES:
            offset = 0
            while True:
                body = self._page(
                    {
                        "state": state,
                        "limit": PAGE,
                        "offset": offset,
                        "sort": "createdAt desc",
                        **({"debug": "true"} if state == "unresolved" else {}),
                    },
                    snap,
                )
                page = body["results"]
                older = False
                for op in page:
                    created = _ts(op.get("createdAt"))
                    if created is not None and created < snap.since:
                        older = True
                        break
                    snap.failed.setdefault(str(op.get("resourceKey")), op)  # newest first: the first seen wins
                if older or len(page) < PAGE:
                    break
                if offset + PAGE > MAX_OFFSET:
                    snap.truncated = True
                    break
                offset += PAGE
        return snap

    def failed(self, t: InventoryTarget, state: str, detail) -> InventoryResult:
        return InventoryResult(
            t.sku,
            t.channel_ref,
            t.quantity,
            ok=False,
            error=failure_error(t.sku, t.channel_ref, state, detail, self.ct.system_type),
        )


def failure_error(sku: str, channel_ref: str, state: str, detail, system: str = "commercetools") -> errors.BadDataError:
    """What a failed import operation says, as the error of its target: the state and the operation's errors (or the
    references it could not resolve, e.g. a supply channel key the project does not have)."""
    parts = []
    for e in detail or []:
        if isinstance(e, dict):
            if e.get("typeId") or e.get("key"):
                parts.append(f"unresolved {e.get('typeId', '?')} key {e.get('key')!r}")
            else:
                parts.append(f"{e.get('code', '')}: {e.get('message', '')}".strip(": "))
    text = "; ".join(parts) or "no reason given"
    return errors.BadDataError(
        f"commercetools import of {sku} on {channel_ref} ended {state}: {text}"[:1000], system=system, body=detail
    )
