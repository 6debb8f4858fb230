"""Monitoring's place in the hub: beat jobs installed by setup_beat, the resync task feeding its progress bar."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_setup_beat_installs_the_monitoring_jobs():
    from django.core.management import call_command
    from django_celery_beat.models import PeriodicTask

    call_command("setup_beat")
    tasks = dict(PeriodicTask.objects.values_list("task", "interval__every"))
    assert tasks["monitoring.tick"] == 60 and tasks["monitoring.deliver_due"] == 30


def test_full_resync_feeds_its_progress_bar(w, monkeypatch):
    from integration_hub.inventory import services, tasks
    from integration_hub.monitoring.models import TaskProgress

    seen = []

    class Res:
        def as_dict(self):
            return {}

    def fake_resync(conn):
        row = TaskProgress.objects.get(key="stock-resync")
        seen.append((row.done, row.total, row.finished_at))
        return Res()

    monkeypatch.setattr(services, "resync_master", fake_resync)
    tasks.resync_masters()
    assert seen == [(0, 1, None)]
    row = TaskProgress.objects.get(key="stock-resync")
    assert (row.done, row.total) == (1, 1) and row.finished_at is not None


def test_setup_alerts_installs_the_shipped_rules_once_and_keeps_edits():
    from django.core.management import call_command

    from integration_hub.core.models import AuditEntry
    from integration_hub.monitoring import figures
    from integration_hub.monitoring.defaults import DEFAULT_RULES
    from integration_hub.monitoring.models import AlertRule

    call_command("setup_alerts")
    assert AlertRule.objects.count() == len(DEFAULT_RULES)
    assert all(r.figure in figures.FIGURES for r in AlertRule.objects.all())
    assert AuditEntry.objects.filter(source="setup_alerts").count() == len(DEFAULT_RULES)
    AlertRule.objects.filter(name="Connection failing").update(threshold=5)
    AlertRule.objects.filter(name="Stock pushes stuck").delete()
    call_command("setup_alerts")
    assert AlertRule.objects.get(name="Connection failing").threshold == 5
    assert AlertRule.objects.count() == len(DEFAULT_RULES)


def test_the_shipped_critical_exceptions_rule_fires_for_critical_ones_only():
    """It was a per-kind rule over every severity: enabled, it paged 'critical' for any warning-level record."""
    from django.core.management import call_command
    from django.utils import timezone

    from exceptions_app.models import ExceptionRecord, Kind
    from integration_hub.monitoring import figures, rules
    from integration_hub.monitoring.models import AlertRule

    call_command("setup_alerts")
    AlertRule.objects.exclude(name="Critical exceptions open").update(enabled=False)
    AlertRule.objects.filter(name="Critical exceptions open").update(enabled=True)
    now = timezone.now()
    for i, severity in enumerate(("info", "warning", "error")):
        ExceptionRecord.objects.create(
            kind=Kind.STUCK_ORDER, dedupe_key=f"k{i}", title="t", severity=severity, first_seen=now, last_seen=now
        )
    assert rules.evaluate(figures.compute()).fired == []
    ExceptionRecord.objects.create(
        kind=Kind.SKU_MISMATCH, dedupe_key="crit", title="t", severity="critical", first_seen=now, last_seen=now
    )
    (firing,) = rules.evaluate(figures.compute()).fired
    assert firing.key == "critical" and firing.severity == "critical" and firing.value == 1
