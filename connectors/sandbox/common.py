"""What the emulators share beyond the HTTP framework (:mod:`.server`): signed webhooks to the hub, the queue that
delivers outbound notifications on background threads (ct Subscriptions, WAIR webhooks: at-least-once with retries,
``wait_webhooks`` to block until drained), the token revocation control, and the master / warehouse emulators' base
(:class:`MasterEmulator`: API key, locations, webhook URLs)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any, Callable, Sequence

from .server import Emulator

log = logging.getLogger("sandbox")


def send_webhook(url: str, secret: str, payload: Any, timeout: float = 5.0) -> int:
    """POST a signed webhook to the hub (used by emulators that push). Returns the status (0 = failed)."""
    import requests

    from connectors.signatures import HEADER, sign  # stdlib-only module

    body = json.dumps(payload, default=str).encode()
    try:
        r = requests.post(
            url, data=body, headers={"Content-Type": "application/json", HEADER: sign(secret, body)}, timeout=timeout
        )
        return r.status_code
    except requests.RequestException:
        log.warning("webhook to %s failed", url)
        return 0


class TokenControls:
    """``revoke_tokens`` {} → {"revoked": n}: every issued bearer token (``self.tokens``) stops working."""

    def control_revoke_tokens(self, payload: dict) -> dict:
        with self.lock:
            n = len(self.tokens)
            self.tokens.clear()
            return {"revoked": n}


class WebhookQueue:
    """Outbound notifications queued under the emulator's lock and delivered by worker threads (the emulator's
    ``_deliver_loop`` passes each item to :meth:`serve_queue`). A reset (:meth:`reset_queue`) bumps ``generation``:
    deliveries queued before it are void and their counters not kept. ``webhook_stats`` (set by the emulator) counts
    attempts, retries, delivered and dropped messages; ``inflight`` the deliveries under way."""

    def reset_queue(self, maxsize: int = 0) -> bool:
        """(lock held) A new generation with an empty queue: the first reset makes the queue (True), later ones drain it."""
        self.generation = getattr(self, "generation", 0) + 1
        self.inflight = 0
        old = getattr(self, "_queue", None)
        if old is None:
            self._queue: queue.Queue = queue.Queue(maxsize)
            self._workers: list[threading.Thread] = []
            return True
        try:
            while True:
                old.get_nowait()
                old.task_done()
        except queue.Empty:
            pass
        return False

    def ensure_workers(self, count: int, name: str) -> None:
        """(lock held) ``count`` live worker threads running the emulator's ``_deliver_loop`` (they never shrink)."""
        self._workers = [t for t in self._workers if t.is_alive()]
        while len(self._workers) < count:
            t = threading.Thread(target=self._deliver_loop, name=f"{name}-{len(self._workers)}", daemon=True)
            t.start()
            self._workers.append(t)

    def serve_queue(self, handle: Callable[[Any], None], what: str) -> None:
        """A worker thread's body: every queued item to ``handle``, forever; a failure is logged, never fatal."""
        while True:
            item = self._queue.get()
            try:
                handle(item)
            except Exception:  # never let a worker die
                log.exception("%s failed", what)
            finally:
                self._queue.task_done()

    def deliver(self, generation: int, send: Callable[[], bool], delays: Sequence[float]) -> None:
        """One queued message of ``generation``: ``send()`` (True = delivered; an exception is a failed attempt) up to
        ``len(delays) + 1`` times, ``delays[i]`` seconds after failed attempt i; then counted delivered or dropped."""
        with self.lock:
            if generation != self.generation:
                return
            self.inflight += 1
        delivered = False
        for attempt in range(len(delays) + 1):
            with self.lock:
                if generation != self.generation:
                    break
                self.webhook_stats["attempts"] += 1
            try:
                delivered = send()
            except Exception as exc:  # the receiver is down / refused: retried, as the real systems do
                log.debug("delivery failed: %s", exc)
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

    def control_wait_webhooks(self, payload: dict) -> dict:
        """Block until queued webhooks are delivered or dropped (or ``timeout`` seconds) → delivery stats."""
        deadline = time.time() + float(payload.get("timeout", 30))
        while time.time() < deadline:
            with self.lock:
                if self._queue.unfinished_tasks == 0 and self.inflight == 0:
                    break
            time.sleep(0.02)
        with self.lock:
            return {**self.webhook_stats, "pending": self._queue.unfinished_tasks}


class MasterEmulator(Emulator):
    """Shared parts of the inventory-master / warehouse emulators: API key, locations, and signed
    webhooks to the hub (control actions set_api_key, seed_locations, configure_webhooks)."""

    def reset_master(self, api_key: str) -> None:
        self.default_api_key = api_key
        self.api_key = api_key
        self.locations: dict[str, dict] = {}
        self.webhooks = {"stock_url": "", "dispatch_url": "", "secret": ""}
        self.webhook_log: list[tuple[str, int]] = []

    def _post(self, kind: str, payload) -> None:
        url, secret = self.webhooks.get(f"{kind}_url"), self.webhooks.get("secret", "")
        if url:
            status = send_webhook(url, secret, payload)
            with self.lock:
                self.webhook_log.append((kind, status))

    def control_set_api_key(self, payload):
        with self.lock:
            self.api_key = payload.get("key") or self.default_api_key
        return {"ok": True}

    def control_seed_locations(self, payload):
        with self.lock:
            for loc in payload.get("locations") or []:
                self.locations[str(loc["id"])] = {"id": str(loc["id"]), "name": loc.get("name", "")}
        return {"locations": len(self.locations)}

    def control_configure_webhooks(self, payload):
        with self.lock:
            self.webhooks = {
                "stock_url": payload.get("stock_url", ""),
                "dispatch_url": payload.get("dispatch_url", ""),
                "secret": payload.get("secret", ""),
            }
        return {"stock_url": self.webhooks["stock_url"], "dispatch_url": self.webhooks["dispatch_url"]}
