"""Subscriptions (``/subscriptions``: the reference's Destinations only) and the delivery of order Messages from a
bounded queue on background threads: GoogleCloudPubSub → the push endpoint set by ``configure_relay`` (Pub/Sub push
envelope, OIDC token signed by the sandbox key, certs at ``GET /oauth2/v1/certs``), SQS → ``SendMessage``, and the
``configure_webhooks`` harness (an operator relay forwarding bare Messages). ``wait_webhooks`` blocks until drained.
"""

from __future__ import annotations

import base64
import copy
import json
import queue
import secrets
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from ..common import WebhookQueue
from ..server import Response, route
from .base import P, ct_error, now_iso

# Subscription Destinations of the API reference (Destination discriminator) and the fields each requires
DESTINATIONS: dict[str, tuple[str, ...]] = {
    "GoogleCloudPubSub": ("projectId", "topic"),
    "SQS": ("queueUrl", "region"),
    "SNS": ("topicArn",),
    "EventBridge": ("region", "accountId"),
    "EventGrid": ("uri", "accessKey"),
    "AzureServiceBus": ("connectionString",),
    "ConfluentCloud": ("bootstrapServer", "apiKey", "apiSecret", "acks", "topic"),
    "IronMQ": ("uri",),
}
SECRET_FIELDS = ("accessSecret", "apiSecret", "connectionString", "accessKey")
WEBHOOK_QUEUE_SIZE = 100_000
WEBHOOK_WORKERS = 4
WEBHOOK_RETRY_DELAYS = (0.2, 0.5, 1.0)
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
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=3650))
                .sign(key, hashes.SHA256())
            )
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
    claims = {
        "iss": issuer,
        "aud": audience,
        "email": email,
        "email_verified": True,
        "sub": "1" + kid,
        "azp": "1" + kid,
        "iat": now,
        "exp": now + ttl,
    }
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


