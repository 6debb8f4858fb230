"""Fix actions behind the exception queue's resolve screens (plain functions: the console views and the
API call them; tests call them directly).

SKU problems (``sku_mismatch`` / ``unknown_sku``, key ``<kind>:<channel key>:<storefront sku>``):
  * :func:`suggest` — the item and transform that would match, from the record's context (the catalogue
    audit puts ``suggested_item_sku`` / ``suggested_transform`` there) or, failing that, computed here
    with the same loose comparison the audit uses (``transforms.normalise`` + ``candidate_specs``).
  * :func:`map_sku` — create (or repoint) the mapping, re-queue the work (stock push for the item on
    the affected channels; revalidation of orders held for that SKU) and acknowledge the exception (who,
    what was done): it resolves when the re-queued push succeeds — the push engine clears the SKU's
    ``sku_mismatch`` / ``unknown_sku`` keys once the storefront confirms the quantity.
  * :func:`bulk_map_with_transform` — the same for every similar open row (same kind, channel) whose
    storefront SKU the chosen transform produces from a master SKU. Set-based: one item lookup, one
    bulk insert, one audit insert, one push enqueue, one clear.

  * :func:`after_mapping_saved` — a person saved a mapping on the console rule pages or the API: acknowledge
    its SKU exceptions and re-check the held orders (the row save's signal re-queued the stock push).
  Re-queueing and re-checking go through the one "mapping changed" entry point,
  :func:`integration_hub.catalog.mapping_changes.mapping_changed`. Which fix each kind offers, and the
  permissions it needs, is declared in :mod:`exceptions_app.kinds` (:func:`action_for` asks it).

Stuck orders (``stuck_order:<idempotency key>``): :func:`retry_order`, :func:`edit_and_resend`,
:func:`cancel_order` call the order flow's person-facing actions (``integration_hub.orders.actions``, imported
plainly as ``order_flow``: tests replace ``triage.order_flow``, the one patch point). Those do not resolve the
exception: the key is cleared by the order flow when the warehouse acknowledges.
"""

from __future__ import annotations

import contextlib
import re
import logging
from dataclasses import dataclass, field

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.expressions import RawSQL

from integration_hub.catalog import transforms
from integration_hub.catalog.mapping_changes import last_change, mapping_changed
from integration_hub.catalog.models import IdentifierTransform, Item, SkuMapping
from integration_hub.core import audit
from integration_hub.core.models import Channel
from integration_hub.inventory import outbox
from integration_hub.inventory.models import PendingPush
from integration_hub.orders import actions as order_flow
from integration_hub.orders.state import IllegalTransition

from . import kinds, services
from .models import ACTIVE_STATUSES, ExceptionRecord, Kind, Status

log = logging.getLogger(__name__)

SKU_KINDS = kinds.having(action="map_sku")  # sku_mismatch, unknown_sku
# order fields a person may correct from the console before resending (the order flow's
# update_field_and_resend accepts these plus the paths a hold names: lines.<id>.storefront_sku,
# shipping_address.<part>, billing_address.<part>)
EDITABLE_ORDER_FIELDS = {
    "shipping_method": "storefront shipping method",
    "gift_message": "gift message",
    "delivery_notes": "delivery notes",
}
EDITABLE_PATH = re.compile(r"^(lines\.[^.]+\.storefront_sku|(shipping|billing)_address\.[a-z0-9_]+)$")


def editable_field(path: str) -> bool:
    return path in EDITABLE_ORDER_FIELDS or bool(EDITABLE_PATH.match(path or ""))


def field_choices(record: ExceptionRecord | None) -> list[tuple[str, str]]:
    """The fields offered for "edit and resend": the ones the hold names first, then the usual ones."""
    ctx = (record.context or {}) if record is not None else {}
    named = dict(ctx.get("fields") or {}) if isinstance(ctx.get("fields"), dict) else {}
    if ctx.get("field"):
        named.setdefault(ctx["field"], "named by the exception")
    out = [(path, f"{path} — {why}") for path, why in named.items() if editable_field(path)]
    out += [(k, v) for k, v in EDITABLE_ORDER_FIELDS.items() if k not in named]
    return out


