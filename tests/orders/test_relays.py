"""commercetools order notifications through real relays (issue 12, part 1): the Subscription written as the API
reference defines it, the sandbox delivering in each relay's envelope, the Pub/Sub push endpoint verifying the
Google-style OIDC token (signed here by the sandbox's own RSA key, certs served by the sandbox), the SQS consumer
against moto. Every message is a hint: the order is read from the API; duplicates and late messages change
nothing twice."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from connectors.commercetools import SUBSCRIBED_MESSAGES, CommercetoolsConnector
from connectors.sandbox.commercetools.subscriptions import oidc_token
from integration_hub.orders import relays
from integration_hub.orders.models import Order

from tests.support.factories import sandbox_order_world
from tests.support.sandbox import control
from tests.support.tasks import trap_tasks

AUDIENCE = "https://hub.example.com/hooks/orders/ct-sbx/pubsub/"
SA = "ct-relay@shop-prod.iam.gserviceaccount.com"
TOPIC = {"type": "GoogleCloudPubSub", "projectId": "shop-prod", "topic": "ct-orders"}


@pytest.fixture
def run_fetch_now():
    """No broker in these tests: the fetch queued after commit runs in place (other tasks are trapped, not run)."""
    with trap_tasks(run=["orders.fetch_orders"]) as trap:
        yield trap


def pubsub_world(sandbox):
    ct, _wh, _channel = sandbox_order_world(sandbox)
    ct.options = {
        **ct.options,
        "relay": {
            **TOPIC,
            "audience": AUDIENCE,
            "service_account": SA,
            "certs_url": f"{sandbox.url}/commercetools/oauth2/v1/certs",
        },
    }
    ct.save()
    return ct


def envelope(message: dict, message_id: str = "1") -> bytes:
    return json.dumps(
        {
            "message": {
                "data": base64.b64encode(json.dumps(message).encode()).decode(),
                "attributes": {},
                "messageId": message_id,
                "publishTime": "2026-12-02T05:00:00Z",
            },
            "subscription": "projects/shop-prod/subscriptions/ct-orders-push",
        }
    ).encode()


# --- Subscription setup ----------------------------------------------------------------------------------
def test_subscription_is_written_as_the_reference_defines_it_and_idempotently(db, sandbox):
    ct = pubsub_world(sandbox)
    c = CommercetoolsConnector(ct)
    sub = c.ensure_order_subscription()
    assert sub["destination"] == TOPIC and sub["format"] == {"type": "Platform"}
    assert sub["messages"] == [{"resourceTypeId": "order", "types": SUBSCRIBED_MESSAGES}]
    assert c.ensure_order_subscription()["version"] == 1  # already right: nothing written
    sqs = {
        "type": "SQS",
        "queueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/ct-orders",
        "region": "eu-west-1",
        "authenticationMode": "IAM",
    }
    moved = c.ensure_order_subscription(sqs)  # repointed, not duplicated
    emu = sandbox.emulators["commercetools"]
    assert moved["version"] == 2 and moved["destination"] == sqs and len(emu.subscriptions) == 1


def test_sandbox_accepts_only_reference_destinations(db, sandbox):
    from connectors import errors

    c = CommercetoolsConnector(pubsub_world(sandbox))
    for bad in (
        {"type": "HTTP", "url": "https://hub.example.com/hooks"},
        {"type": "GoogleCloudPubSub", "projectId": "p"},
        {"type": "SQS", "queueUrl": "https://q", "region": "eu-west-1"},
    ):  # SQS default mode Credentials: no keys
        with pytest.raises(errors.BadDataError):
            c.client.post(c.path("subscriptions"), json={"destination": bad, "messages": []})
    c.connection.options = {**c.connection.options, "relay": {"type": "HTTP", "url": "https://x"}}
    with pytest.raises(errors.PermanentError):
        c.ensure_order_subscription()


def test_order_hints_take_ids_only():
    created = {
        "notificationType": "Message",
        "type": "OrderCreated",
        "resource": {"typeId": "order", "id": "o1"},
        "order": {"id": "o1", "lineItems": [{"fake": "order body is never used"}]},
    }
    cancelled = {
        "notificationType": "Message",
        "type": "OrderStateChanged",
        "resource": {"typeId": "order", "id": "o2"},
        "orderState": "Cancelled",
    }
    ret = {"notificationType": "Message", "type": "ReturnInfoAdded", "resource": {"typeId": "order", "id": "o1"}}
    other = {"notificationType": "Message", "type": "CustomerCreated", "resource": {"typeId": "customer", "id": "c1"}}
    assert CommercetoolsConnector.order_hints([created, cancelled, ret, other, created]) == ([], ["o2", "o1"])
    assert CommercetoolsConnector.order_hints(created) == (["o1"], [])
    from connectors import errors

    with pytest.raises(errors.BadDataError):
        CommercetoolsConnector.order_hints({"hello": 1})


# --- Pub/Sub push: authentication and envelope -------------------------------------------------------------
@pytest.mark.parametrize(
    "audience,email,issuer",
    [
        ("https://evil.example.com/", SA, "https://accounts.google.com"),
        (AUDIENCE, "someone@else.iam.gserviceaccount.com", "https://accounts.google.com"),
        (AUDIENCE, SA, "https://evil.example.com"),
    ],
)
def test_pubsub_push_refuses_tokens_that_are_not_the_relays(db, sandbox, client, audience, email, issuer):
    ct = pubsub_world(sandbox)
    msg = {"notificationType": "Message", "type": "OrderCreated", "resource": {"typeId": "order", "id": "x"}}
    r = client.post(
        f"/hooks/orders/{ct.name}/pubsub/",
        data=envelope(msg),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {oidc_token(audience, email, issuer=issuer)}",
    )
    assert r.status_code == 401


def test_pubsub_push_refuses_a_forged_signature_and_no_token(db, sandbox, client):
    ct = pubsub_world(sandbox)
    token = oidc_token(AUDIENCE, SA)
    head, claims, sig = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(claims + "=="))
    forged["email"] = SA
    forged["aud"] = AUDIENCE
    forged["exp"] += 10
    bad = f"{head}.{base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b'=').decode()}.{sig}"
    url = f"/hooks/orders/{ct.name}/pubsub/"
    body = envelope({"notificationType": "Message", "type": "OrderCreated", "resource": {"typeId": "order", "id": "x"}})
    assert (
        client.post(url, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {bad}").status_code
        == 401
    )
    assert client.post(url, data=body, content_type="application/json").status_code == 401


def test_pubsub_push_bad_envelope_is_400(db, sandbox, client):
    ct = pubsub_world(sandbox)
    url, auth = f"/hooks/orders/{ct.name}/pubsub/", f"Bearer {oidc_token(AUDIENCE, SA)}"
    for body in (
        b"{not json",
        b'{"message": {}}',
        json.dumps({"message": {"data": "!!notbase64"}}).encode(),
        envelope({"hello": 1}),
    ):
        r = client.post(url, data=body, content_type="application/json", HTTP_AUTHORIZATION=auth)
        assert r.status_code == 400, (body, r.content)
    assert client.post("/hooks/orders/nope/pubsub/", data=body, content_type="application/json").status_code == 404


# --- end to end: sandbox → Pub/Sub push → hub ----------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_pubsub_relay_end_to_end_with_duplicates_and_late_messages(sandbox, live_server, run_fetch_now):
    ct = pubsub_world(sandbox)
    push_url = f"{live_server.url}/hooks/orders/{ct.name}/pubsub/"
    CommercetoolsConnector(ct).ensure_order_subscription()
    control(
        sandbox,
        "commercetools",
        "configure_relay",
        {
            "topic": "projects/shop-prod/topics/ct-orders",
            "push_url": push_url,
            "audience": AUDIENCE,
            "service_account": SA,
        },
    )
    [oid] = control(
        sandbox,
        "commercetools",
        "create_orders",
        {"orders": [{"channel": "uk-web", "lines": [{"sku": "SKU-1", "quantity": 1}], "shipping_method": "standard"}]},
    )["ids"]
    stats = control(sandbox, "commercetools", "wait_webhooks", {"timeout": 30})
    assert stats["delivered"] == 1 and stats["dropped"] == 0, stats
    assert Order.objects.filter(external_id=oid).count() == 1
    # the same message again (at-least-once) and a late one: nothing new
    emu = sandbox.emulators["commercetools"]
    msg = emu._message(emu.orders[oid], "demo")
    for _ in range(2):
        r = requests.post(
            push_url,
            data=envelope(msg, "dup"),
            headers={"Authorization": f"Bearer {oidc_token(AUDIENCE, SA)}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
    assert Order.objects.filter(external_id=oid).count() == 1
    # a cancellation in the storefront: OrderStateChanged goes through the relay, the order is re-read
    c = CommercetoolsConnector(ct)
    c.client.post(
        c.path(f"orders/{oid}"),
        json={
            "version": emu.orders[oid]["version"],
            "actions": [{"action": "changeOrderState", "orderState": "Cancelled"}],
        },
    )
    stats = control(sandbox, "commercetools", "wait_webhooks", {"timeout": 30})
    assert stats["delivered"] == 2, stats
    o = Order.objects.get(external_id=oid)
    assert o.state == "cancelled", o.state  # re-read from the API (the message carries no order)


# --- SQS ------------------------------------------------------------------------------------------------------
@pytest.fixture
def sqs(monkeypatch):
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with moto.mock_aws():
        import boto3

        client = boto3.client("sqs", region_name="eu-west-1")
        url = client.create_queue(QueueName="ct-orders", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
        yield client, url


def sqs_world(sandbox, url):
    ct, _wh, _channel = sandbox_order_world(sandbox)
    ct.options = {
        **ct.options,
        "relay": {"type": "SQS", "queueUrl": url, "region": "eu-west-1", "authenticationMode": "IAM"},
    }
    ct.save()
    return ct


def test_sqs_relay_delivers_and_the_consumer_deletes_only_what_is_in(db, sandbox, sqs, run_fetch_now):
    client, url = sqs
    ct = sqs_world(sandbox, url)
    CommercetoolsConnector(ct).ensure_order_subscription()  # SQS Destination, IAM
    ids = control(
        sandbox,
        "commercetools",
        "create_orders",
        {
            "orders": [
                {"channel": "uk-web", "lines": [{"sku": "SKU-1", "quantity": 1}], "shipping_method": "standard"}
                for _ in range(3)
            ]
        },
    )["ids"]
    assert control(sandbox, "commercetools", "wait_webhooks", {"timeout": 30})["delivered"] == 3
    emu = sandbox.emulators["commercetools"]
    dup = emu._message(emu.orders[ids[0]], "demo")
    client.send_message(QueueUrl=url, MessageBody=json.dumps(dup))  # a duplicate
    client.send_message(
        QueueUrl=url,
        MessageBody=json.dumps(  # an order that cannot be read (yet): stays queued
            {"notificationType": "Message", "type": "OrderCreated", "resource": {"typeId": "order", "id": "not-there"}}
        ),
    )
    out = relays.consume_sqs(ct, wait_seconds=0, time_budget=0)
    assert out["received"] == 5 and out["deleted"] == 4 and out["kept"] == 1, out
    assert sorted(Order.objects.values_list("external_id", flat=True)) == sorted(ids)
    again = relays.consume_sqs(
        ct, wait_seconds=2, time_budget=0
    )  # the kept one comes back after its visibility timeout
    assert again["received"] == 1 and again["deleted"] == 0 and Order.objects.count() == 3


def test_sqs_message_is_kept_when_the_fetch_fails(db, sandbox, sqs, run_fetch_now, monkeypatch):
    client, url = sqs
    ct = sqs_world(sandbox, url)
    [oid] = control(
        sandbox,
        "commercetools",
        "create_orders",
        {"orders": [{"channel": "uk-web", "lines": [{"sku": "SKU-1", "quantity": 1}], "shipping_method": "standard"}]},
    )["ids"]
    emu = sandbox.emulators["commercetools"]
    client.send_message(QueueUrl=url, MessageBody=json.dumps(emu._message(emu.orders[oid], "demo")))
    control(sandbox, "commercetools", "faults", {"error_rate": 1.0})
    out = relays.consume_sqs(ct, wait_seconds=0, time_budget=0)
    assert out == {"received": 1, "deleted": 0, "kept": 1, "unreadable": 0}
    control(sandbox, "commercetools", "faults", {"error_rate": 0.0})
    out = relays.consume_sqs(ct, wait_seconds=2, time_budget=0)
    assert out["deleted"] == 1 and Order.objects.filter(external_id=oid).exists()


def test_sandbox_emits_every_subscribed_message_type(db, sandbox, sqs):
    client, url = sqs
    ct = sqs_world(sandbox, url)
    c = CommercetoolsConnector(ct)
    c.ensure_order_subscription()
    [oid] = control(
        sandbox,
        "commercetools",
        "create_orders",
        {"orders": [{"channel": "uk-web", "lines": [{"sku": "SKU-1", "quantity": 2}], "shipping_method": "standard"}]},
    )["ids"]
    emu = sandbox.emulators["commercetools"]
    line = emu.orders[oid]["lineItems"][0]["id"]

    def update(*actions):
        c.client.post(c.path(f"orders/{oid}"), json={"version": emu.orders[oid]["version"], "actions": list(actions)})

    update({"action": "addReturnInfo", "items": [{"lineItemId": line, "quantity": 1, "shipmentState": "Advised"}]})
    item = emu.orders[oid]["returnInfo"][0]["items"][0]["id"]
    update({"action": "setReturnShipmentState", "returnItemId": item, "shipmentState": "BackInStock"})
    update(
        {
            "action": "setReturnInfo",
            "items": [{"items": [{"lineItemId": line, "quantity": 2, "shipmentState": "Returned"}]}],
        }
    )
    update({"action": "changeOrderState", "orderState": "Cancelled"})
    control(sandbox, "commercetools", "wait_webhooks", {"timeout": 30})
    types = []
    while True:
        batch = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages") or []
        if not batch:
            break
        types += [json.loads(m["Body"])["type"] for m in batch]
        client.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)]
        )
    assert sorted(types) == sorted(SUBSCRIBED_MESSAGES)
