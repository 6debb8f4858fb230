"""The one client of the sandbox's HTTP control API (``connectors/sandbox/server.py``).

Tests talk to the emulators the way the demo seeder and the benches do, over HTTP — never through the in-process
emulator objects — so a test reads as a description of what the outside world did::

    sb = SandboxClient.of(sandbox)            # the ``sandbox`` fixture (a server), or a base URL
    sb.control("wair", "seed_stock", {"rows": [...]})
    sb.faults("commercetools", fail_next=[503])
    sb.stats("commercetools")["requests"]
    sb.state("commercetools")["orders"][order_id]

Modules whose helpers always speak to one emulator bind it once (``control = controller("archean")``) and keep
their call sites: ``control(sandbox, "seed_stock", {...})``.
"""

from __future__ import annotations

from typing import Any

import requests

CONTROL_TIMEOUT = 60.0  # seeding thousands of rows can take a while on a loaded machine
FAULTS_TIMEOUT = 5.0


class Record(dict):
    """A JSON object whose keys read as attributes too."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class SandboxError(AssertionError):
    """A control call answered with an unexpected status (an AssertionError: the test fails, it does not error)."""


class SandboxClient:
    def __init__(self, url: str, *, timeout: float = CONTROL_TIMEOUT):
        self.url = url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def of(cls, sandbox) -> SandboxClient:
        """A client for the ``sandbox`` fixture (a ``SandboxServer``), a client, or a base URL."""
        if isinstance(sandbox, SandboxClient):
            return sandbox
        if isinstance(sandbox, str):
            return cls(sandbox)
        return cls(sandbox.url)

    def _call(
        self, method: str, path: str, payload: Any = None, *, expect: int | None = 200, timeout: float | None = None
    ):
        r = requests.request(  # no shared session: tests call from several threads
            method, f"{self.url}/_sandbox/{path}", json=payload, timeout=timeout or self.timeout
        )
        if expect is not None and r.status_code != expect:
            raise SandboxError(f"{method} /_sandbox/{path} → {r.status_code} (expected {expect}): {r.text}")
        return r.json() if r.content else None

    # --- the control API ------------------------------------------------------------------------------
    def health(self) -> dict:
        return self._call("GET", "health")

    def reset(self) -> dict:
        """Every emulator back to empty, faults and stats off (what the ``sandbox`` fixture does before each test)."""
        return self._call("POST", "reset")

    def control(
        self,
        prefix: str,
        action: str,
        payload: Any = None,
        *,
        expect: int | None = 200,
        method: str = "POST",
        timeout: float | None = None,
    ) -> Any:
        """``POST /_sandbox/<prefix>/<action>`` (an emulator's ``control_<action>``); the JSON answer.
        ``method="GET"`` calls the action with no payload."""
        body = (payload or {}) if method == "POST" else payload
        return self._call(method, f"{prefix}/{action}", body, expect=expect, timeout=timeout)

    def faults(self, prefix: str, **switches) -> dict:
        """Merge fault switches (``latency_ms``, ``error_rate``, ``timeout_rate``, ``rate_limit_per_second``,
        ``fail_next`` …); the switches now in force."""
        return self._call("POST", f"{prefix}/faults", switches, timeout=FAULTS_TIMEOUT)

    def current_faults(self, prefix: str) -> dict:
        return self._call("GET", f"{prefix}/faults", timeout=FAULTS_TIMEOUT)

    def stats(self, prefix: str) -> Record:
        """Request / 429 / injected-fault / conflict counters and ``by_route`` counts (``"GET ^/pattern$"`` → n), read
        as items or attributes (``stats.rate_limited``)."""
        return Record(self._call("GET", f"{prefix}/stats", timeout=FAULTS_TIMEOUT))

    def reset_stats(self, prefix: str) -> dict:
        return self._call("POST", f"{prefix}/stats", timeout=FAULTS_TIMEOUT)

    def state(self, prefix: str, **payload) -> dict:
        """An emulator's ``state`` control action (what it holds: orders, inventory, receipts … per emulator)."""
        return self.control(prefix, "state", payload)


def control(sandbox, prefix: str, action: str, payload: Any = None, **kw) -> Any:
    return SandboxClient.of(sandbox).control(prefix, action, payload, **kw)


def faults(sandbox, prefix: str, **switches) -> dict:
    return SandboxClient.of(sandbox).faults(prefix, **switches)


def controller(prefix: str):
    """``control(sandbox, action, payload=None, expect=200)`` bound to one emulator."""

    def bound(sandbox, action: str, payload: Any = None, expect: int | None = 200, **kw) -> Any:
        return SandboxClient.of(sandbox).control(prefix, action, payload, expect=expect, **kw)

    bound.__name__ = bound.__qualname__ = f"control_{prefix}"
    return bound


def faulter(prefix: str):
    """``faults(sandbox, **switches)`` bound to one emulator."""

    def bound(sandbox, **switches) -> dict:
        return SandboxClient.of(sandbox).faults(prefix, **switches)

    bound.__name__ = bound.__qualname__ = f"faults_{prefix}"
    return bound