class TriageError(Exception):
    """The fix cannot be applied as asked (message is shown to the user)."""


# --- what each record offers -----------------------------------------------------------------------
def action_for(record: ExceptionRecord) -> str:
    """The fix the console offers for ``record`` (the kind's declared action, see :func:`kinds.fix_action`)."""
    return kinds.fix_action(record.kind, record.context)


def about_order(record: ExceptionRecord) -> bool:
    """Whether the record's page shows its order (an order fix, or a kind about an order)."""
    return action_for(record) == "order" or (record.kind in kinds.SPECS and kinds.spec(record.kind).subject == "order")


# --- SKU suggestions -----------------------------------------------------------------------------
@dataclass
class Suggestion:
    item: Item | None = None
    spec: transforms.TransformSpec | None = None
    transform: IdentifierTransform | None = None  # an existing transform with that spec, if any
    source: str = ""  # "audit" or "computed"
    alternatives: list = field(default_factory=list)

    @property
    def spec_label(self) -> str:
        return transforms.describe(self.spec) if self.spec else ""


def _spec_from_context(value) -> transforms.TransformSpec | None:
    if not value:
        return None
    if isinstance(value, dict):
        known = {
            k: value[k]
            for k in ("strip_leading_zeros", "pad_to_length", "fixed_length", "prefix", "suffix", "case")
            if k in value
        }
        if known:
            return transforms.TransformSpec(**known)
        if "name" in value:
            value = value["name"]
        elif "id" in value:
            value = value["id"]
    t = IdentifierTransform.objects.filter(
        Q(name=str(value)) | Q(pk=int(value) if str(value).isdigit() else None)
    ).first()
    return transforms.TransformSpec.from_model(t) if t else None


def matching_spec(master_sku: str, storefront_sku: str) -> transforms.TransformSpec | None:
    for spec in [transforms.TransformSpec()] + transforms.candidate_specs():
        try:
            if transforms.apply(master_sku, spec) == storefront_sku:
                return spec
        except transforms.TransformError:
            continue
    return None


def candidates_for(storefront_skus: list[str]) -> dict[str, list[Item]]:
    """{normalised key: [items]} for the given storefront SKUs — one query (normalised comparison in SQL)."""
    keys = {transforms.normalise(s) for s in storefront_skus if s}
    if not keys:
        return {}
    out: dict[str, list[Item]] = {}
    qn = connection.ops.quote_name
    column = f"{qn(Item._meta.db_table)}.{qn('sku')}"
    qs = Item.objects.annotate(
        norm=RawSQL(transforms.normalise_sql(column), (), output_field=Item._meta.get_field("sku"))
    ).filter(norm__in=keys)
    for item in qs.order_by("sku"):
        out.setdefault(transforms.normalise(item.sku), []).append(item)
    return out


def _transform_for_spec(spec: transforms.TransformSpec, channel: Channel | None) -> IdentifierTransform | None:
    qs = IdentifierTransform.objects.filter(
        strip_leading_zeros=spec.strip_leading_zeros,
        pad_to_length=spec.pad_to_length,
        fixed_length=spec.fixed_length,
        prefix=spec.prefix,
        suffix=spec.suffix,
        case=spec.case,
        active=True,
    )
    if channel is not None:
        qs = qs.filter(
            Q(channel=channel)
            | Q(channel__isnull=True, connection_id=channel.connection_id)
            | Q(channel__isnull=True, connection__isnull=True)
        )
    return qs.order_by("channel_id", "id").first()


