"""Inbound webhooks: the one way every webhook view receives a request.

A webhook view names only what is its own — which connections may post it, how its connector parses the
payload, and which hub service handles the result — and :class:`Inbound` runs the same steps for all of them,
each step answering for itself when it fails:

1. **find** the connection: enabled, of the systems that post this webhook — else 404;
2. **connector**: a connection unusable as configured is an exception record and a 503 (:mod:`.misconfig`;
   the sender retries, nothing is lost once an admin fixes the options);
3. **verify**: the connector's ``verify_webhook`` (HMAC ``X-Hub-Signature``, each signature accepted once, or a
   static header; the primitives are :mod:`connectors.signatures`) — else 401 ``bad signature``;
4. **read** the body as JSON with bounded nesting (:mod:`.jsonsafe`) — else 400 and a ``bad_payload`` record;
5. **parse** with the connector — a connector that does not push this kind answers 400 ``<system> does not push
   <what>``; a payload it does not understand answers 400 and is a ``bad_payload`` record; where the kind says
   so (``retry_later``), a connector error (e.g. a lookup it needed failed) answers 503 so the sender retries;
6. **handle** with the hub service: 200 with its counts.

By default the whole request runs in one transaction: the accepted signature (replay cache,
:meth:`integration_hub.core.models.WebhookSignature.claim`) is recorded with what the request did, so a
request that fails frees it for the sender's retry. A kind whose steps differ (the Pub/Sub push: a Google OIDC
token instead of the connector's verifier) overrides those steps and keeps the rest.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from django.db import transaction
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from connectors import errors, registry
from exceptions_app import kinds
from exceptions_app.services import raise_exception

from . import jsonsafe, misconfig
from .models import Connection

log = logging.getLogger(__name__)

NOT_UNDERSTOOD = (errors.BadDataError, ValueError, KeyError, TypeError, AttributeError)


class Refused(Exception):
    """A step's answer when the request goes no further (``response``; :func:`refuse` builds the usual one)."""

    def __init__(self, response: JsonResponse):
        super().__init__(response.status_code)
        self.response = response


def refuse(status: int, error: str) -> Refused:
    """The answer ``{"error": error}`` with ``status``, to raise from a step."""
    return Refused(JsonResponse({"error": error}, status=status))


class Inbound:
    """One kind of inbound webhook. ``source`` names it in exception records and logs (``"stock-webhook"``);
    ``pushes`` completes "<system> does not push …"; ``parse(connector, payload)`` and ``handle(connection,
    parsed) -> dict`` are the kind's own steps."""

    atomic = True  # the whole request in one transaction (see the module docstring)

    def __init__(
        self,
        source: str,
        systems,
        *,
        pushes: str,
        parse: Callable[[Any, Any], Any],
        handle: Callable[[Connection, Any], dict],
        title: str = "",
        not_found: str = "no such connection",
        retry_later: bool = False,
    ):
        self.source, self.systems, self.pushes = source, frozenset(systems), pushes
        self._parse, self._handle = parse, handle
        self.title = title or f"Unreadable {source} from {{name}}"
        self.not_found, self.retry_later = not_found, retry_later

    # --- the view ------------------------------------------------------------------------------------------
    def view(self):
        """The Django view (CSRF-exempt, POST only) for this kind."""

        def webhook(request, name: str):
            if self.atomic:
                with transaction.atomic():
                    return self.receive(request, name)
            return self.receive(request, name)

        webhook.__name__ = webhook.__qualname__ = self.source.replace("-", "_")
        return csrf_exempt(require_POST(webhook))

    def receive(self, request, name: str) -> JsonResponse:
        try:
            conn = self.find(name)
            connector = self.connector(conn)
            self.verify(request, conn, connector)
            payload = self.read(request, conn)
            parsed = self.parse(request, conn, connector, payload)
            return JsonResponse(self.handle(conn, parsed))
        except Refused as refused:
            return refused.response

    # --- the steps -----------------------------------------------------------------------------------------
    def find(self, name: str) -> Connection:
        conn = Connection.objects.filter(name=name, enabled=True, system_type__in=list(self.systems)).first()
        if conn is None:
            raise Http404(self.not_found)
        return conn

    def connector(self, conn: Connection):
        """The connection's connector; a misconfigured connection is recorded and answered 503."""
        try:
            return registry.get_connector(conn)
        except errors.ConfigurationError as exc:
            raise Refused(misconfig.webhook_response(conn, exc, self.source)) from exc

    def verify(self, request, conn: Connection, connector) -> None:
        if not connector.verify_webhook(request.body, request.headers):
            raise refuse(401, "bad signature")

    def read(self, request, conn: Connection):
        try:
            return jsonsafe.loads(
                request.body
            )  # bounded nesting: too deep is a ValueError (400), never a RecursionError
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.bad(conn, f"malformed JSON: {exc}", request.body) from exc

    def parse(self, request, conn: Connection, connector, payload):
        try:
            return self._parse(connector, payload)
        except NotImplementedError:
            raise refuse(400, f"{conn.system_type} does not push {self.pushes}") from None
        except NOT_UNDERSTOOD as exc:
            raise self.bad(conn, f"payload not understood: {exc}", request.body) from exc
        except errors.ConnectorError as exc:
            if not self.retry_later:
                raise
            # e.g. resolving channel ids failed: the sender retries, the poll catches up
            log.warning("%s from %s could not be processed now: %s", self.source.replace("-", " "), conn.name, exc)
            raise refuse(503, f"temporarily unavailable: {exc}") from exc

    def handle(self, conn: Connection, parsed) -> dict:
        return self._handle(conn, parsed)

    # --- a body the hub cannot read ------------------------------------------------------------------------
    def bad(self, conn: Connection, reason: str, body: bytes) -> Refused:
        """Record the unreadable body (``bad_payload``, one record per connection and kind) and answer 400."""
        raise_exception(
            "bad_payload",
            kinds.key("bad_payload", conn.name, self.source, "unparseable"),
            self.title.format(name=conn.name),
            message=reason,
            connection=conn,
            context={"body_excerpt": body[:500].decode("utf-8", "replace"), "action": "check_sender"},
        )
        return refuse(400, reason)
