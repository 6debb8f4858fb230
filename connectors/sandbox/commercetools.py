"""commercetools Composable Commerce emulator (HTTP API), served under ``/commercetools``.

Modelled on the published HTTP API (docs.commercetools.com, confirmed via the SDK type docs):

- ``POST /oauth/token`` — client-credentials grant, client authenticated with HTTP Basic; answers
  ``{access_token, token_type: "Bearer", expires_in, scope}``; ``invalid_client`` (401) on bad
  credentials. Real ct serves this on the auth host; here it sits under the same prefix, so a Connection's
  ``auth_url`` equals its ``base_url``. Exempt from rate limiting and fault injection.
- Every project route needs ``Authorization: Bearer <token>``: 401 ``invalid_token`` otherwise, 403
  ``insufficient_scope`` when the token's ``manage_project:<key>`` scope names another project.
- Query endpoints take ``where`` (Query Predicates: ``=, !=, <, <=, >, >=, in (...), not in (...),
  is defined, is not defined, and, or, not(...)``, nested ``field(pred)`` on objects/references/arrays),
  ``sort`` (repeatable, ``path asc|desc``), ``limit`` (default 20, max 500), ``offset`` (max 10,000) and
  ``withTotal``; they answer a PagedQueryResponse ``{limit, offset, count, total, results}``.
- Versioned updates ``POST /<resource>/<id>`` with ``{version, actions}``: a stale version is 409 with
  ``errors[0] = {code: "ConcurrentModification", currentVersion, ...}``. ``faults.conflict_rate`` injects
  the same 409 (via :meth:`Emulator.maybe_conflict`).
- Channels (``/channels``), InventoryEntry (``/inventory``: sku + supplyChannel unique, ``DuplicateField``
  400 on a second draft; actions ``changeQuantity``, ``addQuantity``, ``removeQuantity``;
  ``availableQuantity`` = ``quantityOnStock`` - reserved), product projections (``/product-projections``)
  Products API updates (``POST /products/{id}``: ``setAttribute`` / ``changeName``, staged or not, see
  :meth:`CommercetoolsEmulator.product_update`) and Orders (``/orders``: actions ``changeShipmentState``, ``changeOrderState``, ``addDelivery`` with
  ``parcels[].trackingData {trackingId, carrier, ...}``, ``addParcelToDelivery``, ``addReturnInfo`` (ReturnItemDrafts →
  LineItemReturnItems with ``shipmentState`` Advised | Returned | BackInStock | Unusable, paymentState Initial; no
  more units returned than ordered), ``setReturnShipmentState``, ``setReturnPaymentState``; ``expand`` of
  ``shippingInfo.shippingMethod``, ``discountCodes[*].discountCode``, ``lineItems[*].supplyChannel``).
  Orders use ``inventoryMode`` TrackOnly: each line decrements the entry of its supply channel (stock may go
  negative, as in ct). Where no entry exists, real ct refuses the order with OutOfStock; the sandbox
  accepts it and marks that line ``inventoryMode: None`` so demo and tests can order anything.
- Rate limits: ct publishes no general request-rate limit (it asks clients to back off on 502/503); the
  sandbox's ``rate_limit_per_second`` switch answers 429 with ``Retry-After`` so the hub's handling is
  exercised anyway.
- Subscriptions (``/subscriptions``: create, query, get by id/key, ``changeDestination``/``setMessages``
  updates, delete): only the reference's Destinations (``DESTINATIONS``: GoogleCloudPubSub, SQS, SNS, EventBridge,
  EventGrid, AzureServiceBus, ConfluentCloud, IronMQ, with their required fields — no HTTP), format Platform or
  CloudEvents, secrets never returned. Order Messages (OrderCreated, OrderStateChanged, ReturnInfoAdded,
  OrderReturnShipmentStateChanged) are delivered in each relay's envelope: GoogleCloudPubSub → the push endpoint
  set by ``configure_relay`` (Pub/Sub push envelope, OIDC token signed by the sandbox key, certs at
  ``GET /oauth2/v1/certs``); SQS → ``SendMessage`` (boto3; moto in tests). ``configure_webhooks`` is a harness,
  not a Subscription: an operator relay forwarding bare Messages with a static ``Authorization`` header.
  Delivery runs on background threads from a bounded queue; a failed delivery is retried a few times
  (at-least-once), then dropped and counted.
- Per-endpoint OAuth scopes (``ENDPOINT_SCOPES``, from the reference) are enforced: 403 ``insufficient_scope``.
- Inventory: order decrements land ``decrement_delay`` seconds late (eventual consistency since 2026-01-19);
  ``land_on_write`` / ``lose_inventory_responses`` / ``reserve`` for tests (see ``control_inventory_settings``);
  custom Types (``/types``) and ``setCustomType`` / ``setCustomField`` on entries. Orders in ShippingMode
  Multiple (``shipping[]``, ``addDelivery`` needs ``shippingKey``).

Sources checked: docs.commercetools.com (InventoryEntry: one entry per SKU and supply channel,
quantityOnStock/availableQuantity; TrackOnly lets stock go negative but needs an entry; Order messages:
id/version/sequenceNumber/resource/resourceVersion/type; "Error handling through timeout and retries"), the
commercetools SDK type docs (ConcurrentModificationError {code, currentVersion, expectedVersion, resourceId,
message "Object $resourceId has a different version than expected. Expected: … - Actual: …"};
AuthorizationHeader {type, headerValue}; OrderCreated {order}; addDelivery/addParcelToDelivery with
trackingData {trackingId, carrier, provider, providerTransaction, isReturn}).

The emulator holds one project's data; the project key in the path must match the token's scope.

Control actions (``POST /_sandbox/commercetools/<action>``, see :mod:`connectors.sandbox`):
seed_catalog, create_orders, configure_webhooks, state, set_inventory, set_credentials, revoke_tokens,
wait_webhooks, store_fulfil (a delivery added storefront-side, e.g. ship-from-store), add_return / return_state (a
return booked or moved on storefront-side, as addReturnInfo / setReturnShipmentState do).
"""
from __future__ import annotations

import base64
import bisect
import copy
import functools
import hashlib
import heapq
import itertools
import json
import logging
import pickle
import queue
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from .server import Emulator, HttpError, Request, Response, route

log = logging.getLogger("sandbox.commercetools")

DEFAULT_CLIENT_ID = "hub-demo"
DEFAULT_CLIENT_SECRET = "hub-demo-secret"
TOKEN_TTL = 172800  # ct access tokens live 48 h
MAX_LIMIT = 500
MAX_OFFSET = 10000
# OAuth scopes per endpoint, as the API reference lists them (``security`` of each operation in
# commercetools-api-reference oas/api/openapi.yaml): resource → (any of these to read, any of these to write).
# ``manage_X`` grants ``view_X`` too, ``manage_project`` grants everything.
ENDPOINT_SCOPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "": (("view_project_settings",), ("manage_project_settings",)),
    "inventory": (("view_products",), ("manage_products",)),
    "channels": (("view_channels", "view_products"), ("manage_channels", "manage_products")),
    "orders": (("view_orders",), ("manage_orders",)),
    "product-projections": (("view_products", "view_published_products"), ()),
    "products": (("view_products",), ("manage_products",)),
    "subscriptions": (("manage_subscriptions",), ("manage_subscriptions",)),
    "types": (("view_types",), ("manage_types",)),
    "shipping-methods": (("view_orders", "view_shipping_methods", "manage_my_orders"), ("manage_orders", "manage_shipping_methods")),
    "discount-codes": (("view_discount_codes",), ("manage_discount_codes",)),
    # Import API (import-openapi.yaml)
    "import-containers": (("view_import_containers", "manage_import_containers"), ("manage_import_containers",)),
    "import-operations": (("view_import_containers", "manage_import_containers"), ("manage_import_containers",)),
    "inventories": (("manage_products",), ("manage_products",)),
}
# Subscription Destinations of the API reference (Destination discriminator) and the fields each requires
DESTINATIONS: dict[str, tuple[str, ...]] = {
    "GoogleCloudPubSub": ("projectId", "topic"), "SQS": ("queueUrl", "region"), "SNS": ("topicArn",),
    "EventBridge": ("region", "accountId"), "EventGrid": ("uri", "accessKey"), "AzureServiceBus": ("connectionString",),
    "ConfluentCloud": ("bootstrapServer", "apiKey", "apiSecret", "acks", "topic"), "IronMQ": ("uri",),
}
SECRET_FIELDS = ("accessSecret", "apiSecret", "connectionString", "accessKey")
SHIPMENT_STATES = {"Shipped", "Delivered", "Ready", "Pending", "Delayed", "Partial", "Backorder", "Canceled"}
ORDER_STATES = {"Open", "Confirmed", "Complete", "Cancelled"}
RETURN_SHIPMENT_STATES = {"Advised", "Returned", "BackInStock", "Unusable"}
RETURN_PAYMENT_STATES = {"NonRefundable", "Initial", "Refunded", "NotRefunded"}
WEBHOOK_QUEUE_SIZE = 100_000
WEBHOOK_WORKERS = 4
WEBHOOK_RETRY_DELAYS = (0.2, 0.5, 1.0)

P = r"/(?P<project>[A-Za-z0-9_-]+)"
# Import API (api-specs/import): ImportResourceType, ProcessingState, the fields of an InventoryImport
IMPORT_RESOURCE_TYPES = {"business-unit", "category", "customer", "discount-code", "inventory", "order", "order-patch",
                         "price", "product", "product-draft", "product-type", "product-variant", "product-variant-patch",
                         "product-selection", "standalone-price", "type"}
IMPORT_STATES = ("processing", "validationFailed", "unresolved", "waitForMasterVariant", "imported", "rejected", "canceled",
                 "partiallyImported")
INVENTORY_IMPORT_FIELDS = {"key", "sku", "quantityOnStock", "restockableInDays", "expectedDelivery",
                           "reservationExpirationInMinutes", "supplyChannel", "custom"}


