"""The exception-kind registry: every :class:`~exceptions_app.models.Kind` declared once, as an object.

Each kind's :class:`KindSpec` says how its dedupe key is built, its default severity, how its records group into
one root cause on the queue, what it is about, the fix the console offers and what a bulk retry does with it. The
fix actions (:data:`FIX_ACTIONS`) carry the permissions they need. Code asks the registry instead of keeping its
own tuples of kinds or permission strings (services' grouping, ``triage.action_for``, the queue views'
``can_*`` flags and permission checks, ``bulk`` retry).

API::

    from exceptions_app import kinds
    from exceptions_app.models import Kind

    kinds.key(Kind.SKU_MISMATCH, channel.key, sku)  # "sku_mismatch:<channel>:<storefront sku>" (dedupe key)
    kinds.spec(Kind.STUCK_ORDER)                    # the KindSpec (KeyError for a string that is no Kind)
    kinds.spec(kind).severity / .grouping / .subject / .action / .retry / .key_parts / .label / .plain
    kinds.having(action="map_sku")                  # (Kind.SKU_MISMATCH, Kind.UNKNOWN_SKU); also subject=, grouping=, retry=
    kinds.permissions("map_sku")                    # the permissions a fix action needs (a tuple for has_perms)
    kinds.permissions("order", "cancel")            # ... one step of the order fix
    kinds.plain(kind)                               # the sentence CX read (a generic one for a kind without)
    kinds.FIX_ACTIONS / kinds.SPECS                 # every action / every kind

Keys. :func:`key` joins the kind and the parts with ``:``, leaving out ``None`` and ``""`` parts, cut at 300
characters (the column). ``KindSpec.key_parts`` names the usual parts; some callers add a qualifier (a stock drift
of a warehouse is ``stock_drift:<connection>:negative:<sku>@<location>``, a configuration error
``sync_timeout:<connection>:<operation>:configuration``). The code that fixes a problem clears the same key.

Grouping (:class:`Grouping`, the queue's root cause; ``services.group_fingerprint``):
``connection`` — one outage of a connection (the kind alone, per connection); ``refusal`` — per connection and
the error text with references taken out (many orders refused for the same reason); ``channel`` — per channel;
``own`` — each record is its own fix.

Fix actions: ``map_sku`` (triage.map_sku / bulk_map_with_transform), ``order`` (the order flow's retry / edit /
notify / cancel, each step with its own permissions), ``repush_stock`` (triage.repush_stock),
``take_master_value`` (catalog.master_fix). A kind with no action takes the one its record's
``context["action"]`` names (``retry_order``, ``resend_dispatch`` → ``order``). ``retry`` is the queue's bulk retry
(any kind; :mod:`exceptions_app.bulk`), with ``KindSpec.retry`` saying how each kind is retried.

Adding a kind: add it to ``models.Kind`` (a migration for the choices), declare its spec below;
``tests/exceptions_app/test_kinds.py`` checks every kind has one and every action and permission exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import Kind, Severity

KEY_LENGTH = 300  # ExceptionRecord.dedupe_key


class Grouping:
    CONNECTION = "connection"  # one outage: per connection, whatever the record
    REFUSAL = "refusal"  # per connection and error text (references taken out)
    CHANNEL = "channel"  # per channel
    OWN = "own"  # each record its own group

    ALL = (CONNECTION, REFUSAL, CHANNEL, OWN)


class Retry:
    """What the queue's bulk retry does with a kind's records (:func:`exceptions_app.bulk._retry`)."""

    ORDER = "order"  # the order is revalidated and made due for the order worker
    PUSH = "push"  # the mapped item's stock push is re-queued
    CONNECTION = "connection"  # the connection's failing pushes have their back-off lifted
    NEVER = "never"  # nothing the hub can retry (refused credentials: an admin renews them)
    CONTEXT = ""  # decided by the record: an order id / order action, a SKU and channel, a connection

    ALL = (ORDER, PUSH, CONNECTION, NEVER, CONTEXT)


@dataclass(frozen=True)
class FixAction:
    name: str
    label: str
    permissions: tuple[str, ...]  # what the fix needs (the view's permission_required, the page's can_* flag)
    steps: dict[str, tuple[str, ...]] = field(default_factory=dict)  # sub-actions with their own permissions


FIX_ACTIONS: dict[str, FixAction] = {
    a.name: a
    for a in [
        FixAction(
            "map_sku",
            "Map the storefront SKU to a master item",
            ("catalog.add_skumapping", "catalog.change_skumapping", "exceptions_app.change_exceptionrecord"),
        ),
        FixAction(
            "order",
            "Act on the order",
            ("exceptions_app.view_exceptionrecord",),
            steps={
                "retry": ("orders.retry_order",),
                "edit": ("orders.change_order", "orders.retry_order"),
                "notify": ("orders.retry_order",),
                "cancel": ("orders.cancel_order",),
            },
        ),
        FixAction(
            "repush_stock",
            "Queue a stock push",
            ("inventory.change_pendingpush", "exceptions_app.change_exceptionrecord"),
        ),
        FixAction(
            "take_master_value",
            "Take the item master's value",
            ("exceptions_app.change_exceptionrecord", "catalog.view_item"),
        ),  # ops, admin
        # the queue's bulk retry (any kind): orders and stock pushes
        FixAction(
            "retry",
            "Retry",
            ("exceptions_app.change_exceptionrecord", "orders.retry_order", "inventory.change_pendingpush"),
        ),
    ]
}
# a record's context["action"] that means "act on the order"
ORDER_CONTEXT_ACTIONS = ("retry_order", "resend_dispatch")


@dataclass(frozen=True)
class KindSpec:
    kind: str
    key_parts: tuple[str, ...]  # the usual parts of the dedupe key after the kind
    severity: str  # the usual severity (callers may raise it higher)
    grouping: str  # Grouping
    subject: str  # what the record is about: sku, order, connection, stock, payload, item
    action: str = ""  # FIX_ACTIONS name, or "" (the record's context names it)
    retry: str = Retry.CONTEXT
    plain: str = ""  # what the problem means, for CX (triage.plain_text); "" = the generic sentence

    @property
    def label(self) -> str:
        return Kind(self.kind).label

    @property
    def permissions(self) -> tuple[str, ...]:
        return FIX_ACTIONS[self.action].permissions if self.action else ()


SPECS: dict[str, KindSpec] = {
    s.kind: s
    for s in [
        KindSpec(
            Kind.SKU_MISMATCH,
            ("channel", "storefront_sku"),
            Severity.WARNING,
            Grouping.OWN,
            "sku",
            "map_sku",
            plain="The storefront lists a product code the hub cannot match to a warehouse item, so its stock is "
            "not updated. Ops can map it.",
        ),
        KindSpec(
            Kind.UNKNOWN_SKU,
            ("channel", "storefront_sku"),
            Severity.WARNING,
            Grouping.OWN,
            "sku",
            "map_sku",
            plain="A product code is not known to the hub, so its stock (or an order line with it) cannot be "
            "handled yet. Ops can map it.",
        ),
        KindSpec(
            Kind.STUCK_ORDER,
            ("order",),
            Severity.ERROR,
            Grouping.REFUSAL,
            "order",
            "order",
            Retry.ORDER,
            plain="The order has not reached the warehouse yet. The hub keeps retrying; ops or CX can retry, "
            "correct a field or cancel it.",
        ),
        KindSpec(
            Kind.ORPHANED_ORDER,
            ("channel", "external_id"),
            Severity.ERROR,
            Grouping.CHANNEL,
            "order",
            plain="The storefront has an order the hub never received. Ops will check it.",
        ),
        KindSpec(
            Kind.SYNC_TIMEOUT,
            ("connection", "operation"),
            Severity.ERROR,
            Grouping.CONNECTION,
            "connection",
            retry=Retry.CONNECTION,
            plain="A connected system did not answer in time. The hub retries on its own; nothing is lost.",
        ),
        KindSpec(
            Kind.RATE_LIMITED,
            ("connection", "operation"),
            Severity.WARNING,
            Grouping.CONNECTION,
            "connection",
            retry=Retry.CONNECTION,
            plain="A connected system asked the hub to slow down. The hub retries on its own; nothing is lost.",
        ),
        KindSpec(
            Kind.MISSING_DISPATCH,
            ("order",),
            Severity.WARNING,
            Grouping.CHANNEL,
            "order",
            "order",
            Retry.ORDER,
            plain="The warehouse shipped the order but the storefront does not show it as shipped yet.",
        ),
        KindSpec(
            Kind.STOCK_DRIFT,
            ("channel", "storefront_sku"),
            Severity.WARNING,
            Grouping.CHANNEL,
            "stock",
            "repush_stock",
            Retry.PUSH,
            plain="The stock the storefront shows differs from what the warehouse holds. Ops can push it again.",
        ),
        KindSpec(
            Kind.BAD_PAYLOAD,
            ("connection", "source", "ref"),
            Severity.ERROR,
            Grouping.REFUSAL,
            "payload",
            plain="A system refused some data (for example an address or a code it does not know). Someone needs to"
            " correct the data; the details say which field.",
        ),
        KindSpec(
            Kind.AUTH_FAILURE,
            ("connection",),
            Severity.CRITICAL,
            Grouping.CONNECTION,
            "connection",
            retry=Retry.NEVER,
            plain="A connected system refused the hub's credentials. An administrator must renew them; until then "
            "nothing moves on that connection.",
        ),
        KindSpec(
            Kind.ESCALATED,
            ("order",),
            Severity.WARNING,
            Grouping.OWN,
            "order",
            retry=Retry.ORDER,
            plain="Customer service handed this order to ops with a note.",
        ),
        KindSpec(
            Kind.MASTER_DATA_DRIFT,
            ("connection", "sku", "field"),
            Severity.WARNING,
            Grouping.REFUSAL,
            "item",
            "take_master_value",
        ),
        KindSpec(Kind.NOT_ON_STOREFRONT, ("connection", "sku"), Severity.WARNING, Grouping.REFUSAL, "item"),
    ]
}


GENERIC_PLAIN = "The hub could not finish this step."


def plain(kind: str) -> str:
    """The sentence CX read for a record of ``kind`` (the technical detail stays one click away)."""
    found = SPECS.get(kind)
    return (found.plain if found is not None else "") or GENERIC_PLAIN


def spec(kind: str) -> KindSpec:
    """The declared spec of ``kind`` (KeyError for a string that is no Kind)."""
    return SPECS[kind]


def key(kind: str, *parts) -> str:
    """The dedupe key of a ``kind`` problem: ``<kind>:<part>:<part>…`` (``None`` / ``""`` parts left out, at most
    300 characters). Raises ValueError for an unknown kind."""
    if kind not in SPECS:
        raise ValueError(f"unknown exception kind {kind!r}")
    return join(kind, *parts)


def join(kind: str, *parts) -> str:
    """The key text itself, unchecked (what :func:`key` returns once the kind is known)."""
    return ":".join([str(kind), *[str(p) for p in parts if p not in (None, "")]])[:KEY_LENGTH]


def having(
    *, action: str | None = None, subject: str | None = None, grouping: str | None = None, retry: str | None = None
) -> tuple[str, ...]:
    """The kinds whose spec has all the given values, in declaration order."""
    return tuple(
        s.kind
        for s in SPECS.values()
        if (action is None or s.action == action)
        and (subject is None or s.subject == subject)
        and (grouping is None or s.grouping == grouping)
        and (retry is None or s.retry == retry)
    )


def permissions(action: str, step: str | None = None) -> tuple[str, ...]:
    """The permissions fix ``action`` needs (or one ``step`` of it: ``permissions("order", "cancel")``)."""
    fix = FIX_ACTIONS[action]
    return fix.steps[step] if step is not None else fix.permissions


def grouping(kind: str) -> str:
    """How ``kind``'s records group (a kind not declared groups as a refusal)."""
    found = SPECS.get(kind)
    return found.grouping if found is not None else Grouping.REFUSAL


def fix_action(kind: str, context: dict | None = None) -> str:
    """The fix the console offers for a record of ``kind`` with ``context``: the kind's own action; an order fix
    when the context names one (``retry_order`` / ``resend_dispatch``); else the action the context names."""
    own = SPECS[kind].action if kind in SPECS else ""
    named = (context or {}).get("action", "")
    if own == "map_sku":
        return own
    if own == "order" or named in ORDER_CONTEXT_ACTIONS:
        return "order"
    return own or named
