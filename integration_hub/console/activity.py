"""Audit entries for people: names instead of ids (who, which item / channel / transform / pool), the global
activity list, and revert of an edit.

Names: the snapshot stores foreign keys as ids (``channel_id: 3``); :func:`named_history` resolves them with
one query per related model for the whole page (fixed, whatever the number of entries).

Revert: an audited *edit* of a channel rule, a SKU mapping or a beat schedule can be undone by applying the
previous values as a new change, through the normal edit page: the revert page is the edit form filled with
the previous values, so saving runs the same validation and, for changes that move stock, the same impact
preview and confirmation. :func:`revert_plan` refuses with a reason when an entry cannot be reverted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib.contenttypes.models import ContentType
from django.http import QueryDict

from .rule_tables import RULES
from .services import VOLATILE, HistoryRow

# foreign key attname → (model label, field that names a row)
NAMES = {
    "item_id": ("catalog.Item", "sku"),
    "channel_id": ("core.Channel", "key"),
    "transform_id": ("catalog.IdentifierTransform", "name"),
    "pool_id": ("inventory.StockPool", "code"),
    "connection_id": ("core.Connection", "name"),
    "location_id": ("core.Location", "code"),
    "warehouse_id": ("core.Connection", "name"),
    "bundle_id": ("catalog.Item", "sku"),
    "component_id": ("catalog.Item", "sku"),
}
HIDDEN = VOLATILE | {"id", "created_at"}


def _names_for(entries) -> dict[tuple[str, object], str]:
    from django.apps import apps

    wanted: dict[str, set] = {}
    for e in entries:
        for snap in (e.before or {}, e.after or {}):
            for k, v in snap.items():
                if k in NAMES and v is not None:
                    wanted.setdefault(k, set()).add(v)
    by_model: dict[tuple[str, str], set] = {}
    for k, ids in wanted.items():
        by_model.setdefault(NAMES[k], set()).update(ids)
    out = {}
    for (label, name_field), ids in by_model.items():
        model = apps.get_model(label)
        for pk, name in model.objects.filter(pk__in=ids).values_list("pk", name_field):
            out[(label, pk)] = name
    return out


def named_history(entries) -> list[HistoryRow]:
    """Like :func:`services.history_rows`, with ids shown as names ("channel: web" for ``channel_id: 3``; a
    row deleted since keeps its id, marked). One query per related model for the whole list."""
    entries = list(entries)
    names = _names_for(entries)
    out = []
    for e in entries:
        before, after = e.before or {}, e.after or {}
        changes = []
        for k in sorted(set(before) | set(after)):
            b, a = before.get(k), after.get(k)
            if b == a or k in HIDDEN:
                continue
            if k in NAMES:
                label = NAMES[k][0]
                b = names.get((label, b), f"#{b} (deleted)") if b is not None else None
                a = names.get((label, a), f"#{a} (deleted)") if a is not None else None
                k = k[:-3]
            changes.append((k.replace("_", " "), b, a))
        out.append(HistoryRow(e, changes))
    return out


def actor_name(user) -> str:
    if user is None:
        return "system"
    return user.get_full_name() or user.username


# --- revert ------------------------------------------------------------------------------------------------------
class NotRevertible(Exception):
    """Why an audit entry cannot be reverted (shown to the person)."""


@dataclass
class RevertPlan:
    entry: object
    kind: str  # rule slug ("sku-mappings", "channel-rules") or "schedule"
    obj: object
    data: QueryDict  # the edit form's data with the previous values
    changes: list  # (field, now, after revert)


REVERTIBLE = {
    ("catalog", "skumapping"): "sku-mappings",
    ("inventory", "channelstockrule"): "channel-rules",
    ("django_celery_beat", "periodictask"): "schedule",
}


def revertible_kind(entry) -> str | None:
    ct = ContentType.objects.get_for_id(entry.content_type_id)
    return REVERTIBLE.get((ct.app_label, ct.model))


def _changed_keys(entry) -> set[str]:
    before, after = entry.before or {}, entry.after or {}
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k) and k not in HIDDEN}


def revert_plan(entry) -> RevertPlan:
    """The edit that puts back what ``entry`` changed, or :class:`NotRevertible` with the reason."""
    from integration_hub.core.models import AuditEntry

    kind = revertible_kind(entry)
    if kind is None:
        raise NotRevertible("Only edits of channel stock rules, SKU mappings and schedules can be reverted.")
    if entry.action == "create":
        raise NotRevertible("This entry created the row: undo it by deleting the row (that shows its impact first).")
    if entry.action == "delete":
        raise NotRevertible("Deleted rows are not restored by revert: create it again.")
    if entry.before is None or "run_now" in (entry.after or {}):
        raise NotRevertible("This entry records a run, not a change of values.")
    keys = _changed_keys(entry)
    if not keys:
        raise NotRevertible("This entry changed no values.")
    model = ContentType.objects.get_for_id(entry.content_type_id).model_class()
    obj = model.objects.filter(pk=entry.object_id).first()
    if obj is None:
        raise NotRevertible(f"{entry.object_repr} has been deleted since.")
    newer = (
        AuditEntry.objects.filter(content_type_id=entry.content_type_id, object_id=entry.object_id)
        .filter(at__gte=entry.at)
        .exclude(pk=entry.pk)
        .exclude(at=entry.at, pk__lt=entry.pk)
        .select_related("actor")
        .order_by("at", "id")
    )
    for later in newer:
        if later.action == "delete":
            raise NotRevertible(f"{entry.object_repr} has been deleted since.")
        if "run_now" in (later.after or {}):
            continue
        if _changed_keys(later) & keys:
            raise NotRevertible(
                f"Changed again since by {actor_name(later.actor)} at {later.at:%Y-%m-%d %H:%M} UTC "
                f"(entry #{later.pk}): revert that change first."
            )
    if kind == "schedule":
        data, changes = _schedule_data(obj, entry.before, keys)
    else:
        data, changes = _rule_data(kind, obj, entry.before, keys)
    if not changes:
        raise NotRevertible(f"{entry.object_repr} already has the values from before this change.")
    return RevertPlan(entry, kind, obj, data, changes)


def _form_data(form) -> dict:
    """The data an unchanged submit of ``form`` would post."""
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        data[name] = value
    return data


def _to_querydict(data: dict) -> QueryDict:
    q = QueryDict(mutable=True)
    for k, v in data.items():
        if isinstance(v, bool):
            if v:
                q[k] = "on"
        elif isinstance(v, (list, tuple)):
            q.setlist(k, [str(getattr(x, "pk", x)) for x in v])
        elif v is None:
            q[k] = ""
        else:
            q[k] = str(getattr(v, "pk", v))
    return q


def _rule_data(kind, obj, before: dict, keys: set[str]):
    from integration_hub.catalog.models import IdentifierTransform, Item
    from integration_hub.core.models import Channel, Location
    from integration_hub.inventory.models import StockPool

    rt = RULES[kind]
    data = _form_data(rt.form(instance=obj))
    current = _form_data(rt.form(instance=obj))
    fks = {
        "channel_id": ("channel", Channel),
        "transform_id": ("transform", IdentifierTransform),
        "pool_id": ("pool", StockPool),
    }
    for k in keys:
        v = before.get(k)
        if k == "item_id":
            sku = Item.objects.filter(pk=v).values_list("sku", flat=True).first()
            if sku is None:
                raise NotRevertible(f"The master item #{v} it pointed to no longer exists.")
            data["item_sku"] = sku
        elif k in fks:
            name, model = fks[k]
            if v is not None and not model.objects.filter(pk=v).exists():
                raise NotRevertible(f"The {name} #{v} it pointed to no longer exists.")
            data[name] = v
        elif k == "locations":
            codes = list(v or [])
            ids = dict(Location.objects.filter(code__in=codes).values_list("code", "pk"))
            missing = [c for c in codes if c not in ids]
            if missing:
                raise NotRevertible(f"Location(s) {', '.join(missing)} no longer exist.")
            data["locations"] = [ids[c] for c in codes]
        elif k in data:
            data[k] = v
        else:
            raise NotRevertible(f"'{k}' is not editable on the {rt.title.lower()} page.")
    changes = [(k, current.get(k), data.get(k)) for k in data if _norm(current.get(k)) != _norm(data.get(k))]
    return _to_querydict(data), changes


def _norm(v):
    if isinstance(v, (list, tuple)):
        return sorted(str(getattr(x, "pk", x)) for x in v)
    if v is None or v == "":
        return ""
    return str(getattr(v, "pk", v))


INTERVAL = re.compile(r"^every (?:(\d+) )?(\w+?)s?$")


def _schedule_data(task, before: dict, keys: set[str]):
    from integration_hub.core import beat

    from .forms import ScheduleForm

    current = _form_data(ScheduleForm(instance=task))
    data = dict(current)
    unsupported = keys - {"enabled", "interval", "crontab"}
    if unsupported:
        raise NotRevertible(
            f"Only the schedule and the enabled flag can be reverted here, not {', '.join(sorted(unsupported))}."
        )
    if "enabled" in keys:
        data["enabled"] = bool(before.get("enabled"))
    if {"interval", "crontab"} & keys:
        if before.get("crontab"):
            data.update(cron=before["crontab"], every=None, period=None)
        elif before.get("interval"):
            m = INTERVAL.match(before["interval"])
            if not m:
                raise NotRevertible(f"The previous interval {before['interval']!r} cannot be read back.")
            data.update(cron="", every=int(m.group(1) or 1), period=m.group(2) + "s")
        else:
            raise NotRevertible("The job had no interval or crontab before this change.")
    data.setdefault("cron", beat.cron_text(task))
    changes = [(k, current.get(k), data.get(k)) for k in data if _norm(current.get(k)) != _norm(data.get(k))]
    return _to_querydict(data), changes
