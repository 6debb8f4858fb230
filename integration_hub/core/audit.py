"""Audit history for admin-editable rules and mappings.

Models are registered with :func:`track`; every save/delete through the ORM then writes an
:class:`AuditEntry` with before/after snapshots and the acting user (taken from the request by
:class:`CurrentUserMiddleware`, or set explicitly with :func:`acting_as` in tasks and imports).
Bulk writes bypass signals, so bulk code calls :func:`record_many` itself.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterable

from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model
from django.db.models.signals import post_delete, post_save, pre_save
import json

_state = threading.local()
_TRACKED: set[type[Model]] = set()


def current_user():
    return getattr(_state, "user", None)


def current_source() -> str:
    return getattr(_state, "source", "system")


@contextlib.contextmanager
def acting_as(user, source: str = "system"):
    prev_user, prev_source = getattr(_state, "user", None), getattr(_state, "source", "system")
    _state.user, _state.source = user, source
    try:
        yield
    finally:
        _state.user, _state.source = prev_user, prev_source


class CurrentUserMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        source = (
            "admin"
            if request.path.startswith("/admin/")
            else ("api" if request.path.startswith("/api/") else "console")
        )
        with acting_as(user if user is not None and user.is_authenticated else None, source):
            return self.get_response(request)


def snapshot(obj: Model) -> dict:
    data = {}
    for field in obj._meta.concrete_fields:
        if field.name.endswith("_encrypted"):
            continue  # never copy secrets into the audit trail
        data[field.attname] = field.value_from_object(obj)
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def write(obj: Model, action: str, before, after, user=None, source=None, repr_: str | None = None):
    """One audit entry for ``obj`` (actor and source from :func:`acting_as` unless given)."""
    from .models import AuditEntry

    return AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(type(obj)),
        object_id=str(obj.pk),
        object_repr=(repr_ if repr_ is not None else str(obj))[:300],
        action=action,
        actor=user if user is not None else current_user(),
        before=before,
        after=after,
        source=source or current_source(),
    )


def record_many(
    objs: Iterable[Model], action: str, user=None, source: str | None = None, befores: dict | None = None
) -> int:
    """Audit rows written by bulk_create/bulk_update (which send no signals). One INSERT."""
    from .models import AuditEntry

    befores = befores or {}
    entries = []
    ct_cache: dict = {}
    for obj in objs:
        model = type(obj)
        ct = ct_cache.get(model) or ct_cache.setdefault(model, ContentType.objects.get_for_model(model))
        entries.append(
            AuditEntry(
                content_type=ct,
                object_id=str(obj.pk),
                object_repr=str(obj)[:300],
                action=action,
                actor=user if user is not None else current_user(),
                before=befores.get(obj.pk),
                after=None if action == "delete" else snapshot(obj),
                source=source or current_source(),
            )
        )
    AuditEntry.objects.bulk_create(entries, batch_size=1000)
    return len(entries)


def history_for(obj: Model):
    from .models import AuditEntry

    return AuditEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(type(obj)), object_id=str(obj.pk)
    ).select_related("actor")


def recent_for_model(model: type[Model]):
    """Audit entries for every row of ``model``, newest first — deletions included (slice it)."""
    from .models import AuditEntry

    return (
        AuditEntry.objects.filter(content_type=ContentType.objects.get_for_model(model))
        .select_related("actor")
        .order_by("-at", "-id")
    )


def _meaningful(model, data: dict) -> dict:
    volatile = {f.attname for f in model._meta.concrete_fields if getattr(f, "auto_now", False)}
    return {k: v for k, v in data.items() if k not in volatile}


def _pre_save(sender, instance, raw=False, **kwargs):
    if raw or instance.pk is None:
        instance._audit_before = None
        return
    old = sender._default_manager.filter(pk=instance.pk).first()
    instance._audit_before = snapshot(old) if old is not None else None


def _post_save(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    after = snapshot(instance)
    before = getattr(instance, "_audit_before", None)
    if not created and before is not None and _meaningful(sender, before) == _meaningful(sender, after):
        return  # saved without a real change (only auto timestamps moved)
    write(instance, "create" if created else "update", None if created else before, after)


def _post_delete(sender, instance, **kwargs):
    write(instance, "delete", snapshot(instance), None)


def track(*models: type[Model]) -> None:
    for model in models:
        if model in _TRACKED:
            continue
        _TRACKED.add(model)
        pre_save.connect(_pre_save, sender=model, dispatch_uid=f"audit-pre-{model._meta.label}")
        post_save.connect(_post_save, sender=model, dispatch_uid=f"audit-post-{model._meta.label}")
        post_delete.connect(_post_delete, sender=model, dispatch_uid=f"audit-del-{model._meta.label}")


def is_tracked(model: type[Model]) -> bool:
    return model in _TRACKED