def suggest(record: ExceptionRecord) -> Suggestion:
    ctx = record.context or {}
    sku_value = (
        ctx.get("suggested_item_sku") or ctx.get("suggested_sku") or ctx.get("master_sku") or ctx.get("item_sku")
    )
    spec = _spec_from_context(ctx.get("suggested_transform") or ctx.get("transform"))
    if sku_value:
        item = Item.objects.filter(sku=sku_value).first()
        if item is not None:
            spec = spec or matching_spec(item.sku, record.sku)
            return Suggestion(
                item=item,
                spec=spec,
                transform=_transform_for_spec(spec, record.channel) if spec else None,
                source="audit",
            )
    found = candidates_for([record.sku]).get(transforms.normalise(record.sku), []) if record.sku else []
    for item in found:
        spec = matching_spec(item.sku, record.sku)
        if spec is not None:
            return Suggestion(
                item=item,
                spec=spec,
                transform=_transform_for_spec(spec, record.channel),
                source="computed",
                alternatives=[i for i in found if i.pk != item.pk],
            )
    return Suggestion(alternatives=found)


def near_matches(record: ExceptionRecord, suggestion: Suggestion | None = None) -> list[Item]:
    """Master items whose SKU loosely equals the storefront SKU (case, leading zeros), other than the
    suggested one: the alternatives a person may pick instead (one query)."""
    if not record.sku:
        return []
    found = candidates_for([record.sku]).get(transforms.normalise(record.sku), [])
    skip = suggestion.item.pk if suggestion is not None and suggestion.item is not None else None
    return [i for i in found if i.pk != skip]


def transform_options(record: ExceptionRecord, limit: int = 50) -> list[tuple[IdentifierTransform, Item]]:
    """(configured transform, master item) pairs where the transform turns the item's SKU into exactly this
    storefront SKU — active transforms that apply to the record's channel (its own, its connection's or
    global). Two queries: the transforms, then the candidate items of every transform at once."""
    if not record.sku:
        return []
    qs = IdentifierTransform.objects.filter(active=True)
    if record.channel_id is not None:
        qs = qs.filter(
            Q(channel_id=record.channel_id)
            | Q(channel__isnull=True, connection_id=record.channel.connection_id)
            | Q(channel__isnull=True, connection__isnull=True)
        )
    found = list(qs.order_by("name", "id")[:limit])
    cores = {}
    for t in found:  # undo prefix/suffix, then compare loosely (the transform's own rules are checked below)
        core = record.sku
        if t.prefix and core.upper().startswith(t.prefix.upper()):
            core = core[len(t.prefix) :]
        if t.suffix and core.upper().endswith(t.suffix.upper()):
            core = core[: -len(t.suffix)]
        cores[t.pk] = transforms.normalise(core) if core else ""
    candidates = candidates_for([c for c in set(cores.values()) if c])
    out = []
    for t in found:
        spec = transforms.TransformSpec.from_model(t)
        for item in candidates.get(cores[t.pk], []):
            try:
                if transforms.apply(item.sku, spec) == record.sku:
                    out.append((t, item))
            except transforms.TransformError:
                continue
    return out


def similar_open(record: ExceptionRecord):
    """Open SKU problems like this one: same kind and channel, still active, not this row."""
    return (
        ExceptionRecord.objects.filter(kind=record.kind, channel_id=record.channel_id, status__in=ACTIVE_STATUSES)
        .exclude(pk=record.pk)
        .exclude(sku="")
    )


def _acting(user):
    """Keep the request's actor/source (console or api) when there is one; else act as ``user``."""
    if audit.current_user() is not None:
        return contextlib.nullcontext()
    return audit.acting_as(user, "console")


# --- SKU fixes ---------------------------------------------------------------------------------------
@dataclass
class FixResult:
    resolved: int = 0
    acknowledged: int = 0  # SKU fixes: waiting for the re-queued stock push to confirm (it then resolves them)
    mappings_created: int = 0
    mappings_updated: int = 0
    pushes_queued: int = 0
    orders_revalidated: int = 0
    skipped: list = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.mappings_created} mapping(s) created, {self.mappings_updated} updated; "
            f"{self.pushes_queued} stock push(es) queued; {self.orders_revalidated} held order(s) revalidated; "
            f"{self.acknowledged} exception(s) acknowledged until the storefront confirms the stock push"
        )
        if self.resolved:
            text += f"; {self.resolved} exception(s) resolved"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped"
        return text


