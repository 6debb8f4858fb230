"""Evaluating the alert rules against the current figures, in a fixed number of queries.

Per (rule, key) an :class:`~.models.AlertState` remembers since when the condition holds. A rule fires
once per breach: when the condition has held for ``window_minutes`` and the previous firing of the same
(rule, key) recovered at least ``cooldown_minutes`` ago, one :class:`~.models.Firing` is opened and one
delivery per channel queued. It recovers once: the first evaluation that finds the condition false closes
the firing (and queues the recovery notice when the rule asks for one). Repeated evaluations while the
state holds change nothing. Evaluations run one at a time (a named lock); a partial unique constraint
(one open firing per rule and key) backs that up in the database.

Key of a rule: ``""`` = the hub-wide value, ``"*"`` = every key of the figure separately (e.g. each channel),
anything else = that one key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from integration_hub.core import locks

from . import delivery
from .messages import message
from .models import SEVERITY_RANK, AlertRule, AlertState, Delivery, Firing

log = logging.getLogger(__name__)

EVERY_KEY = "*"


@dataclass
class Outcome:
    fired: list = field(default_factory=list)
    recovered: list = field(default_factory=list)
    deliveries: int = 0
    skipped: bool = False


def _keys_for(rule: AlertRule, values: dict, known: set) -> list[str]:
    if rule.key != EVERY_KEY:
        return [rule.key]
    keys = {k for (f, k) in values if f == rule.figure and k and ":" not in k}
    return sorted(keys | known)


def _worse(rule: AlertRule, a: float, b: float) -> float:
    return min(a, b) if rule.op == AlertRule.Op.BELOW else max(a, b)


def evaluate(values: dict[tuple[str, str], float], now=None) -> Outcome:
    """Apply every enabled rule to ``values`` (from :func:`.figures.compute`). Fixed query count: rules +
    channels, states, open firings, then at most one write of each kind."""
    now = now or timezone.now()
    with locks.exclusive("monitoring-evaluate", timeout=120) as got:
        if not got:
            return Outcome(skipped=True)
        with transaction.atomic():
            outcome = _evaluate(values, now)
    if outcome.deliveries:
        transaction.on_commit(delivery.kick)
    return outcome


def _evaluate(values, now) -> Outcome:
    out = Outcome()
    # a rule switched off stops colouring its tile: its open firings close (quietly, no notice)
    Firing.objects.filter(recovered_at__isnull=True, rule__enabled=False).update(recovered_at=now)
    rules = list(AlertRule.objects.filter(enabled=True).prefetch_related("channels"))
    if not rules:
        return out
    rule_ids = [r.pk for r in rules]
    states = {(s.rule_id, s.key): s for s in AlertState.objects.filter(rule_id__in=rule_ids)}
    open_firings = {
        (f.rule_id, f.key): f for f in Firing.objects.filter(rule_id__in=rule_ids, recovered_at__isnull=True)
    }
    known: dict[int, set] = {}
    for rule_id, key in list(states) + list(open_firings):
        known.setdefault(rule_id, set()).add(key)

    new_firings: list[Firing] = []
    changed_firings: list[Firing] = []
    recovered: list[tuple[AlertRule, Firing]] = []
    state_rows: list[AlertState] = []
    for rule in rules:
        window = timedelta(minutes=rule.window_minutes)
        cooldown = timedelta(minutes=rule.cooldown_minutes)
        for key in _keys_for(rule, values, known.get(rule.pk, set())):
            value = values.get((rule.figure, key))
            state = states.get((rule.pk, key)) or AlertState(rule=rule, key=key)
            firing = open_firings.get((rule.pk, key))
            breach = value is not None and rule.breaches(value)
            if breach:
                state.breach_since = state.breach_since or now
                if firing is not None:
                    peak = _worse(rule, firing.peak, value)
                    if peak != firing.peak:
                        firing.peak = peak
                        changed_firings.append(firing)
                elif now - state.breach_since >= window and (
                    state.last_recovered_at is None or now - state.last_recovered_at >= cooldown
                ):
                    new_firings.append(
                        Firing(
                            rule=rule,
                            key=key,
                            severity=rule.severity,
                            flow=rule.effective_flow(key),
                            value=value,
                            peak=value,
                            message=message(rule, key, value)[:500],
                            started_at=now,
                        )
                    )
            else:
                state.breach_since = None
                if firing is not None:
                    firing.recovered_at = now
                    changed_firings.append(firing)
                    recovered.append((rule, firing))
                    state.last_recovered_at = now
            state.last_value = value
            state.evaluated_at = now
            state_rows.append(state)

    if new_firings:
        Firing.objects.bulk_create(new_firings)  # returns primary keys (PostgreSQL, SQLite ≥ 3.35)
    if changed_firings:
        Firing.objects.bulk_update(changed_firings, ["peak", "recovered_at"])
    deliveries = []
    for f in new_firings:
        deliveries += _deliveries(f.rule, f, Delivery.Event.FIRED)
    for rule, f in recovered:
        if rule.notify_recovery:
            deliveries += _deliveries(rule, f, Delivery.Event.RECOVERED)
    if deliveries:
        Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)  # unique (firing, channel, event)
    existing = [s for s in state_rows if s.pk]
    if existing:
        AlertState.objects.bulk_update(existing, ["breach_since", "last_value", "last_recovered_at", "evaluated_at"])
    fresh = [s for s in state_rows if not s.pk]
    if fresh:
        AlertState.objects.bulk_create(fresh)
    out.fired = new_firings
    out.recovered = [f for _, f in recovered]
    out.deliveries = len(deliveries)
    for f in new_firings[:20]:
        log.warning("alert fired: %s", f.message)
    for f in out.recovered[:20]:
        log.info("alert recovered: %s", f.message)
    return out


def _deliveries(rule: AlertRule, firing: Firing, event: str) -> list[Delivery]:
    rank = SEVERITY_RANK.get(firing.severity, 0)
    return [
        Delivery(firing=firing, channel=c, event=event)
        for c in rule.channels.all()
        if c.enabled and rank >= SEVERITY_RANK.get(c.min_severity, 0)
    ]
