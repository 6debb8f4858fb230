"""Audit of a rule's notification channels (a many-to-many, which row snapshots do not carry): each change
of the set — admin, shell or code — is one audit entry with the channel names before and after."""

from __future__ import annotations

from django.db.models.signals import m2m_changed


def _names(rule) -> list[str]:
    return sorted(rule.channels.values_list("name", flat=True))


def _channels_changed(sender, instance, action, reverse, pk_set, **kwargs):
    from integration_hub.core import audit

    from .models import AlertRule

    if reverse or not isinstance(instance, AlertRule):
        return  # changed from the channel side: rare (admin edits rules); not worth a query per rule
    if action in ("pre_add", "pre_remove", "pre_clear"):
        instance._channels_before = _names(instance)
    elif action in ("post_add", "post_remove", "post_clear"):
        before = getattr(instance, "_channels_before", None)
        after = _names(instance)
        if before != after:
            audit.write(instance, "update", {"channels": before}, {"channels": after})


def connect() -> None:
    from .models import AlertRule

    m2m_changed.connect(_channels_changed, sender=AlertRule.channels.through, dispatch_uid="monitoring-rule-channels")