def _ensure_transform(spec: transforms.TransformSpec | None, channel: Channel | None) -> IdentifierTransform | None:
    if spec is None or spec == transforms.TransformSpec():
        return None
    existing = _transform_for_spec(spec, channel)
    if existing is not None:
        return existing
    name = f"{transforms.describe(spec)} @{channel.key if channel else 'all'}"[:100]
    return IdentifierTransform.objects.create(
        name=name,
        connection_id=channel.connection_id if channel else None,
        channel=channel,
        strip_leading_zeros=spec.strip_leading_zeros,
        pad_to_length=spec.pad_to_length,
        fixed_length=spec.fixed_length,
        prefix=spec.prefix,
        suffix=spec.suffix,
        case=spec.case,
    )


def _upsert_mappings(
    pairs: list[tuple[Item, str]], channel: Channel | None, transform: IdentifierTransform | None, user=None
) -> tuple[list[SkuMapping], list[SkuMapping]]:
    """Create or repoint mappings (channel, storefront sku) → item in bulk, audited. Returns (created, updated)."""
    skus = [sku for _, sku in pairs]
    existing = {
        m.storefront_sku: m
        for m in SkuMapping.objects.filter(channel=channel, storefront_sku__in=skus).select_related("item", "channel")
    }
    befores, created, updated = {}, [], []
    for item, sku in pairs:
        m = existing.get(sku)
        if m is None:
            created.append(SkuMapping(item=item, channel=channel, storefront_sku=sku, transform=transform, active=True))
        elif m.item_id != item.pk or not m.active or m.transform_id != (transform.pk if transform else None):
            befores[m.pk] = audit.snapshot(m)
            m.item, m.transform, m.active = item, transform, True
            updated.append(m)
    SkuMapping.objects.bulk_create(created, batch_size=500)
    if updated:
        SkuMapping.objects.bulk_update(updated, ["item", "transform", "active", "updated_at"], batch_size=500)
    if created and created[0].pk is None:  # backends without RETURNING ids
        created = list(
            SkuMapping.objects.filter(channel=channel, storefront_sku__in=[m.storefront_sku for m in created])
        )
    audit.record_many(created, "create", user=user)
    audit.record_many(updated, "update", user=user, befores=befores)
    return created, updated


def acknowledge_sku_fix(keys, user=None, note: str = "SKU mapped") -> int:
    """A mapping that should fix these SKU exceptions was saved: mark the active ones acknowledged (who, what
    was done) — not resolved. They resolve when the re-queued stock push succeeds: the push engine clears the
    ``sku_mismatch`` / ``unknown_sku`` keys of every (channel, storefront SKU) the storefront confirms. Console
    triage, the rules pages, the API and the CSV import all call this. Returns rows acknowledged."""
    keys = sorted(set(keys))
    who = getattr(user, "username", "") or "system"
    actor = user if getattr(user, "is_authenticated", False) else None
    reason = f"{note} by {who}; resolves when the storefront confirms the re-queued stock push"[:1000]
    done = 0
    for start in range(0, len(keys), 1000):
        active = ExceptionRecord.objects.filter(dedupe_key__in=keys[start : start + 1000], status__in=ACTIVE_STATUSES)
        befores = {r.pk: audit.snapshot(r) for r in active}
        if not befores:
            continue
        ExceptionRecord.objects.filter(pk__in=list(befores)).update(
            status=Status.ACKNOWLEDGED, status_reason=reason, status_changed_by=actor, status_changed_at=_now()
        )
        fresh = list(ExceptionRecord.objects.filter(pk__in=list(befores)))
        audit.record_many(fresh, "update", user=actor, befores=befores)
        done += len(fresh)
    return done


def sku_fix_keys(storefront_skus, channel_keys) -> list[str]:
    """The SKU exception keys a mapping of these storefront SKUs on these channels addresses."""
    return [kinds.key(kind, ck, sku) for sku in storefront_skus for kind in SKU_KINDS for ck in channel_keys]