class SubscriptionRoutes(WebhookQueue):
    """Mixed into :class:`connectors.sandbox.commercetools.emulator.CommercetoolsEmulator` (its lock, state and helpers);
    delivery through :class:`connectors.sandbox.common.WebhookQueue`."""

    def reset_subscriptions(self) -> None:
        """(lock held, from :meth:`CommercetoolsEmulator.reset`)"""
        self.subscriptions: dict[str, dict] = {}  # id → Subscription (reference Destinations only)
        # sandbox-only harness (control configure_webhooks): an operator-run relay forwarding bare Messages to a
        # URL with a static Authorization header — not a ct Destination, never listed by the Subscriptions API
        self.direct_relays: dict[str, dict] = {}
        # where a Destination's messages go on from the relay: GoogleCloudPubSub "projects/P/topics/T" →
        # {push_url, audience, service_account, subscription} (a Pub/Sub push subscription)
        self.pubsub_push: dict[str, dict] = {}
        self.webhook_stats = {"queued": 0, "delivered": 0, "attempts": 0, "retried": 0, "dropped": 0, "overflow": 0}
        self.retry_delays = WEBHOOK_RETRY_DELAYS  # len + 1 attempts per message
        self.delivery_workers = max(WEBHOOK_WORKERS, getattr(self, "delivery_workers", 0))  # threads never shrink
        self.reset_queue(WEBHOOK_QUEUE_SIZE)  # a new generation: messages queued before the reset are void

    def _message(self, order: dict, project: str, kind: str = "OrderCreated", **fields) -> dict:
        """An order Message in the Platform format; ``OrderCreated`` carries the order, the others their own fields
        (OrderStateChanged {orderState, oldOrderState}, ReturnInfoAdded / ReturnInfoSet {returnInfo},
        OrderReturnShipmentStateChanged {returnItemId, returnShipmentState})."""
        seq = self.message_seq.get(order["id"], 0) + 1
        self.message_seq[order["id"]] = seq
        m = {
            "notificationType": "Message",
            "projectKey": project,
            "id": str(uuid.uuid4()),
            "version": 1,
            "sequenceNumber": seq,
            "resource": {"typeId": "order", "id": order["id"]},
            "resourceVersion": order["version"],
            "resourceUserProvidedIdentifiers": {"orderNumber": order["orderNumber"]},
            "type": kind,
            "createdAt": order["lastModifiedAt"],
            "lastModifiedAt": order["lastModifiedAt"],
            "createdBy": {"isPlatformClient": True},
            "lastModifiedBy": {"isPlatformClient": True},
            **copy.deepcopy(fields),
        }
        if kind == "OrderCreated":
            m["order"] = copy.deepcopy(order)
        return m

    def _emit_update_messages(
        self, order: dict, project: str, old_state, before_returns: dict, set_return_info: bool = False
    ) -> None:
        """The Messages an order update produces (lock held): OrderStateChanged, ReturnInfoAdded / ReturnInfoSet,
        OrderReturnShipmentStateChanged."""
        out = []
        if order.get("orderState") != old_state:
            out.append(
                self._message(
                    order, project, "OrderStateChanged", orderState=order["orderState"], oldOrderState=old_state
                )
            )
        if set_return_info:
            self._enqueue(
                out + [self._message(order, project, "ReturnInfoSet", returnInfo=order.get("returnInfo") or [])]
            )
            return
        for info in order.get("returnInfo") or []:
            items = info.get("items") or []
            if items and all(it["id"] not in before_returns for it in items):
                out.append(self._message(order, project, "ReturnInfoAdded", returnInfo=info))
            for it in items:
                if it["id"] in before_returns and before_returns[it["id"]] != it.get("shipmentState"):
                    out.append(
                        self._message(
                            order,
                            project,
                            "OrderReturnShipmentStateChanged",
                            returnItemId=it["id"],
                            returnShipmentState=it.get("shipmentState"),
                        )
                    )
        self._enqueue(out)

    def _targets(self, resource_type: str, message_type: str) -> list[tuple]:
        out = []
        for relay in self.direct_relays.values():
            if message_type in relay["types"]:
                out.append((self.generation, "direct", relay))
        for sub in self.subscriptions.values():
            if not any(
                m.get("resourceTypeId") == resource_type and (not m.get("types") or message_type in m["types"])
                for m in sub.get("messages") or []
            ):
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
        self.ensure_workers(self.delivery_workers, "ct-subscription")
        for m in messages:
            for target in self._targets("order", m["type"]):
                try:
                    self._queue.put_nowait((target, m))
                    self.webhook_stats["queued"] += 1
                except queue.Full:
                    self.webhook_stats["overflow"] += 1
                    self.webhook_stats["dropped"] += 1

    def _validate_subscription(self, data: dict) -> None:
        """The Destination must be one of the reference's (``DESTINATIONS``) with its required fields; there is no
        HTTP Destination for Subscriptions (HTTP exists for API Extensions only)."""
        dest = data.get("destination")
        kind = dest.get("type") if isinstance(dest, dict) else None
        if kind not in DESTINATIONS:
            raise ct_error(
                400, "InvalidInput", f"Destination type {kind!r} is not valid. Valid types: {', '.join(DESTINATIONS)}."
            )
        missing = [f for f in DESTINATIONS[kind] if not dest.get(f)]
        if kind == "SQS" and dest.get("authenticationMode", "Credentials") == "Credentials":
            missing += [f for f in ("accessKey", "accessSecret") if not dest.get(f)]
        if kind == "SQS" and dest.get("authenticationMode") not in (None, "Credentials", "IAM"):
            missing.append("authenticationMode")
        if missing:
            raise ct_error(400, "InvalidInput", f"{kind} destination is missing or has invalid: {', '.join(missing)}.")
        fmt = data.get("format") or {"type": "Platform"}
        if not isinstance(fmt, dict) or fmt.get("type") not in ("Platform", "CloudEvents"):
            raise ct_error(
                400, "InvalidInput", "format must be {type: Platform} or {type: CloudEvents, cloudEventsVersion}."
            )
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
        sub = {
            "id": str(uuid.uuid4()),
            "version": 1,
            "key": data.get("key"),
            "destination": copy.deepcopy(data["destination"]),
            "messages": copy.deepcopy(data.get("messages") or []),
            "changes": copy.deepcopy(data.get("changes") or []),
            "format": copy.deepcopy(data.get("format") or {"type": "Platform"}),
            "status": "Healthy",
            "createdAt": ts,
            "lastModifiedAt": ts,
        }
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
            raise ct_error(
                404,
                "ResourceNotFound",
                f"The Resource with {'key' if req.params.get('key') is not None else 'ID'} "
                f"'{req.params.get('key') or req.params.get('id')}' was not found.",
            )
        return sub

    @route("GET", P + r"/subscriptions")
    def subscriptions_query(self, req):
        self._auth(req)
        return self._query(
            req,
            lambda: self.subscriptions.values(),
            default_sort=["createdAt asc"],
            transform=self._public_subscription,
        )

    @route("POST", P + r"/subscriptions")
    def subscriptions_create(self, req):
        self._auth(req)
        data = self._body(req)
        with self.lock:
            if data.get("key") and any(s.get("key") == data["key"] for s in self.subscriptions.values()):
                raise ct_error(
                    400,
                    "DuplicateField",
                    f"A duplicate value '\"{data['key']}\"' exists for field 'key'.",
                    field="key",
                    duplicateValue=data["key"],
                )
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
                    self._validate_subscription(
                        {"destination": a.get("destination"), "messages": new["messages"], "format": new["format"]}
                    )
                    new["destination"] = copy.deepcopy(a["destination"])
                elif a["action"] == "setMessages":
                    self._validate_subscription(
                        {
                            "destination": new["destination"],
                            "messages": a.get("messages") or [],
                            "format": new["format"],
                        }
                    )
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
        version = self._version_param(req)
        with self.lock:
            sub = self._subscription(req)
            self._check_version(sub, {"version": version}, "subscription")
            del self.subscriptions[sub["id"]]
            return Response(200, self._public_subscription(copy.deepcopy(sub)))

    def _deliver_loop(self) -> None:
        import requests

        session = requests.Session()

        def handle(item):
            (generation, kind, cfg), message = item
            body = json.dumps(message).encode()
            self.deliver(generation, lambda: self._send(session, kind, cfg, message, body), self.retry_delays)

        self.serve_queue(handle, "subscription worker")

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
            envelope = {
                "message": {
                    "data": base64.b64encode(body).decode(),
                    "attributes": {"resourceTypeId": "order", "type": message["type"]},
                    "messageId": str(int(time.time() * 1000)) + secrets.token_hex(2),
                    "publishTime": now_iso(),
                },
                "subscription": cfg.get("subscription")
                or cfg["topic"].replace("/topics/", "/subscriptions/") + "-push",
            }
            token = oidc_token(
                cfg.get("audience") or cfg["push_url"],
                cfg.get("service_account") or "ct-relay@sandbox.iam.gserviceaccount.com",
            )
            r = session.post(
                cfg["push_url"],
                json=envelope,
                timeout=10,
                headers={"Authorization": f"Bearer {token}", "User-Agent": "APIs-Google (sandbox)"},
            )
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
            self.pubsub_push[topic] = {
                k: payload.get(k) for k in ("push_url", "audience", "service_account", "subscription")
            }
            return {"relays": sorted(self.pubsub_push)}

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
            self.direct_relays["hub-orders"] = {
                "url": url,
                "header": payload.get("secret") or None,
                "types": set(payload.get("types") or ["OrderCreated"]),
            }
            return {"relay": {"url": url, "types": sorted(self.direct_relays["hub-orders"]["types"])}}