def now_iso(dt: datetime | None = None) -> str:
    dt = dt or datetime.now(timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@functools.lru_cache(maxsize=100_000)
def parse_dt(value: str) -> datetime | None:
    if not isinstance(value, str) or not _ISO_RX.match(value):
        return None
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


_ISO_RX = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def clone(data):
    """A deep copy of JSON-like data (dicts, lists, scalars) — the same result as ``copy.deepcopy``, several times
    faster (pages of up to 500 resources are copied out of the lock on every query)."""
    return pickle.loads(pickle.dumps(data, pickle.HIGHEST_PROTOCOL))


def ct_error(status: int, code: str, message: str, **extra) -> HttpError:
    return HttpError(status, {"statusCode": status, "message": message, "errors": [{"code": code, "message": message, **extra}]})


# --- Query Predicates ----------------------------------------------------------------------------
_TOKEN_RX = re.compile(r"""
    \s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""", re.X)


def _tokenize(text: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RX.match(text, pos)
        if not m or m.end() == pos:
            raise ct_error(400, "InvalidInput", f"Malformed parameter: where: syntax error at {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("val", json.loads(m.group("str"))))
        elif m.group("num") is not None:
            n = m.group("num")
            out.append(("val", float(n) if "." in n else int(n)))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            w = m.group("word")
            lw = w.lower()
            if lw in ("true", "false"):
                out.append(("val", lw == "true"))
            elif lw in ("and", "or", "not", "in", "is", "defined", "empty", "contains", "any", "all"):
                out.append(("kw", lw))
            else:
                out.append(("id", w))
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _cmp_values(a, b):
    """Normalise for comparison: ISO datetimes compare as instants."""
    da, db = parse_dt(a) if isinstance(a, str) else None, parse_dt(b) if isinstance(b, str) else None
    if da is not None and db is not None:
        return da, db
    return a, b


def _compare(actual, op: str, expected) -> bool:
    if actual is None:
        return op in ("!=", "<>") and expected is not None
    a, b = _cmp_values(actual, expected)
    try:
        if op == "=":
            return a == b
        if op in ("!=", "<>"):
            return a != b
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
    except TypeError:
        return False
    raise ct_error(400, "InvalidInput", f"Malformed parameter: where: unknown operator {op}")


class _Parser:
    """Compiles one ``where`` clause to a predicate, and notes what narrows its candidates through an index (the
    predicate still decides): ``hints`` (top-level ``=`` / ``in`` terms of a pure conjunction: every match has one of
    those values), ``lower`` (top-level ``>`` / ``>=`` terms: every match is at or above) and ``alts`` (any shape of
    ``and`` / ``or`` / nested ``field(...)`` over ``=`` / ``in`` terms: every match has, for one of the listed paths,
    one of its values; None when the clause does not say)."""

    def __init__(self, text: str):
        self.toks = _tokenize(text)
        self.i = 0
        self.level = 0  # nesting depth: only top-level conjunctions give index hints
        self.top_or = False
        self.hints: dict[str, set] = {}
        self.lower: dict[str, str | int] = {}
        self.alts: list[tuple[str, set]] | None = None

    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else (None, None)

    def take(self, kind=None, value=None):
        tok = self.peek()
        if tok[0] is None or (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            raise ct_error(400, "InvalidInput", f"Malformed parameter: where: expected {value or kind}, got {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Callable[[dict], bool]:
        fn, self.alts = self.expr()
        if self.peek()[0] is not None:
            raise ct_error(400, "InvalidInput", f"Malformed parameter: where: unexpected {self.peek()[1]!r}")
        return fn

    def expr(self):
        left, alts = self.term()
        while self.peek() == ("kw", "or"):
            self.take()
            if self.level == 0:
                self.top_or = True
            right, more = self.term()
            left = (lambda l, r: lambda o: l(o) or r(o))(left, right)
            alts = alts + more if alts is not None and more is not None else None
        return left, alts

    def term(self):
        left, alts = self.factor()
        while self.peek() == ("kw", "and"):
            self.take()
            right, more = self.factor()
            left = (lambda l, r: lambda o: l(o) and r(o))(left, right)
            alts = _narrower(alts, more)
        return left, alts

    def factor(self):
        tok = self.peek()
        if tok == ("kw", "not"):
            self.take()
            self.take("op", "(")
            self.level += 1
            inner, _alts = self.expr()
            self.level -= 1
            self.take("op", ")")
            return (lambda o: not inner(o)), None
        if tok == ("op", "("):
            self.take()
            self.level += 1
            inner = self.expr()
            self.level -= 1
            self.take("op", ")")
            return inner
        name = self.take("id")[1]
        return self.field(name.split("."))

    def hint(self, path: list[str], vals) -> None:
        if self.level == 0:
            key = ".".join(path)
            vals = {v for v in vals if isinstance(v, (str, int))}
            self.hints[key] = self.hints[key] & vals if key in self.hints else vals

    @staticmethod
    def alt(path: list[str], vals) -> list[tuple[str, set]] | None:
        """``path`` has one of ``vals``, when an exact index lookup finds every such object (plain strings and ints)."""
        if all(isinstance(v, int) and not isinstance(v, bool) or isinstance(v, str) and parse_dt(v) is None for v in vals):
            return [(".".join(path), set(vals))]
        return None

    def values(self):
        self.take("op", "(")
        vals = [self.take("val")[1]]
        while self.peek() == ("op", ","):
            self.take()
            vals.append(self.take("val")[1])
        self.take("op", ")")
        return vals

    def field(self, path: list[str]):
        tok = self.peek()

        def get(o):
            for p in path:
                o = o.get(p) if isinstance(o, dict) else None
            return o

        def over(value, pred):  # arrays match if any element matches
            if isinstance(value, list):
                return any(pred(v) for v in value)
            return pred(value)

        if tok == ("op", "("):  # nested predicate on an object / reference / array
            self.take()
            self.level += 1
            inner, alts = self.expr()
            self.level -= 1
            self.take("op", ")")
            prefix = ".".join(path)
            return (lambda o: over(get(o), lambda v: isinstance(v, dict) and inner(v))), \
                ([(f"{prefix}.{p}", vals) for p, vals in alts] if alts is not None else None)
        if tok[0] == "op":
            op = self.take()[1]
            val = self.take("val")[1]
            if op == "=":
                self.hint(path, [val])
            elif op in (">", ">=") and self.level == 0 and isinstance(val, (str, int)) and not isinstance(val, bool):
                self.lower[".".join(path)] = val
            return (lambda o: over(get(o), lambda v: _compare(v, op, val))), (self.alt(path, [val]) if op == "=" else None)
        if tok == ("kw", "in"):
            self.take()
            vals = self.values()
            self.hint(path, vals)
            if all(isinstance(x, str) and parse_dt(x) is None for x in vals):
                plain = set(vals)
                return (lambda o: over(get(o), lambda v: v in plain if isinstance(v, str) else False)), self.alt(path, vals)
            return (lambda o: over(get(o), lambda v: any(_compare(v, "=", x) for x in vals))), self.alt(path, vals)
        if tok == ("kw", "not") and self.peek(1) == ("kw", "in"):
            self.take(), self.take()
            vals = self.values()
            return (lambda o: not over(get(o), lambda v: any(_compare(v, "=", x) for x in vals))), None
        if tok == ("kw", "is"):
            self.take()
            negate = False
            if self.peek() == ("kw", "not"):
                self.take()
                negate = True
            what = self.take("kw")[1]
            if what == "defined":
                return (lambda o: (get(o) is None) if negate else (get(o) is not None)), None
            if what == "empty":
                return (lambda o: bool(get(o)) if negate else (get(o) in ([], None))), None
            raise ct_error(400, "InvalidInput", f"Malformed parameter: where: is {what}")
        if tok == ("kw", "contains"):
            self.take()
            if self.peek() in (("kw", "any"), ("kw", "all")):
                mode = self.take()[1]
                vals = self.values()
                agg = any if mode == "any" else all
                return (lambda o: agg(x in (get(o) or []) for x in vals)), None
            val = self.take("val")[1]
            return (lambda o: val in (get(o) or [])), None
        raise ct_error(400, "InvalidInput", f"Malformed parameter: where: unexpected {tok[1]!r} after {'.'.join(path)}")


def _narrower(a: list[tuple[str, set]] | None, b: list[tuple[str, set]] | None) -> list[tuple[str, set]] | None:
    """Of two conjoined terms' alternatives, the one naming fewer values (either is a bound on the matches)."""
    if a is None or b is None:
        return a if b is None else b
    return a if sum(len(v) for _p, v in a) <= sum(len(v) for _p, v in b) else b


@dataclass
class WherePlan:
    """A compiled ``where``: the predicate and what narrows its candidates (see :class:`_Parser`)."""

    pred: Callable[[dict], bool]
    hints: dict[str, set]
    lower: dict[str, str | int]
    alts: list[tuple[str, set]] | None


def compile_where(clauses: list[str]) -> Callable[[dict], bool]:
    """Several ``where`` parameters are combined with ``and`` (as in ct)."""
    return compile_where_plan(clauses).pred


def compile_where_hints(clauses: list[str]) -> tuple[Callable[[dict], bool], dict[str, set]]:
    """The predicate plus ``{field path: allowed values}`` implied by top-level ``=`` / ``in`` terms of a
    pure conjunction (used to narrow candidates through an index; the predicate still decides)."""
    plan = compile_where_plan(clauses)
    return plan.pred, plan.hints


def compile_where_plan(clauses: list[str]) -> WherePlan:
    preds, hints, lower, alts = [], {}, {}, None
    for c in clauses:
        if not c or not c.strip():
            continue
        parser = _Parser(c)
        preds.append(parser.parse())
        alts = _narrower(alts, parser.alts)
        if not parser.top_or:
            for k, v in parser.hints.items():
                hints[k] = hints[k] & v if k in hints else set(v)
            for k, v in parser.lower.items():
                if k not in lower or (type(lower[k]) is type(v) and v > lower[k]):
                    lower[k] = v
    return WherePlan((lambda o: all(p(o) for p in preds)), hints, lower, alts)


def _sort_key_fn(sorts: list[str]):
    specs = []
    for s in sorts:
        parts = s.strip().split()
        if not parts:
            continue
        direction = parts[1].lower() if len(parts) > 1 else "asc"
        if direction not in ("asc", "desc"):
            raise ct_error(400, "InvalidInput", f"Malformed parameter: sort: {s}")
        specs.append((parts[0].split("."), direction == "desc"))
    return specs


def _apply_sort(items: list[dict], sorts: list[str]) -> list[dict]:
    specs = _sort_key_fn(sorts)
    for path, desc in reversed(specs):  # stable multi-key sort
        def key(o, path=path):
            for p in path:
                o = o.get(p) if isinstance(o, dict) else None
            if isinstance(o, str):
                dt = parse_dt(o)
                if dt is not None:
                    return (1, dt.timestamp(), "")
                return (1, 0, o)
            return (0 if o is None else 1, o if isinstance(o, (int, float)) else 0, "")
        items.sort(key=key, reverse=desc)
    return items


# --- Pub/Sub push tokens -----------------------------------------------------------------------------
_KEY: tuple[str, str, Any] | None = None
_KEY_LOCK = threading.Lock()


def _signing_key():
    """(kid, certificate PEM, private key) the sandbox signs its Google-style OIDC tokens with (made once)."""
    global _KEY
    with _KEY_LOCK:
        if _KEY is None:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
            from cryptography.x509.oid import NameOID

            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandbox pubsub signer")])
            now = datetime.now(timezone.utc)
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                    .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                    .not_valid_after(now + timedelta(days=3650)).sign(key, hashes.SHA256()))
            _KEY = (secrets.token_hex(8), cert.public_bytes(serialization.Encoding.PEM).decode(), key)
        return _KEY


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def oidc_token(audience: str, email: str, issuer: str = "https://accounts.google.com", ttl: int = 3600) -> str:
    """An RS256 ID token shaped like the ones Pub/Sub push attaches (iss, aud, email, email_verified, iat, exp)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    kid, _, key = _signing_key()
    now = int(time.time())
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    claims = {"iss": issuer, "aud": audience, "email": email, "email_verified": True, "sub": "1" + kid,
              "azp": "1" + kid, "iat": now, "exp": now + ttl}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


# --- the emulator ----------------------------------------------------------------------------------
class CommercetoolsEmulator(Emulator):
    prefix = "commercetools"
    exempt_patterns = (r"^/oauth/token$", r"^/oauth2/v1/certs$")

    def reset(self) -> None:
        with self.lock:
            self.credentials = {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET}
            self.allowed_projects: set[str] | None = None  # None = any project key
            self.token_ttl = TOKEN_TTL
            self.tokens: dict[str, dict] = {}
            self.tokens_issued = 0
            self.channels: dict[str, dict] = {}
            self.channel_by_key: dict[str, str] = {}
            self.inventory: dict[str, dict] = {}
            self.inventory_index: dict[tuple[str, str | None], str] = {}  # (sku, channel id) → entry id
            self.inventory_by_key: dict[str, str] = {}
            self.inventory_by_sku: dict[str, set[str]] = {}
            # order-driven inventory updates are eventually consistent in ct (release 2026-01-19: up to ~10 s):
            # an order's decrement is queued and lands ``decrement_delay`` seconds later (0 = at once)
            self.decrement_delay = 0.0
            self.pending_decrements: list[dict] = []  # {"due", "entry", "quantity", "order"} oldest first
            self.land_on_write = 0  # test switch: land one pending decrement just before each of the next N inventory updates
            self.lose_inventory_responses = 0  # test switch: apply the next N inventory updates, then answer 502
            self.types: dict[str, dict] = {}  # id → Type
            # Import API (import-openapi.yaml): containers by key, operations by id (oldest first)
            self.import_containers: dict[str, dict] = {}
            self.import_operations: dict[str, dict] = {}
            # pending operations, a heap of (due, seq, operation id, InventoryImport): seq keeps submission order
            self.import_queue: list[tuple[float, int, str, dict]] = []
            self.import_seq = itertools.count()
            self.import_op_seq: dict[str, int] = {}  # operation id → its creation order
            # per container: {operation id: operation}, state → {operation id: operation} (creation order unless the
            # (container, state) is in import_unordered), resourceKey → {operation id: operation}: the listing and the
            # summary read these, never every operation of the project
            self.import_by_container: dict[str, dict[str, dict]] = {}
            self.import_by_state: dict[str, dict[str, dict[str, dict]]] = {}
            self.import_unordered: set[tuple[str, str]] = set()  # (container, state) whose dict needs re-ordering
            self.import_by_resource_key: dict[str, dict[str, dict[str, dict]]] = {}
            self.import_delay = 0.0  # seconds an operation stays "processing"
            self.import_reject_skus: set[str] = set()
            self.type_by_key: dict[str, str] = {}
            self.products: dict[str, dict] = {}  # the current projection of each product (staged = current …)
            self.staged_products: dict[str, dict] = {}  # … unless it has staged changes: the staged projection here
            self.product_by_key: dict[str, str] = {}
            self.sku_prices: dict[str, int] = {}
            self.sku_product: dict[str, tuple[str, int]] = {}  # sku → (product id, variant id)
            self.products_by_sku: dict[str, list[str]] = {}  # sku → ids of the products with a variant of it
            self.product_ids_sorted: list[str] | None = None  # product ids in id order (built when a query needs it)
            self.shipping_methods: dict[str, dict] = {}
            self.shipping_method_by_key: dict[str, str] = {}
            self.discount_codes: dict[str, dict] = {}  # code → DiscountCode
            self.orders: dict[str, dict] = {}
            self.order_by_number: dict[str, str] = {}
            self.order_seq = 100000
            self.message_seq: dict[str, int] = {}
            self.last_ts: datetime | None = None
            # subscription
            self.generation = getattr(self, "generation", 0) + 1
            self.subscriptions: dict[str, dict] = {}  # id → Subscription (reference Destinations only)
            # sandbox-only harness (control configure_webhooks): an operator-run relay forwarding bare Messages to a
            # URL with a static Authorization header — not a ct Destination, never listed by the Subscriptions API
            self.direct_relays: dict[str, dict] = {}
            # where a Destination's messages go on from the relay: GoogleCloudPubSub "projects/P/topics/T" →
            # {push_url, audience, service_account, subscription} (a Pub/Sub push subscription)
            self.pubsub_push: dict[str, dict] = {}
            self.webhook_stats = {"queued": 0, "delivered": 0, "attempts": 0, "retried": 0, "dropped": 0, "overflow": 0}
            self.inflight = 0
            self.retry_delays = WEBHOOK_RETRY_DELAYS  # len + 1 attempts per message
            self.delivery_workers = max(WEBHOOK_WORKERS, getattr(self, "delivery_workers", 0))  # threads never shrink
            old = getattr(self, "_queue", None)
            if old is not None:
                try:
                    while True:
                        old.get_nowait()
                        old.task_done()
                except queue.Empty:
                    pass
            else:
                self._queue: queue.Queue = queue.Queue(WEBHOOK_QUEUE_SIZE)
                self._workers: list[threading.Thread] = []

    # --- helpers ----------------------------------------------------------------------------------
    def _tick(self) -> str:
        """A strictly increasing timestamp (ms), so createdAt/lastModifiedAt order = write order."""
        now = datetime.now(timezone.utc)
        now = now.replace(microsecond=(now.microsecond // 1000) * 1000)
        if self.last_ts is not None and now <= self.last_ts:
            now = self.last_ts + timedelta(milliseconds=1)
        self.last_ts = now
        return now_iso(now)

    def _auth(self, req: Request) -> dict:
        header = req.header("Authorization")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        with self.lock:
            info = self.tokens.get(token)
            self._run_imports()  # ct processes imports in the background: every later request sees the due ones
        if not info or info["expires"] < time.time():
            raise HttpError(401, {"statusCode": 401, "message": "invalid_token",
                                  "errors": [{"code": "invalid_token", "message": "invalid_token"}],
                                  "error": "invalid_token", "error_description": "invalid_token"},
                            {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        project = req.params.get("project")
        if project and info["projects"] is not None and project not in info["projects"]:
            msg = f"Insufficient scope. One of the following scopes is missing: manage_project:{project}"
            raise HttpError(403, {"statusCode": 403, "message": msg, "errors": [{"code": "insufficient_scope", "message": msg}],
                                  "error": "insufficient_scope", "error_description": msg})
        if project and info.get("grants") is not None:
            self._check_scope(req, project, info["grants"])
        if project and self.allowed_projects is not None and project not in self.allowed_projects:
            raise ct_error(404, "ResourceNotFound", f"Project '{project}' not found")
        return info

    @staticmethod
    def _check_scope(req: Request, project: str, grants: set[tuple[str, str]]) -> None:
        """403 ``insufficient_scope`` unless the token holds one of the endpoint's scopes for ``project``."""
        parts = req.path.strip("/").split("/")
        resource = parts[1] if len(parts) > 1 else ""
        if resource not in ENDPOINT_SCOPES:
            return
        granted = {perm for perm, proj in grants if proj == project}
        if "manage_project" in granted:
            return
        needed = ENDPOINT_SCOPES[resource][0 if req.method in ("GET", "HEAD") else 1]
        if any(n in granted or (n.startswith("view_") and "manage_" + n[5:] in granted) for n in needed):
            return
        missing = ", ".join(f"{n}:{project}" for n in needed + ("manage_project",))
        msg = f"Insufficient scope. One of the following scopes is missing: {missing}"
        raise HttpError(403, {"statusCode": 403, "message": msg, "errors": [{"code": "insufficient_scope", "message": msg}],
                              "error": "insufficient_scope", "error_description": msg})

    @staticmethod
    def _body(req: Request) -> dict:
        data = req.json()
        if not isinstance(data, dict):
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON.")
        return data

    def _query(self, req: Request, items, *, default_sort: list[str] | None = None, transform=None,
               index: dict[str, Callable] | None = None, ordered: dict[str, Callable] | None = None) -> Response:
        """A PagedQueryResponse over ``items()``, narrowed where the predicate allows: ``index`` (field path →
        lookup(values) → candidates, for ``=`` / ``in`` terms, also under ``or`` / nested predicates when every
        alternative's path has a lookup); ``ordered`` (field → walk(lower bound or None) → objects in ascending order
        of that field from the bound): a query sorted by that field alone reads only up to its page (withTotal=false)."""
        try:
            limit = int(req.q("limit", "20"))
            offset = int(req.q("offset", "0"))
        except ValueError:
            raise ct_error(400, "InvalidInput", "Malformed parameter: limit/offset must be integers") from None
        if not 0 <= limit <= MAX_LIMIT:
            raise ct_error(400, "InvalidInput", f"Malformed parameter: limit: must be between 0 and {MAX_LIMIT}")
        if not 0 <= offset <= MAX_OFFSET:
            raise ct_error(400, "InvalidInput", f"Malformed parameter: offset: must be between 0 and {MAX_OFFSET}")
        plan = compile_where_plan(req.query.get("where", []))
        pred, hints = plan.pred, plan.hints
        with_total = req.q("withTotal", "true").lower() != "false"
        sorts = req.query.get("sort") or default_sort or []
        with self.lock:
            candidates = None
            for field, lookup in (index or {}).items():
                if field in hints:
                    found = {id(o): o for o in lookup(hints[field])}
                    if candidates is None or len(found) < len(candidates):
                        candidates = found
            if candidates is None and plan.alts is not None and index and all(p in index for p, _v in plan.alts):
                candidates = {}
                for p, vals in plan.alts:
                    candidates.update((id(o), o) for o in index[p](vals))
                # in creation order, as items() lists them (ties of a later sort keep it)
                candidates = dict(sorted(candidates.items(), key=lambda kv: kv[1].get("createdAt") or ""))
            walk = None
            if candidates is None and ordered and len(sorts) == 1:
                spec = sorts[0].strip().split()
                if len(spec) == 2 and spec[1].lower() == "asc" and spec[0] in ordered:
                    walk = ordered[spec[0]](plan.lower.get(spec[0]))
            if walk is not None:  # already in the asked order: no sort, and no further than the page unless counted
                matched = []
                for o in walk:
                    if pred(o):
                        matched.append(o)
                        if not with_total and len(matched) >= offset + limit:
                            break
            else:
                pool = candidates.values() if candidates is not None else items()
                matched = [o for o in pool if pred(o)]
                if sorts:
                    _apply_sort(matched, sorts)
            page = clone(matched[offset:offset + limit])
            if transform:
                page = [transform(o, req) for o in page]
        body = {"limit": limit, "offset": offset, "count": len(page), "results": page}
        if with_total:
            body["total"] = len(matched)
        return Response(200, body)

    def _check_version(self, resource: dict, data: dict, type_name: str) -> None:
        version = data.get("version")
        if not isinstance(version, int):
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON: missing required field 'version'.")
        current = resource["version"]
        if version != current or self.maybe_conflict():
            msg = f"Object {resource['id']} has a different version than expected. Expected: {version} - Actual: {current}."
            raise HttpError(409, {"statusCode": 409, "message": msg, "errors": [
                {"code": "ConcurrentModification", "message": msg, "currentVersion": current,
                 "expectedVersion": version, "resourceId": resource["id"]}]})

    @staticmethod
    def _actions(data: dict) -> list[dict]:
        actions = data.get("actions")
        if not isinstance(actions, list) or not all(isinstance(a, dict) and a.get("action") for a in actions):
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON: 'actions' must be a list of update actions.")
        return actions

    # --- OAuth ------------------------------------------------------------------------------------
    @route("POST", r"/oauth/token")
    def token(self, req: Request) -> Response:
        header = req.header("Authorization")
        client_id = secret = None
        if header.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                client_id = None
        form = req.form()
        unauthorized = {"statusCode": 401, "message": "Please provide valid client credentials using HTTP Basic Authentication.",
                        "errors": [{"code": "invalid_client", "message": "Please provide valid client credentials using HTTP Basic Authentication."}],
                        "error": "invalid_client", "error_description": "Please provide valid client credentials using HTTP Basic Authentication."}
        with self.lock:
            if not client_id or self.credentials.get(client_id) != secret:
                return Response(401, unauthorized)
            if form.get("grant_type") != "client_credentials":
                msg = "Invalid grant_type; only client_credentials is supported here."
                return Response(400, {"statusCode": 400, "message": msg, "errors": [{"code": "unsupported_grant_type", "message": msg}],
                                      "error": "unsupported_grant_type", "error_description": msg})
            scope = form.get("scope", "").strip()
            projects: set[str] | None = None
            grants: set[tuple[str, str]] | None = None
            if scope:
                projects, grants = set(), set()
                for s in scope.split():
                    perm, _, project = s.partition(":")
                    if not project or not perm:
                        msg = f"Invalid scope '{s}'"
                        return Response(400, {"statusCode": 400, "message": msg, "errors": [{"code": "invalid_scope", "message": msg}],
                                              "error": "invalid_scope", "error_description": msg})
                    projects.add(project)
                    grants.add((perm, project))
            else:
                scope = "manage_project:" + (sorted(self.allowed_projects)[0] if self.allowed_projects else "demo")
            token = secrets.token_urlsafe(24)
            self.tokens[token] = {"client_id": client_id, "scope": scope, "projects": projects, "grants": grants,
                                  "expires": time.time() + self.token_ttl}
            self.tokens_issued += 1
            return Response(200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl, "scope": scope})

    # --- project ---------------------------------------------------------------------------------------
    @route("GET", P)
    def project(self, req):
        self._auth(req)
        key = req.params["project"]
        return Response(200, {"key": key, "name": key, "version": 1, "countries": ["GB", "DE", "NL", "FR"],
                              "currencies": ["GBP", "EUR"], "languages": ["en", "en-GB", "de"],
                              "createdAt": "2024-01-01T00:00:00.000Z", "trialUntil": None,
                              "messages": {"enabled": True, "deleteDaysAfterCreation": 15},
                              "carts": {"countryTaxRateFallbackEnabled": False}})

    # --- channels ----------------------------------------------------------------------------------
    def _new_channel(self, key: str, name: str | None = None, roles=None) -> dict:
        ts = self._tick()
        ch = {"id": str(uuid.uuid4()), "version": 1, "key": key, "roles": roles or ["InventorySupply"],
              "name": {"en": name or key}, "createdAt": ts, "lastModifiedAt": ts}
        self.channels[ch["id"]] = ch
        self.channel_by_key[key] = ch["id"]
        return ch

    @route("GET", P + r"/channels")
    def channels_query(self, req):
        self._auth(req)
        return self._query(req, lambda: self.channels.values(), default_sort=["createdAt asc"], index={
            "id": lambda ids: [self.channels[i] for i in ids if i in self.channels],
            "key": lambda keys: [self.channels[self.channel_by_key[k]] for k in keys if k in self.channel_by_key]})

    @route("POST", P + r"/channels")
    def channels_create(self, req):
        self._auth(req)
        data = self._body(req)
        key = data.get("key")
        if not key:
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON: missing required field 'key'.")
        with self.lock:
            if key in self.channel_by_key:
                raise ct_error(400, "DuplicateField", f"A duplicate value '\"{key}\"' exists for field 'key'.", field="key", duplicateValue=key)
            name = data.get("name", {}).get("en") if isinstance(data.get("name"), dict) else None
            return Response(201, copy.deepcopy(self._new_channel(key, name, data.get("roles"))))

    def _channel(self, id_or_key: str, by_key: bool) -> dict:
        cid = self.channel_by_key.get(id_or_key) if by_key else id_or_key
        ch = self.channels.get(cid or "")
        if not ch:
            raise ct_error(404, "ResourceNotFound", f"The Resource with {'key' if by_key else 'ID'} '{id_or_key}' was not found.")
        return ch

    @route("GET", P + r"/channels/(?P<id>[^/=]+)")
    def channel_get(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, copy.deepcopy(self._channel(req.params["id"], False)))

    @route("GET", P + r"/channels/key=(?P<key>[^/]+)")
    def channel_get_key(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, copy.deepcopy(self._channel(req.params["key"], True)))

    # --- inventory ---------------------------------------------------------------------------------
    def _resolve_channel_ref(self, ref) -> str | None:
        if ref is None:
            return None
        if not isinstance(ref, dict) or ref.get("typeId", "channel") != "channel":
            raise ct_error(400, "InvalidJsonInput", "supplyChannel must be a ResourceIdentifier to a channel.")
        if ref.get("id"):
            if ref["id"] not in self.channels:
                raise ct_error(400, "ReferencedResourceNotFound", f"The referenced object of type 'channel' with identifier '{ref['id']}' was not found.",
                               typeId="channel", id=ref["id"])
            return ref["id"]
        if ref.get("key"):
            cid = self.channel_by_key.get(ref["key"])
            if not cid:
                raise ct_error(400, "ReferencedResourceNotFound", f"The referenced object of type 'channel' with key '{ref['key']}' was not found.",
                               typeId="channel", key=ref["key"])
            return cid
        raise ct_error(400, "InvalidJsonInput", "supplyChannel needs an id or a key.")

    def _new_entry(self, sku: str, channel_id: str | None, quantity: int, key: str | None = None, extra: dict | None = None) -> dict:
        ts = self._tick()
        entry = {"id": str(uuid.uuid4()), "version": 1, "sku": sku, "quantityOnStock": quantity, "availableQuantity": quantity,
                 "reserved": 0, "createdAt": ts, "lastModifiedAt": ts}
        if key:
            entry["key"] = key
        if channel_id:
            entry["supplyChannel"] = {"typeId": "channel", "id": channel_id}
        for k in ("restockableInDays", "expectedDelivery", "minCartQuantity", "maxCartQuantity"):
            if extra and k in extra:
                entry[k] = extra[k]
        if extra and extra.get("custom") is not None:
            entry["custom"] = self._custom_from_draft(extra["custom"], "inventory-entry")
        self.inventory[entry["id"]] = entry
        self.inventory_index[(sku, channel_id)] = entry["id"]
        self.inventory_by_sku.setdefault(sku, set()).add(entry["id"])
        if key:
            self.inventory_by_key[key] = entry["id"]
        return entry

    def _set_entry_quantity(self, entry: dict, quantity: int) -> None:
        entry["quantityOnStock"] = quantity
        entry["availableQuantity"] = quantity - entry.get("reserved", 0)
        entry["version"] += 1
        entry["lastModifiedAt"] = self._tick()

    # --- types (custom fields) ---------------------------------------------------------------------------
    def _type_ref(self, ref) -> dict:
        if not isinstance(ref, dict) or ref.get("typeId", "type") != "type" or not (ref.get("id") or ref.get("key")):
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON: type must be a TypeResourceIdentifier.")
        tid = ref.get("id") or self.type_by_key.get(ref.get("key"))
        if tid not in self.types:
            ident = ref.get("id") or ref.get("key")
            raise ct_error(400, "ReferencedResourceNotFound", f"The referenced object of type 'type' '{ident}' was not found.",
                           typeId="type", **({"id": ref["id"]} if ref.get("id") else {"key": ref.get("key")}))
        return self.types[tid]

    def _check_field(self, type_: dict, name, value) -> None:
        defs = {d["name"]: d for d in type_.get("fieldDefinitions") or []}
        if name not in defs:
            raise ct_error(400, "InvalidField", f"The field '{name}' is not defined on type '{type_.get('key')}'.", field=name,
                           invalidValue=value, allowedValues=[])
        kind = (defs[name].get("type") or {}).get("name")
        if value is not None and kind == "Number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ct_error(400, "InvalidField", f"The value '{value}' is not valid for field '{name}' (Number).", field=name,
                           invalidValue=value)

    def _custom_from_draft(self, draft, resource_type: str) -> dict:
        if not isinstance(draft, dict):
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON: custom must be a CustomFieldsDraft.")
        type_ = self._type_ref(draft.get("type"))
        if resource_type not in type_.get("resourceTypeIds", []):
            raise ct_error(400, "InvalidOperation", f"Type '{type_['key']}' is not defined for resource type '{resource_type}'.")
        fields = draft.get("fields") or {}
        for name, value in fields.items():
            self._check_field(type_, name, value)
        return {"type": {"typeId": "type", "id": type_["id"]}, "fields": {k: v for k, v in fields.items() if v is not None}}

    def _custom_action(self, resource: dict, a: dict) -> None:
        if a["action"] == "setCustomType":
            if a.get("type") is None:
                resource.pop("custom", None)
            else:
                resource["custom"] = self._custom_from_draft({"type": a["type"], "fields": a.get("fields")}, "inventory-entry")
            return
        custom = resource.get("custom")
        if not custom:
            raise ct_error(400, "InvalidOperation", "The resource has no custom type: use setCustomType first.")
        self._check_field(self.types[custom["type"]["id"]], a.get("name"), a.get("value"))
        if a.get("value") is None:
            custom["fields"].pop(a.get("name"), None)
        else:
            custom["fields"][a["name"]] = a["value"]

    @route("POST", P + r"/types")
    def types_create(self, req):
        self._auth(req)
        data = self._body(req)
        key = data.get("key")
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_-]{2,256}", key):
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON: 'key' must be 2-256 of [A-Za-z0-9_-].")
        if not isinstance(data.get("name"), dict) or not isinstance(data.get("resourceTypeIds"), list) or not data["resourceTypeIds"]:
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON: 'name' and 'resourceTypeIds' are required.")
        defs = data.get("fieldDefinitions") or []
        for d in defs:
            if not isinstance(d, dict) or not d.get("name") or not isinstance(d.get("type"), dict) \
                    or not isinstance(d.get("required"), bool) or not isinstance(d.get("label"), dict):
                raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON: a FieldDefinition needs "
                                                        "type, name, label and required.")
        with self.lock:
            if key in self.type_by_key:
                raise ct_error(400, "DuplicateField", f"A duplicate value '\"{key}\"' exists for field 'key'.", field="key", duplicateValue=key)
            ts = self._tick()
            t = {"id": str(uuid.uuid4()), "version": 1, "key": key, "name": data["name"], "resourceTypeIds": list(data["resourceTypeIds"]),
                 "fieldDefinitions": [{"inputHint": "SingleLine", **d} for d in defs], "createdAt": ts, "lastModifiedAt": ts}
            if data.get("description"):
                t["description"] = data["description"]
            self.types[t["id"]] = t
            self.type_by_key[key] = t["id"]
            return Response(201, copy.deepcopy(t))

    @route("GET", P + r"/types/key=(?P<key>[^/]+)")
    def type_get_key(self, req):
        self._auth(req)
        with self.lock:
            tid = self.type_by_key.get(req.params["key"])
            if not tid:
                raise ct_error(404, "ResourceNotFound", f"The Resource with key '{req.params['key']}' was not found.")
            return Response(200, copy.deepcopy(self.types[tid]))

    # --- Import API (inventory) ----------------------------------------------------------------------------
    # api-specs/import (api.raml, types/inventory-import.raml, import-request.raml, import-operation.raml,
    # import-summary.raml): containers by key; an InventoryImportRequest of 1-20 InventoryImport; one operation per
    # resource, "processing" until ``import_delay`` seconds have passed, then imported / unresolved (a supply channel
    # or Type key the project lacks — re-tried on later passes, as ct does until the reference exists) /
    # validationFailed (custom fields the Type does not define) / rejected (``import_reject_skus``); operations are
    # kept 48 h (``expiresAt``); listing takes limit ≤ 500, offset ≤ 10,000, state, resourceKey, sort.
    def _import_container(self, key: str) -> dict:
        c = self.import_containers.get(key)
        if c is None:
            raise ct_error(404, "ResourceNotFound", "The requested import container wasn't found.")
        return c

    @route("POST", P + r"/import-containers")
    def import_container_create(self, req):
        self._auth(req)
        data = self._body(req)
        key = data.get("key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_-]{2,256}", key):
            raise ct_error(400, "InvalidField", "ImportContainerDraft needs a key of 2-256 [A-Za-z0-9_-].", field="key")
        rtype = data.get("resourceType")
        if rtype is not None and rtype not in IMPORT_RESOURCE_TYPES:
            raise ct_error(400, "InvalidField", f"Invalid value '{rtype}' for field 'resourceType'.", field="resourceType")
        with self.lock:
            if key in self.import_containers:
                raise ct_error(400, "DuplicateField", f"A duplicate value '\"{key}\"' exists for field 'key'.", field="key")
            ts = self._tick()
            c = {"key": key, "version": 1, "createdAt": ts, "lastModifiedAt": ts, **({"resourceType": rtype} if rtype else {})}
            self.import_containers[key] = c
            self.import_by_container[key] = {}
            self.import_by_state[key] = {state: {} for state in IMPORT_STATES}
            self.import_by_resource_key[key] = {}
            return Response(201, copy.deepcopy(c))

    @route("GET", P + r"/import-containers/(?P<key>[^/]+)")
    def import_container_get(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, copy.deepcopy(self._import_container(req.params["key"])))

    @staticmethod
    def _import_problems(res) -> list[dict]:
        """What the Import API refuses in an InventoryImport at once (the ImportOperationStatus is validationFailed)."""
        if not isinstance(res, dict):
            return [{"code": "InvalidInput", "message": "An InventoryImport must be an object."}]
        out = []
        for f in ("key", "sku", "quantityOnStock"):
            if res.get(f) in (None, ""):
                out.append({"code": "RequiredField", "message": f"The required field '{f}' is missing.", "field": f})
        key = res.get("key")
        if key not in (None, "") and (not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_-]{2,256}", key)):
            out.append({"code": "InvalidField", "message": "The value of 'key' must match ^[A-Za-z0-9_-]+$ (2-256).", "field": "key"})
        if res.get("sku") not in (None, "") and not isinstance(res.get("sku"), str):
            out.append({"code": "InvalidField", "message": "The value of 'sku' must be a string.", "field": "sku"})
        qty = res.get("quantityOnStock")
        if qty is not None and (isinstance(qty, bool) or not isinstance(qty, int)):
            out.append({"code": "InvalidField", "message": "The value of 'quantityOnStock' must be an integer.", "field": "quantityOnStock"})
        ch = res.get("supplyChannel")
        if ch is not None and not (isinstance(ch, dict) and ch.get("typeId") == "channel" and isinstance(ch.get("key"), str) and ch["key"]):
            out.append({"code": "InvalidField", "message": "supplyChannel must be a ChannelKeyReference {typeId: channel, key}.",
                        "field": "supplyChannel"})
        unknown = sorted(set(res) - INVENTORY_IMPORT_FIELDS)
        if unknown:
            out.append({"code": "InvalidField", "message": f"Unknown field(s) {', '.join(unknown)}.", "field": unknown[0]})
        return out

    @route("POST", P + r"/inventories/import-containers/(?P<key>[^/]+)")
    def inventory_import(self, req):
        """InventoryImportRequest: at most 20 InventoryImport resources → one ImportOperationStatus each."""
        self._auth(req)
        data = self._body(req)
        resources = data.get("resources") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("type") != "inventory":
            raise ct_error(400, "InvalidField", "An InventoryImportRequest has type 'inventory'.", field="type")
        if not isinstance(resources, list) or not 1 <= len(resources) <= 20:
            raise ct_error(400, "InvalidInput", "An import request takes 1 to 20 resources.", field="resources")
        with self.lock:
            container = self._import_container(req.params["key"])
            if container.get("resourceType") not in (None, "inventory"):
                raise ct_error(400, "InvalidInput", f"Import container '{container['key']}' takes {container['resourceType']} resources.")
            out = []
            due = time.monotonic() + self.import_delay
            for res in resources:
                ts = self._tick()
                op = {"id": str(uuid.uuid4()), "version": 1, "importContainerKey": container["key"],
                      "resourceKey": str(res.get("key") or "") if isinstance(res, dict) else "", "state": "processing",
                      "createdAt": ts, "lastModifiedAt": ts, "expiresAt": now_iso(datetime.now(timezone.utc) + timedelta(hours=48))}
                problems = self._import_problems(res)
                if problems:
                    op["state"] = "validationFailed"
                    op["errors"] = problems
                else:
                    heapq.heappush(self.import_queue, (due, next(self.import_seq), op["id"], clone(res)))
                self.import_operations[op["id"]] = op
                self.import_op_seq[op["id"]] = next(self.import_seq)
                self.import_by_container[container["key"]][op["id"]] = op
                self.import_by_state[container["key"]][op["state"]][op["id"]] = op
                self.import_by_resource_key[container["key"]].setdefault(op["resourceKey"], {})[op["id"]] = op
                out.append({"operationId": op["id"], "state": op["state"], **({"errors": op["errors"]} if op.get("errors") else {})})
            return Response(201, {"operationStatus": out})

    def _run_imports(self) -> None:
        """Process due import operations (lock held): resolve the supply channel and Type by key, check the custom
        fields against the Type, then create or update the entry by key (quantityOnStock absolute). Costs the due
        operations only (a heap by due time), however many the project holds."""
        queue_, now = self.import_queue, time.monotonic()
        if not queue_ or queue_[0][0] > now:
            return
        retry = []
        while queue_ and queue_[0][0] <= now:
            _due, _seq, op_id, res = heapq.heappop(queue_)
            if self._import_one(self.import_operations[op_id], res):
                retry.append((now + max(self.import_delay, 1.0), op_id, res))  # ct retries until the reference exists
        for due, op_id, res in retry:
            heapq.heappush(queue_, (due, next(self.import_seq), op_id, res))

    def _set_import_state(self, op: dict, state: str) -> None:
        """Move ``op`` to ``state`` in its container's by-state index (lock held)."""
        old = op["state"]
        if old == state:
            return
        by_state = self.import_by_state[op["importContainerKey"]]
        del by_state[old][op["id"]]
        target = by_state[state]
        if target and self.import_op_seq[next(reversed(target))] > self.import_op_seq[op["id"]]:
            self.import_unordered.add((op["importContainerKey"], state))  # landed out of creation order
        target[op["id"]] = op
        op["state"] = state

    def _import_one(self, op: dict, res: dict) -> bool:
        """Apply one due InventoryImport to its operation; True if it stays unresolved (to be retried)."""
        op["lastModifiedAt"] = self._tick()
        op["version"] += 1
        ch_key = (res.get("supplyChannel") or {}).get("key")
        cid = self.channel_by_key.get(ch_key) if ch_key else None
        custom = res.get("custom")
        type_id = self.type_by_key.get(((custom or {}).get("type") or {}).get("key")) if custom else None
        missing = ([{"typeId": "channel", "key": ch_key}] if ch_key and not cid else []) + \
                  ([{"typeId": "type", "key": ((custom or {}).get("type") or {}).get("key")}] if custom and not type_id else [])
        if missing:
            self._set_import_state(op, "unresolved")
            op["unresolvedReferences"] = missing
            return True
        op.pop("unresolvedReferences", None)
        fields = {k: (v.get("value") if isinstance(v, dict) else v) for k, v in ((custom or {}).get("fields") or {}).items()}
        if custom:
            defined = {f["name"] for f in self.types[type_id].get("fieldDefinitions") or []}
            bad = sorted(set(fields) - defined)
            if bad:
                self._set_import_state(op, "validationFailed")
                op["errors"] = [{"code": "InvalidField", "message": f"The field '{f}' is not defined in the Type.", "field": f}
                                for f in bad]
                return False
        if res["sku"] in self.import_reject_skus:
            self._set_import_state(op, "rejected")
            op["errors"] = [{"code": "GenericError", "message": "The resource could not be imported (retry limit reached)."}]
            return False
        eid = self.inventory_by_key.get(res["key"]) or self.inventory_index.get((res["sku"], cid))
        if eid is None:
            entry = self._new_entry(res["sku"], cid, int(res["quantityOnStock"]), res["key"])
            self.inventory_by_key[res["key"]] = entry["id"]
        else:
            entry = self.inventory[eid]
            if entry.get("key") != res["key"]:
                entry["key"] = res["key"]
                self.inventory_by_key[res["key"]] = eid
            self._set_entry_quantity(entry, int(res["quantityOnStock"]))
        if custom:
            entry["custom"] = {"type": {"typeId": "type", "id": type_id}, "fields": fields}
        self._set_import_state(op, "imported")
        op["resourceVersion"] = entry["version"]
        return False

    def _import_ops(self, container: str, state: str, resource_key: str) -> dict[str, dict] | list[dict]:
        """The container's operations in ``state`` / of ``resource_key`` (each optional), in creation order."""
        if resource_key:
            ops = self.import_by_resource_key[container].get(resource_key, {}).values()
            return [o for o in ops if o["state"] == state] if state else list(ops)
        if not state:
            return self.import_by_container[container]
        if (container, state) in self.import_unordered:
            by_state, seq = self.import_by_state[container], self.import_op_seq
            by_state[state] = dict(sorted(by_state[state].items(), key=lambda kv: seq[kv[0]]))
            self.import_unordered.discard((container, state))
        return self.import_by_state[container][state]

    @route("GET", P + r"/import-containers/(?P<key>[^/]+)/import-operations")
    def import_operations_list(self, req):
        self._auth(req)
        try:
            limit = int(req.q("limit", "20"))
            offset = int(req.q("offset", "0"))
        except ValueError:
            raise ct_error(400, "InvalidInput", "limit and offset must be integers.") from None
        if not 0 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
            raise ct_error(400, "InvalidInput", f"limit must be 0-{MAX_LIMIT} and offset 0-{MAX_OFFSET}.")
        state = req.q("state", "")
        if state and state not in IMPORT_STATES:
            raise ct_error(400, "InvalidInput", f"Invalid value '{state}' for query parameter 'state'.")
        sorts = req.query.get("sort") or []
        for spec in sorts:
            if not re.fullmatch(r"(createdAt|lastModifiedAt|resourceKey|state) (asc|desc)", spec):
                raise ct_error(400, "InvalidInput", f"Invalid sort expression '{spec}'.")
        with self.lock:
            self._import_container(req.params["key"])
            self._run_imports()
            ops = self._import_ops(req.params["key"], state, req.q("resourceKey", ""))
            if sorts in ([], ["createdAt asc"]):  # creation order is createdAt order (strictly increasing ticks)
                window = itertools.islice(ops.values() if isinstance(ops, dict) else ops, offset, offset + limit)
            elif sorts == ["createdAt desc"]:
                window = itertools.islice(reversed(ops.values() if isinstance(ops, dict) else ops), offset, offset + limit)
            else:
                ordered = list(ops.values() if isinstance(ops, dict) else ops)
                for spec in reversed(sorts):
                    fld, direction = spec.split()
                    ordered.sort(key=lambda o, f=fld: o.get(f) or "", reverse=direction == "desc")
                window = ordered[offset:offset + limit]
            debug = req.q("debug", "") == "true"
            page = [{k: v for k, v in o.items() if debug or k != "unresolvedReferences"} for o in window]
            return Response(200, {"limit": limit, "offset": offset, "count": len(page), "total": len(ops), "results": clone(page)})

    @route("GET", P + r"/import-containers/(?P<key>[^/]+)/import-summaries")
    def import_summary(self, req):
        self._auth(req)
        with self.lock:
            self._import_container(req.params["key"])
            self._run_imports()
            states = {state: len(ops) for state, ops in self.import_by_state[req.params["key"]].items()}
            return Response(200, {"states": states, "total": sum(states.values())})

    @route("GET", P + r"/import-operations/(?P<id>[^/]+)")
    def import_operation_get(self, req):
        self._auth(req)
        with self.lock:
            self._run_imports()
            op = self.import_operations.get(req.params["id"])
            if op is None:
                raise ct_error(404, "ResourceNotFound", "The requested import operation wasn't found.")
            return Response(200, copy.deepcopy(op))

    def control_import_settings(self, payload: dict) -> dict:
        """Test switches: ``delay`` (seconds an operation stays processing), ``reject_skus`` (operations of these
        SKUs end ``rejected``)."""
        with self.lock:
            if "delay" in payload:
                self.import_delay = float(payload["delay"])
            if "reject_skus" in payload:
                self.import_reject_skus = set(payload["reject_skus"] or [])
            return {"delay": self.import_delay, "queued": len(self.import_queue)}

    # --- inventory, continued ----------------------------------------------------------------------------
    def _land_due(self, force: int = 0) -> int:
        """Apply queued order decrements that are due (and the ``force`` oldest ones regardless). Lock held."""
        now = time.monotonic()
        landed = 0
        while self.pending_decrements and (landed < force or self.pending_decrements[0]["due"] <= now):
            d = self.pending_decrements.pop(0)
            entry = self.inventory.get(d["entry"])
            if entry is not None:  # an entry deleted meanwhile takes nothing
                self._set_entry_quantity(entry, entry["quantityOnStock"] - d["quantity"])
            landed += 1
        return landed

    @staticmethod
    def _public_entry(entry: dict, req=None) -> dict:
        entry.pop("reserved", None)
        return entry

    @route("GET", P + r"/inventory")
    def inventory_query(self, req):
        self._auth(req)
        with self.lock:
            self._land_due()
        return self._query(req, lambda: self.inventory.values(), default_sort=["createdAt asc"], transform=self._public_entry, index={
            "id": lambda ids: [self.inventory[i] for i in ids if i in self.inventory],
            "sku": lambda skus: [self.inventory[i] for sku in skus for i in self.inventory_by_sku.get(sku, ())]})

    @route("POST", P + r"/inventory")
    def inventory_create(self, req):
        self._auth(req)
        data = self._body(req)
        sku, qty = data.get("sku"), data.get("quantityOnStock")
        if not isinstance(sku, str) or not sku:
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON: missing required field 'sku'.")
        if not isinstance(qty, int) or isinstance(qty, bool):
            raise ct_error(400, "InvalidJsonInput", "Request body does not contain valid JSON: 'quantityOnStock' must be an integer.")
        with self.lock:
            channel_id = self._resolve_channel_ref(data.get("supplyChannel"))
            if (sku, channel_id) in self.inventory_index:
                msg = (f"An inventory entry for SKU '{sku}' and supply channel '{channel_id}' already exists."
                       if channel_id else f"An inventory entry for SKU '{sku}' without supply channel already exists.")
                raise ct_error(400, "DuplicateField", msg, field="sku", duplicateValue=sku,
                               conflictingResource={"typeId": "inventory-entry", "id": self.inventory_index[(sku, channel_id)]})
            key = data.get("key")
            if key and key in self.inventory_by_key:
                raise ct_error(400, "DuplicateField", f"A duplicate value '\"{key}\"' exists for field 'key'.", field="key", duplicateValue=key)
            entry = self._new_entry(sku, channel_id, qty, key, data)
            return Response(201, self._public_entry(copy.deepcopy(entry)))

    def _entry(self, req) -> dict:
        by_key = "key" in req.params and req.params.get("key") is not None
        ident = req.params["key"] if by_key else req.params["id"]
        eid = self.inventory_by_key.get(ident) if by_key else ident
        entry = self.inventory.get(eid or "")
        if not entry:
            raise ct_error(404, "ResourceNotFound", f"The Resource with {'key' if by_key else 'ID'} '{ident}' was not found.")
        return entry

    @route("GET", P + r"/inventory/(?P<id>[^/=]+)")
    @route("GET", P + r"/inventory/key=(?P<key>[^/]+)")
    def inventory_get(self, req):
        self._auth(req)
        with self.lock:
            self._land_due()
            return Response(200, self._public_entry(copy.deepcopy(self._entry(req))))

    @route("POST", P + r"/inventory/(?P<id>[^/=]+)")
    @route("POST", P + r"/inventory/key=(?P<key>[^/]+)")
    def inventory_update(self, req):
        self._auth(req)
        data = self._body(req)
        actions = self._actions(data)
        with self.lock:
            self._land_due()
            entry = self._entry(req)
            if self.land_on_write > 0 and self.pending_decrements:
                self.land_on_write -= 1
                self._land_due(force=1)  # an order's decrement lands between the client's read and its write
            self._check_version(entry, data, "inventory-entry")
            new = copy.deepcopy(entry)
            for a in actions:
                kind = a["action"]
                if kind in ("setCustomType", "setCustomField"):
                    self._custom_action(new, a)
                    continue
                if kind in ("changeQuantity", "addQuantity", "removeQuantity"):
                    q = a.get("quantity")
                    if not isinstance(q, int) or isinstance(q, bool):
                        raise ct_error(400, "InvalidJsonInput", f"Request body does not contain valid JSON: {kind}.quantity must be an integer.")
                    if kind == "changeQuantity":
                        target = q
                    elif kind == "addQuantity":
                        target = new["quantityOnStock"] + q
                    else:
                        target = new["quantityOnStock"] - q
                    new["quantityOnStock"] = target
                    new["availableQuantity"] = target - new.get("reserved", 0)
                elif kind in ("setRestockableInDays", "setExpectedDelivery"):
                    field = "restockableInDays" if kind == "setRestockableInDays" else "expectedDelivery"
                    if a.get(field) is None:
                        new.pop(field, None)
                    else:
                        new[field] = a[field]
                else:
                    raise ct_error(400, "InvalidOperation", f"Unknown update action '{kind}' for inventory entries.")
            new["version"] = entry["version"] + 1
            new["lastModifiedAt"] = self._tick()
            entry.clear()
            entry.update(new)
            if self.lose_inventory_responses > 0:  # applied, but the answer never reaches the client
                self.lose_inventory_responses -= 1
                raise HttpError(502, {"statusCode": 502, "message": "Bad Gateway (injected: update applied, response lost)"})
            return Response(200, self._public_entry(copy.deepcopy(entry)))

    @route("DELETE", P + r"/inventory/(?P<id>[^/=]+)")
    def inventory_delete(self, req):
        self._auth(req)
        try:
            version = int(req.q("version", ""))
        except ValueError:
            raise ct_error(400, "InvalidInput", "Missing or malformed parameter: version") from None
        with self.lock:
            entry = self._entry(req)
            self._check_version(entry, {"version": version}, "inventory-entry")
            del self.inventory[entry["id"]]
            ch = (entry.get("supplyChannel") or {}).get("id")
            self.inventory_index.pop((entry["sku"], ch), None)
            self.inventory_by_sku.get(entry["sku"], set()).discard(entry["id"])
            if entry.get("key"):
                self.inventory_by_key.pop(entry["key"], None)
            return Response(200, self._public_entry(copy.deepcopy(entry)))

    # --- products -----------------------------------------------------------------------------------
    @staticmethod
    def _price_for(sku: str) -> int:
        return 1500 + int(hashlib.sha1(sku.encode()).hexdigest()[:4], 16) % 8500  # 15.00 … 99.99

    def _new_product(self, key: str, skus: list[str], name: str | None = None, currency: str = "GBP", published: bool = True) -> dict:
        ts = self._tick()
        pid = str(uuid.uuid4())
        variants = []
        for i, sku in enumerate(skus, start=1):
            cents = self.sku_prices.setdefault(sku, self._price_for(sku))
            variants.append({"id": i, "sku": sku, "key": sku,
                             "prices": [{"id": str(uuid.uuid4()), "value": {"type": "centPrecision", "currencyCode": currency,
                                                                            "centAmount": cents, "fractionDigits": 2}}],
                             "attributes": [], "images": []})
            self.sku_product[sku] = (pid, i)
            self.products_by_sku.setdefault(sku, []).append(pid)
        product = {"id": pid, "version": 1, "key": key, "productType": {"typeId": "product-type", "id": "apparel"},
                   "name": {"en": name or key}, "slug": {"en": key.lower()}, "categories": [],
                   "masterVariant": variants[0] if variants else {"id": 1, "attributes": [], "prices": [], "images": []},
                   "variants": variants[1:], "published": bool(published), "hasStagedChanges": False,
                   "createdAt": ts, "lastModifiedAt": ts}
        self.products[pid] = product
        self.product_by_key[key] = pid
        self.product_ids_sorted = None
        return product

    @route("GET", P + r"/product-projections")
    def product_projections(self, req):
        self._auth(req)
        staged = req.q("staged", "false").lower() == "true"  # current projections exist for published products only

        def view(p):
            return self.staged_products.get(p["id"], p) if staged else p

        def by_ids(ids):
            return [view(self.products[i]) for i in ids if i in self.products and (staged or self.products[i]["published"])]

        def by_skus(skus):
            return by_ids(dict.fromkeys(pid for sku in skus for pid in self.products_by_sku.get(sku, ())))

        def from_id(lower):  # ids ascending from ``lower``: paging by id (``id > last``, ``sort=id asc``) reads one page
            if self.product_ids_sorted is None:
                self.product_ids_sorted = sorted(self.products)
            ids = self.product_ids_sorted
            for i in range(bisect.bisect_left(ids, lower) if isinstance(lower, str) else 0, len(ids)):
                p = self.products[ids[i]]
                if staged or p["published"]:
                    yield view(p)
        return self._query(req, lambda: [view(p) for p in self.products.values() if staged or p["published"]], default_sort=["createdAt asc"],
                           index={"id": by_ids, "masterVariant.sku": by_skus, "variants.sku": by_skus}, ordered={"id": from_id})

    # Products API update (docs.commercetools.com/api/projects/products#update-product): ``POST /products/{id}`` with
    # ``{version, actions}``; the actions the hub sends are emulated — ``setAttribute`` (``sku`` or ``variantId``,
    # ``name``, ``value``: absent/null removes it) and ``changeName`` (a LocalizedString), each with ``staged``
    # (default true: only the staged projection changes and ``hasStagedChanges`` turns true; false: current and
    # staged). Any other action is refused (InvalidOperation), as are malformed ones (InvalidInput), a stale
    # version is 409 ConcurrentModification; nothing of a refused request is applied.
    PRODUCT_ACTIONS = ("setAttribute", "changeName")

    def _product_variant(self, product: dict, a: dict) -> dict:
        variants = [product["masterVariant"]] + list(product["variants"])
        if a.get("sku") is not None:
            found = next((v for v in variants if v.get("sku") == a["sku"]), None)
            what = f"sku '{a['sku']}'"
        elif isinstance(a.get("variantId"), int):
            found = next((v for v in variants if v.get("id") == a["variantId"]), None)
            what = f"variantId '{a['variantId']}'"
        else:
            raise ct_error(400, "InvalidInput", "Either variantId or sku is required to reference a ProductVariant.")
        if found is None:
            raise ct_error(400, "InvalidOperation", f"The product does not have a variant with {what}.")
        return found

    def _apply_product_action(self, product: dict, a: dict) -> None:
        kind = a["action"]
        if kind == "setAttribute":
            if not isinstance(a.get("name"), str) or not a["name"]:
                raise ct_error(400, "InvalidInput", "Request body does not contain valid JSON: setAttribute.name is required.")
            v = self._product_variant(product, a)
            attrs = [x for x in v.get("attributes") or [] if x.get("name") != a["name"]]
            if a.get("value") is not None:
                attrs.append({"name": a["name"], "value": copy.deepcopy(a["value"])})
            v["attributes"] = sorted(attrs, key=lambda x: x["name"])
        elif kind == "changeName":
            name = a.get("name")
            if not isinstance(name, dict) or not name or not all(isinstance(k, str) and isinstance(val, str) for k, val in name.items()):
                raise ct_error(400, "InvalidInput", "Request body does not contain valid JSON: changeName.name must be a LocalizedString.")
            product["name"] = dict(name)
        else:
            raise ct_error(400, "InvalidOperation", f"Unknown or unsupported update action '{kind}' for products.")

    @route("POST", P + r"/products/(?P<id>[^/=]+)")
    def product_update(self, req):
        self._auth(req)
        data = self._body(req)
        actions = self._actions(data)
        with self.lock:
            product = self.products.get(req.params["id"])
            if product is None:
                raise ct_error(404, "ResourceNotFound", f"The Resource with ID '{req.params['id']}' was not found.")
            self._check_version(product, data, "product")
            current = copy.deepcopy(product)
            staged = copy.deepcopy(self.staged_products.get(product["id"], product))
            for a in actions:
                if a["action"] not in self.PRODUCT_ACTIONS:
                    raise ct_error(400, "InvalidOperation", f"Unknown or unsupported update action '{a['action']}' for products.")
                if "staged" in a and not isinstance(a["staged"], bool):
                    raise ct_error(400, "InvalidInput", f"Request body does not contain valid JSON: {a['action']}.staged must be a boolean.")
                self._apply_product_action(staged, a)
                if a.get("staged", True) is False:
                    self._apply_product_action(current, a)
            ts = self._tick()
            for p in (current, staged):
                p["version"] = product["version"] + 1
                p["lastModifiedAt"] = ts
            has_staged = json.dumps({k: staged[k] for k in ("name", "masterVariant", "variants")}, sort_keys=True) != \
                json.dumps({k: current[k] for k in ("name", "masterVariant", "variants")}, sort_keys=True)
            current["hasStagedChanges"] = staged["hasStagedChanges"] = has_staged
            product.clear()
            product.update(current)
            if has_staged:
                self.staged_products[product["id"]] = staged
            else:
                self.staged_products.pop(product["id"], None)
            return Response(200, self._product_resource(current, staged))

    @staticmethod
    def _product_resource(current: dict, staged: dict) -> dict:
        """The Product the Products API answers: ``masterData {current, staged, published, hasStagedChanges}``."""
        def data(p):
            return {"name": copy.deepcopy(p["name"]), "categories": copy.deepcopy(p.get("categories") or []),
                    "slug": copy.deepcopy(p.get("slug") or {}), "masterVariant": copy.deepcopy(p["masterVariant"]),
                    "variants": copy.deepcopy(p["variants"]), "searchKeywords": {}}
        return {"id": current["id"], "version": current["version"], "key": current.get("key"),
                "productType": copy.deepcopy(current["productType"]), "createdAt": current["createdAt"],
                "lastModifiedAt": current["lastModifiedAt"],
                "masterData": {"current": data(current), "staged": data(staged), "published": bool(current["published"]),
                               "hasStagedChanges": bool(staged["hasStagedChanges"])}}

    @route("GET", P + r"/product-projections/(?P<id>[^/=]+)")
    def product_projection_get(self, req):
        self._auth(req)
        with self.lock:
            p = self.products.get(req.params["id"])
            if not p:
                raise ct_error(404, "ResourceNotFound", f"The Resource with ID '{req.params['id']}' was not found.")
            return Response(200, copy.deepcopy(p))

    # --- orders ---------------------------------------------------------------------------------------
    def _shipping_method(self, key: str) -> dict:
        sid = self.shipping_method_by_key.get(key)
        if sid:
            return self.shipping_methods[sid]
        ts = self._tick()
        sm = {"id": str(uuid.uuid4()), "version": 1, "key": key, "name": key.replace("-", " ").title(),
              "localizedName": {"en": key.replace("-", " ").title()}, "isDefault": False, "zoneRates": [],
              "createdAt": ts, "lastModifiedAt": ts}
        self.shipping_methods[sm["id"]] = sm
        self.shipping_method_by_key[key] = sm["id"]
        return sm

    def _discount_code(self, code: str) -> dict:
        dc = self.discount_codes.get(code)
        if dc is None:
            ts = self._tick()
            dc = {"id": str(uuid.uuid4()), "version": 1, "code": code, "isActive": True, "cartDiscounts": [],
                  "groups": [], "references": [], "createdAt": ts, "lastModifiedAt": ts}
            self.discount_codes[code] = dc
        return dc

    @route("GET", P + r"/shipping-methods")
    def shipping_methods_query(self, req):
        self._auth(req)
        return self._query(req, lambda: self.shipping_methods.values(), default_sort=["createdAt asc"])

    @route("GET", P + r"/discount-codes")
    def discount_codes_query(self, req):
        self._auth(req)
        return self._query(req, lambda: self.discount_codes.values(), default_sort=["createdAt asc"])

    def _expand(self, order: dict, req: Request) -> dict:
        expand = set(req.query.get("expand", []))
        if "discountCodes[*].discountCode" in expand:
            by_id = {d["id"]: d for d in self.discount_codes.values()}
            for dc in order.get("discountCodes", []):
                ref = dc.get("discountCode") or {}
                if ref.get("id") in by_id:
                    ref["obj"] = copy.deepcopy(by_id[ref["id"]])
        if "shippingInfo.shippingMethod" in expand:
            ref = (order.get("shippingInfo") or {}).get("shippingMethod")
            if ref and ref.get("id") in self.shipping_methods:
                ref["obj"] = copy.deepcopy(self.shipping_methods[ref["id"]])
        if "shipping[*].shippingInfo.shippingMethod" in expand:
            for sh in order.get("shipping") or []:
                ref = (sh.get("shippingInfo") or {}).get("shippingMethod")
                if ref and ref.get("id") in self.shipping_methods:
                    ref["obj"] = copy.deepcopy(self.shipping_methods[ref["id"]])
        if "lineItems[*].supplyChannel" in expand:
            for li in order.get("lineItems", []):
                ref = li.get("supplyChannel")
                if ref and ref.get("id") in self.channels:
                    ref["obj"] = copy.deepcopy(self.channels[ref["id"]])
        return order

    @staticmethod
    def _address(a: dict | None, email: str = "") -> dict | None:
        if not a:
            return None
        if not isinstance(a, dict):
            raise ct_error(400, "InvalidJsonInput", "address must be an object")
        out = {
            "firstName": a.get("firstName", a.get("first_name", "")), "lastName": a.get("lastName", a.get("last_name", "")),
            "company": a.get("company", ""), "streetName": a.get("streetName", a.get("street", "")),
            "streetNumber": a.get("streetNumber", ""), "additionalStreetInfo": a.get("additionalStreetInfo", a.get("street2", "")),
            "postalCode": a.get("postalCode", a.get("postal_code", "")), "city": a.get("city", ""), "region": a.get("region", ""),
            "country": a.get("country", "GB"), "phone": a.get("phone", ""), "email": a.get("email", email),
        }
        return {k: v for k, v in out.items() if v not in ("", None)}

    def _build_order(self, spec: dict) -> dict:
        channel_key = spec.get("channel")
        channel_id = None
        if channel_key:
            channel_id = self.channel_by_key.get(channel_key) or self._new_channel(channel_key)["id"]
        lines = spec.get("lines") or []
        if not lines:
            raise ct_error(400, "InvalidInput", "an order needs at least one line")
        currency = spec.get("currency", "GBP")
        ts = spec.get("created_at") or self._tick()
        if spec.get("created_at"):
            dt = parse_dt(spec["created_at"])
            if dt is None:
                raise ct_error(400, "InvalidInput", f"created_at is not an ISO datetime: {spec['created_at']!r}")
            ts = now_iso(dt)
        if spec.get("order_number"):
            number = str(spec["order_number"])
        else:
            self.order_seq += 1
            number = f"CT{self.order_seq}"
        if number in self.order_by_number:
            raise ct_error(400, "DuplicateField", f"A duplicate value '\"{number}\"' exists for field 'orderNumber'.",
                           field="orderNumber", duplicateValue=number)
        money = lambda cents: {"type": "centPrecision", "currencyCode": currency, "centAmount": int(cents), "fractionDigits": 2}  # noqa: E731
        line_items, total = [], 0
        for ln in lines:
            sku, qty = ln.get("sku"), ln.get("quantity", 1)
            if not sku or not isinstance(qty, int) or qty < 1:
                raise ct_error(400, "InvalidInput", f"bad order line {ln!r}")
            cents = int(ln.get("price", self.sku_prices.get(sku) or self._price_for(sku)))
            pid, vid = self.sku_product.get(sku, (None, 1))
            pname = self.products[pid]["name"]["en"] if pid else sku
            li = {"id": str(uuid.uuid4()), "productId": pid or str(uuid.uuid5(uuid.NAMESPACE_URL, "ct-product/" + sku)),
                  "productKey": self.products[pid]["key"] if pid else None, "name": {"en": ln.get("name") or pname},
                  "productType": {"typeId": "product-type", "id": "apparel"},
                  "variant": {"id": vid, "sku": sku, "prices": [], "attributes": [], "images": []},
                  "price": {"id": str(uuid.uuid4()), "value": money(cents)}, "quantity": qty,
                  "totalPrice": money(cents * qty), "discountedPricePerQuantity": [], "taxedPricePortions": [],
                  "state": [{"quantity": qty, "state": {"typeId": "state", "id": "initial"}}],
                  "priceMode": "Platform", "lineItemMode": "Standard", "inventoryMode": "TrackOnly"}
            if li["productKey"] is None:
                del li["productKey"]
            if channel_id:
                li["supplyChannel"] = {"typeId": "channel", "id": channel_id}
                li["distributionChannel"] = {"typeId": "channel", "id": channel_id}
            if ln.get("custom_fields"):
                li["custom"] = {"type": {"typeId": "type", "id": "line-item-fields"}, "fields": dict(ln["custom_fields"])}
            line_items.append(li)
            total += cents * qty
        shipping_cents = int(spec.get("shipping_price", 395))
        total += shipping_cents
        sm_key = spec.get("shipping_method") or "standard"
        sm = self._shipping_method(sm_key)
        email = spec.get("email") or f"customer{self.order_seq}@example.com"
        address = self._address(spec.get("address"), email) or {
            "firstName": "Alex", "lastName": "Morgan", "streetName": "High Street", "streetNumber": "12", "postalCode": "SW1A 1AA",
            "city": "London", "country": "GB", "email": email}
        fields = dict(spec.get("custom_fields") or {})
        if spec.get("gift_message"):
            fields["giftMessage"] = spec["gift_message"]
        if spec.get("delivery_notes"):
            fields["deliveryNotes"] = spec["delivery_notes"]
        order = {
            "id": spec.get("id") or str(uuid.uuid4()), "version": 1, "orderNumber": number, "customerEmail": email,
            "createdAt": ts, "lastModifiedAt": ts, "completedAt": None, "origin": "Customer",
            "lineItems": line_items, "customLineItems": [], "totalPrice": money(total),
            "taxedPrice": {"totalNet": money(round(total / 1.2)), "totalGross": money(total), "taxPortions": []},
            "shippingAddress": address, "billingAddress": self._address(spec.get("billing_address"), email) or copy.deepcopy(address),
            "shippingMode": "Single",
            "shippingInfo": {"shippingMethodName": sm["name"], "price": money(shipping_cents),
                             "shippingRate": {"price": money(shipping_cents), "tiers": []},
                             "shippingMethod": {"typeId": "shipping-method", "id": sm["id"]},
                             "shippingMethodState": "MatchesCart", "deliveries": []},
            "discountCodes": [{"discountCode": {"typeId": "discount-code", "id": self._discount_code(c)["id"]},
                               "state": "MatchesCart"} for c in spec.get("discount_codes") or []],
            "orderState": "Open", "shipmentState": "Pending", "paymentState": "Paid",
            "inventoryMode": "TrackOnly", "taxMode": "Platform", "taxRoundingMode": "HalfEven", "refusedGifts": [],
            "syncInfo": [], "returnInfo": [], "itemShippingAddresses": [],
        }
        del order["completedAt"]
        if spec.get("shipping_mode") == "Multiple":
            # ShippingMode Multiple: no top-level shippingInfo; each Shipping {shippingKey, shippingInfo,
            # shippingAddress} holds its own deliveries, and line items say where they go (shippingDetails)
            key = spec.get("shipping_key") or sm_key
            order["shippingMode"] = "Multiple"
            order["shipping"] = [{"shippingKey": key, "shippingInfo": order.pop("shippingInfo"),
                                  "shippingAddress": copy.deepcopy(address)}]
            for li in line_items:
                li["shippingDetails"] = {"targets": [{"addressKey": key, "quantity": li["quantity"], "shippingMethodKey": key}],
                                         "valid": True}
        if channel_key:
            order["store"] = {"typeId": "store", "key": channel_key}
        if fields:
            order["custom"] = {"type": {"typeId": "type", "id": "order-fields", "key": "order-fields"}, "fields": fields}
        if order["id"] in self.orders:
            raise ct_error(400, "DuplicateField", f"order id {order['id']} exists", field="id", duplicateValue=order["id"])
        return order

    def _track_inventory(self, order: dict) -> None:
        """inventoryMode TrackOnly: ordered quantities leave the supply channel's entry (may go negative).
        With ``decrement_delay`` > 0 the decrement is queued and lands that many seconds later (ct since
        2026-01-19: order-driven inventory updates are eventually consistent, up to ~10 s); until then the
        entry still shows the old figure and its version does not move."""
        for li in order["lineItems"]:
            ch = (li.get("supplyChannel") or {}).get("id")
            eid = self.inventory_index.get((li["variant"]["sku"], ch))
            if eid and self.decrement_delay > 0:
                self.pending_decrements.append({"due": time.monotonic() + self.decrement_delay, "entry": eid,
                                                "quantity": li["quantity"], "order": order["id"]})
            elif eid:
                entry = self.inventory[eid]
                self._set_entry_quantity(entry, entry["quantityOnStock"] - li["quantity"])
            else:
                li["inventoryMode"] = "None"

    def _order(self, req) -> dict:
        if req.params.get("number") is not None:
            oid = self.order_by_number.get(req.params["number"])
            label = f"orderNumber '{req.params['number']}'"
        else:
            oid, label = req.params["id"], f"ID '{req.params['id']}'"
        order = self.orders.get(oid or "")
        if not order:
            raise ct_error(404, "ResourceNotFound", f"The Resource with {label} was not found.")
        return order

    @route("GET", P + r"/orders")
    def orders_query(self, req):
        self._auth(req)
        return self._query(req, lambda: self.orders.values(), default_sort=["createdAt asc"], transform=self._expand, index={
            "id": lambda ids: [self.orders[i] for i in ids if i in self.orders],
            "orderNumber": lambda ns: [self.orders[self.order_by_number[n]] for n in ns if n in self.order_by_number]})

    @route("GET", P + r"/orders/(?P<id>[^/=]+)")
    @route("GET", P + r"/orders/order-number=(?P<number>[^/]+)")
    def order_get(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, self._expand(copy.deepcopy(self._order(req)), req))

    @route("POST", P + r"/orders/(?P<id>[^/=]+)")
    @route("POST", P + r"/orders/order-number=(?P<number>[^/]+)")
    def order_update(self, req):
        self._auth(req)
        data = self._body(req)
        actions = self._actions(data)
        with self.lock:
            order = self._order(req)
            self._check_version(order, data, "order")
            new = copy.deepcopy(order)
            line_ids = {li["id"]: li["quantity"] for li in new["lineItems"]}
            set_return_info = False
            for a in actions:
                kind = a["action"]
                if kind == "changeShipmentState":
                    state = a.get("shipmentState")
                    if state not in SHIPMENT_STATES:
                        raise ct_error(400, "InvalidInput", f"Invalid shipmentState {state!r}")
                    new["shipmentState"] = state
                elif kind == "changeOrderState":
                    state = a.get("orderState")
                    if state not in ORDER_STATES:
                        raise ct_error(400, "InvalidInput", f"Invalid orderState {state!r}")
                    new["orderState"] = state
                    if state == "Complete":
                        new["completedAt"] = self._tick()
                elif kind == "changePaymentState":
                    new["paymentState"] = a.get("paymentState")
                elif kind == "addDelivery":
                    if a.get("deliveryKey") and any(d.get("key") == a["deliveryKey"] for d in self._all_deliveries(new)):
                        raise ct_error(400, "DuplicateField", f"A duplicate value '\"{a['deliveryKey']}\"' exists for field 'key'.",
                                       field="key", duplicateValue=a["deliveryKey"])
                    self._deliveries_for(new, a.get("shippingKey")).append(self._delivery(a, line_ids))
                elif kind == "addParcelToDelivery":
                    delivery = next((d for d in self._all_deliveries(new) if d["id"] == a.get("deliveryId")
                                     or (a.get("deliveryKey") and d.get("key") == a.get("deliveryKey"))), None)
                    if delivery is None:
                        raise ct_error(400, "InvalidOperation", f"No delivery {a.get('deliveryId') or a.get('deliveryKey')!r} on this order.")
                    delivery["parcels"].append(self._parcel(a, line_ids))
                elif kind == "addReturnInfo":
                    new.setdefault("returnInfo", []).append(self._return_info(new, a))
                elif kind == "setReturnInfo":  # replaces every ReturnInfo (ReturnInfoDrafts in items)
                    drafts = a.get("items") or []
                    new["returnInfo"] = []
                    for draft in drafts:
                        new["returnInfo"].append(self._return_info(new, draft if isinstance(draft, dict) else {}))
                    set_return_info = True
                elif kind in ("setReturnShipmentState", "setReturnPaymentState"):
                    item = self._return_item(new, a)
                    field, allowed = (("shipmentState", RETURN_SHIPMENT_STATES) if kind == "setReturnShipmentState"
                                      else ("paymentState", RETURN_PAYMENT_STATES))
                    if a.get(field) not in allowed:
                        raise ct_error(400, "InvalidInput", f"Invalid {field} {a.get(field)!r}")
                    item[field] = a[field]
                    item["lastModifiedAt"] = self._tick()
                elif kind == "setCustomField":
                    custom = new.setdefault("custom", {"type": {"typeId": "type", "id": "order-fields"}, "fields": {}})
                    if a.get("value") is None:
                        custom["fields"].pop(a.get("name"), None)
                    else:
                        custom["fields"][a.get("name")] = a["value"]
                else:
                    raise ct_error(400, "InvalidOperation", f"Unknown or unsupported update action '{kind}' for orders.")
            new["version"] = order["version"] + 1
            new["lastModifiedAt"] = self._tick()
            old_state = order.get("orderState")
            before_returns = {it["id"]: it.get("shipmentState") for info in order.get("returnInfo") or [] for it in info.get("items") or []}
            order.clear()
            order.update(new)
            self._emit_update_messages(order, req.params.get("project") or "demo", old_state, before_returns, set_return_info)
            return Response(200, self._expand(copy.deepcopy(order), req))

    def _items(self, items, line_ids: dict) -> list[dict]:
        out = []
        for it in items or []:
            if not isinstance(it, dict) or it.get("id") not in line_ids:
                raise ct_error(400, "InvalidOperation", f"Delivery item {it!r} does not reference a line item of this order.")
            q = it.get("quantity")
            if not isinstance(q, int) or q < 1 or q > line_ids[it["id"]]:
                raise ct_error(400, "InvalidOperation", f"Delivery item quantity {q!r} is not between 1 and the ordered quantity.")
            out.append({"id": it["id"], "quantity": q})
        return out

    def _parcel(self, p: dict, line_ids: dict) -> dict:
        parcel = {"id": str(uuid.uuid4()), "createdAt": self._tick(), "items": self._items(p.get("items"), line_ids)}
        td = p.get("trackingData")
        if td is not None:
            if not isinstance(td, dict):
                raise ct_error(400, "InvalidJsonInput", "trackingData must be an object")
            parcel["trackingData"] = {k: td[k] for k in ("trackingId", "carrier", "provider", "providerTransaction", "isReturn") if k in td}
        if p.get("key"):
            parcel["key"] = p["key"]
        if p.get("measurements"):
            parcel["measurements"] = p["measurements"]
        return parcel

    @staticmethod
    def _all_deliveries(order: dict) -> list[dict]:
        if order.get("shippingMode") == "Multiple":
            return [d for sh in order.get("shipping") or [] for d in (sh.get("shippingInfo") or {}).get("deliveries") or []]
        return list((order.get("shippingInfo") or {}).get("deliveries") or [])

    @staticmethod
    def _deliveries_for(order: dict, shipping_key) -> list:
        """The deliveries list an ``addDelivery`` appends to: Single mode refuses a ``shippingKey``; Multiple mode
        needs one naming a Shipping of the order."""
        if order.get("shippingMode") != "Multiple":
            if shipping_key is not None:
                raise ct_error(400, "InvalidOperation", "shippingKey can only be set on Orders with ShippingMode 'Multiple'.")
            return order["shippingInfo"]["deliveries"]
        if not shipping_key:
            raise ct_error(400, "InvalidOperation", "shippingKey is required for Orders with ShippingMode 'Multiple'.")
        for sh in order.get("shipping") or []:
            if sh.get("shippingKey") == shipping_key:
                return sh["shippingInfo"].setdefault("deliveries", [])
        raise ct_error(400, "InvalidOperation", f"The order has no Shipping with shippingKey '{shipping_key}'.")

    def _delivery(self, a: dict, line_ids: dict) -> dict:
        d = {"id": str(uuid.uuid4()), "createdAt": self._tick(), "items": self._items(a.get("items"), line_ids),
             "parcels": [self._parcel(p, line_ids) for p in a.get("parcels") or []]}
        if a.get("deliveryKey"):
            d["key"] = a["deliveryKey"]
        if a.get("address"):
            d["address"] = a["address"]
        return d

    def _return_info(self, order: dict, a: dict) -> dict:
        """``addReturnInfo``: ReturnItemDrafts {quantity, lineItemId | customLineItemId, shipmentState, comment,
        key} → a ReturnInfo with LineItemReturnItems (paymentState Initial). A line item cannot have more units
        returned than were ordered."""
        drafts = a.get("items")
        if not isinstance(drafts, list) or not drafts:
            raise ct_error(400, "InvalidInput", "addReturnInfo needs at least one return item")
        ordered = {li["id"]: li["quantity"] for li in order["lineItems"]}
        returned: dict[str, int] = {}
        for info in order.get("returnInfo") or []:
            for it in info.get("items") or []:
                if it.get("lineItemId"):
                    returned[it["lineItemId"]] = returned.get(it["lineItemId"], 0) + int(it.get("quantity") or 0)
        items = []
        for d in drafts:
            if not isinstance(d, dict):
                raise ct_error(400, "InvalidJsonInput", "a return item draft must be an object")
            line, qty, state = d.get("lineItemId"), d.get("quantity"), d.get("shipmentState")
            if line not in ordered:
                raise ct_error(400, "InvalidOperation", f"Return item draft {d!r} does not reference a line item of this order.")
            if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
                raise ct_error(400, "InvalidInput", f"Return item quantity {qty!r} must be a positive integer.")
            if state not in RETURN_SHIPMENT_STATES:
                raise ct_error(400, "InvalidInput", f"Invalid shipmentState {state!r}")
            returned[line] = returned.get(line, 0) + qty
            if returned[line] > ordered[line]:
                raise ct_error(400, "InvalidOperation", f"Line item {line} has {ordered[line]} units; {returned[line]} would be returned.")
            ts = self._tick()
            item = {"type": "LineItemReturnItem", "id": str(uuid.uuid4()), "quantity": qty, "lineItemId": line,
                    "shipmentState": state, "paymentState": "Initial", "createdAt": ts, "lastModifiedAt": ts}
            for k in ("key", "comment"):
                if d.get(k):
                    item[k] = d[k]
            items.append(item)
        info = {"items": items}
        if a.get("returnTrackingId"):
            info["returnTrackingId"] = a["returnTrackingId"]
        if a.get("returnDate"):
            if parse_dt(a["returnDate"]) is None:
                raise ct_error(400, "InvalidInput", f"returnDate is not an ISO datetime: {a['returnDate']!r}")
            info["returnDate"] = a["returnDate"]
        return info

    @staticmethod
    def _return_item(order: dict, a: dict) -> dict:
        for info in order.get("returnInfo") or []:
            for it in info.get("items") or []:
                if (a.get("returnItemId") and it.get("id") == a["returnItemId"]) or (a.get("returnItemKey") and it.get("key") == a["returnItemKey"]):
                    return it
        raise ct_error(400, "InvalidOperation", f"No return item {a.get('returnItemId') or a.get('returnItemKey')!r} on this order.")

    # --- subscription delivery ---------------------------------------------------------------------
    def _ensure_workers(self) -> None:
        self._workers = [t for t in self._workers if t.is_alive()]
        while len(self._workers) < self.delivery_workers:
            t = threading.Thread(target=self._deliver_loop, name=f"ct-subscription-{len(self._workers)}", daemon=True)
            t.start()
            self._workers.append(t)

    def _message(self, order: dict, project: str, kind: str = "OrderCreated", **fields) -> dict:
        """An order Message in the Platform format; ``OrderCreated`` carries the order, the others their own fields
        (OrderStateChanged {orderState, oldOrderState}, ReturnInfoAdded / ReturnInfoSet {returnInfo},
        OrderReturnShipmentStateChanged {returnItemId, returnShipmentState})."""
        seq = self.message_seq.get(order["id"], 0) + 1
        self.message_seq[order["id"]] = seq
        m = {"notificationType": "Message", "projectKey": project, "id": str(uuid.uuid4()), "version": 1,
             "sequenceNumber": seq, "resource": {"typeId": "order", "id": order["id"]}, "resourceVersion": order["version"],
             "resourceUserProvidedIdentifiers": {"orderNumber": order["orderNumber"]}, "type": kind,
             "createdAt": order["lastModifiedAt"], "lastModifiedAt": order["lastModifiedAt"],
             "createdBy": {"isPlatformClient": True}, "lastModifiedBy": {"isPlatformClient": True}, **copy.deepcopy(fields)}
        if kind == "OrderCreated":
            m["order"] = copy.deepcopy(order)
        return m

    def _emit_update_messages(self, order: dict, project: str, old_state, before_returns: dict, set_return_info: bool = False) -> None:
        """The Messages an order update produces (lock held): OrderStateChanged, ReturnInfoAdded / ReturnInfoSet,
        OrderReturnShipmentStateChanged."""
        out = []
        if order.get("orderState") != old_state:
            out.append(self._message(order, project, "OrderStateChanged", orderState=order["orderState"], oldOrderState=old_state))
        if set_return_info:
            self._enqueue(out + [self._message(order, project, "ReturnInfoSet", returnInfo=order.get("returnInfo") or [])])
            return
        for info in order.get("returnInfo") or []:
            items = info.get("items") or []
            if items and all(it["id"] not in before_returns for it in items):
                out.append(self._message(order, project, "ReturnInfoAdded", returnInfo=info))
            for it in items:
                if it["id"] in before_returns and before_returns[it["id"]] != it.get("shipmentState"):
                    out.append(self._message(order, project, "OrderReturnShipmentStateChanged", returnItemId=it["id"],
                                             returnShipmentState=it.get("shipmentState")))
        self._enqueue(out)

    def _targets(self, resource_type: str, message_type: str) -> list[tuple]:
        out = []
        for relay in self.direct_relays.values():
            if message_type in relay["types"]:
                out.append((self.generation, "direct", relay))
        for sub in self.subscriptions.values():
            if not any(m.get("resourceTypeId") == resource_type and (not m.get("types") or message_type in m["types"])
                       for m in sub.get("messages") or []):
                continue
            dest = sub["destination"]
            if dest["type"] == "GoogleCloudPubSub":
                topic = f"projects/{dest['projectId']}/topics/{dest['topic']}"
                if topic in self.pubsub_push:
                    out.append((self.generation, "pubsub", {**self.pubsub_push[topic], "topic": topic}))
                else:
                    self.webhook_stats["unrouted"] = self.webhook_stats.get("unrouted", 0) + 1  # a topic nobody reads
            elif dest["type"] == "SQS":
                out.append((self.generation, "sqs", dict(dest)))
        return out

    def _enqueue(self, messages: list[dict]) -> None:
        if not messages:
            return
        self._ensure_workers()
        for m in messages:
            for target in self._targets("order", m["type"]):
                try:
                    self._queue.put_nowait((target, m))
                    self.webhook_stats["queued"] += 1
                except queue.Full:
                    self.webhook_stats["overflow"] += 1
                    self.webhook_stats["dropped"] += 1

    # --- Subscriptions API ---------------------------------------------------------------------------
    def _validate_subscription(self, data: dict) -> None:
        """The Destination must be one of the reference's (``DESTINATIONS``) with its required fields; there is no
        HTTP Destination for Subscriptions (HTTP exists for API Extensions only)."""
        dest = data.get("destination")
        kind = dest.get("type") if isinstance(dest, dict) else None
        if kind not in DESTINATIONS:
            raise ct_error(400, "InvalidInput", f"Destination type {kind!r} is not valid. Valid types: {', '.join(DESTINATIONS)}.")
        missing = [f for f in DESTINATIONS[kind] if not dest.get(f)]
        if kind == "SQS" and dest.get("authenticationMode", "Credentials") == "Credentials":
            missing += [f for f in ("accessKey", "accessSecret") if not dest.get(f)]
        if kind == "SQS" and dest.get("authenticationMode") not in (None, "Credentials", "IAM"):
            missing.append("authenticationMode")
        if missing:
            raise ct_error(400, "InvalidInput", f"{kind} destination is missing or has invalid: {', '.join(missing)}.")
        fmt = data.get("format") or {"type": "Platform"}
        if not isinstance(fmt, dict) or fmt.get("type") not in ("Platform", "CloudEvents"):
            raise ct_error(400, "InvalidInput", "format must be {type: Platform} or {type: CloudEvents, cloudEventsVersion}.")
        messages = data.get("messages", [])
        if not isinstance(messages, list) or not all(isinstance(m, dict) and m.get("resourceTypeId") for m in messages):
            raise ct_error(400, "InvalidInput", "messages must be a list of {resourceTypeId, types}.")

    @staticmethod
    def _public_subscription(sub: dict, req=None) -> dict:
        for f in ("accessSecret", "apiSecret", "connectionString"):  # secrets are never returned
            sub["destination"].pop(f, None)
        return sub

    def _upsert_subscription(self, data: dict) -> dict:
        self._validate_subscription(data)
        ts = self._tick()
        sub = {"id": str(uuid.uuid4()), "version": 1, "key": data.get("key"), "destination": copy.deepcopy(data["destination"]),
               "messages": copy.deepcopy(data.get("messages") or []), "changes": copy.deepcopy(data.get("changes") or []),
               "format": copy.deepcopy(data.get("format") or {"type": "Platform"}), "status": "Healthy", "createdAt": ts,
               "lastModifiedAt": ts}
        if not sub["key"]:
            del sub["key"]
        self.subscriptions[sub["id"]] = sub
        return sub

    def _subscription(self, req) -> dict:
        if req.params.get("key") is not None:
            sub = next((s for s in self.subscriptions.values() if s.get("key") == req.params["key"]), None)
        else:
            sub = self.subscriptions.get(req.params["id"])
        if not sub:
            raise ct_error(404, "ResourceNotFound", f"The Resource with {'key' if req.params.get('key') is not None else 'ID'} "
                                                    f"'{req.params.get('key') or req.params.get('id')}' was not found.")
        return sub

    @route("GET", P + r"/subscriptions")
    def subscriptions_query(self, req):
        self._auth(req)
        return self._query(req, lambda: self.subscriptions.values(), default_sort=["createdAt asc"], transform=self._public_subscription)

    @route("POST", P + r"/subscriptions")
    def subscriptions_create(self, req):
        self._auth(req)
        data = self._body(req)
        with self.lock:
            if data.get("key") and any(s.get("key") == data["key"] for s in self.subscriptions.values()):
                raise ct_error(400, "DuplicateField", f"A duplicate value '\"{data['key']}\"' exists for field 'key'.",
                               field="key", duplicateValue=data["key"])
            return Response(201, self._public_subscription(copy.deepcopy(self._upsert_subscription(data))))

    @route("GET", P + r"/subscriptions/(?P<id>[^/=]+)")
    @route("GET", P + r"/subscriptions/key=(?P<key>[^/]+)")
    def subscription_get(self, req):
        self._auth(req)
        with self.lock:
            return Response(200, self._public_subscription(copy.deepcopy(self._subscription(req))))

    @route("POST", P + r"/subscriptions/(?P<id>[^/=]+)")
    @route("POST", P + r"/subscriptions/key=(?P<key>[^/]+)")
    def subscription_update(self, req):
        self._auth(req)
        data = self._body(req)
        actions = self._actions(data)
        with self.lock:
            sub = self._subscription(req)
            self._check_version(sub, data, "subscription")
            new = copy.deepcopy(sub)
            for a in actions:
                if a["action"] == "changeDestination":
                    self._validate_subscription({"destination": a.get("destination"), "messages": new["messages"], "format": new["format"]})
                    new["destination"] = copy.deepcopy(a["destination"])
                elif a["action"] == "setMessages":
                    self._validate_subscription({"destination": new["destination"], "messages": a.get("messages") or [],
                                                 "format": new["format"]})
                    new["messages"] = copy.deepcopy(a.get("messages") or [])
                elif a["action"] == "setChanges":
                    new["changes"] = copy.deepcopy(a.get("changes") or [])
                else:
                    raise ct_error(400, "InvalidOperation", f"Unknown update action '{a['action']}' for subscriptions.")
            new["version"] = sub["version"] + 1
            new["lastModifiedAt"] = self._tick()
            sub.clear()
            sub.update(new)
            return Response(200, self._public_subscription(copy.deepcopy(sub)))

    @route("DELETE", P + r"/subscriptions/(?P<id>[^/=]+)")
    @route("DELETE", P + r"/subscriptions/key=(?P<key>[^/]+)")
    def subscription_delete(self, req):
        self._auth(req)
        try:
            version = int(req.q("version", ""))
        except ValueError:
            raise ct_error(400, "InvalidInput", "Missing or malformed parameter: version") from None
        with self.lock:
            sub = self._subscription(req)
            self._check_version(sub, {"version": version}, "subscription")
            del self.subscriptions[sub["id"]]
            return Response(200, self._public_subscription(copy.deepcopy(sub)))

    def _deliver_loop(self) -> None:
        import requests

        session = requests.Session()
        while True:
            (generation, kind, cfg), message = self._queue.get()
            try:
                with self.lock:
                    if generation != self.generation:
                        continue
                    self.inflight += 1
                body = json.dumps(message).encode()
                delivered = False
                delays = self.retry_delays
                for attempt in range(len(delays) + 1):
                    with self.lock:
                        if generation != self.generation:
                            break
                        self.webhook_stats["attempts"] += 1
                    try:
                        delivered = self._send(session, kind, cfg, message, body)
                    except Exception as exc:  # the relay is down / refused: retried like ct / Pub/Sub / SQS would
                        log.debug("subscription delivery (%s) failed: %s", kind, exc)
                    if delivered:
                        break
                    if attempt < len(delays):
                        with self.lock:
                            self.webhook_stats["retried"] += 1
                        time.sleep(delays[attempt])
                with self.lock:
                    if generation == self.generation:  # a reset meanwhile zeroed the counters
                        self.webhook_stats["delivered" if delivered else "dropped"] += 1
                        self.inflight -= 1
            except Exception:  # never let a worker die
                log.exception("subscription worker failed")
            finally:
                self._queue.task_done()

    def _send(self, session, kind: str, cfg: dict, message: dict, body: bytes) -> bool:
        """One delivery in the relay's own envelope. ``direct``: the bare Message (harness). ``pubsub``: the Pub/Sub
        push request — ``{"message": {"data": base64(Message), "attributes", "messageId", "publishTime"},
        "subscription"}`` with a Google-style OIDC token (RS256, signed by the sandbox's key, certs at
        ``/oauth2/v1/certs``) as ``Authorization: Bearer``. ``sqs``: ``SendMessage`` of the Message as the body
        (boto3; under moto in tests)."""
        if kind == "direct":
            headers = {"Content-Type": "application/json", "User-Agent": "commercetools-subscriptions (sandbox)"}
            if cfg.get("header"):
                headers["Authorization"] = cfg["header"]
            return 200 <= session.post(cfg["url"], data=body, timeout=10, headers=headers).status_code < 300
        if kind == "pubsub":
            envelope = {"message": {"data": base64.b64encode(body).decode(), "attributes": {"resourceTypeId": "order",
                                                                                           "type": message["type"]},
                                    "messageId": str(int(time.time() * 1000)) + secrets.token_hex(2), "publishTime": now_iso()},
                        "subscription": cfg.get("subscription") or cfg["topic"].replace("/topics/", "/subscriptions/") + "-push"}
            token = oidc_token(cfg.get("audience") or cfg["push_url"], cfg.get("service_account") or "ct-relay@sandbox.iam.gserviceaccount.com")
            r = session.post(cfg["push_url"], json=envelope, timeout=10,
                             headers={"Authorization": f"Bearer {token}", "User-Agent": "APIs-Google (sandbox)"})
            return r.status_code in (102, 200, 201, 202, 204)
        if kind == "sqs":
            import boto3

            client = boto3.client("sqs", region_name=cfg["region"])
            client.send_message(QueueUrl=cfg["queueUrl"], MessageBody=body.decode())
            return True
        return False

    @route("GET", r"/oauth2/v1/certs")
    def google_certs(self, req):
        """The sandbox's signing certificate in Google's format ({kid: PEM}) for its Pub/Sub push tokens."""
        kid, cert_pem, _ = _signing_key()
        return Response(200, {kid: cert_pem})

    def control_configure_relay(self, payload: dict) -> dict:
        """Where a GoogleCloudPubSub Destination's messages are pushed: {"topic": "projects/P/topics/T", "push_url",
        "audience", "service_account", "subscription"} (a Pub/Sub push subscription); no push_url removes it."""
        with self.lock:
            topic = payload.get("topic") or ""
            if not payload.get("push_url"):
                self.pubsub_push.pop(topic, None)
                return {"relays": sorted(self.pubsub_push)}
            self.pubsub_push[topic] = {k: payload.get(k) for k in ("push_url", "audience", "service_account", "subscription")}
            return {"relays": sorted(self.pubsub_push)}

    # --- control actions ---------------------------------------------------------------------------
    def control_set_credentials(self, payload: dict) -> dict:
        """{"client_id", "client_secret", "replace": false, "projects": [...] | null, "token_ttl": seconds}"""
        with self.lock:
            if payload.get("replace"):
                self.credentials = {}
            if payload.get("client_id"):
                self.credentials[payload["client_id"]] = payload.get("client_secret", "")
            if "projects" in payload:
                self.allowed_projects = set(payload["projects"]) if payload["projects"] is not None else None
            if payload.get("token_ttl"):
                self.token_ttl = int(payload["token_ttl"])
            return {"clients": sorted(self.credentials), "projects": sorted(self.allowed_projects) if self.allowed_projects else None}

    def control_revoke_tokens(self, payload: dict) -> dict:
        with self.lock:
            n = len(self.tokens)
            self.tokens.clear()
            return {"revoked": n}

    def control_seed_catalog(self, payload: dict) -> dict:
        channels = payload.get("channels") or []
        skus = list(payload.get("skus") or [])
        products = payload.get("products")
        quantity = payload.get("quantity", 0)
        currency = payload.get("currency", "GBP")
        with self.lock:
            for key in channels:
                if key not in self.channel_by_key:
                    self._new_channel(key)
            if products:
                for p in products:
                    if p["key"] in self.product_by_key:
                        continue
                    self._new_product(p["key"], list(p.get("skus") or []), p.get("name"), currency, p.get("published", True))
                    skus += [s for s in p.get("skus") or [] if s not in skus]
            else:
                for sku in skus:
                    if sku not in self.sku_product:
                        self._new_product(f"P-{sku}", [sku], None, currency)
            created = 0
            if quantity is not None:
                for key in channels:
                    cid = self.channel_by_key[key]
                    for sku in dict.fromkeys(skus):
                        if (sku, cid) not in self.inventory_index:
                            self._new_entry(sku, cid, int(quantity))
                            created += 1
            return {"channels": len(self.channels), "products": len(self.products), "skus": len(self.sku_product),
                    "inventory_entries_created": created}

    def control_set_variant(self, payload: dict) -> dict:
        """Set a variant's attributes (``{"sku", "attributes": {name: value}}``) and/or publish or unpublish its
        product (``"published"``) as a merchant would in the Merchant Center (issue 17 tests)."""
        with self.lock:
            pid, vid = self.sku_product[payload["sku"]]
            product = self.products[pid]
            for v in [product["masterVariant"]] + product["variants"]:
                if v["id"] == vid and "attributes" in payload:
                    v["attributes"] = [{"name": k, "value": val} for k, val in sorted(payload["attributes"].items())]
            if "published" in payload:
                product["published"] = bool(payload["published"])
            product["version"] += 1
            self.staged_products.pop(pid, None)  # edited and published: staged = current
            return {"product": pid, "version": product["version"]}

    def control_create_orders(self, payload: dict) -> dict:
        specs = payload.get("orders") or []
        project = payload.get("project_key") or (sorted(self.allowed_projects)[0] if self.allowed_projects else "demo")
        with self.lock:
            built = [self._build_order(s) for s in specs]  # validate everything before storing anything
            numbers = [o["orderNumber"] for o in built]
            if len(set(numbers)) != len(numbers):
                raise ct_error(400, "DuplicateField", "duplicate orderNumber in the batch", field="orderNumber")
            messages = []
            for order in built:
                self.orders[order["id"]] = order
                self.order_by_number[order["orderNumber"]] = order["id"]
                if not payload.get("no_inventory_tracking"):
                    self._track_inventory(order)
                messages.append(self._message(order, project))
            self._enqueue(messages)
            return {"ids": [o["id"] for o in built], "order_numbers": numbers}

    def control_configure_webhooks(self, payload: dict) -> dict:
        """Sandbox harness, not a ct Destination: an operator-run relay that forwards each ``OrderCreated`` Message
        (plus ``types``, if given) bare to ``order_url``, with ``secret`` as the ``Authorization`` header. No
        ``order_url`` removes it. Optional: ``concurrency`` (delivery threads, ≤ 32), ``retry_delays`` (seconds
        between attempts). Real projects relay through a Subscription Destination (see ``configure_relay``)."""
        with self.lock:
            if payload.get("concurrency"):
                self.delivery_workers = max(1, min(32, int(payload["concurrency"])))
            if payload.get("retry_delays") is not None:
                self.retry_delays = tuple(float(d) for d in payload["retry_delays"])[:10]
            url = payload.get("order_url")
            if not url:
                self.direct_relays.pop("hub-orders", None)
                return {"relay": None}
            self.direct_relays["hub-orders"] = {"url": url, "header": payload.get("secret") or None,
                                                "types": set(payload.get("types") or ["OrderCreated"])}
            return {"relay": {"url": url, "types": sorted(self.direct_relays["hub-orders"]["types"])}}

    def control_wait_webhooks(self, payload: dict) -> dict:
        """Block until the subscription queue is drained (or ``timeout`` seconds) → delivery stats."""
        deadline = time.time() + float(payload.get("timeout", 30))
        while time.time() < deadline:
            with self.lock:
                if self._queue.unfinished_tasks == 0 and self.inflight == 0:
                    break
            time.sleep(0.02)
        with self.lock:
            return {**self.webhook_stats, "pending": self._queue.unfinished_tasks}

    def control_store_fulfil(self, payload: dict) -> dict:
        """A storefront-side fulfilment (store staff / Merchant Center adds a delivery): {"order": id or
        orderNumber, "lines": [[sku, qty]] (default: everything), "tracking": "...", "carrier": "..."}."""
        with self.lock:
            ref = str(payload.get("order", ""))
            order = self.orders.get(ref) or self.orders.get(self.order_by_number.get(ref, ""))
            if order is None:
                raise ct_error(404, "ResourceNotFound", f"no order {ref!r}")
            by_sku = {li["variant"]["sku"]: li for li in order["lineItems"]}
            wanted = payload.get("lines") or [[li["variant"]["sku"], li["quantity"]] for li in order["lineItems"]]
            items = []
            for sku, qty in wanted:
                if sku not in by_sku:
                    raise ct_error(400, "InvalidOperation", f"order {ref} has no line for {sku!r}")
                items.append({"id": by_sku[sku]["id"], "quantity": int(qty)})
            parcel = {"items": items}
            if payload.get("tracking"):
                parcel["trackingData"] = {"trackingId": payload["tracking"], "carrier": payload.get("carrier", "")}
            delivery = self._delivery({"items": items, "parcels": [parcel], "deliveryKey": f"store-{uuid.uuid4().hex[:12]}"},
                                      {li["id"]: li["quantity"] for li in order["lineItems"]})
            key = order["shipping"][0]["shippingKey"] if order.get("shippingMode") == "Multiple" else None
            self._deliveries_for(order, key).append(delivery)
            order["version"] += 1
            order["lastModifiedAt"] = self._tick()
            return {"delivery_id": delivery["id"], "version": order["version"]}

    def _control_order(self, payload: dict) -> dict:
        ref = str(payload.get("order", ""))
        order = self.orders.get(ref) or self.orders.get(self.order_by_number.get(ref, ""))
        if order is None:
            raise ct_error(404, "ResourceNotFound", f"no order {ref!r}")
        return order

    def control_add_return(self, payload: dict) -> dict:
        """A return booked storefront-side (Merchant Center / returns app), as ``addReturnInfo`` would:
        {"order": id or orderNumber, "items": [{"sku" or "line_item_id", "quantity", "state": "Advised"}],
        "tracking": "...", "return_date": ISO}. Bumps version and lastModifiedAt → {"return_item_ids", "version"}."""
        with self.lock:
            order = self._control_order(payload)
            by_sku = {li["variant"]["sku"]: li["id"] for li in order["lineItems"]}
            drafts = []
            for it in payload.get("items") or []:
                line = it.get("line_item_id") or by_sku.get(it.get("sku"))
                if line is None:
                    raise ct_error(400, "InvalidOperation", f"order {payload.get('order')} has no line for {it.get('sku')!r}")
                drafts.append({"lineItemId": line, "quantity": it.get("quantity", 1), "shipmentState": it.get("state", "Advised"),
                               **({"comment": it["comment"]} if it.get("comment") else {})})
            info = self._return_info(order, {"items": drafts, "returnTrackingId": payload.get("tracking"),
                                             "returnDate": payload.get("return_date")})
            order.setdefault("returnInfo", []).append(info)
            order["version"] += 1
            order["lastModifiedAt"] = self._tick()
            self._enqueue([self._message(order, payload.get("project_key") or "demo", "ReturnInfoAdded", returnInfo=info)])
            return {"return_item_ids": [i["id"] for i in info["items"]], "version": order["version"]}

    def control_return_state(self, payload: dict) -> dict:
        """A return item moves on storefront-side (``setReturnShipmentState``): {"order", "return_item_id",
        "state": "Returned" | "BackInStock" | "Unusable" | "Advised"} → {"version"}."""
        with self.lock:
            order = self._control_order(payload)
            item = self._return_item(order, {"returnItemId": payload.get("return_item_id")})
            if payload.get("state") not in RETURN_SHIPMENT_STATES:
                raise ct_error(400, "InvalidInput", f"Invalid shipmentState {payload.get('state')!r}")
            item["shipmentState"] = payload["state"]
            item["lastModifiedAt"] = self._tick()
            order["version"] += 1
            order["lastModifiedAt"] = item["lastModifiedAt"]
            self._enqueue([self._message(order, payload.get("project_key") or "demo", "OrderReturnShipmentStateChanged",
                                         returnItemId=item["id"], returnShipmentState=item["shipmentState"])])
            return {"version": order["version"]}

    def control_set_inventory(self, payload: dict) -> dict:
        """Storefront-side quantity changes (merchant edits, other integrations): {"rows": [{"channel", "sku",
        "quantity"}]} or one row inline. Bumps versions; creates missing entries."""
        rows = payload.get("rows") or ([payload] if payload.get("sku") else [])
        out = {}
        with self.lock:
            for r in rows:
                key = r.get("channel")
                cid = None
                if key:
                    cid = self.channel_by_key.get(key) or self._new_channel(key)["id"]
                eid = self.inventory_index.get((r["sku"], cid))
                if eid:
                    entry = self.inventory[eid]
                    self._set_entry_quantity(entry, int(r["quantity"]))
                else:
                    entry = self._new_entry(r["sku"], cid, int(r["quantity"]))
                out[f"{key}/{r['sku']}"] = entry["version"]
        return {"versions": out}

    def control_inventory_settings(self, payload: dict) -> dict:
        """Switches of the inventory model: ``decrement_delay`` (seconds an order's decrement takes to land),
        ``land_on_write`` (land one pending decrement right before each of the next N inventory updates: the
        writer's version is stale, a real 409), ``lose_inventory_responses`` (apply the next N inventory updates
        but answer 502, as a response lost on the way back)."""
        with self.lock:
            for name, cast in (("decrement_delay", float), ("land_on_write", int), ("lose_inventory_responses", int)):
                if name in payload:
                    setattr(self, name, cast(payload[name]))
            return {"decrement_delay": self.decrement_delay, "land_on_write": self.land_on_write,
                    "lose_inventory_responses": self.lose_inventory_responses, "pending": len(self.pending_decrements)}

    def control_land_decrements(self, payload: dict) -> dict:
        """Land the ``count`` oldest pending order decrements now (all when ``count`` is absent)."""
        with self.lock:
            count = int(payload.get("count", len(self.pending_decrements)))
            return {"landed": self._land_due(force=count), "pending": len(self.pending_decrements)}

    def control_reserve(self, payload: dict) -> dict:
        """Cart reservations on an entry (ct Reservations: ``availableQuantity`` drops, ``quantityOnStock`` does
        not): {"channel", "sku", "quantity"} sets the entry's reserved total."""
        with self.lock:
            cid = self.channel_by_key.get(payload.get("channel") or "")
            eid = self.inventory_index.get((payload.get("sku"), cid))
            if not eid:
                raise HttpError(404, {"message": "no such inventory entry"})
            entry = self.inventory[eid]
            entry["reserved"] = int(payload.get("quantity") or 0)
            self._set_entry_quantity(entry, entry["quantityOnStock"])
            return {"availableQuantity": entry["availableQuantity"], "quantityOnStock": entry["quantityOnStock"]}

    def control_state(self, payload: dict) -> dict:
        skus = set(payload.get("skus") or [])
        with self.lock:
            self._land_due()
            self._run_imports()
            inventory: dict[str, dict] = {}
            versions: dict[str, dict] = {}
            for e in self.inventory.values():
                if skus and e["sku"] not in skus:
                    continue
                ch = (e.get("supplyChannel") or {}).get("id")
                key = self.channels[ch]["key"] if ch in self.channels else ""
                inventory.setdefault(key, {})[e["sku"]] = e["availableQuantity"]
                versions.setdefault(key, {})[e["sku"]] = e["version"]
            orders = {}
            for o in self.orders.values():
                deliveries = self._all_deliveries(o)
                orders[o["id"]] = {
                    "order_number": o["orderNumber"], "version": o["version"], "order_state": o["orderState"],
                    "shipment_state": o.get("shipmentState"), "deliveries": len(deliveries),
                    "tracking": [p["trackingData"].get("trackingId") for d in deliveries for p in d["parcels"] if p.get("trackingData")],
                    "carriers": [p["trackingData"].get("carrier") for d in deliveries for p in d["parcels"] if p.get("trackingData")],
                    "returns": {it["id"]: {"line_item_id": it.get("lineItemId"), "quantity": it.get("quantity"),
                                           "shipment_state": it.get("shipmentState")}
                                for info in o.get("returnInfo") or [] if isinstance(info, dict)
                                for it in info.get("items") or [] if isinstance(it, dict) and it.get("id")},
                }
            return {"inventory": inventory, "versions": versions, "orders": orders, "tokens_issued": self.tokens_issued,
                    "webhooks": dict(self.webhook_stats, pending=self._queue.unfinished_tasks)}