def _after_mapping(
    records: list[ExceptionRecord], items: list[Item], channel: Channel | None, user, result: FixResult, note: str
) -> None:
    channel_ids = [channel.pk] if channel is not None else None
    change = mapping_changed(
        {i.pk for i in items},
        channel_ids,
        "sku mapping fixed in console",
        storefront_skus=[r.sku for r in records],
        channel=channel,
    )
    result.pushes_queued += change.pushes
    result.orders_revalidated += change.orders_revalidated
    if channel is not None:
        channel_keys = [channel.key]
    else:
        channel_keys = list(Channel.objects.values_list("key", flat=True))
    keys = set(sku_fix_keys([r.sku for r in records], channel_keys)) | {r.dedupe_key for r in records}
    result.acknowledged += acknowledge_sku_fix(keys, user, note)


def after_mapping_saved(obj: SkuMapping, before: dict | None = None) -> str:
    """A person created or edited a mapping on the console rule pages or the API (a row save: its signal already
    re-queued the ATS of the item(s) it touches — :func:`integration_hub.catalog.mapping_changes.last_change`):
    acknowledge the SKU exceptions for its storefront SKU (the confirmed push resolves them) and re-check the
    orders held on it. ``before``: the audit snapshot before the edit (None when created)."""
    n = last_change(obj).pushes
    if obj.active:
        channel_keys = [obj.channel.key] if obj.channel_id else list(Channel.objects.values_list("key", flat=True))
        acknowledge_sku_fix(
            sku_fix_keys([obj.storefront_sku], channel_keys),
            audit.current_user(),
            f"mapped {obj.storefront_sku} → {obj.item.sku}",
        )
        released = mapping_changed(
            (),
            None,
            "sku mapping edited",
            storefront_skus=[obj.storefront_sku],
            channel=obj.channel if obj.channel_id else None,
        ).orders_revalidated
        return f"{n} stock push(es) queued, {released} held order(s) revalidated"
    return f"{n} stock push(es) queued"


def map_sku(
    record: ExceptionRecord,
    item: Item,
    *,
    all_channels: bool = False,
    spec: transforms.TransformSpec | None = None,
    user=None,
) -> FixResult:
    """Map ``record.sku`` to ``item`` (on the record's channel, or globally); the exception is acknowledged
    until the re-queued stock push confirms (see :func:`acknowledge_sku_fix`)."""
    if record.kind not in SKU_KINDS:
        raise TriageError("this exception is not a SKU problem")
    if not record.sku:
        raise TriageError("the exception names no storefront SKU")
    channel = None if all_channels or record.channel_id is None else record.channel
    result = FixResult()
    with _acting(user), transaction.atomic():
        try:
            transform = _ensure_transform(spec, channel)
            created, updated = _upsert_mappings([(item, record.sku)], channel, transform, user)
        except IntegrityError as exc:
            raise TriageError(f"could not create the mapping: {exc}") from exc
        result.mappings_created, result.mappings_updated = len(created), len(updated)
        _after_mapping([record], [item], channel, user, result, f"mapped {record.sku} → {item.sku}")
    return result


def bulk_map_with_transform(
    record: ExceptionRecord, spec: transforms.TransformSpec, *, user=None, include_self: bool = True
) -> FixResult:
    """Apply ``spec`` to every similar open SKU problem: map each storefront SKU to the master item the
    transform turns into it. Rows with no such item (or more than one) are skipped and stay open."""
    if record.kind not in SKU_KINDS:
        raise TriageError("this exception is not a SKU problem")
    records = list(similar_open(record).select_related("channel"))
    if include_self:
        records.insert(0, record)
    channel = record.channel
    result = FixResult()
    candidates = candidates_for([r.sku for r in records])
    pairs, fixed, items = [], [], {}
    for r in records:
        matches = []
        for item in candidates.get(transforms.normalise(r.sku), []):
            try:
                if transforms.apply(item.sku, spec) == r.sku:
                    matches.append(item)
            except transforms.TransformError:
                continue
        if len(matches) != 1:
            result.skipped.append((r.sku, "no master SKU matches" if not matches else "several master SKUs match"))
            continue
        pairs.append((matches[0], r.sku))
        fixed.append(r)
        items[matches[0].pk] = matches[0]
    if not pairs:
        return result
    with _acting(user), transaction.atomic():
        transform = _ensure_transform(spec, channel)
        created, updated = _upsert_mappings(pairs, channel, transform, user)
        result.mappings_created, result.mappings_updated = len(created), len(updated)
        _after_mapping(
            fixed, list(items.values()), channel, user, result, f"bulk-mapped with '{transforms.describe(spec)}'"
        )
    return result


