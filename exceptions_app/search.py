"""The exception queue's search syntax (after Sentry's issue search):

    kind:unknown_sku channel:uk-web sku:00045 order:UK-1002 is:open assignee:me "free text" more text

``key:value`` narrows on one field, ``key:"quoted value"`` keeps spaces, anything else is free text (every
word, or quoted phrase, must appear). Keys: see :data:`KEYS`. An unknown key, a key without a value, a value
a key does not accept or an unclosed quote is an error naming what is wrong — never silently ignored.

:func:`parse` is pure (text → :class:`Query`); :func:`apply` turns a query into a queryset filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.db.models import Q

from .models import ACTIVE_STATUSES, Kind, Severity, Status

KEYS = {
    "kind": "exception kind, e.g. kind:unknown_sku",
    "channel": "channel key or name, e.g. channel:uk-web",
    "connection": "connection name, e.g. connection:wair",
    "sku": "storefront SKU (prefix), e.g. sku:00045",
    "order": "order number, e-mail or hub order key (partial), e.g. order:UK-1002",
    "is": "open, acknowledged, resolved, ignored, active, snoozed, assigned, unassigned, all",
    "assignee": "me, none or a username",
    "severity": "info, warning, error, critical",
    "group": "a root-cause group (the queue links it)",
}
IS_VALUES = ("open", "acknowledged", "resolved", "ignored", "active", "snoozed", "assigned", "unassigned", "all")
STATUS_IS = {"open", "acknowledged", "resolved", "ignored", "active", "all"}

_TOKEN = re.compile(
    r'\s*(?:(?P<key>[A-Za-z_]+):(?:"(?P<qv>[^"]*)"|(?P<v>[^\s"]*))|"(?P<phrase>[^"]*)"|(?P<word>[^\s"]+))'
)


class SearchError(ValueError):
    """The search text cannot be read (message says why, for the person who typed it)."""


@dataclass
class Query:
    text: str = ""
    filters: list[tuple[str, str]] = field(default_factory=list)  # (key, value) in the order typed
    words: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.filters if k == key]

    @property
    def sets_status(self) -> bool:
        return any(v in STATUS_IS or v == "snoozed" for v in self.values("is"))

    @property
    def wants_snoozed(self) -> bool:
        return "snoozed" in self.values("is") or "all" in self.values("is")


def parse(text: str) -> Query:
    """Read the search box. Errors are collected (all of them), not raised: see ``Query.errors``."""
    q = Query(text=text or "")
    s = q.text
    if s.count('"') % 2:
        q.errors.append('A quote is not closed: add the closing " (quotes keep spaces in a value).')
        s = s.replace('"', " ")
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        if m.group("key") is not None:
            key, value = m.group("key").lower(), (m.group("qv") if m.group("qv") is not None else m.group("v"))
            _check(q, key, value.strip())
        elif m.group("phrase") is not None:
            if m.group("phrase").strip():
                q.words.append(m.group("phrase").strip())
        elif m.group("word"):
            q.words.append(m.group("word"))
    return q


def _check(q: Query, key: str, value: str) -> None:
    if key not in KEYS:
        q.errors.append(
            f'Unknown search key "{key}:". Use one of: {", ".join(f"{k}:" for k in KEYS)} '
            '(put text that contains a colon in quotes).'
        )
        return
    if not value:
        q.errors.append(f'"{key}:" needs a value — {KEYS[key]}.')
        return
    low = value.lower()
    if key == "kind" and low not in Kind.values:
        q.errors.append(f'"{value}" is not an exception kind. Kinds: {", ".join(Kind.values)}.')
        return
    if key == "is" and low not in IS_VALUES:
        q.errors.append(f'"is:{value}" is not known. Use is: with {", ".join(IS_VALUES)}.')
        return
    if key == "severity" and low not in Severity.values:
        q.errors.append(f'"{value}" is not a severity. Use {", ".join(Severity.values)}.')
        return
    q.filters.append((key, low if key in ("kind", "is", "severity") else value))


def _order_q(value: str) -> Q:
    from integration_hub.orders.models import Order

    value = value.lstrip("#").strip()
    orders = Order.objects.filter(Q(order_number__icontains=value) | Q(customer_email__icontains=value))
    return (
        Q(order_ref__iexact=value)
        | Q(order_ref__istartswith=value)
        | Q(context__order_number__iexact=value)
        | Q(order_ref__in=orders.values("idempotency_key"))
    )


def _text_q(word: str) -> Q:
    """Free text: the title or message, or what CX and ops type into a search box (SKU, order number, e-mail)."""
    return (
        Q(title__icontains=word)
        | Q(message__icontains=word)
        | Q(sku__istartswith=word)
        | Q(dedupe_key__icontains=word)
        | _order_q(word)
    )


def apply(query: Query, qs, user=None):
    """``qs`` narrowed by ``query`` (which must have no errors). Several values of one key are alternatives
    (kind:a kind:b), different keys all apply. Without an ``is:`` status the caller's default applies; snoozed
    records are hidden unless ``is:snoozed`` (or ``is:all``) asks for them."""
    if query.errors:
        raise SearchError(" ".join(query.errors))
    from django.utils import timezone

    now = timezone.now()
    by_key: dict[str, list[str]] = {}
    for k, v in query.filters:  # is:open is:acknowledged are alternatives; is:open is:unassigned both apply
        by_key.setdefault(k if k != "is" else ("is" if v in STATUS_IS else f"is:{v}"), []).append(v)
    for key, values in by_key.items():
        cond = Q()
        for v in values:
            cond |= _condition(key.split(":")[0], v, user, now)
        qs = qs.filter(cond)
    for word in query.words:
        qs = qs.filter(_text_q(word))
    return qs


def snoozed_q(now) -> Q:
    return Q(snooze_until_sync=True) | Q(snoozed_until__gt=now)


def _condition(key: str, v: str, user, now) -> Q:
    if key == "kind":
        return Q(kind=v)
    if key == "severity":
        return Q(severity=v)
    if key == "channel":
        return Q(channel__key__iexact=v) | Q(channel__name__iexact=v)
    if key == "connection":
        return Q(connection__name__iexact=v)
    if key == "sku":
        return Q(sku__istartswith=v)
    if key == "order":
        return _order_q(v)
    if key == "group":
        return Q(group_key=v)
    if key == "assignee":
        low = v.lower()
        if low == "me":
            return Q(assignee_id=getattr(user, "pk", None)) if getattr(user, "pk", None) else Q(pk__in=[])
        if low in ("none", "nobody", "unassigned"):
            return Q(assignee__isnull=True)
        return Q(assignee__username__iexact=v)
    if key == "is":
        if v == "active":
            return Q(status__in=ACTIVE_STATUSES)
        if v in (Status.OPEN, Status.ACKNOWLEDGED, Status.RESOLVED, Status.IGNORED):
            return Q(status=v)
        if v == "snoozed":
            return snoozed_q(now) & Q(status__in=ACTIVE_STATUSES)
        if v == "assigned":
            return Q(assignee__isnull=False)
        if v == "unassigned":
            return Q(assignee__isnull=True)
        return Q()  # all
    raise SearchError(f"unknown key {key!r}")  # parse never lets one through
