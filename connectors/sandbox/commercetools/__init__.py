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
  :meth:`CommercetoolsEmulator.product_update`) and Orders (``/orders``: actions ``changeShipmentState``,
  ``changeOrderState``, ``addDelivery`` with
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

The emulator (``emulator.CommercetoolsEmulator``, registered in :mod:`connectors.sandbox`) is assembled from one module
per resource: ``auth`` (OAuth, scopes), ``inventory`` (channels, entries, decrements), ``custom_types``, ``imports``
(Import API), ``products``, ``orders``, ``subscriptions`` (Subscriptions API, Message delivery); ``predicates`` parses
``where`` / ``sort``; ``base`` holds what they share.

Control actions (``POST /_sandbox/commercetools/<action>``, see :mod:`connectors.sandbox`):
seed_catalog, create_orders, configure_webhooks, state, set_inventory, set_credentials, revoke_tokens,
wait_webhooks, store_fulfil (a delivery added storefront-side, e.g. ship-from-store), add_return / return_state (a
return booked or moved on storefront-side, as addReturnInfo / setReturnShipmentState do).
"""