# --- status changes (audited) ----------------------------------------------------------------------------
def change_status(record: ExceptionRecord, action: str, user=None, reason: str = "") -> ExceptionRecord:
    """acknowledge / ignore / resolve / reopen, with an audit entry (who, when, before/after)."""
    reason = (reason or "").strip()
    before = audit.snapshot(record)
    if action == "acknowledge":
        if record.status != Status.OPEN:
            raise TriageError("only open exceptions can be acknowledged")
        services.acknowledge(record, user=user, reason=reason)
    elif action == "ignore":
        if not reason:
            raise TriageError("say why this exception can be ignored")
        services.ignore(record, user=user, reason=reason)
    elif action == "resolve":
        services.resolve(record, user=user, reason=reason or "resolved by hand")
    elif action == "reopen":
        if record.is_active:
            raise TriageError("this exception is already open")
        ExceptionRecord.objects.filter(pk=record.pk).update(
            status=Status.OPEN, status_reason=reason or "reopened", status_changed_by=user, status_changed_at=_now()
        )
    else:
        raise TriageError(f"unknown action {action!r}")
    record.refresh_from_db()
    audit.record_many([record], "update", user=user, befores={record.pk: before})
    return record


def bulk_change_status(records: list[ExceptionRecord], action: str, user=None, reason: str = "") -> int:
    """acknowledge / ignore / resolve many rows: one UPDATE, one audit INSERT."""
    reason = (reason or "").strip()
    if action == "ignore" and not reason:
        raise TriageError("say why these exceptions can be ignored")
    target = {"acknowledge": Status.ACKNOWLEDGED, "ignore": Status.IGNORED, "resolve": Status.RESOLVED}.get(action)
    if target is None:
        raise TriageError(f"unknown action {action!r}")
    eligible = [r for r in records if (r.status == Status.OPEN if action == "acknowledge" else r.status != target)]
    if not eligible:
        return 0
    befores = {r.pk: audit.snapshot(r) for r in eligible}
    now = _now()
    ExceptionRecord.objects.filter(pk__in=list(befores)).update(
        status=target,
        status_changed_at=now,
        status_changed_by=user if getattr(user, "is_authenticated", False) else None,
        status_reason=reason or f"{action}d in bulk",
    )
    fresh = list(ExceptionRecord.objects.filter(pk__in=list(befores)))
    audit.record_many(fresh, "update", user=user, befores=befores)
    return len(fresh)


def _now():
    from django.utils import timezone

    return timezone.now()


# --- stuck orders ---------------------------------------------------------------------------------------
def order_for(record: ExceptionRecord):
    from integration_hub.orders.models import Order

    ctx = record.context or {}
    if str(ctx.get("order_id", "")).isdigit():
        found = Order.objects.filter(pk=int(ctx["order_id"])).select_related("channel", "warehouse").first()
        if found is not None:
            return found
    ref = record.order_ref or ctx.get("order_ref", "")
    key_ref = record.dedupe_key.split(":", 1)[1] if ":" in record.dedupe_key else ""
    q = Q()
    for value in {ref, key_ref} - {""}:
        q |= Q(idempotency_key=value) | Q(order_number=value) | Q(external_id=value)
    if not q:
        return None
    qs = Order.objects.filter(q)
    if record.channel_id:
        qs = qs.filter(channel_id=record.channel_id)
    return qs.select_related("channel", "warehouse").first()


def _order_service(name: str):
    fn = getattr(order_flow, name, None)
    if fn is None:
        raise TriageError("the order flow is not installed on this hub: cannot act on orders yet")
    return fn


def _wrap(call):
    try:
        return call()
    except IllegalTransition as exc:
        raise TriageError(str(exc)) from exc
    except (ValueError, LookupError) as exc:
        raise TriageError(str(exc)) from exc


def _note(record: ExceptionRecord | None, user, text: str) -> None:
    """Mark the exception acknowledged with what was done; the order flow clears it on success."""
    if record is None:
        return
    record.refresh_from_db()  # the service may already have resolved it (e.g. an immediate successful send)
    if not record.is_active:
        return
    before = audit.snapshot(record)
    updated = ExceptionRecord.objects.filter(pk=record.pk, status__in=ACTIVE_STATUSES).update(
        status=Status.ACKNOWLEDGED, status_reason=text[:1000], status_changed_by=user, status_changed_at=_now()
    )
    record.refresh_from_db()
    if updated:
        audit.record_many([record], "update", user=user, befores={record.pk: before})


def retry_order(order, user=None, record: ExceptionRecord | None = None):
    result = _wrap(lambda: _order_service("retry_send")(order, actor=user))
    _note(record, user, "resend requested; resolves when the warehouse acknowledges")
    return result


def edit_and_resend(order, field_name: str, value: str, user=None, record: ExceptionRecord | None = None):
    if not editable_field(field_name):
        raise TriageError(f"{field_name!r} cannot be edited from the console")
    result = _wrap(lambda: _order_service("update_field_and_resend")(order, field_name, value, actor=user))
    _note(
        record,
        user,
        f"{EDITABLE_ORDER_FIELDS.get(field_name, field_name)} corrected and resend requested; "
        "resolves when the warehouse acknowledges",
    )
    return result


def resend_dispatch(order, user=None, record: ExceptionRecord | None = None):
    """Tell the storefront again that a dispatched order shipped (missing_dispatch)."""
    result = _wrap(lambda: _order_service("notify_storefront")(order, actor=user))
    _note(record, user, "shipped notification resent; resolves when the storefront shows the order shipped")
    return result


def cancel_order(order, reason: str, user=None, record: ExceptionRecord | None = None):
    reason = (reason or "").strip()
    if not reason:
        raise TriageError("say why the order is cancelled")
    result = _wrap(lambda: _order_service("cancel")(order, reason, actor=user))
    if record is not None:
        record.refresh_from_db()  # the order flow clears the order's keys itself on cancel
        if record.is_active:
            change_status(record, "resolve", user=user, reason=f"order cancelled: {reason}")
    return result


# --- stock re-push (stock_drift, bad_payload on a stock push) ------------------------------------------------
def mapped_item_id(record: ExceptionRecord) -> int | None:
    """The item the record's storefront SKU maps to on its channel (channel-specific mapping first)."""
    if not record.sku or record.channel_id is None:
        return None
    m = (
        SkuMapping.objects.filter(storefront_sku=record.sku, active=True)
        .filter(Q(channel_id=record.channel_id) | Q(channel__isnull=True))
        .order_by(F("channel_id").asc(nulls_last=True))
        .first()
    )
    return m.item_id if m else None


def repush_stock(record: ExceptionRecord, user=None) -> int:
    """Queue a fresh push of the SKU's ATS to the record's channel. The exception stays (acknowledged) until
    the stock engine's next drift check / successful push clears its key."""
    item_id = mapped_item_id(record)
    if item_id is None:
        raise TriageError("this SKU has no active mapping on the channel: map it first")
    n = outbox.enqueue_pairs(
        [(record.channel_id, item_id)], priority=PendingPush.Priority.ROUTINE, reason="console re-push"
    )
    _note(record, user, "stock push re-queued from the console; resolves when the storefront confirms the quantity")
    return n


# --- order actions offered on the exception detail page and the order page ------------------------------
ORDER_ACTION_LABELS = [
    ("retry", "Retried"),
    ("edit", "Edited and resent"),
    ("notify", "Notified as shipped again"),
    ("cancel", "Cancelled"),
]
# the permissions of each order action: kinds.permissions("order", <action>) (declared in exceptions_app.kinds)


# which actions an order's state allows (the order flow refuses the others: retry_send, update_field_and_resend,
# notify_storefront and cancel in orders.actions); a shipped or cancelled order offers none
ACTION_STATES = {
    "retry": {"captured", "validated", "sent", "held", "failed"},
    "edit": {"captured", "validated", "held", "failed"},
    "notify": {"dispatched"},
    "cancel": {"captured", "validated", "held", "failed", "sent", "acknowledged"},
}


def actions_for_state(state: str) -> list[str]:
    """The order actions that make sense for an order in ``state``, in the order the console offers them."""
    return [a for a in ("retry", "edit", "notify", "cancel") if state in ACTION_STATES[a]]


def run_order_action(order, action: str, data: dict, user=None, record: ExceptionRecord | None = None) -> str:
    """Carry out one order fix (``OrderActionForm.cleaned_data`` in ``data``); returns what to tell the
    person. Raises TriageError when the order flow refuses it or the order's state does not allow it."""
    if action in ACTION_STATES and order.state not in ACTION_STATES[action]:
        raise TriageError(
            f"Order {order} is {order.get_state_display()}: it cannot be "
            f"{dict(ORDER_ACTION_LABELS).get(action, action).lower()}."
        )
    then = " The exception resolves when the warehouse acknowledges it." if record is not None else ""
    if action == "retry":
        retry_order(order, user=user, record=record)
        return f"Order {order} queued for resend.{then}"
    if action == "edit":
        edit_and_resend(order, data["field"], data["value"], user=user, record=record)
        return f"Order {order} corrected and queued for resend.{then}"
    if action == "notify":
        resend_dispatch(order, user=user, record=record)
        return f"Shipped notification for {order} resent."
    if action == "cancel":
        cancel_order(order, data["reason"], user=user, record=record)
        return f"Order {order} cancelled."
    raise TriageError(f"unknown order action {action!r}")


# --- what CX read: order numbers and plain language ------------------------------------------------------------
def attach_order_numbers(records: list[ExceptionRecord]) -> None:
    """Set ``record.order_number`` (the storefront's order number, "" when unknown) on each record: one query
    for the whole list."""
    from integration_hub.orders.models import Order

    refs = {r.order_ref for r in records if r.order_ref}
    numbers = (
        dict(Order.objects.filter(idempotency_key__in=refs).values_list("idempotency_key", "order_number"))
        if refs
        else {}
    )
    for r in records:
        r.order_number = numbers.get(r.order_ref, "") or (r.order_ref if r.order_ref and ":" not in r.order_ref else "")


def plain_text(record: ExceptionRecord) -> str:
    """A sentence for CX saying what the problem means (the technical detail stays one click away)."""
    base = kinds.plain(record.kind)
    if (
        record.kind == Kind.BAD_PAYLOAD
        and isinstance((record.context or {}).get("fields"), dict)
        and record.context["fields"]
    ):
        base += " Fields: " + ", ".join(str(k) for k in list(record.context["fields"])[:5]) + "."
    return base


def escalate_order(order, note: str, user=None) -> ExceptionRecord:
    """CX hand an order to ops with a note: one ``escalated`` record per order (a repeat adds to its count and
    keeps the latest note), with the order number, in the ops queue."""
    from .services import raise_exception

    note = (note or "").strip()
    if not note:
        raise TriageError("Say what ops should look at.")
    who = getattr(user, "username", "") or "someone"
    return raise_exception(
        Kind.ESCALATED,
        kinds.key(Kind.ESCALATED, order.idempotency_key),
        f"Order {order} escalated by {who}: {note}"[:300],
        message=note[:2000],
        severity=kinds.spec(Kind.ESCALATED).severity,
        context={
            "order_id": order.pk,
            "order_number": order.order_number,
            "note": note[:2000],
            "escalated_by": who,
            "action": "retry_order",
        },
        channel=order.channel_id,
        order_ref=order.idempotency_key,
    )
